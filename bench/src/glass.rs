//! `streamsocket-bench glass`: capture to screen, read off the screen. The release server
//! streams the test pattern, a viewer shows it in its window on an X display (Xvfb when
//! there is none), and the benchmark reads the window's pixels back from the X server
//! (`--grabber xlib`, the default: the top rows with XGetImage, about a thousand times a
//! second, each timed on both sides of the call) or films it with ffmpeg's x11grab
//! (`--grabber ffmpeg`, a cross-check at `--capture-fps`). Each filmed image's top row holds
//! the capture time the test source drew into the picture ([`pixel_clock`]); the first image
//! in which a capture time appears is when it reached the screen. Server, screen and this
//! benchmark share the machine's monotonic clock (the server prints where its media clock's
//! zero is on it), so no offset is estimated.
//!
//! The figure is an upper bound by at most one grabbing interval: a picture reaches the
//! screen somewhere between the last image without it and the first with it; the p50 of the
//! former is printed beside it ("not before"). Through ffmpeg the figures also include
//! ffmpeg's own time from grabbing an image to handing it over.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Grabber {
    /// XGetImage of the top rows, from this process.
    Xlib,
    /// ffmpeg's x11grab, whole window.
    Ffmpeg,
}

pub struct GlassOptions<'a> {
    pub seconds: u64,
    pub capture_fps: u32,
    pub grabber: Grabber,
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
    let how = match o.grabber {
        Grabber::Xlib => "read back with XGetImage every millisecond".to_string(),
        Grabber::Ffmpeg => format!("filmed with ffmpeg x11grab at {} fps", o.capture_fps),
    };
    println!(
        "# Glass to glass: capture to the viewer's window, {how} on display {} ({} s per encoder; server options: {:?})",
        std::env::var("DISPLAY").unwrap_or_default(),
        o.seconds,
        streamsocket_tests::server_options(
            &o.server_args.iter().map(String::as_str).collect::<Vec<_>>()
        )
    );
    println!();
    println!("| encoder | pictures seen on screen | capture to screen p50 ms | p95 | p99 | max | viewer's own capture to presented p50 / p95 / p99 ms | capture to decoded p50 / p95 / p99 ms | pictures presented | images grabbed (unreadable) |");
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
        // Each image leaves as soon as it is grabbed: without this ffmpeg's output buffer
        // keeps an image's tail until the next one pushes it out (a whole interval later).
        .args([
            "-flush_packets",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
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
    // Images of the window's top rows (the code row), each with when it was grabbed.
    let (tx, images) = mpsc::channel::<(u64, Vec<u8>)>();
    let rows = pixel_clock::ROW_HEIGHT;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut ffmpeg = None;
    match o.grabber {
        Grabber::Ffmpeg => {
            let mut child = film(x, y, w, h, o.capture_fps)?;
            let mut stdout = child.stdout.take().expect("piped");
            ffmpeg = Some(child);
            std::thread::spawn(move || loop {
                let mut image = vec![0u8; w * h];
                if stdout.read_exact(&mut image).is_err() {
                    return;
                }
                image.truncate(w * rows);
                if tx.send((monotonic_us(), image)).is_err() {
                    return;
                }
            });
        }
        Grabber::Xlib => {
            let grabber = XGrabber::open()?;
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match grabber.luma_rows(x, y, w, rows) {
                        // The pixels are as they were at some moment during the call: its
                        // end is the moment they were certainly there.
                        Some(image) => {
                            if tx.send((monotonic_us(), image)).is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    }
    let until = Instant::now() + Duration::from_secs(o.seconds);
    let (mut filmed, mut unreadable) = (0u64, 0u64);
    // Per capture time: the last filmed image before it showed, and the first with it.
    let mut first_seen: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    let mut last_image_us = None;
    let mut intervals = Histogram::<u64>::new(3)?;
    while Instant::now() < until {
        let Ok((at_us, image)) = images.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        filmed += 1;
        let previous = last_image_us.replace(at_us);
        if let Some(last) = previous {
            intervals.record(at_us.saturating_sub(last).max(1))?;
        }
        match pixel_clock::read(&image, w, w, rows) {
            Some(ms) => {
                first_seen
                    .entry(ms)
                    .or_insert((previous.unwrap_or(at_us), at_us));
            }
            None => unreadable += 1,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(mut f) = ffmpeg {
        let _ = f.kill();
        let _ = f.wait();
    }
    let viewer_done = viewer.wait()?;
    let mut viewer_log = String::new();
    if let Some(mut e) = viewer.stderr.take() {
        let _ = e.read_to_string(&mut viewer_log);
    }
    anyhow::ensure!(viewer_done.success(), "viewer failed:\n{viewer_log}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats_path)?)?;

    let mut latency = Histogram::<u64>::new(3)?;
    let mut not_before = Histogram::<u64>::new(3)?;
    for (&ms, &(before_us, seen_us)) in &first_seen {
        // The row holds the low 32 bits of the capture time in milliseconds.
        let capture_us = origin_us + ms as u64 * 1000;
        if seen_us >= capture_us && seen_us - capture_us < 10_000_000 {
            latency.record(seen_us - capture_us)?;
            not_before.record(before_us.saturating_sub(capture_us).max(1))?;
        }
    }
    anyhow::ensure!(
        !latency.is_empty(),
        "no capture time was read off the screen ({filmed} images filmed)"
    );
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let v = |p: &str| num(&stats, p);
    Ok(format!(
        "| {encoder} | {} | {:.1} (not before {:.1}) | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {} | {filmed} ({unreadable}), every {:.1} ms p50 |",
        latency.len(),
        ms(0.5),
        not_before.value_at_quantile(0.5) as f64 / 1000.0,
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

/// Reads pixels back from the X server (Xlib, loaded at run time by x11-dl).
struct XGrabber {
    xlib: x11_dl::xlib::Xlib,
    display: *mut x11_dl::xlib::Display,
    root: x11_dl::xlib::Window,
}

// SAFETY: the display connection is used by one thread at a time (moved into the grabbing
// thread, which alone calls into it).
unsafe impl Send for XGrabber {}

impl XGrabber {
    fn open() -> anyhow::Result<Self> {
        let xlib =
            x11_dl::xlib::Xlib::open().map_err(|e| anyhow::anyhow!("cannot load Xlib: {e}"))?;
        // SAFETY: plain Xlib calls; a null display name means $DISPLAY.
        let display = unsafe { (xlib.XOpenDisplay)(std::ptr::null()) };
        anyhow::ensure!(!display.is_null(), "cannot open the X display");
        let root = unsafe { (xlib.XDefaultRootWindow)(display) };
        Ok(Self {
            xlib,
            display,
            root,
        })
    }

    /// The luma of a `w` x `rows` rectangle of the screen at (`x`, `y`), 8 bits a pixel.
    fn luma_rows(&self, x: i64, y: i64, w: usize, rows: usize) -> Option<Vec<u8>> {
        // SAFETY: XGetImage returns an image we own (or null); its data holds `rows` lines of
        // `bytes_per_line` bytes; it is destroyed through its own function table.
        unsafe {
            let image = (self.xlib.XGetImage)(
                self.display,
                self.root,
                x as i32,
                y as i32,
                w as u32,
                rows as u32,
                !0,
                x11_dl::xlib::ZPixmap,
            );
            if image.is_null() {
                return None;
            }
            let im = &*image;
            let mut out = Vec::with_capacity(w * rows);
            if im.bits_per_pixel == 32 {
                let data = std::slice::from_raw_parts(
                    im.data as *const u8,
                    im.bytes_per_line as usize * rows,
                );
                for row in 0..rows {
                    let line = &data[row * im.bytes_per_line as usize..];
                    for px in line[..w * 4].chunks_exact(4) {
                        // BGRX: a grey level good enough to tell black from white.
                        let (b, g, r) = (px[0] as u32, px[1] as u32, px[2] as u32);
                        out.push(((r * 77 + g * 150 + b * 29) >> 8) as u8);
                    }
                }
            }
            if let Some(destroy) = im.funcs.destroy_image {
                destroy(image);
            }
            (out.len() == w * rows).then_some(out)
        }
    }
}

impl Drop for XGrabber {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { (self.xlib.XCloseDisplay)(self.display) };
    }
}
