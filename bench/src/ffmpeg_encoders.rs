//! `streamsocket-bench ffmpeg-encoders`: AV1 encoders StreamSocket does not link, measured
//! through Debian's ffmpeg on the same pictures and with the same figures as `encoder`
//! (speed, frame delay, bitrate, PSNR/SSIM of what dav1d decodes, CPU). It is how SVT-AV1
//! was evaluated before deciding whether to add it, and it re-measures libaom and rav1e
//! through the same path as a control: ffmpeg's own overhead shows as their difference from
//! the native rows of `encoder`.
//!
//! Frame delay is measured from outside: pictures go into ffmpeg's standard input one at a
//! time, each followed by a wait of up to [`DELAY_WAIT`] for a packet on its standard output
//! (IVF, flushed per packet). The count of pictures written after the first before the first
//! packet came out is the delay; libaom in real-time mode (no lag) reads 0 through this
//! harness, so ffmpeg itself adds none.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use streamsocket_server::capture::RawFrame;

use crate::encoder::decoded_quality;
use crate::{cpu_seconds, make_inputs, Content};

/// How long the delay probe waits for a packet after each picture.
const DELAY_WAIT: Duration = Duration::from_millis(300);
/// Pictures the delay probe sends at most.
const DELAY_PROBE: usize = 40;

/// One encoder through ffmpeg: a label and the ffmpeg options that select and tune it.
fn configurations(kbps: u32) -> Vec<(String, Vec<String>)> {
    let b = format!("{kbps}k");
    let rows: Vec<(&str, String)> = vec![
        (
            "libaom real time, cpu-used 9, lag 0, CBR, row-mt, 2 tile columns, AQ 3 (StreamSocket's aom settings)",
            format!("-c:v libaom-av1 -usage realtime -lag-in-frames 0 -b:v {b} -minrate {b} -maxrate {b} -bufsize {b} -row-mt 1 -tile-columns 1 -aq-mode 3 -aom-params cpu-used=9"),
        ),
        (
            "libaom real time, cpu-used 8 (the issue's row)",
            format!("-c:v libaom-av1 -usage realtime -lag-in-frames 0 -b:v {b} -minrate {b} -maxrate {b} -bufsize {b} -row-mt 1 -tile-columns 1 -cpu-used 8"),
        ),
        (
            "SVT-AV1 preset 12, low delay, lookahead 0, CBR",
            format!("-c:v libsvtav1 -preset 12 -b:v {b} -svtav1-params pred-struct=1:lookahead=0:scd=0:rc=2:tbr={kbps}"),
        ),
        (
            "SVT-AV1 preset 10, low delay, lookahead 0, CBR",
            format!("-c:v libsvtav1 -preset 10 -b:v {b} -svtav1-params pred-struct=1:lookahead=0:scd=0:rc=2:tbr={kbps}"),
        ),
        (
            "SVT-AV1 preset 8, low delay, lookahead 0, CBR",
            format!("-c:v libsvtav1 -preset 8 -b:v {b} -svtav1-params pred-struct=1:lookahead=0:scd=0:rc=2:tbr={kbps}"),
        ),
        (
            "rav1e speed 10, low latency, RDO lookahead 1, 2 tiles (StreamSocket's rav1e settings)",
            format!("-c:v librav1e -speed 10 -tiles 2 -b:v {b} -rav1e-params low_latency=true:rdo_lookahead_frames=1:min_keyint=0"),
        ),
    ];
    rows.into_iter()
        .map(|(label, args)| {
            (
                label.to_string(),
                args.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// An ffmpeg encoding pictures from its standard input to IVF on its standard output.
struct FfmpegEncoder {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    packets: mpsc::Receiver<Vec<u8>>,
}

impl FfmpegEncoder {
    fn start(width: usize, height: usize, fps: u32, codec: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p"])
            .args(["-s", &format!("{width}x{height}"), "-r", &fps.to_string()])
            .args(["-i", "-", "-threads", "2", "-g", &(fps * 2).to_string()])
            .args(codec)
            .args(["-flush_packets", "1", "-f", "ivf", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot run ffmpeg (scripts/install-deps.sh installs it): {e}")
            })?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, packets) = mpsc::channel();
        std::thread::spawn(move || {
            // IVF: a 32-byte file header, then per frame a 12-byte header (size, pts) and data.
            let mut header = [0u8; 32];
            if stdout.read_exact(&mut header).is_err() {
                return;
            }
            loop {
                let mut frame_header = [0u8; 12];
                if stdout.read_exact(&mut frame_header).is_err() {
                    return;
                }
                let size = u32::from_le_bytes(frame_header[..4].try_into().expect("4 bytes"));
                let mut data = vec![0u8; size as usize];
                if stdout.read_exact(&mut data).is_err() || tx.send(data).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            packets,
        })
    }

    fn write(&mut self, f: &RawFrame) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().expect("open until finish");
        for plane in [&f.y, &f.u, &f.v] {
            stdin.write_all(plane)?;
        }
        stdin.flush()?;
        Ok(())
    }

    /// Closes the input and collects the remaining packets; fails with ffmpeg's message.
    fn finish(mut self, mut packets: Vec<Vec<u8>>) -> anyhow::Result<Vec<Vec<u8>>> {
        drop(self.stdin.take());
        packets.extend(self.packets.iter());
        let mut errors = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut errors);
        }
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "ffmpeg failed: {}", errors.trim());
        Ok(packets)
    }
}

pub fn run(width: usize, height: usize, frames: u64, content: Content) -> anyhow::Result<()> {
    let fps = 30;
    let kbps = if width * height > 640 * 360 {
        2000
    } else {
        800
    };
    let inputs = make_inputs(width, height, fps, frames, content)?.frames;
    let version = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    println!(
        "# AV1 encoders through ffmpeg ({version}) on {content:?} content, {width}x{height} @ {fps} fps, {kbps} kbit/s, {frames} frames each"
    );
    println!();
    println!("| encoder through ffmpeg | encode fps | frame delay (pictures in after the first, before its packet) | kbit/s | PSNR-Y dB | PSNR-YUV dB | SSIM-Y | CPU (cores) |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    for (label, codec) in configurations(kbps) {
        match measure(width, height, fps, &codec, &inputs) {
            Ok(r) => {
                let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                println!(
                    "| {label} | {:.1} | {} | {:.0} | {:.2} | {:.2} | {:.4} | {:.2} |",
                    f("fps"),
                    r["frame_delay"],
                    f("kbps"),
                    f("psnr_y"),
                    f("psnr_yuv"),
                    f("ssim_y"),
                    f("cpu_cores")
                );
                results.push(json!({"configuration": label, "result": r}));
            }
            Err(e) => println!("| {label} | failed: {e:#} | | | | | | |"),
        }
    }
    eprintln!("{}", serde_json::to_string(&results)?);
    Ok(())
}

fn measure(
    width: usize,
    height: usize,
    fps: u32,
    codec: &[String],
    inputs: &[RawFrame],
) -> anyhow::Result<serde_json::Value> {
    // Frame delay: one picture at a time, each given time to come out.
    let mut probe = FfmpegEncoder::start(width, height, fps, codec)?;
    let mut delay = None;
    for (i, f) in inputs.iter().take(DELAY_PROBE).enumerate() {
        probe.write(f)?;
        if probe.packets.recv_timeout(DELAY_WAIT).is_ok() {
            delay = Some(i);
            break;
        }
    }
    let _ = probe.finish(Vec::new());

    // Throughput, bitrate, quality and CPU: every picture as fast as ffmpeg takes them.
    // Throughput is timed from the first packet out to the last one the encoder gives
    // before its input closes (a lookahead encoder keeps its last `delay` pictures until
    // then): steady state, without ffmpeg's and the encoder's start-up.
    let held = delay.unwrap_or(0);
    let mut run = FfmpegEncoder::start(width, height, fps, codec)?;
    let pid = run.child.id();
    let mut packets = Vec::with_capacity(inputs.len());
    let mut first_out: Option<(Instant, Option<f64>)> = None;
    let mut last_out = None;
    let mut take = |packets: &mut Vec<Vec<u8>>, p: Vec<u8>| {
        let now = Instant::now();
        if first_out.is_none() {
            first_out = Some((now, cpu_seconds(pid)));
        }
        last_out = Some(now);
        packets.push(p);
    };
    for f in inputs {
        run.write(f)?;
        while let Ok(p) = run.packets.try_recv() {
            take(&mut packets, p);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while packets.len() + held < inputs.len() && Instant::now() < deadline {
        if let Ok(p) = run.packets.recv_timeout(Duration::from_millis(20)) {
            take(&mut packets, p);
        }
    }
    let cpu_after = cpu_seconds(pid);
    let counted = packets.len();
    let (first, cpu_before) = first_out.ok_or_else(|| anyhow::anyhow!("no packet came out"))?;
    let elapsed = last_out
        .expect("set with first")
        .duration_since(first)
        .as_secs_f64();
    let packets = run.finish(packets)?;
    anyhow::ensure!(
        packets.len() == inputs.len(),
        "{} packets for {} pictures",
        packets.len(),
        inputs.len()
    );
    let bytes: usize = packets.iter().map(Vec::len).sum();
    let tagged: Vec<(Vec<u8>, u64)> = packets
        .into_iter()
        .zip(inputs)
        .map(|(p, f)| (p, f.capture_us))
        .collect();
    let (psnr_y, psnr_yuv, ssim_y) = decoded_quality(&tagged, inputs)?;
    Ok(json!({
        "fps": (counted.saturating_sub(1)) as f64 / elapsed,
        "frame_delay": delay,
        "kbps": bytes as f64 * 8.0 / 1000.0 / (inputs.len() as f64 / fps as f64),
        "psnr_y": psnr_y,
        "psnr_yuv": psnr_yuv,
        "ssim_y": ssim_y,
        "cpu_cores": match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => (b - a) / elapsed,
            _ => f64::NAN,
        },
    }))
}
