//! `streamsocket-bench`: the figures in docs/BENCHMARKS.md.
//!
//! - `encoder`: libaom and rav1e on the test pattern, setting by setting: throughput,
//!   per-frame encode time, frame delay, bitrate, quality (PSNR, SSIM) and CPU.
//! - `e2e`: the release server and a headless viewer on loopback: capture-to-decoded latency
//!   split into stages, first-frame time over repeated joins, bytes on the wire against media
//!   bytes, server CPU.
//! - `fanout`: how many viewers one server feeds with every frame on time.
//! - `ladder`: whether the server encodes every rung of its ladder at once in real time.
//! - `capture`: the cost of each capture and conversion stage per frame.
//! - `quality`: PSNR and SSIM of what a viewer decodes, at each rung.
//! - `network`: the bad-network scenarios through the impairment relay.
//! - `soak`: viewers joining and leaving at random for many minutes; server memory,
//!   threads, descriptors and latency over time.
//!
//! Run through `scripts/bench.sh`, which builds in release mode first.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use streamsocket_server::capture::{is_flash_frame, RawFrame, VideoPattern};
use streamsocket_server::encode::EncoderKind;
use streamsocket_tests::{num, run_viewer, ServerProcess};

#[derive(Parser)]
#[command(version, about = "StreamSocket benchmarks (see docs/BENCHMARKS.md)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Content {
    /// StreamSocket's test pattern (flat colours, a moving box, text).
    Pattern,
    /// The pattern under a scrolling fine random texture: noise no encoder can compress,
    /// a worst case for speed.
    Busy,
    /// ffmpeg's testsrc2 (gradients, moving shapes, text): the content the encoder
    /// comparisons of issue 13 were first made on, through ffmpeg.
    Testsrc2,
}

/// The pictures an encoder benchmark encodes.
#[derive(clap::Args, Clone, Copy)]
struct Pictures {
    #[arg(long, default_value_t = 640)]
    width: usize,
    #[arg(long, default_value_t = 360)]
    height: usize,
    /// Frames per configuration.
    #[arg(long, default_value_t = 150)]
    frames: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Each AV1 encoder and setting on the same pictures: speed, frame delay, bitrate,
    /// quality (PSNR, SSIM of what dav1d decodes) and CPU.
    Encoder {
        /// Encoders to include (aom, rav1e).
        #[arg(long, value_delimiter = ',', default_value = "aom,rav1e")]
        encoder: Vec<EncoderKind>,
        #[command(flatten)]
        pictures: Pictures,
        /// Only each encoder's default configuration.
        #[arg(long)]
        default_only: bool,
        /// Only configurations whose label contains this text (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Picture content: the test pattern, the pattern under a moving fine texture
        /// (noise: the worst case for speed), or ffmpeg's testsrc2.
        #[arg(long, value_enum, default_value_t = Content::Pattern)]
        content: Content,
    },
    /// AV1 encoders through Debian's ffmpeg (SVT-AV1, and libaom and rav1e as controls):
    /// the same figures as `encoder`.
    FfmpegEncoders {
        #[command(flatten)]
        pictures: Pictures,
        #[arg(long, value_enum, default_value_t = Content::Testsrc2)]
        content: Content,
    },
    /// Picture quality (PSNR, SSIM) of what a viewer decodes, at each rung of the default ladder.
    Quality {
        /// Picture content of the streamed clip.
        #[arg(long, value_enum, default_value_t = Content::Busy)]
        content: Content,
        /// Seconds of viewing per rung.
        #[arg(long, default_value_t = 6)]
        seconds: u64,
        /// Stream this Y4M clip (8-bit 4:2:0, its first 300 frames) instead of generated
        /// content, e.g. real camera footage.
        #[arg(long, value_name = "FILE.y4m")]
        clip: Option<std::path::PathBuf>,
    },
    /// Cost per frame of the capture and conversion stages at 640x360 and 1280x720.
    Capture,
    /// The bad-network scenarios through streamsocket-netem, beside a clean run.
    Network {
        /// Congestion controllers to compare (bbr, cubic, newreno).
        #[arg(long, value_delimiter = ',', default_value = "bbr")]
        congestion: Vec<String>,
        /// Seconds of viewing per scenario.
        #[arg(long, default_value_t = 12)]
        seconds: u64,
        /// Only scenarios whose name contains this text (repeatable), e.g. --only outage.
        #[arg(long)]
        only: Vec<String>,
        /// Transport settings to compare (repeatable), each a list of overrides such as
        /// "send_window=512k,max_frame_streams=32" (keys: send_window, stream_receive_window,
        /// datagram_send_buffer, max_frame_streams, mtu_discovery, keep_alive, idle_timeout);
        /// "" is the defaults. Passed to the server and viewer as STREAMSOCKET_TRANSPORT.
        #[arg(long, default_value = "")]
        transport: Vec<String>,
        /// Runs of each scenario.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// More viewers watching the top rung straight from the server (unimpaired) beside
        /// the measured one.
        #[arg(long, default_value_t = 0)]
        others: usize,
        /// Extra server options, one per flag (e.g. --server-arg=--encoder --server-arg=rav1e).
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// How the measured viewer watches: from the server, or through a moq-relay the
        /// server publishes into (impaired between relay and viewer); both: each scenario
        /// both ways.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "server")]
        via: Vec<network::Via>,
    },
    /// Viewers joining and leaving at random for a long run: does anything grow?
    Soak {
        /// Length of the run.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Most viewers at once (real headless viewers, each decoding).
        #[arg(long, default_value_t = 6)]
        max_viewers: usize,
        /// Seconds between samples.
        #[arg(long, default_value_t = 30)]
        sample_seconds: u64,
    },
    /// What each Media over QUIC relay hop adds: capture to decoded for three headless
    /// viewers at once, direct, through R1 (where the origin publishes) and through R2
    /// (clustered to R1: two hops), with a real moq-relay (bench/src/relays.rs).
    RelayHops {
        /// Seconds each round watches.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// The rendition the three watch (--quality of the viewer).
        #[arg(long, default_value = "180p")]
        quality: String,
    },
    /// A relay killed under a viewer that has a second relay URL: how long it is without
    /// pictures (its longest gap between decoded frames), round after round.
    RelayFailover {
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// The viewer's --relay-timeout, in ms.
        #[arg(long, default_value_t = 600)]
        relay_timeout: u64,
    },
    /// Relays carrying light subscribers (no decoding): the origin's CPU with one relay and
    /// one subscriber against three clustered relays with --per-relay each; then one relay
    /// process against one StreamSocket server at each --capacity count.
    RelayFanout {
        #[arg(long, default_value_t = 100)]
        per_relay: usize,
        #[arg(long, value_delimiter = ',', default_value = "100,200,400")]
        capacity: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Extra server options, one per flag (the subscribers watch the ladder's first rung).
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
    /// How many viewers one server feeds: light in-process viewers (no decoding) at each count.
    Fanout {
        /// Viewer counts to measure, each against a fresh server.
        #[arg(long, value_delimiter = ',', default_value = "1,8,10,100")]
        viewers: Vec<usize>,
        /// Seconds each count watches.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Spread the viewers' arrivals evenly over this many milliseconds (0: all at once).
        #[arg(long, default_value_t = 0)]
        join_over_ms: u64,
        /// Extra server options, one per flag (e.g. --server-arg=--ladder --server-arg=180p:320x180@30:500).
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Transport setting overrides for the server and the viewers, as for `network`.
        #[arg(long, default_value = "")]
        transport: String,
        /// Which binding the viewers speak; several (`--kind native,web`) measure each count
        /// with each kind, against fresh servers, and compare them.
        #[arg(long, value_delimiter = ',', default_value = "native")]
        kind: Vec<fanout::Kind>,
    },
    /// What /metrics costs the server: light viewers watch while /metrics is scraped every
    /// second over a kept-alive connection (--metrics-listen), against phases without
    /// scraping in the same run; then a burst of scrapes for the CPU of one (bench/src/scrape.rs).
    Scrape {
        /// Light viewers watching meanwhile.
        #[arg(long, default_value_t = 1)]
        viewers: usize,
        /// Seconds of each phase (without, scraping every second, without).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Scrapes back to back at the end.
        #[arg(long, default_value_t = 5000)]
        burst: u32,
        /// Extra server options, one per flag.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
    /// Every rung of the shipped ladder (or the one the server options give, e.g.
    /// --server-arg=--width --server-arg=640 --server-arg=--height --server-arg=360) encoded at
    /// once: one light viewer per rung; frames received against each rung's frame rate, encode
    /// times, server CPU.
    Ladder {
        /// Seconds every rung is watched.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Extra server options, one per flag.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
    /// The web viewer in headless Chromium beside the native viewer on one server: capture
    /// to decoded and shown, and the page's join time over fresh loads (needs `npm ci` in
    /// web/).
    Browser {
        /// Seconds both viewers watch.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Fresh page loads timed from load to first picture.
        #[arg(long, default_value_t = 20)]
        loads: u32,
        /// The pages' AudioContext latency hints, one page each, one after the other:
        /// `interactive` (the page's default) and/or `lowest` (`?audio-latency=lowest`).
        #[arg(long, value_delimiter = ',', default_value = "interactive,lowest")]
        audio_latency: Vec<String>,
        /// Extra server options, one per flag.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
    /// Glass to glass: capture to the viewer's window, read off the screen (ffmpeg x11grab;
    /// runs itself under xvfb-run without a display).
    Glass {
        /// Seconds filmed per encoder.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// How the screen is read: XGetImage of the code row every millisecond, or ffmpeg's
        /// x11grab at --capture-fps (a cross-check; its own pipeline adds to the figures).
        #[arg(long, value_enum, default_value_t = glass::Grabber::Xlib)]
        grabber: glass::Grabber,
        /// Images per second ffmpeg films (the figure is an upper bound by one interval).
        #[arg(long, default_value_t = 120)]
        capture_fps: u32,
        /// Encoders to compare, in one run.
        #[arg(long, value_delimiter = ',', default_value = "aom,rav1e")]
        encoder: Vec<String>,
        /// Extra server options, one per flag.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Extra viewer options, one per flag.
        #[arg(long = "client-arg", allow_hyphen_values = true)]
        client_args: Vec<String>,
    },
    /// Server and headless viewer on loopback: latency stages, first frame, overhead.
    E2e {
        /// Length of the main viewing run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Number of short sessions to measure the first-frame time.
        #[arg(long, default_value_t = 10)]
        joins: u32,
        /// Extra server options, one per flag (e.g. --server-arg=--tiles --server-arg=2).
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Extra viewer options, one per flag.
        #[arg(long = "client-arg", allow_hyphen_values = true)]
        client_args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Encoder {
            encoder: encoders,
            pictures,
            default_only,
            only,
            content,
        } => encoder::sweep(encoder::SweepOptions {
            width: pictures.width,
            height: pictures.height,
            frames: pictures.frames,
            default_only,
            only: &only,
            encoders: &encoders,
            content,
        }),
        Command::Fanout {
            viewers,
            seconds,
            join_over_ms,
            server_args,
            transport,
            kind,
        } => {
            streamsocket_transport::settings::Tuning::parse(&transport)
                .map_err(|e| anyhow::anyhow!("--transport {transport:?}: {e}"))?;
            // The server and the in-process viewers read it.
            std::env::set_var(streamsocket_transport::settings::TUNING_ENV, &transport);
            fanout_table(
                &viewers,
                &kind,
                seconds,
                Duration::from_millis(join_over_ms),
                &server_args,
            )
        }
        Command::Scrape {
            viewers,
            seconds,
            burst,
            server_args,
        } => scrape::run(viewers, seconds, burst, &server_args),
        Command::Ladder {
            seconds,
            server_args,
        } => ladder::run(seconds, &server_args),
        Command::Browser {
            seconds,
            loads,
            audio_latency,
            server_args,
        } => browser::run(seconds, loads, &audio_latency, &server_args),
        Command::Glass {
            seconds,
            grabber,
            capture_fps,
            encoder,
            server_args,
            client_args,
        } => glass::run(glass::GlassOptions {
            seconds,
            grabber,
            capture_fps,
            encoders: &encoder,
            server_args: &server_args,
            client_args: &client_args,
        }),
        Command::FfmpegEncoders { pictures, content } => {
            ffmpeg_encoders::run(pictures.width, pictures.height, pictures.frames, content)
        }
        Command::Quality {
            content,
            seconds,
            clip,
        } => quality::run(content, clip.as_deref(), seconds),
        Command::Capture => capture::run(),
        Command::Network {
            congestion,
            seconds,
            only,
            transport,
            repeat,
            others,
            server_args,
            via,
        } => network::run(
            &congestion,
            &transport,
            seconds,
            &only,
            repeat,
            network::Beside {
                others,
                server_args: &server_args,
                via: &via,
            },
        ),
        Command::E2e {
            seconds,
            joins,
            server_args,
            client_args,
        } => e2e(seconds, joins, &server_args, &client_args),
        Command::RelayHops {
            seconds,
            rounds,
            quality,
        } => relays::hops(seconds, rounds, &quality),
        Command::RelayFanout {
            per_relay,
            capacity,
            seconds,
            server_args,
        } => relays::fanout(per_relay, &capacity, seconds, &server_args),
        Command::RelayFailover {
            rounds,
            relay_timeout,
        } => relays::failover(rounds, relay_timeout),
        Command::Soak {
            minutes,
            max_viewers,
            sample_seconds,
        } => soak::run(minutes, max_viewers, sample_seconds),
    }
}

pub struct Inputs {
    frames: Vec<RawFrame>,
    render_ms_p50: f64,
    convert_ms_p50: f64,
}

/// Renders the input once (timing the test source's own cost), so only encoding is timed later.
pub fn make_inputs(
    width: usize,
    height: usize,
    fps: u32,
    frames: u64,
    content: Content,
) -> anyhow::Result<Inputs> {
    if let Content::Testsrc2 = content {
        return testsrc2(width, height, fps, frames);
    }
    let mut pattern = VideoPattern::new(width, height);
    let mut render = Histogram::<u64>::new(3)?;
    let mut convert = Histogram::<u64>::new(3)?;
    // A fixed pseudo-random texture, twice the picture, scrolled a little every frame.
    let texture: Vec<u8> = {
        let mut rng: rand_chacha::ChaCha8Rng =
            rand::SeedableRng::seed_from_u64(0x1234_5678_9abc_def1);
        (0..width * 2 * height * 2)
            .map(|_| rand::Rng::random::<u8>(&mut rng))
            .collect()
    };
    let mut out = Vec::with_capacity(frames as usize);
    for i in 0..frames {
        let us = i * 1_000_000 / fps as u64;
        let t = Instant::now();
        let mut rgb = pattern.render(i, us, is_flash_frame(i, fps)).to_vec();
        render.record(t.elapsed().as_micros() as u64)?;
        if let Content::Busy = content {
            let (dx, dy) = ((i * 3) as usize % width, (i * 2) as usize % height);
            for y in 16..height {
                let row = &texture[(y + dy) * width * 2 + dx..][..width];
                for (px, n) in rgb[y * width * 3..(y + 1) * width * 3]
                    .chunks_exact_mut(3)
                    .zip(row)
                {
                    for c in px {
                        *c = (*c / 2).saturating_add(n / 2);
                    }
                }
            }
        }
        let t = Instant::now();
        out.push(RawFrame::from_rgb(&rgb, width, height, us)?);
        convert.record(t.elapsed().as_micros() as u64)?;
    }
    Ok(Inputs {
        frames: out,
        render_ms_p50: render.value_at_quantile(0.5) as f64 / 1000.0,
        convert_ms_p50: convert.value_at_quantile(0.5) as f64 / 1000.0,
    })
}

/// ffmpeg's testsrc2, rendered by ffmpeg (scripts/install-deps.sh installs it) into I420.
fn testsrc2(width: usize, height: usize, fps: u32, frames: u64) -> anyhow::Result<Inputs> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate={fps}"))
        .args(["-frames:v", &frames.to_string()])
        .args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"])
        .output()
        .context("running ffmpeg for testsrc2 (scripts/install-deps.sh installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut decoder = y4m::decode(&output.stdout[..]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    while let Ok(f) = decoder.read_frame() {
        let us = out.len() as u64 * 1_000_000 / fps as u64;
        out.push(RawFrame {
            width,
            height,
            y: f.get_y_plane().to_vec(),
            u: f.get_u_plane().to_vec(),
            v: f.get_v_plane().to_vec(),
            capture_us: us,
        });
    }
    anyhow::ensure!(
        out.len() as u64 == frames,
        "ffmpeg gave {} of {frames} frames",
        out.len()
    );
    Ok(Inputs {
        frames: out,
        render_ms_p50: f64::NAN,
        convert_ms_p50: f64::NAN,
    })
}

mod browser;
mod capture;
mod encoder;
mod fanout;
mod ffmpeg_encoders;
mod glass;
mod ladder;
mod network;
mod quality;
mod relays;
mod scrape;
mod soak;

fn fanout_table(
    counts: &[usize],
    kinds: &[fanout::Kind],
    seconds: u64,
    join_over: Duration,
    server_args: &[String],
) -> anyhow::Result<()> {
    let extra: Vec<&str> = server_args.iter().map(String::as_str).collect();
    println!(
        "# Fan-out: light viewers (no decoding) on the first rendition, {seconds} s each, arriving over {} ms (server options: {:?}, transport: {:?})",
        join_over.as_millis(),
        streamsocket_tests::server_options(&extra),
        std::env::var(streamsocket_transport::settings::TUNING_ENV).unwrap_or_default()
    );
    println!();
    println!("| viewers | kind | connected | frames per viewer (min / median of {}) | missing | on time | latency p50 ms | p95 ms | delivery p50 ms | p95 ms | server CPU % | server RSS MB | MB per viewer beyond the first |", seconds * 30);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut cpu_at = std::collections::BTreeMap::new();
    let mut rss_one = std::collections::BTreeMap::new();
    for &n in counts {
        for &kind in kinds {
            let r = fanout::run(n, kind, seconds, join_over, &extra)?;
            // Every frame: none missing, each viewer got 90% of the frames of the run (the first
            // ~200 ms go to the join), and p95 within the 300 ms deadline.
            let on_time = r.connected == n
                && r.missing == 0
                && r.frames_min as f64 >= r.expected_frames as f64 * 0.9
                && r.latency_p95_ms < 300.0;
            if n == 1 {
                rss_one.insert(kind, r.rss_mb);
            }
            let per_viewer = match rss_one.get(&kind) {
                Some(one) if n > 1 => format!("{:.3}", (r.rss_mb - one) / (n - 1) as f64),
                _ => "-".to_string(),
            };
            println!(
            "| {n} | {kind:?} | {} | {} / {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {per_viewer} |",
            r.connected,
            r.frames_min,
            r.frames_median,
            r.missing,
            if on_time { "yes" } else { "no" },
            r.latency_p50_ms,
            r.latency_p95_ms,
            r.delivery_p50_ms,
            r.delivery_p95_ms,
            r.cpu_percent,
            r.rss_mb,
        );
            cpu_at.insert((n, kind), r.cpu_percent);
            if r.server_reset + r.server_lagged > 0 {
                println!("|  | | server: {} frames reset at their deadline, {} lost to a full hub queue | | | | | | | | | | |", r.server_reset, r.server_lagged);
            }
        }
    }
    println!();
    for &kind in kinds {
        if let (Some(one), Some(eight)) = (cpu_at.get(&(1, kind)), cpu_at.get(&(8, kind))) {
            println!(
                "{kind:?}: server CPU with 8 viewers / with 1 viewer: {:.2}",
                eight / one
            );
        }
        // The cost of one more viewer: the slope between the smallest and largest count.
        let mine: Vec<(usize, f64)> = counts
            .iter()
            .filter_map(|&n| cpu_at.get(&(n, kind)).map(|&c| (n, c)))
            .collect();
        if let (Some(&(a, ca)), Some(&(b, cb))) = (mine.first(), mine.last()) {
            if b > a {
                println!(
                    "{kind:?}: server CPU per viewer, {a} to {b} viewers: {:.3}% of a core",
                    (cb - ca) / (b - a) as f64
                );
            }
        }
    }
    if let [first, second] = kinds {
        for &n in counts {
            if let (Some(a), Some(b)) = (cpu_at.get(&(n, *first)), cpu_at.get(&(n, *second))) {
                println!(
                    "{n} viewers: server CPU {second:?} / {first:?}: {:.2}",
                    b / a
                );
            }
        }
    }
    Ok(())
}

/// Waits until the server has a viewer watching (its log says so).
fn server_wait_for_viewer(server: &ServerProcess) -> anyhow::Result<()> {
    let started = Instant::now();
    let joined = |log: &str| log.matches("viewer joined").count();
    let before = joined(&server.log());
    while joined(&server.log()) == before {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the background viewer never joined"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// CPU time (user + system) of a process so far, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn e2e(
    seconds: u64,
    joins: u32,
    server_args: &[String],
    client_args: &[String],
) -> anyhow::Result<()> {
    let extra: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&extra)?;
    let addr = server.addr.to_string();
    let ca = server.ca();
    let ca = ca.to_str().context("CA path")?;
    let pid = server.pid();

    // Let the encoder run idle for a moment, then measure the server's CPU while one viewer watches.
    std::thread::sleep(Duration::from_secs(1));
    let cpu_before = cpu_seconds(pid);
    let t0 = Instant::now();
    let secs = seconds.to_string();
    let mut viewer_args = vec!["--headless", "--duration", &secs, "--ca", ca];
    viewer_args.extend(client_args.iter().map(String::as_str));
    let run = run_viewer(&addr, &viewer_args, &[], Duration::from_secs(seconds + 30))?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds(pid);
    anyhow::ensure!(
        run.output.status.success(),
        "viewer failed:\n{}",
        run.stderr()
    );
    let stats = run.stats().clone();

    // Joins, twice: to a cold rendition (nobody watching: the encoder starts for the joiner)
    // and to a warm one (another viewer keeps the top rung's encoder running).
    let join_once = |first: &mut Histogram<u64>, live: &mut Histogram<u64>| -> anyhow::Result<()> {
        let mut join_args = vec![
            "--headless",
            "--duration",
            "1.5",
            "--ca",
            ca,
            "--quality",
            "1",
        ];
        join_args.extend(client_args.iter().map(String::as_str));
        let j = run_viewer(&addr, &join_args, &[], Duration::from_secs(30))?;
        anyhow::ensure!(j.output.status.success(), "viewer failed:\n{}", j.stderr());
        first.record((num(j.stats(), "/video/first_frame_ms") * 1000.0) as u64)?;
        if let Some(l) = j
            .stats()
            .pointer("/video/live_ms")
            .and_then(serde_json::Value::as_f64)
        {
            live.record((l * 1000.0) as u64)?;
        }
        Ok(())
    };
    let (mut first, mut live) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for _ in 0..joins {
        join_once(&mut first, &mut live)?;
    }
    let background_secs = (joins as f64 * 2.5 + 5.0).to_string();
    let background = {
        let (addr, ca) = (addr.clone(), ca.to_string());
        let secs = background_secs.clone();
        std::thread::spawn(move || {
            run_viewer(
                &addr,
                &[
                    "--headless",
                    "--quality",
                    "1",
                    "--duration",
                    &secs,
                    "--ca",
                    &ca,
                ],
                &[],
                Duration::from_secs(600),
            )
        })
    };
    server_wait_for_viewer(&server)?;
    let (mut warm_first, mut warm_live) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for _ in 0..joins {
        join_once(&mut warm_first, &mut warm_live)?;
    }
    let _ = background.join();

    // Rendition switches: one viewer hopping between the three rungs every 1.5 s; the rung it
    // moves to has no other viewer, so its encoder starts on demand (the worst case).
    let hops = ["3", "1", "2", "1", "3", "2", "1", "3", "1", "2"];
    let script: Vec<String> = hops
        .iter()
        .enumerate()
        .map(|(i, q)| format!("{}:quality={q}", 1.5 * (i + 1) as f64))
        .collect();
    let script = script.join(",");
    let switch_secs = (1.5 * (hops.len() + 1) as f64).to_string();
    let mut switch_args = vec![
        "--headless",
        "--duration",
        &switch_secs,
        "--ca",
        ca,
        "--quality",
        "1",
        "--script",
        &script,
    ];
    switch_args.extend(client_args.iter().map(String::as_str));
    let sw = run_viewer(&addr, &switch_args, &[], Duration::from_secs(60))?;
    anyhow::ensure!(
        sw.output.status.success(),
        "viewer failed:\n{}",
        sw.stderr()
    );

    let duration = num(&stats, "/duration_s");
    let shown: Vec<&str> = server_args.iter().map(String::as_str).collect();
    println!(
        "# End to end on loopback, test pattern (server options: {:?}, viewer options: {client_args:?})",
        streamsocket_tests::server_options(&shown)
    );
    println!();
    println!(
        "- frames: {} received, {} decoded, {} skipped; received fps {:.1}",
        stats["video"]["frames_received"],
        stats["video"]["frames_decoded"],
        stats["video"]["frames_skipped"],
        num(&stats, "/video/frames_received") / duration
    );
    println!(
        "- audio: {} received, {} decoded, {} concealed",
        stats["audio"]["packets_received"],
        stats["audio"]["packets_decoded"],
        stats["audio"]["packets_concealed"]
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        println!(
            "- server CPU with one viewer: {:.0}% of one core",
            (b - a) / wall * 100.0
        );
    }
    let media = num(&stats, "/video/bytes") + num(&stats, "/audio/bytes");
    let wire = num(&stats, "/transport/udp_rx_bytes");
    println!(
        "- bytes: media {:.0} kB, on the wire (UDP payload received) {:.0} kB: overhead {:.1}%",
        media / 1000.0,
        wire / 1000.0,
        (wire / media - 1.0) * 100.0
    );
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "- join, rendition not being encoded ({joins} joins): first frame p50 {:.0} ms, p95 {:.0} ms; live (latency within the 300 ms target) p50 {:.0} ms, p95 {:.0} ms",
        ms(&first, 0.5), ms(&first, 0.95), ms(&live, 0.5), ms(&live, 0.95)
    );
    println!(
        "- join, rendition already encoded for another viewer ({joins} joins): first frame p50 {:.0} ms, p95 {:.0} ms; live p50 {:.0} ms, p95 {:.0} ms",
        ms(&warm_first, 0.5), ms(&warm_first, 0.95), ms(&warm_live, 0.5), ms(&warm_live, 0.95)
    );
    let swj = &sw.stats()["video"]["switch_ms"];
    println!(
        "- rendition switches (request to first decoded frame of the new rung, its encoder started on demand): {} switches, p50 {} ms, p95 {} ms, max {} ms; {} frames skipped, {} decode errors",
        swj["count"], swj["p50"], swj["p95"], swj["max"], sw.stats()["video"]["frames_skipped"], sw.stats()["video"]["decode_errors"]
    );
    println!();
    println!("| stage | p50 ms | p95 ms | p99 ms |");
    println!("|---|---|---|---|");
    for stage in [
        "encoder_queue",
        "encoder_wait",
        "encode",
        "transport",
        "reassembly",
        "reorder",
        "decode",
        "outside_encoder",
    ] {
        let s = &stats["video"]["stages_ms"][stage];
        println!("| {stage} | {} | {} | {} |", s["p50"], s["p95"], s["p99"]);
    }
    let l = &stats["video"]["latency_ms"];
    println!(
        "| **capture to decoded** | **{}** | **{}** | **{}** |",
        l["p50"], l["p95"], l["p99"]
    );
    let a = &stats["audio"]["latency_ms"];
    println!(
        "| audio capture to decoded (incl. the packet's duration, jitter buffer) | {} | {} | {} |",
        a["p50"], a["p95"], a["p99"]
    );
    let p = &stats["video"]["latency_presented_ms"];
    println!(
        "| capture to presented (on the audio clock) | {} | {} | {} |",
        p["p50"], p["p95"], p["p99"]
    );
    eprintln!("{}", serde_json::to_string(&stats)?);
    Ok(())
}
