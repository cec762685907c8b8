//! One viewing: connect, start the pipeline's threads, drive the session, and say how it went.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamsocket_proto::ErrorCode;

use crate::audio::playout::AvSync;
use crate::audio::{self, AudioContext};
use crate::control::clock::{ServerClock, ViewerClock};
use crate::control::commands::{Command, LocalCommand, QualityWish};
use crate::control::latency_budget::LatencyBudget;
use crate::control::viewer_control::{ControlOptions, Ended, ViewerControl};
use crate::metrics::{Metrics, TransportStats};
use crate::net::connect::{connect, ConnectOptions};
use crate::net::control_stream::{self, Pipes};
use crate::net::receive::decoder_queue;
use crate::net::reconnect::CurrentConnection;
use crate::net::relay::{self, RelayOptions, RelaySession};
use crate::net::tls::{Trust, ViewerIdentity};
use crate::record::y4m_dump::Y4mDump;
use crate::record::Recorder;
use crate::video;
use crate::video::decoder::DecoderContext;
use crate::video::presenter::{self, PictureQueue};
use crate::video::window::{Presenter, WindowExit, WindowLinks};

/// Everything a viewing needs, as the command line gives it.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// `host:port` (the port defaults to 4443); with `relays`, what the window title shows.
    pub server: String,
    /// Watch through Media over QUIC relays instead of connecting to `server`.
    pub relays: Option<RelayOptions>,
    /// The name to verify in the certificate, when not the host.
    pub server_name: Option<String>,
    pub trust: Trust,
    /// The viewer's certificate, for servers that require one.
    pub identity: Option<ViewerIdentity>,
    /// The access token (empty: none).
    pub token: streamsocket_proto::control::AccessToken,
    /// Decode without a window or sound output.
    pub headless: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Write the statistics as JSON here at the end.
    pub stats_json: Option<PathBuf>,
    pub latency: LatencyBudget,
    /// The rendition to start with.
    pub quality: QualityWish,
    /// The highest rendition automatic quality may pick, 1-based (1 = the top: no cap).
    pub max_quality: u8,
    /// Timed commands from the start.
    pub script: Vec<(Duration, Command)>,
    /// Read commands from standard input, one per line.
    pub stdin_commands: bool,
    pub record: Option<PathBuf>,
    pub dump_y4m: Option<PathBuf>,
    /// The audio output (part of its name).
    pub speaker: Option<String>,
    pub dump_wav: Option<PathBuf>,
    /// dav1d threads (0 = one per core).
    pub decoder_threads: u32,
}

/// The first connection: to a server, or to a relay.
enum First {
    Server(Box<crate::net::connect::Session>),
    Relay(Box<RelaySession>),
}

impl First {
    fn welcome(&self) -> &streamsocket_proto::control::Welcome {
        match self {
            First::Server(s) => &s.welcome,
            First::Relay(r) => &r.welcome,
        }
    }
}

/// Watches the server until the session ends, the duration passes or the person quits; says
/// how it went and returns the process's exit code.
pub fn run(args: ViewerOptions) -> anyhow::Result<ExitCode> {
    let clock = ViewerClock::start();
    let connect_start_us = clock.now_us();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::default());
    let control = ViewerControl::new(ControlOptions {
        quality: args.quality.clone(),
        auto_cap: args.max_quality.saturating_sub(1) as usize,
        budget: args.latency,
        backoff_seed: None,
        failover: args.relays.as_ref().is_some_and(|r| r.urls.len() > 1),
    });
    let opts = ConnectOptions {
        server: args.server.clone(),
        server_name: args.server_name.clone(),
        trust: args.trust.clone(),
        rendition: control.hello_rendition(),
        latency: args.latency,
        token: args.token.clone(),
        identity: args.identity.clone(),
    };
    let first = match &args.relays {
        None => runtime
            .block_on(connect(&opts))
            .map(|s| First::Server(Box::new(s)))
            .map_err(|e| e.to_string()),
        Some(relays) => runtime
            .block_on(relay::connect::connect(
                relays,
                0,
                control.hello_rendition(),
            ))
            .map(|s| First::Relay(Box::new(s)))
            .map_err(|e| e.to_string()),
    };
    let first = match first {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let w = first.welcome();
    let rendition = w
        .video
        .renditions
        .iter()
        .find(|r| r.id == w.rendition)
        .cloned()
        .expect("welcome names one of its renditions");
    let whom = match &first {
        First::Server(_) => format!("{} (session {})", args.server, w.session_id),
        First::Relay(r) => format!(
            "the relay {} ({}), broadcast {:?}",
            r.shown,
            r.link.version,
            args.relays.as_ref().map_or("", |o| o.broadcast.as_str())
        ),
    };
    eprintln!(
        "connected to {whom}: {} {}x{} @ {} fps AV1, Opus {} Hz, {} kbit/s",
        rendition.name,
        rendition.width,
        rendition.height,
        rendition.fps,
        w.audio.sample_rate,
        w.audio.bitrate_bps / 1000
    );
    let muted = metrics.muted.clone();
    let (command_tx, command_rx) = tokio::sync::mpsc::unbounded_channel();

    let (frame_tx, frame_rx) = decoder_queue();
    let (audio_tx, audio_rx) = crossbeam_channel::bounded(64);
    let (keyframe_tx, keyframe_rx) = tokio::sync::mpsc::unbounded_channel();
    let pictures = Arc::new(PictureQueue::default());
    let av_sync = Arc::new(AvSync::default());
    let mut presenter = if args.headless {
        None
    } else {
        Some(Presenter::open(
            &format!("StreamSocket - {}", args.server),
            rendition.width as usize,
            rendition.height as usize,
        )?)
    };
    let (recorder, recorder_thread) = match &args.record {
        Some(path) => {
            let (r, t) = Recorder::start(path, metrics.recording.clone())?;
            (Some(r), Some(t))
        }
        None => (None, None),
    };
    // The control core publishes its estimate here before any media is received.
    let server_clock = ServerClock::new(clock);
    let decoder = video::decoder::spawn(
        frame_rx,
        DecoderContext {
            clock,
            server_clock: server_clock.clone(),
            counters: metrics.decoder.clone(),
            keyframe_requests: keyframe_tx,
            pictures: pictures.clone(),
            convert: !args.headless,
            sync: av_sync.clone(),
            connect_start_us,
            decoder_threads: args.decoder_threads,
            budget: args.latency,
            recorder: recorder.clone(),
            dump: args
                .dump_y4m
                .as_deref()
                .map(|path| Y4mDump::create(path, rendition.fps as u32))
                .transpose()?
                .map(std::sync::Mutex::new),
        },
    )?;
    let audio = audio::spawn(
        audio_rx,
        AudioContext {
            clock,
            server_clock: server_clock.clone(),
            counters: metrics.audio.clone(),
            av_skew: metrics.av_skew.clone(),
            speakers: !args.headless,
            muted: muted.clone(),
            dump_wav: args.dump_wav.clone(),
            speaker: args.speaker.clone(),
            recorder,
            sync: av_sync.clone(),
            budget: args.latency,
        },
    )?;
    let headless_presenter = if args.headless {
        Some(presenter::spawn_headless(
            pictures.clone(),
            av_sync.clone(),
            server_clock.clone(),
            metrics.presenter.clone(),
            metrics.av_skew.clone(),
        )?)
    } else {
        None
    };

    let current = CurrentConnection::default();
    let pipes = Pipes {
        decoder: frame_tx,
        audio: audio_tx,
        keyframe_requests: keyframe_rx,
        commands: command_rx,
        server_clock: server_clock.clone(),
    };
    // Local commands from scripts: quit ends the run, mute acts here; the rest go to the server.
    let (quit_tx, mut quit_rx) = tokio::sync::watch::channel(false);
    let quit_tx = Arc::new(quit_tx);
    let local = {
        let (quit, muted, tx) = (quit_tx.clone(), muted.clone(), command_tx.clone());
        move |cmd: Command| match cmd {
            Command::Local(LocalCommand::Quit) => {
                let _ = quit.send(true);
            }
            Command::Local(LocalCommand::ToggleMute) => {
                let m = !muted.load(Ordering::Relaxed);
                muted.store(m, Ordering::Relaxed);
            }
            // Scripts have no overlays to show (the window's keys do).
            Command::Local(LocalCommand::ToggleStats | LocalCommand::ToggleHelp) => {}
            Command::Core(c) => {
                let _ = tx.send(c);
            }
        }
    };
    if !args.script.is_empty() {
        let steps = args.script.clone();
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
    let mut running = match first {
        First::Server(session) => runtime.spawn(control_stream::run(
            control,
            *session,
            opts,
            pipes,
            current.clone(),
            clock,
            metrics.clone(),
        )),
        First::Relay(session) => runtime.spawn(relay::driver::run(
            control,
            *session,
            args.relays
                .clone()
                .expect("a relay session comes from relay options"),
            pipes,
            current.clone(),
            clock,
            metrics.clone(),
        )),
    };
    let deadline = args.duration.map(|d| started + d);

    // The session's end, when the headless wait below saw it (a finished JoinHandle must not
    // be polled again).
    let mut finished: Option<Ended> = None;
    let closed_by_user = match presenter.as_mut() {
        Some(p) => {
            let links = WindowLinks {
                pictures: &pictures,
                sync: &av_sync,
                clock: &server_clock,
                metrics: &metrics,
                commands: command_tx.clone(),
                muted: muted.clone(),
                server: &args.server,
            };
            let exit = p.run(links, || {
                !running.is_finished()
                    && !*quit_rx.borrow()
                    && deadline.is_none_or(|d| Instant::now() < d)
            });
            exit == WindowExit::Closed
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
        *metrics.transport.lock().expect("not poisoned") = Some(TransportStats {
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

    let s = metrics.snapshot();
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
