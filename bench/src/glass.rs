//! `streamsocket-bench glass`: capture to screen, read off the screen. The release server
//! streams the test pattern, a viewer shows it in its window on an X display (Xvfb when
//! there is none), and ffmpeg's x11grab films that window. Each filmed image's top row holds
//! the capture time the test source drew into the picture ([`pixel_clock`]); the first image
//! in which a capture time appears is when it reached the screen. Server, screen and this
//! benchmark share the machine's monotonic clock (the server prints where its media clock's
//! zero is on it), so no offset is estimated.
//!
//! The figure is an upper bound by at most one filming interval (1/`capture_fps`): a picture
//! reaches the screen somewhere between the last image without it and the first with it.
//! The capture time in the row is in whole milliseconds, rounded down (up to 1 ms more).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use streamsocket_proto::pixel_clock;
use streamsocket_tests::{bin, num, ServerProcess};

/// The machine's monotonic clock, microseconds (what the server's origin line refers to).
fn monotonic_us() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

pub struct GlassOptions<'a> {
    pub seconds: u64,
    pub capture_fps: u32,
    pub encoders: &'a [String],
    pub server_args: &'a [String],
    pub client_args: &'a [String],
}

/// Re-runs this benchmark under `xvfb-run` when there is no display.
pub fn run(o: GlassOptions) -> anyhow::Result<()> {
    if std::env::var_os("DISPLAY").is_none() {
        let exe = std::env::current_exe()?;
        let status = Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1600x1000x24"])
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .status()
            .map_err(|e| {
                anyhow::anyhow!(
                    "no DISPLAY and no xvfb-run (scripts/install-deps.sh installs it): {e}"
                )
            })?;
        anyhow::ensure!(status.success(), "the benchmark under xvfb-run failed");
        return Ok(());
    }
    for tool in ["ffmpeg", "xdotool"] {
        anyhow::ensure!(
            Command::new(tool).arg("-version").output().is_ok(),
            "{tool} is missing: run scripts/install-deps.sh"
        );
    }
    println!(
        "# Glass to glass: capture to the viewer's window, filmed with ffmpeg x11grab at {} fps on display {} ({} s per encoder)",
        o.capture_fps,
        std::env::var("DISPLAY").unwrap_or_default(),
        o.seconds
    );
    println!();
    println!("| encoder | pictures seen on screen | capture to screen p50 ms | p95 | p99 | max | viewer's own capture to presented p50 / p95 / p99 ms | capture to decoded p50 / p95 / p99 ms | pictures presented | filmed images (unreadable) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for encoder in o.encoders {
        let r = measure(&o, encoder)?;
        println!("{r}");
    }
    Ok(())
}

/// Starts ffmpeg filming a region of the display as 8-bit grey images on its stdout.
fn film(x: i64, y: i64, w: usize, h: usize, fps: u32) -> anyhow::Result<Child> {
    let display = std::env::var("DISPLAY").unwrap_or_default();
    Ok(Command::new("ffmpeg")
        .args(["-v", "error", "-f", "x11grab", "-draw_mouse", "0"])
        .args(["-framerate", &fps.to_string()])
        .args(["-video_size", &format!("{w}x{h}")])
        .args(["-i", &format!("{display}+{x},{y}")])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// The viewer window's position and size, once it is mapped.
fn find_window(title: &str, limit: Duration) -> anyhow::Result<(i64, i64, usize, usize)> {
    let started = Instant::now();
    loop {
        let out = Command::new("xdotool")
            .args([
                "search",
                "--onlyvisible",
                "--name",
                title,
                "getwindowgeometry",
                "--shell",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        if let (Some(x), Some(y), Some(w), Some(h)) =
            (field("X"), field("Y"), field("WIDTH"), field("HEIGHT"))
        {
            return Ok((x, y, w as usize, h as usize));
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "the viewer's window never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn measure(o: &GlassOptions, encoder: &str) -> anyhow::Result<String> {
    let mut server_args: Vec<&str> = vec!["--encoder", encoder];
    server_args.extend(o.server_args.iter().map(String::as_str));
    let server = ServerProcess::start(&server_args)?;
    let origin_line = server.wait_for_stdout_line("media clock:", Duration::from_secs(5));
    // "media clock: 0 = CLOCK_MONOTONIC <us> us"
    let origin_us: u64 = origin_line
        .split_once("CLOCK_MONOTONIC")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no clock origin in {origin_line:?}"))?;

    let dir = tempfile::tempdir()?;
    let stats_path = dir.path().join("stats.json");
    let addr = server.addr.to_string();
    let mut viewer = Command::new(bin("streamsocket-client"))
        .arg(&addr)
        .args(["--ca", server.ca().to_str().expect("utf-8")])
        .args(["--quality", "1", "--duration", &(o.seconds + 2).to_string()])
        .arg("--stats-json")
        .arg(&stats_path)
        .args(o.client_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let (x, y, w, h) = find_window(&format!("StreamSocket - {addr}"), Duration::from_secs(10))?;
    // Let the stream settle (first keyframe, audio clock) before filming.
    std::thread::sleep(Duration::from_secs(1));
    let mut ffmpeg = film(x, y, w, h, o.capture_fps)?;
    let mut stdout = ffmpeg.stdout.take().expect("piped");
    let (tx, images) = mpsc::channel::<(u64, Vec<u8>)>();
    std::thread::spawn(move || loop {
        let mut image = vec![0u8; w * h];
        if stdout.read_exact(&mut image).is_err() {
            return;
        }
        if tx.send((monotonic_us(), image)).is_err() {
            return;
        }
    });
    let until = Instant::now() + Duration::from_secs(o.seconds);
    let (mut filmed, mut unreadable) = (0u64, 0u64);
    let mut first_seen: std::collections::BTreeMap<u32, u64> = Default::default();
    let mut last_image_us = None;
    let mut intervals = Histogram::<u64>::new(3)?;
    while Instant::now() < until {
        let Ok((at_us, image)) = images.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        filmed += 1;
        if let Some(last) = last_image_us.replace(at_us) {
            intervals.record(at_us.saturating_sub(last).max(1))?;
        }
        match pixel_clock::read(&image, w, w, h) {
            Some(ms) => {
                first_seen.entry(ms).or_insert(at_us);
            }
            None => unreadable += 1,
        }
    }
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let viewer_done = viewer.wait()?;
    let mut viewer_log = String::new();
    if let Some(mut e) = viewer.stderr.take() {
        let _ = e.read_to_string(&mut viewer_log);
    }
    anyhow::ensure!(viewer_done.success(), "viewer failed:\n{viewer_log}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats_path)?)?;

    let mut latency = Histogram::<u64>::new(3)?;
    for (&ms, &seen_us) in &first_seen {
        // The row holds the low 32 bits of the capture time in milliseconds.
        let capture_us = origin_us + ms as u64 * 1000;
        if seen_us >= capture_us && seen_us - capture_us < 10_000_000 {
            latency.record(seen_us - capture_us)?;
        }
    }
    anyhow::ensure!(
        !latency.is_empty(),
        "no capture time was read off the screen ({filmed} images filmed)"
    );
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let v = |p: &str| num(&stats, p);
    Ok(format!(
        "| {encoder} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {} | {filmed} ({unreadable}), every {:.1} ms p50 |",
        latency.len(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        latency.max() as f64 / 1000.0,
        v("/video/latency_presented_ms/p50"),
        v("/video/latency_presented_ms/p95"),
        v("/video/latency_presented_ms/p99"),
        v("/video/latency_ms/p50"),
        v("/video/latency_ms/p95"),
        v("/video/latency_ms/p99"),
        v("/video/frames_presented"),
        intervals.value_at_quantile(0.5) as f64 / 1000.0,
    ))
}
