//! `streamsocket-bench quality`: how good the picture is at each rendition's bitrate. A clip
//! is rendered to a Y4M file and streamed by the release server (`--video clip.y4m`); for each
//! rung a headless viewer dumps what it decoded (`--dump-y4m`), and every decoded picture is
//! compared with its source picture, scaled to the rung's size with the server's own scaler:
//! PSNR (luma, and the three planes weighted 4:1:1) and SSIM (luma, 8x8 windows).

use std::path::Path;
use std::time::Duration;

use streamsocket_server::capture::RawFrame;
use streamsocket_server::encode::Scaler;
use streamsocket_tests::{num, run_viewer, ServerProcess};

use crate::{make_inputs, Content};

pub fn mse(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64
}

pub fn psnr_of(mse: f64) -> f64 {
    if mse <= 0.0 {
        100.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Mean SSIM over 8x8 windows (step 4) of two luma planes (Wang et al. 2004 constants).
pub fn ssim(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut windows) = (0.0, 0u64);
    for y0 in (0..height.saturating_sub(7)).step_by(4) {
        for x0 in (0..width.saturating_sub(7)).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in y0..y0 + 8 {
                for x in x0..x0 + 8 {
                    let (p, q) = (a[y * width + x] as f64, b[y * width + x] as f64);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let n = 64.0;
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            windows += 1;
        }
    }
    total / windows.max(1) as f64
}

fn write_clip(path: &Path, frames: &[RawFrame], fps: u32) -> anyhow::Result<()> {
    let (w, h) = (frames[0].width, frames[0].height);
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = y4m::encode(w, h, y4m::Ratio::new(fps as usize, 1))
        .with_colorspace(y4m::Colorspace::C420)
        .write_header(file)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for f in frames {
        enc.write_frame(&y4m::Frame::new([&f.y, &f.u, &f.v], None))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// One rung's figures.
struct RungQuality {
    size: (usize, usize),
    pictures: usize,
    kbps: f64,
    psnr_y_mean: f64,
    psnr_y_p5: f64,
    psnr_yuv_mean: f64,
    ssim_mean: f64,
    ssim_min: f64,
}

fn measure_rung(
    server: &ServerProcess,
    rung: usize,
    sources: &[RawFrame],
    seconds: u64,
    dir: &Path,
) -> anyhow::Result<RungQuality> {
    let dump = dir.join(format!("rung{rung}.y4m"));
    let run = run_viewer(
        &server.addr.to_string(),
        &[
            "--ca",
            server.ca().to_str().expect("utf-8"),
            "--headless",
            "--quality",
            &rung.to_string(),
            "--duration",
            &seconds.to_string(),
            "--dump-y4m",
            dump.to_str().expect("utf-8"),
        ],
        &[],
        Duration::from_secs(seconds + 30),
    )?;
    anyhow::ensure!(
        run.output.status.success(),
        "viewer failed: {}",
        run.stderr()
    );
    let stats = run.stats();
    let kbps = num(stats, "/video/bytes") * 8.0 / 1000.0 / num(stats, "/duration_s");
    let mut decoder =
        y4m::decode(std::fs::File::open(&dump)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let size = (decoder.get_width(), decoder.get_height());
    let mut scaler = Scaler::new(size.0, size.1);
    let scaled: Vec<RawFrame> = sources
        .iter()
        .map(|s| scaler.scale(s).map(|c| c.into_owned()))
        .collect::<anyhow::Result<_>>()?;
    let (mut psnr_y, mut psnr_yuv, mut ssims) = (Vec::new(), Vec::new(), Vec::new());
    let mut previous: Option<usize> = None;
    while let Ok(f) = decoder.read_frame() {
        let y = f.get_y_plane();
        // The first picture is searched among all; then among the next few (frames the
        // viewer skipped), in order: content moves, so the right one stands out.
        let candidates: Vec<usize> = match previous {
            None => (0..scaled.len()).collect(),
            Some(p) => (1..=4).map(|d| (p + d) % scaled.len()).collect(),
        };
        let (best, best_mse) = candidates
            .into_iter()
            .map(|i| (i, mse(&scaled[i].y, y)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("candidates");
        previous = Some(best);
        let s = &scaled[best];
        let all = (4.0 * best_mse + mse(&s.u, f.get_u_plane()) + mse(&s.v, f.get_v_plane())) / 6.0;
        psnr_y.push(psnr_of(best_mse));
        psnr_yuv.push(psnr_of(all));
        ssims.push(ssim(&s.y, y, size.0, size.1));
    }
    anyhow::ensure!(!psnr_y.is_empty(), "rung {rung}: nothing decoded");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut sorted = psnr_y.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(RungQuality {
        size,
        pictures: psnr_y.len(),
        kbps,
        psnr_y_mean: mean(&psnr_y),
        psnr_y_p5: sorted[sorted.len() / 20],
        psnr_yuv_mean: mean(&psnr_yuv),
        ssim_mean: mean(&ssims),
        ssim_min: ssims.iter().copied().fold(f64::MAX, f64::min),
    })
}

/// The frames of a Y4M clip (at most `max`).
fn read_clip(path: &Path, max: usize) -> anyhow::Result<(Vec<RawFrame>, u32)> {
    let mut file = streamsocket_server::capture::Y4mFile::open(path, false)?;
    let fps = streamsocket_server::capture::VideoInput::format(&file).fps;
    let mut frames = Vec::new();
    while frames.len() < max {
        match file.read_frame(0) {
            Ok(f) => frames.push(f),
            Err(_) => break,
        }
    }
    anyhow::ensure!(!frames.is_empty(), "{}: no frames", path.display());
    Ok((frames, fps))
}

pub fn run(content: Content, clip: Option<&Path>, seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (sources, fps, what) = match clip {
        Some(path) => {
            let (frames, fps) = read_clip(path, 300)?;
            (frames, fps, format!("{}", path.display()))
        }
        None => (
            make_inputs(640, 360, 30, 150, content)?.frames,
            30,
            format!("{content:?} content"),
        ),
    };
    let (w, h) = (sources[0].width, sources[0].height);
    let clip = dir.path().join("clip.y4m");
    write_clip(&clip, &sources, fps)?;
    let server =
        ServerProcess::start(&["--video", clip.to_str().expect("utf-8"), "--audio", "none"])?;
    println!(
        "# Quality per rendition: {what}, {w}x{h} @ {fps} fps ({} frames, looping), {seconds} s per rung, default ladder",
        sources.len()
    );
    println!();
    println!("| rung | size | pictures | kbit/s received | PSNR-Y mean dB | PSNR-Y 5th percentile dB | PSNR-YUV mean dB | SSIM-Y mean | SSIM-Y min |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for rung in 1..=3 {
        let q = measure_rung(&server, rung, &sources, seconds, dir.path())?;
        println!(
            "| {rung} | {}x{} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.4} | {:.4} |",
            q.size.0,
            q.size.1,
            q.pictures,
            q.kbps,
            q.psnr_y_mean,
            q.psnr_y_p5,
            q.psnr_yuv_mean,
            q.ssim_mean,
            q.ssim_min
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_is_one_for_equal_pictures_and_lower_for_noise() {
        let a: Vec<u8> = (0..64 * 64).map(|i| (i % 251) as u8).collect();
        assert!((ssim(&a, &a, 64, 64) - 1.0).abs() < 1e-9);
        let b: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, &p)| p.wrapping_add((i * 7 % 13) as u8))
            .collect();
        assert!(ssim(&a, &b, 64, 64) < 0.99);
        assert!((psnr_of(mse(&a, &a)) - 100.0).abs() < 1e-9);
    }
}
