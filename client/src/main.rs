//! `streamsocket-client`: watch a StreamSocket server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use streamsocket_certs::Fingerprint;
use streamsocket_client::audio::{self, AudioContext};
use streamsocket_client::clock::ViewerClock;
use streamsocket_client::clock_sync::ClockSync;
use streamsocket_client::commands::{self, Command};
use streamsocket_client::playout::AvSync;
use streamsocket_client::presenter::{self, PictureQueue};
use streamsocket_client::record::Recorder;
use streamsocket_client::session::{self, ConnectOptions, Ended, Pipes};
use streamsocket_client::stats::{RenditionChange, Stats, TransportStats};
use streamsocket_client::tls::{default_ca, Trust, ViewerIdentity};
use streamsocket_client::video_decoder::{self, DecoderContext};
use streamsocket_client::window::{Presenter, WindowLinks};
use streamsocket_client::y4m_dump;
use streamsocket_proto::control::WishedRendition;
use streamsocket_proto::ErrorCode;

/// Watch a StreamSocket server: live AV1 video in a window, Opus audio on the speakers.
///
/// The server is verified against a CA file (default certs/ca.pem, as the server generates
/// it) or a pinned certificate fingerprint (printed by the server at start). There is no
/// option to skip verification.
///
/// Keys in the window: 1-9 pick a rendition, Up/Down (or +/-) step quality, A automatic,
/// [ and ] audio bitrate, M mute, Space pause/resume, S stats overlay, H or F1 help, Q or Esc
/// quit. Headless viewers take the same requests from --script or --stdin-commands.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// Server address, host:port (port defaults to 4443). The host is also the name checked
    /// in the server's certificate unless --server-name is given.
    #[arg(required = true)]
    server: Option<String>,
    /// Name to verify in the server's certificate, when it differs from the host you connect to.
    #[arg(long)]
    server_name: Option<String>,
    /// CA certificate that signed the server's certificate [default: certs/ca.pem].
    #[arg(long, conflicts_with = "fingerprint")]
    ca: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (sha256:<hex>).
    #[arg(long)]
    fingerprint: Option<Fingerprint>,
    /// Your viewer certificate, for a server started with --require-viewer-cert (its operator
    /// issues it with `streamsocket-certs viewer NAME`).
    #[arg(long, value_name = "NAME.pem")]
    cert: Option<PathBuf>,
    /// The key of --cert [default: the --cert file with .key instead of .pem].
    #[arg(long, value_name = "NAME.key", requires = "cert")]
    key: Option<PathBuf>,
    /// Access token, for a server started with --token or --token-file.
    #[arg(long, env = "STREAMSOCKET_TOKEN", hide_env_values = true, value_parser = parse_token)]
    token: Option<String>,
    /// Decode without a window or sound output (tests, benchmarks, machines without display).
    #[arg(long)]
    headless: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write the session's statistics as JSON to this file when the viewer ends.
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// End-to-end latency to aim for, in ms (50 to 5000); the server drops frames that cannot
    /// make it, and the sound waits at most this long for the picture.
    #[arg(long, default_value_t = 300, value_name = "MS", value_parser = clap::value_parser!(u16).range(50..=5000))]
    latency_target: u16,
    /// Rendition to start with: its position in the server's ladder, 1 = highest (as the keys
    /// 1-9). Automatic quality when not given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    quality: Option<u8>,
    /// The highest rendition automatic quality may pick (1 = highest, as --quality); for a
    /// metered or shared connection.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16), default_value_t = 1)]
    max_quality: u8,
    /// Timed requests for tests and benchmarks: comma-separated SECONDS:COMMAND from the start,
    /// e.g. "2:quality=3,4:up,6:pause,7:resume". Commands: quality=N (1-based), up, down, auto,
    /// audio-up, audio-down, mute, pause, resume, quit.
    #[arg(long, value_name = "STEPS", value_parser = parse_script_arg)]
    script: Option<Script>,
    /// Read the same commands from standard input, one per line.
    #[arg(long)]
    stdin_commands: bool,
    /// Record what arrives, without re-encoding, to this WebM file (AV1 + Opus; plays in
    /// ffmpeg/ffplay, mpv, VLC and browsers). It starts at the first keyframe.
    #[arg(long, value_name = "FILE.webm")]
    record: Option<PathBuf>,
    /// Also write every decoded picture to this Y4M file (for quality measurements); pictures
    /// of another size after a quality switch go to FILE-WxH.y4m beside it.
    #[arg(long, value_name = "FILE.y4m")]
    dump_y4m: Option<PathBuf>,
    /// The audio output to play on: part of its name, as `streamsocket-client devices` lists
    /// them (default: the system's default output).
    #[arg(long, value_name = "NAME")]
    speaker: Option<String>,
    /// Also write the sound as played (48 kHz mono, 16-bit) to this WAV file.
    #[arg(long, value_name = "FILE.wav")]
    dump_wav: Option<PathBuf>,
    /// dav1d decoder threads (0 = one per core).
    #[arg(long, default_value_t = 1, value_name = "N")]
    decoder_threads: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// List the audio outputs (for --speaker), then exit.
    Devices,
}

impl Args {
    fn server(&self) -> &str {
        self.server
            .as_deref()
            .expect("clap requires a server without a subcommand")
    }
}

/// `--script` steps: when, from the start, and what.
#[derive(Debug, Clone)]
struct Script(Vec<(Duration, Command)>);

fn parse_token(text: &str) -> Result<String, String> {
    if text.len() > streamsocket_proto::control::MAX_TOKEN {
        return Err(format!(
            "a token is at most {} bytes",
            streamsocket_proto::control::MAX_TOKEN
        ));
    }
    Ok(text.to_string())
}

fn parse_script_arg(text: &str) -> Result<Script, String> {
    commands::parse_script(text).map(Script)
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    if let Some(Subcommand::Devices) = args.command {
        let outputs = streamsocket_client::speakers::list();
        if outputs.is_empty() {
            println!("audio outputs: none found");
        } else {
            println!("audio outputs:");
            for o in outputs {
                println!("  {o}");
            }
        }
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let trust = match (args.fingerprint, &args.ca) {
        (Some(fp), _) => Trust::Pinned(fp),
        (None, Some(ca)) => Trust::Ca(ca.clone()),
        (None, None) => Trust::Ca(default_ca()),
    };
    if let Some(d) = args.duration {
        anyhow::ensure!(
            d.is_finite() && d > 0.0,
            "--duration must be a positive number of seconds"
        );
    }
    let clock = ViewerClock::start();
    let connect_start_us = clock.now_us();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sync = Arc::new(Mutex::new(ClockSync::default()));
    let stats = Arc::new(Mutex::new(Stats::default()));

    let opts = ConnectOptions {
        server: args.server().to_string(),
        server_name: args.server_name.clone(),
        trust,
        rendition: args.quality.map_or(
            if args.max_quality > 1 {
                WishedRendition::Fixed(args.max_quality - 1)
            } else {
                WishedRendition::Auto
            },
            |n| WishedRendition::Fixed(n - 1),
        ),
        latency_target_ms: args.latency_target,
        token: args.token.clone().unwrap_or_default().into(),
        identity: args
            .cert
            .clone()
            .map(|cert| ViewerIdentity::new(cert, args.key.clone())),
    };
    let session = match runtime.block_on(session::connect(&opts, clock, &sync)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let w = &session.welcome;
    let rendition = w
        .video
        .renditions
        .iter()
        .find(|r| r.id == w.rendition)
        .cloned()
        .expect("welcome names one of its renditions");
    eprintln!(
        "connected to {} (session {}): {} {}x{} @ {} fps AV1, Opus {} Hz, {} kbit/s",
        args.server(),
        w.session_id,
        rendition.name,
        rendition.width,
        rendition.height,
        rendition.fps,
        w.audio.sample_rate,
        w.audio.bitrate_bps / 1000
    );
    {
        let mut s = stats.lock().expect("not poisoned");
        s.clock_offset_us = sync.lock().expect("not poisoned").offset_us();
        s.rendition = Some(rendition.id);
        s.rendition_timeline.push(RenditionChange {
            at_us: clock.now_us(),
            rendition: rendition.id,
            reason: match args.quality {
                Some(_) => "--quality".into(),
                None => "the server's first choice".into(),
            },
        });
        s.auto = args.quality.is_none();
        s.audio.bitrate_bps = w.audio.bitrate_bps;
    }
    let target_rendition = Arc::new(AtomicU8::new(rendition.id));
    let resync = Arc::new(AtomicBool::new(false));
    let muted = Arc::new(AtomicBool::new(false));
    let (command_tx, command_rx) = tokio::sync::mpsc::unbounded_channel();
    // A viewer that did not ask for a rendition runs automatic quality.
    if args.quality.is_none() {
        let _ = command_tx.send(Command::Auto);
    }

    let (frame_tx, frame_rx) = crossbeam_channel::bounded(32);
    let (audio_tx, audio_rx) = crossbeam_channel::bounded(64);
    let (keyframe_tx, keyframe_rx) = tokio::sync::mpsc::unbounded_channel();
    let pictures = Arc::new(PictureQueue::default());
    let av_sync = Arc::new(AvSync::default());
    let mut presenter = if args.headless {
        None
    } else {
        Some(Presenter::open(
            &format!("StreamSocket - {}", args.server()),
            rendition.width as usize,
            rendition.height as usize,
        )?)
    };
    let (recorder, recorder_thread) = match &args.record {
        Some(path) => {
            let (r, t) = Recorder::start(path, stats.clone())?;
            (Some(r), Some(t))
        }
        None => (None, None),
    };
    let decoder = video_decoder::spawn(
        frame_rx,
        DecoderContext {
            clock,
            stats: stats.clone(),
            keyframe_requests: keyframe_tx,
            pictures: pictures.clone(),
            convert: !args.headless,
            sync: av_sync.clone(),
            connect_start_us,
            decoder_threads: args.decoder_threads,
            target_rendition: target_rendition.clone(),
            resync: resync.clone(),
            live_within_us: args.latency_target as u64 * 1000,
            recorder: recorder.clone(),
            dump: args
                .dump_y4m
                .as_deref()
                .map(|path| y4m_dump::Y4mDump::create(path, rendition.fps as u32))
                .transpose()?
                .map(std::sync::Mutex::new),
        },
    )?;
    let audio = audio::spawn(
        audio_rx,
        AudioContext {
            clock,
            stats: stats.clone(),
            speakers: !args.headless,
            muted: muted.clone(),
            dump_wav: args.dump_wav.clone(),
            speaker: args.speaker.clone(),
            recorder,
            sync: av_sync.clone(),
            ceiling_us: args.latency_target as u64 * 1000,
        },
    )?;
    let headless_presenter = if args.headless {
        Some(presenter::spawn_headless(
            pictures.clone(),
            av_sync.clone(),
            clock,
            stats.clone(),
        )?)
    } else {
        None
    };

    let current = session::CurrentConnection::default();
    let pipes = Pipes {
        frames: frame_tx,
        audio: audio_tx,
        keyframe_requests: keyframe_rx,
        commands: command_rx,
        target_rendition,
        resync,
        auto_cap: args.max_quality as usize - 1,
    };
    // Local commands from scripts: quit ends the run, mute acts here; the rest go to the server.
    let (quit_tx, mut quit_rx) = tokio::sync::watch::channel(false);
    let quit_tx = Arc::new(quit_tx);
    let local = {
        let (quit, muted, tx, stats) = (
            quit_tx.clone(),
            muted.clone(),
            command_tx.clone(),
            stats.clone(),
        );
        move |cmd: Command| match cmd {
            Command::Quit => {
                let _ = quit.send(true);
            }
            Command::ToggleMute => {
                let m = !muted.load(Ordering::Relaxed);
                muted.store(m, Ordering::Relaxed);
                stats.lock().expect("not poisoned").audio.muted = m;
            }
            other => {
                let _ = tx.send(other);
            }
        }
    };
    if let Some(Script(steps)) = args.script.clone() {
        let local = local.clone();
        runtime.spawn(async move {
            for (at, cmd) in steps {
                tokio::time::sleep_until((started + at).into()).await;
                tracing::info!("script: {cmd:?}");
                local(cmd);
            }
        });
    }
    if args.stdin_commands {
        let local = local.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match line.parse::<Command>() {
                    Ok(cmd) => local(cmd),
                    Err(e) => eprintln!("{e}"),
                }
            }
        });
    }
    let mut running = runtime.spawn(session::run_with_reconnect(
        opts,
        session,
        pipes,
        current.clone(),
        clock,
        sync,
        stats.clone(),
    ));
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));

    // The session's end, when the headless wait below saw it (a finished JoinHandle must not
    // be polled again).
    let mut finished: Option<Ended> = None;
    let closed_by_user = match presenter.as_mut() {
        Some(p) => {
            let links = WindowLinks {
                pictures: &pictures,
                sync: &av_sync,
                clock,
                stats: &stats,
                commands: command_tx.clone(),
                muted: muted.clone(),
                server: args.server(),
            };
            let exit = p.run(links, || {
                !running.is_finished()
                    && !*quit_rx.borrow()
                    && deadline.is_none_or(|d| Instant::now() < d)
            });
            exit == streamsocket_client::window::WindowExit::Closed
        }
        None => {
            runtime.block_on(async {
                let until_deadline = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                let until_quit = quit_rx.wait_for(|quit| *quit);
                tokio::select! {
                    r = &mut running => {
                        finished = Some(r.unwrap_or(Ended::Lost("receiver task failed".into())));
                    }
                    _ = until_deadline => {}
                    _ = until_quit => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            });
            false
        }
    };
    let elapsed = started.elapsed();

    let ended = match finished {
        Some(ended) => ended,
        None if running.is_finished() => runtime
            .block_on(&mut running)
            .unwrap_or(Ended::Lost("receiver task failed".into())),
        None => Ended::Local,
    };
    runtime.block_on(async { running.abort() });
    // The last connection (the viewer may have reconnected meanwhile).
    if let Some((endpoint, conn)) = current.get() {
        let quic = conn.stats();
        stats.lock().expect("not poisoned").transport = Some(TransportStats {
            udp_rx_bytes: quic.udp_rx.bytes,
            udp_rx_datagrams: quic.udp_rx.datagrams,
            udp_tx_bytes: quic.udp_tx.bytes,
            lost_packets: quic.path.lost_packets,
            rtt_us: quic.path.rtt.as_micros() as u64,
        });
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::NoError.to_u16() as u32),
            b"viewer leaving",
        );
        runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
        });
    }
    // The session task owned the senders: the pipeline threads see their inputs close.
    let _ = decoder.join();
    let _ = audio.join();
    if let Some(p) = headless_presenter {
        let _ = p.join();
    }
    // The decoder and audio threads held the recording's handles: it can finish now.
    if let Some(t) = recorder_thread {
        let _ = t.join();
    }

    let s = stats.lock().expect("not poisoned");
    if let Some(path) = &args.stats_json {
        s.write_json(path, elapsed)?;
    }
    let v = &s.video;
    eprintln!(
        "video: {} received, {} decoded, {} skipped, latency p50 {:.1} ms p95 {:.1} ms; audio: {} received, {} decoded, {} concealed",
        v.frames_received,
        v.frames_decoded,
        v.frames_skipped,
        v.latency_decoded.percentile_ms(0.5),
        v.latency_decoded.percentile_ms(0.95),
        s.audio.packets_received,
        s.audio.packets_decoded,
        s.audio.packets_concealed,
    );
    Ok(match ended {
        Ended::Local => ExitCode::SUCCESS,
        _ if closed_by_user => ExitCode::SUCCESS,
        Ended::Server { code, message } => {
            eprintln!(
                "the server ended the session: {} ({message})",
                code.describe()
            );
            if matches!(code, ErrorCode::NoError | ErrorCode::ServerShuttingDown) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ended::Lost(reason) => {
            eprintln!("connection lost: {reason}");
            ExitCode::FAILURE
        }
    })
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("STREAMSOCKET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
