//! `streamsocket-bench capture`: what the capture and conversion stages cost per frame, at
//! 640x360 and 1280x720: the test pattern (render, RGB to I420), a Y4M file read, the camera
//! formats to I420 (YUYV, NV12, MJPEG), and the scaler down to the next rung.

use std::time::Instant;

use hdrhistogram::Histogram;
use streamsocket_server::capture::{
    is_flash_frame, to_i420, PixelFormat, RawFrame, VideoPattern, Y4mFile,
};
use streamsocket_server::encode::Scaler;

const ROUNDS: usize = 200;

fn measure(mut f: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let mut h = Histogram::<u64>::new(3)?;
    for i in 0..ROUNDS {
        let t = Instant::now();
        f(i)?;
        h.record(t.elapsed().as_nanos().max(1) as u64)?;
    }
    Ok((
        h.value_at_quantile(0.5) as f64 / 1e6,
        h.value_at_quantile(0.95) as f64 / 1e6,
    ))
}

/// YUYV and NV12 versions of an I420 picture, built plane by plane.
fn packed_formats(f: &RawFrame) -> (Vec<u8>, Vec<u8>) {
    let (w, h) = (f.width, f.height);
    let mut yuyv = Vec::with_capacity(w * h * 2);
    for row in 0..h {
        let (y, c) = (&f.y[row * w..][..w], (row / 2) * (w / 2));
        for x in (0..w).step_by(2) {
            yuyv.extend([y[x], f.u[c + x / 2], y[x + 1], f.v[c + x / 2]]);
        }
    }
    let mut nv12 = f.y.clone();
    for (u, v) in f.u.iter().zip(&f.v) {
        nv12.extend([*u, *v]);
    }
    (yuyv, nv12)
}

pub fn run() -> anyhow::Result<()> {
    println!("# Capture and conversion cost per frame ({ROUNDS} rounds each, one thread)");
    println!();
    println!("| stage | 640x360 p50 ms | p95 ms | 1280x720 p50 ms | p95 ms |");
    println!("|---|---|---|---|---|");
    let mut rows: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut add = |name: &str, v: (f64, f64)| match rows.iter_mut().find(|r| r.0 == name) {
        Some(r) => r.1.push(v),
        None => rows.push((name.to_string(), vec![v])),
    };
    for (w, h) in [(640usize, 360usize), (1280, 720)] {
        let mut pattern = VideoPattern::new(w, h);
        add(
            "test pattern: render (RGB)",
            measure(|i| {
                pattern.render(i as u64, i as u64 * 33_333, is_flash_frame(i as u64, 30));
                Ok(())
            })?,
        );
        let rgb = pattern.render(7, 233_333, false).to_vec();
        add(
            "test pattern: RGB to I420 (yuv)",
            measure(|_| RawFrame::from_rgb(&rgb, w, h, 0).map(drop))?,
        );
        let frame = RawFrame::from_rgb(&rgb, w, h, 0)?;
        let (yuyv, nv12) = packed_formats(&frame);
        add(
            "camera YUYV to I420 (yuv)",
            measure(|_| to_i420(PixelFormat::Yuyv, &yuyv, w, h, 0).map(drop))?,
        );
        add(
            "camera NV12 to I420",
            measure(|_| to_i420(PixelFormat::Nv12, &nv12, w, h, 0).map(drop))?,
        );
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 85)
            .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        add(
            "camera MJPEG (quality 85) to I420 (zune-jpeg + yuv)",
            measure(|_| to_i420(PixelFormat::Mjpeg, &jpeg, w, h, 0).map(drop))?,
        );
        // A Y4M file of 30 frames, read round and round.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("clip.y4m");
        {
            let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let mut enc = y4m::encode(w, h, y4m::Ratio::new(30, 1))
                .write_header(file)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for _ in 0..30 {
                enc.write_frame(&y4m::Frame::new([&frame.y, &frame.u, &frame.v], None))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        let mut file = Y4mFile::open(&path, true)?;
        add(
            "Y4M file: read a frame",
            measure(|_| file.read_frame(0).map(drop))?,
        );
        let mut scaler = Scaler::new(w * 2 / 3 / 2 * 2, h * 2 / 3 / 2 * 2);
        add(
            "scale to two thirds (fast_image_resize)",
            measure(|_| scaler.scale(&frame).map(drop))?,
        );
    }
    for (name, v) in rows {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} |",
            v[0].0, v[0].1, v[1].0, v[1].1
        );
    }
    Ok(())
}
