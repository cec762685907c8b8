//! `streamsocket-bench encoder`: each AV1 backend and setting on the same pictures, in one
//! run. The pictures are rendered into memory first (so only encoding is timed); each
//! configuration is warmed up, then fed as fast as it goes. Per configuration: throughput,
//! time per call, frame delay (pictures in before the first packet out), bitrate against
//! the target, CPU, and the quality of what dav1d decodes from it (PSNR, SSIM), so that
//! backends compare at the same bitrate.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use streamsocket_server::capture::{MediaClock, RawFrame};
use streamsocket_server::encode::{EncoderKind, EncoderSettings, VideoEncoder};

use crate::quality::{mse, psnr_of, ssim};
use crate::{cpu_seconds, make_inputs, Content};

/// One configuration: a label, the backend, and a change to its defaults.
type Variant = (&'static str, EncoderKind, fn(&mut EncoderSettings));

fn rav1e(s: &mut EncoderSettings) -> &mut streamsocket_server::encode::Rav1eTuning {
    s.rav1e_mut().expect("a rav1e variant")
}

fn aom(s: &mut EncoderSettings) -> &mut streamsocket_server::encode::AomTuning {
    s.aom_mut().expect("an aom variant")
}

fn variants() -> Vec<Variant> {
    use EncoderKind::{Aom, Rav1e};
    vec![
        ("aom default (real time, cpu-used 9 (10 from 1280x720 up), CBR, no lag, 2 tile columns, 2 threads, row-mt, cyclic-refresh AQ)", Aom, |_| {}),
        ("aom, cpu-used 7", Aom, |s| aom(s).cpu_used = 7),
        ("aom, cpu-used 8", Aom, |s| aom(s).cpu_used = 8),
        ("aom, cpu-used 9 (as below 1280x720)", Aom, |s| aom(s).cpu_used = 9),
        ("aom, cpu-used 10", Aom, |s| aom(s).cpu_used = 10),
        ("aom, 1 thread", Aom, |s| s.threads = 1),
        ("aom, 1 tile", Aom, |s| s.tiles = 1),
        ("aom, 4 tile columns", Aom, |s| s.tiles = 4),
        ("aom, 4 threads", Aom, |s| s.threads = 4),
        ("aom, no row-mt", Aom, |s| aom(s).row_mt = false),
        ("aom, no AQ", Aom, |s| aom(s).aq_mode = 0),
        ("aom, no AQ, cpu-used 8", Aom, |s| {
            aom(s).aq_mode = 0;
            aom(s).cpu_used = 8;
        }),
        ("aom, no AQ, cpu-used 10", Aom, |s| {
            aom(s).aq_mode = 0;
            aom(s).cpu_used = 10;
        }),
        ("aom, error resilient", Aom, |s| aom(s).error_resilient = true),
        ("aom, keyframe size unlimited", Aom, |s| aom(s).max_intra_bitrate_pct = 0),
        ("aom, quantizer floor 0", Aom, |s| aom(s).min_quantizer = 0),
        ("aom, quantizer ceiling 56 (libwebrtc's)", Aom, |s| aom(s).max_quantizer = 56),
        ("aom, keyframe every 1 s", Aom, |s| s.keyframe_interval = 30),
        ("aom at 200 kbit/s", Aom, |s| s.bitrate_kbps = 200),
        ("rav1e default (speed 10, 2 tiles, 2 threads, PSNR, lookahead 1, no scene detection, quantizer ceiling 255)", Rav1e, |_| {}),
        ("rav1e speed-10 preset as is (1 tile, lookahead 10, scene detection, psychovisual)", Rav1e, |s| {
            s.tiles = 1;
            let t = rav1e(s);
            t.rdo_lookahead_frames = 10;
            t.scene_detection = true;
            t.tune_psnr = false;
        }),
        ("rav1e, 1 tile", Rav1e, |s| s.tiles = 1),
        ("rav1e, 4 tiles", Rav1e, |s| s.tiles = 4),
        ("rav1e, 1 thread", Rav1e, |s| s.threads = 1),
        ("rav1e, lookahead 0", Rav1e, |s| rav1e(s).rdo_lookahead_frames = 0),
        ("rav1e, lookahead 3", Rav1e, |s| rav1e(s).rdo_lookahead_frames = 3),
        ("rav1e, speed 9", Rav1e, |s| rav1e(s).speed = 9),
        ("rav1e, quantizer ceiling 100 (rav1e's default)", Rav1e, |s| rav1e(s).max_quantizer = 100),
        ("rav1e, keyframe every 1 s", Rav1e, |s| s.keyframe_interval = 30),
        ("rav1e at 200 kbit/s", Rav1e, |s| s.bitrate_kbps = 200),
    ]
}

pub struct SweepOptions<'a> {
    pub width: usize,
    pub height: usize,
    pub frames: u64,
    pub default_only: bool,
    pub only: &'a [String],
    pub encoders: &'a [EncoderKind],
    pub content: Content,
}

pub fn sweep(o: SweepOptions) -> anyhow::Result<()> {
    let fps = 30;
    let bitrate = if o.width * o.height > 640 * 360 {
        2000
    } else {
        800
    };
    let all = variants();
    let chosen: Vec<&Variant> = all
        .iter()
        .filter(|(label, kind, _)| {
            o.encoders.contains(kind)
                && if o.default_only {
                    label.contains(" default")
                } else {
                    o.only.is_empty() || o.only.iter().any(|w| label.contains(w.as_str()))
                }
        })
        .collect();
    let inputs = make_inputs(o.width, o.height, fps, o.frames, o.content)?;
    println!(
        "# AV1 encoders on {:?} content, {}x{} @ {fps} fps, {bitrate} kbit/s, {} frames each",
        o.content, o.width, o.height, o.frames
    );
    println!();
    println!(
        "test source cost: render {:.2} ms + RGB to I420 {:.2} ms per frame (p50)",
        inputs.render_ms_p50, inputs.convert_ms_p50
    );
    println!();
    println!("| configuration | encode fps | encode ms p50 | p95 | frame delay (pictures in after the first, before its packet) | kbit/s | PSNR-Y dB | PSNR-YUV dB | SSIM-Y | CPU (cores) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    let mut warmed = Vec::new();
    for (label, kind, change) in chosen {
        let mut settings = EncoderSettings::realtime(*kind, o.width, o.height, fps, bitrate);
        change(&mut settings);
        // Warm up each backend once (caches, allocator, CPU clocks) so that its first row is
        // not penalised.
        if !warmed.contains(kind) {
            let warm = EncoderSettings::realtime(*kind, o.width, o.height, fps, bitrate);
            encode_run(&warm, &inputs.frames[..inputs.frames.len().min(60)], false)?;
            warmed.push(*kind);
        }
        let r = match encode_run(&settings, &inputs.frames, true) {
            Ok(r) => r,
            Err(e) => {
                println!("| {label} | rejected: {e:#} | | | | | | | | |");
                continue;
            }
        };
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.2} | {:.2} | {:.4} | {:.2} |",
            f("fps"),
            f("encode_ms_p50"),
            f("encode_ms_p95"),
            r["frame_delay"],
            f("kbps"),
            f("psnr_y"),
            f("psnr_yuv"),
            f("ssim_y"),
            f("cpu_cores"),
        );
        results.push(json!({"configuration": label, "encoder": kind.name(), "result": r}));
    }
    eprintln!("{}", serde_json::to_string(&results)?);
    Ok(())
}

/// Encodes the pictures as fast as possible and measures the encoder alone; then (untimed)
/// decodes what it produced with dav1d and compares it with the input when `quality`.
fn encode_run(
    settings: &EncoderSettings,
    inputs: &[RawFrame],
    quality: bool,
) -> anyhow::Result<Value> {
    let clock = MediaClock::start();
    let mut encoder = VideoEncoder::new(settings.clone(), 0, clock, 0)?;
    let mut per_call = Histogram::<u64>::new(3)?;
    let mut delay = None;
    let mut packets = Vec::with_capacity(inputs.len());
    let cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    for (i, raw) in inputs.iter().enumerate() {
        let t = Instant::now();
        let out = encoder.encode(raw, false)?;
        per_call.record(t.elapsed().as_micros() as u64)?;
        if !out.is_empty() && delay.is_none() {
            delay = Some(i as u64);
        }
        packets.extend(out);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, cpu_seconds(std::process::id())) {
        (Some(a), Some(b)) => (b - a) / elapsed,
        _ => f64::NAN,
    };
    let bytes: u64 = packets.iter().map(|f| f.payload.len() as u64).sum();
    let seconds_of_video = packets.len() as f64 / settings.fps as f64;
    let mut result = json!({
        "fps": inputs.len() as f64 / elapsed,
        "encode_ms_p50": per_call.value_at_quantile(0.5) as f64 / 1000.0,
        "encode_ms_p95": per_call.value_at_quantile(0.95) as f64 / 1000.0,
        "frame_delay": delay,
        "kbps": bytes as f64 * 8.0 / 1000.0 / seconds_of_video.max(1e-9),
        "frames_out": packets.len(),
        "cpu_cores": cpu,
    });
    if quality {
        let tagged: Vec<(Vec<u8>, u64)> = packets
            .iter()
            .map(|p| (p.payload.to_vec(), p.capture_us))
            .collect();
        let q = decoded_quality(&tagged, inputs)?;
        result["psnr_y"] = json!(q.0);
        result["psnr_yuv"] = json!(q.1);
        result["ssim_y"] = json!(q.2);
    }
    Ok(result)
}

/// Mean PSNR (luma; and the planes weighted 4:1:1) and SSIM of the decoded pictures against
/// the inputs with the same capture times.
pub fn decoded_quality(
    packets: &[(Vec<u8>, u64)],
    inputs: &[RawFrame],
) -> anyhow::Result<(f64, f64, f64)> {
    use dav1d::PlanarImageComponent as Plane;
    let mut settings = dav1d::Settings::new();
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    let mut decoder =
        dav1d::Decoder::with_settings(&settings).map_err(|e| anyhow::anyhow!("dav1d: {e}"))?;
    let (mut psnr_y, mut psnr_yuv, mut ssims) = (0.0, 0.0, 0.0);
    let mut n = 0usize;
    let mut pictures = Vec::new();
    for (payload, capture_us) in packets {
        match decoder.send_data(payload.clone(), None, Some(*capture_us as i64), None) {
            Ok(()) => {}
            Err(dav1d::Error::Again) => {
                // A picture must be taken first; then the decoder takes the rest.
                drain(&mut decoder, &mut pictures)?;
                match decoder.send_pending_data() {
                    Ok(()) | Err(dav1d::Error::Again) => {}
                    Err(e) => anyhow::bail!("dav1d: {e}"),
                }
            }
            Err(e) => anyhow::bail!("dav1d refused a packet: {e}"),
        }
        drain(&mut decoder, &mut pictures)?;
    }
    anyhow::ensure!(
        pictures.len() == packets.len(),
        "dav1d returned {} pictures for {} packets",
        pictures.len(),
        packets.len()
    );
    for picture in &pictures {
        let source = inputs
            .iter()
            .find(|r| Some(r.capture_us as i64) == picture.timestamp())
            .ok_or_else(|| anyhow::anyhow!("a decoded picture with no source"))?;
        let (w, h) = (source.width, source.height);
        let plane = |which: Plane, pw: usize, ph: usize| -> Vec<u8> {
            let data = picture.plane(which);
            let stride = picture.stride(which) as usize;
            (0..ph)
                .flat_map(|row| data[row * stride..row * stride + pw].to_vec())
                .collect()
        };
        let y = plane(Plane::Y, w, h);
        let u = plane(Plane::U, w / 2, h / 2);
        let v = plane(Plane::V, w / 2, h / 2);
        let my = mse(&source.y, &y);
        psnr_y += psnr_of(my);
        psnr_yuv += psnr_of((4.0 * my + mse(&source.u, &u) + mse(&source.v, &v)) / 6.0);
        ssims += ssim(&source.y, &y, w, h);
        n += 1;
    }
    anyhow::ensure!(n > 0, "nothing decoded");
    let n = n as f64;
    Ok((psnr_y / n, psnr_yuv / n, ssims / n))
}

fn drain(decoder: &mut dav1d::Decoder, pictures: &mut Vec<dav1d::Picture>) -> anyhow::Result<()> {
    loop {
        match decoder.get_picture() {
            Ok(p) => pictures.push(p),
            Err(dav1d::Error::Again) => return Ok(()),
            Err(e) => anyhow::bail!("dav1d: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every picture each backend writes decodes in dav1d, at every size of the default
    /// ladders, on flat and on detailed content, with keyframes forced at odd moments (a
    /// viewer joining). libaom 3.6 with libwebrtc's "no cost-table updates" settings wrote
    /// streams that neither dav1d nor libaom could decode; this is the check that caught it.
    #[test]
    fn every_backend_writes_streams_dav1d_decodes() {
        let sizes = [(640, 360), (426, 240), (320, 180), (1280, 720)];
        for kind in EncoderKind::ALL {
            for (w, h) in sizes {
                for content in [Content::Pattern, Content::Busy] {
                    let frames = if w > 640 { 20 } else { 45 };
                    let inputs = make_inputs(w, h, 30, frames, content).unwrap().frames;
                    let settings = EncoderSettings::realtime(kind, w, h, 30, 400);
                    let mut encoder =
                        VideoEncoder::new(settings, 0, MediaClock::start(), 0).unwrap();
                    let mut packets = Vec::new();
                    for (i, raw) in inputs.iter().enumerate() {
                        for f in encoder.encode(raw, i == 2 || i == 17).unwrap() {
                            packets.push((f.payload.to_vec(), f.capture_us));
                        }
                    }
                    let (psnr_y, _, _) = decoded_quality(&packets, &inputs)
                        .unwrap_or_else(|e| panic!("{kind} {w}x{h} {content:?}: {e:#}"));
                    if let Content::Pattern = content {
                        assert!(psnr_y > 30.0, "{kind} {w}x{h}: PSNR {psnr_y:.1} dB");
                    }
                }
            }
        }
    }
}
