//! `streamsocket-server`: streams the embedded test source to every viewer that connects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use streamsocket_server::access::Admission;
use streamsocket_server::capture::{
    self, AudioChoice, CameraSelector, MediaClock, PictureFormat, VideoChoice,
};
use streamsocket_server::encode::{EncoderKind, Ladder};
use streamsocket_server::metrics::MetricsToken;
use streamsocket_server::session::JoinStrategy;
use streamsocket_server::{EncoderTuning, Inputs, Server, ServerOptions};

/// Stream live AV1 video and Opus audio over QUIC to any number of StreamSocket viewers.
///
/// On first start it generates a local CA and a server certificate in --certs; give viewers
/// the CA file (certs/ca.pem) or the fingerprint it prints. A new certificate in --certs
/// (`streamsocket-certs renew`, or any tool's) is picked up within 2 s, or at once on SIGHUP,
/// without a restart. Sources: --video and --audio
/// (the embedded test source is a moving picture with a frame counter, a clock, a
/// machine-readable timestamp row, and a flash with an audio click once a second; files
/// stream in real time, looping).
///
/// The defaults (1280x720 at 30 fps with 360p and 180p below it, libaom in real-time mode with 2 tiles on 2 threads) are
/// what a 2-core machine encodes in real time with every rung of the ladder at once. See
/// docs/BENCHMARKS.md for what each encoder and setting costs. Ctrl-C or SIGTERM stops the
/// server and tells every viewer why.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// Address and UDP port to listen on: native viewers (QUIC) and browsers (WebTransport).
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], streamsocket_proto::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Where to serve the web viewer's page (HTTPS, TCP); default: the --listen address and
    /// port. Open https://HOST:PORT/ in a Chromium-based browser to watch.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_http")]
    http_listen: Option<SocketAddr>,
    /// Serve no web page (browsers can still connect from a page allowed by --allow-origin).
    #[arg(long)]
    no_http: bool,
    /// Another web origin (https://host[:port]) whose pages may open WebTransport sessions
    /// here, besides this server's own page (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    allow_origins: Vec<String>,
    /// Serve /metrics (Prometheus) and /status (JSON) on the page server to requests with
    /// `Authorization: Bearer TOKEN`. Without it they are served there only when the page
    /// server listens on a loopback address (and are 404 elsewhere).
    #[arg(
        long,
        env = "STREAMSOCKET_METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    metrics_token: Option<String>,
    /// Also serve /metrics and /status on this address over plain HTTP (no TLS, no page):
    /// for a scraper on a private network; keep the port off the internet. Open to anyone
    /// who reaches it, unless --metrics-token is set.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Also publish the stream into this Media over QUIC relay (moq-relay 0.17), e.g.
    /// https://relay.example:4443/live: one broadcast (--broadcast) with a hang catalog, an
    /// AV1 track per rendition and an Opus track per audio bitrate. Repeatable: every relay
    /// gets the broadcast. A relay that goes away is connected to again.
    #[arg(long = "publish", value_name = "URL")]
    publish: Vec<String>,
    /// The broadcast's name under each --publish URL's path.
    #[arg(long, default_value = "streamsocket.hang", value_name = "NAME")]
    broadcast: String,
    /// The JWT the relays want for publishing (sent as ?jwt=).
    #[arg(
        long,
        env = "STREAMSOCKET_PUBLISH_TOKEN",
        hide_env_values = true,
        value_name = "JWT",
        conflicts_with = "publish_token_file"
    )]
    publish_token: Option<String>,
    /// Read the relays' JWT from this file (surrounding white space ignored), again at every
    /// connection, so a renewed token is used without a restart.
    #[arg(long, value_name = "PATH")]
    publish_token_file: Option<PathBuf>,
    /// The CA (PEM) that the relays' certificates must chain to; default: ca.pem in --certs.
    /// For relays with certificates from a public CA, the system's bundle
    /// (/etc/ssl/certs/ca-certificates.crt on Debian).
    #[arg(long, value_name = "FILE")]
    publish_ca: Option<PathBuf>,
    /// Trust relays by their certificate's SHA-256 fingerprint instead of a CA (repeatable:
    /// any of them), for self-signed certificates: `moq-relay --listen-tls-generate` serves
    /// its fingerprint at http://HOST:PORT/certificate.sha256.
    #[arg(long, value_name = "SHA256", conflicts_with = "publish_ca")]
    publish_fingerprint: Vec<streamsocket_certs::Fingerprint>,
    /// Directory with ca.pem, server.pem and server.key (generated when missing).
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// Extra host name or IP for a certificate generated at start (repeatable).
    #[arg(long = "host", value_name = "NAME|IP")]
    hosts: Vec<String>,
    /// Admit only viewers that give this token (viewers pass it with --token). Without
    /// --token or --token-file, anyone who can reach the address may watch.
    #[arg(long, env = "STREAMSOCKET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Admit viewers by the tokens in this file: one "NAME TOKEN" per line (# comments);
    /// the name shows in the logs. Combines with --token. The server rereads it when it
    /// changes (see --cert-check) or on SIGHUP; a viewer whose token is gone is cut off.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Admit only viewers with a certificate signed by the CA in --certs (mutual TLS); issue
    /// one per viewer with `streamsocket-certs viewer NAME`, revoke with `streamsocket-certs
    /// revoke NAME`. Combines with --token.
    #[arg(long)]
    require_viewer_cert: bool,
    /// The CA that signs viewer certificates, when not the one in --certs (implies
    /// --require-viewer-cert); its revocation list is viewers.crl.pem beside it.
    #[arg(long, value_name = "FILE")]
    viewer_ca: Option<PathBuf>,
    /// Seconds between checks for a new certificate (or revocation list) in --certs and a
    /// changed --token-file; 0: reload only on SIGHUP.
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=86400))]
    cert_check: u64,
    /// The most viewers at once; the next one is refused with "server full".
    #[arg(long, default_value_t = streamsocket_server::access::DEFAULT_MAX_VIEWERS, value_parser = parse_max_viewers, value_name = "N")]
    max_viewers: usize,
    /// What to stream: "auto" (the first camera, else the test pattern), "test", "camera",
    /// or a Y4M file (8-bit 4:2:0, e.g. made with ffmpeg -i in.mp4 -pix_fmt yuv420p out.y4m).
    #[arg(long, default_value = "auto", value_name = "auto|test|camera|FILE.y4m")]
    video: VideoChoice,
    /// Sound to stream: "auto" (the default microphone, else the test tone), "test", "mic",
    /// "none", or a WAV file (any rate, channels and sample format).
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|test|mic|none|FILE.wav"
    )]
    audio: AudioChoice,
    /// The camera for --video camera/auto: its index or part of its name, as
    /// `streamsocket-server devices` lists them (default: the first).
    #[arg(long, value_name = "INDEX|NAME")]
    camera: Option<CameraSelector>,
    /// The microphone for --audio mic/auto: part of its name, as `streamsocket-server
    /// devices` lists them (default: the system's default input).
    #[arg(long, value_name = "NAME")]
    microphone: Option<String>,
    /// Open the broadcaster's window: the local picture with the server's status; Space pauses
    /// and resumes the broadcast, M mutes the microphone, Q stops the server. Without a
    /// display the server runs without it.
    #[arg(long)]
    preview: bool,
    /// Play --video and --audio files once instead of looping them.
    #[arg(long)]
    no_loop: bool,
    /// Picture width in pixels (even) of the test pattern, or the camera mode asked for: the
    /// top rendition of the default ladder. A file's own size is used instead.
    #[arg(long, default_value_t = 1280)]
    width: usize,
    /// Picture height in pixels (even).
    #[arg(long, default_value_t = 720)]
    height: usize,
    /// Frames per second (a file's own rate is used instead).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=240))]
    fps: u32,
    /// Video bitrate of the top rendition in kbit/s. Default: from the picture size (2000 at
    /// 1280x720, 800 at 640x360); the lower rungs of the default ladder get a share of it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(50..=100_000), conflicts_with_all = ["ladder", "config"])]
    bitrate: Option<u32>,
    /// The quality ladder, highest first: name:WIDTHxHEIGHT@FPS:KBPS,... (the first rung is the
    /// source). Default: the source size, two thirds and half of it, e.g.
    /// 360p:640x360@30:800,240p:426x240@30:400,180p:320x180@30:240; from 1280x720 up, half and
    /// a quarter (720p:1280x720@30:2000,360p:640x360@30:700,180p:320x180@30:240).
    #[arg(long, value_name = "LADDER", conflicts_with = "config")]
    ladder: Option<String>,
    /// Ladder from a TOML file: [[rendition]] tables with name, width, height, fps and
    /// bitrate_kbps, and audio_bitrates_kbps = [..] (see docs/LADDER.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Opus bitrates on offer in kbit/s, comma separated; viewers start at 48 and change with [ and ].
    #[arg(long, value_delimiter = ',', default_value = "24,48,96")]
    audio_bitrates: Vec<u32>,
    /// One audio packet's duration in ms: 20, or 10 (sound and picture about 9 ms sooner,
    /// twice the packets: about 18 kbit/s more per viewer on the wire, and one server feeds
    /// about 300 viewers on time instead of 400; docs/BENCHMARKS.md).
    #[arg(long, default_value_t = streamsocket_server::encode::DEFAULT_AUDIO_FRAME_MS, value_parser = parse_audio_frame_ms, value_name = "10|20")]
    audio_frame_ms: u32,
    /// How a joining or switching viewer gets its first keyframe: "gop" sends the current
    /// group of pictures from its keyframe at once, "keyframe" asks the encoder for a new one
    /// (coalesced, at most one per rendition every 500 ms), "hybrid" sends the group when it
    /// is at most 8 frames old and asks for a keyframe otherwise. See docs/BENCHMARKS.md.
    #[arg(long, value_enum, default_value_t = Join::Hybrid)]
    join: Join,
    /// QUIC congestion controller towards viewers: bbr, cubic (quinn's default) or newreno.
    /// BBR keeps the stream going at 5% random loss where the others stall; it queues more
    /// under a tight bandwidth cap. See docs/BENCHMARKS.md, section 5.
    #[arg(long, default_value = "bbr", value_name = "bbr|cubic|newreno")]
    congestion: streamsocket_transport::settings::Congestion,
    /// The AV1 encoder: "aom" (libaom in real-time mode: each picture's packet leaves the
    /// encoder before the next picture goes in) or "rav1e" (pure Rust; it holds 4 pictures,
    /// 133 ms at 30 fps, before its first packet, and is about 4x slower here). See
    /// docs/BENCHMARKS.md, section 1.
    #[arg(long, default_value = "aom", value_name = "aom|rav1e")]
    encoder: EncoderKind,
    /// Encoder speed, 0 (slowest, best) to 10 (fastest): libaom's cpu-used (default 9, 10 from 1280x720 up) or
    /// rav1e's speed preset (default 10).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    speed: Option<u8>,
    /// Tiles per frame (parallelism across cores); libaom uses the nearest lower power of two
    /// of tile columns.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    tiles: u16,
    /// Encoder worker threads per rendition.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Longest time between keyframes, seconds (viewers also get one on join).
    #[arg(long, default_value_t = 2.0, value_parser = parse_keyframe_interval)]
    keyframe_interval: f32,
    /// rav1e only: RDO lookahead in frames (each adds a frame of latency; 1 is its minimum).
    #[arg(long, default_value_t = 1)]
    rdo_lookahead: usize,
    /// libaom only: error-resilient frames (each decodable without earlier frames' entropy
    /// state). Off by default: viewers skip to the next keyframe after a loss anyway, and it
    /// costs bits (docs/BENCHMARKS.md).
    #[arg(long)]
    error_resilient: bool,
}

fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
            Ok(origin.to_string())
        }
        _ => Err("an origin: https://HOST or https://HOST:PORT, no path".into()),
    }
}

fn parse_audio_frame_ms(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(ms) if streamsocket_server::encode::AUDIO_FRAME_DURATIONS_MS.contains(&ms) => Ok(ms),
        _ => Err("10 or 20 (milliseconds of sound per packet)".into()),
    }
}

fn parse_keyframe_interval(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(s) if (0.1..=60.0).contains(&s) => Ok(s),
        _ => Err("seconds between keyframes, from 0.1 to 60".into()),
    }
}

#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// List the cameras (with the modes StreamSocket can use) and microphones, then exit.
    Devices,
}

/// `streamsocket-server devices`.
fn list_devices() -> ExitCode {
    match capture::list_cameras() {
        Ok(cameras) if cameras.is_empty() => println!("cameras: none found"),
        Ok(cameras) => {
            println!("cameras:");
            for c in cameras {
                println!("  {}: {}", c.index, c.name);
                for m in c.modes {
                    println!(
                        "      {} {}x{} @ {} fps",
                        m.format(),
                        m.width(),
                        m.height(),
                        m.frame_rate()
                    );
                }
            }
        }
        Err(e) => println!("cameras: cannot list them: {e:#}"),
    }
    let microphones = capture::list_microphones();
    if microphones.is_empty() {
        println!("microphones: none found");
    } else {
        println!("microphones:");
        for m in microphones {
            println!("  {m}");
        }
    }
    ExitCode::SUCCESS
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Join {
    Gop,
    Keyframe,
    Hybrid,
}

fn parse_max_viewers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err("a number of viewers from 1 to 100000".into()),
    }
}

/// Who may watch, from --token, --token-file and --max-viewers.
fn admission(args: &Args) -> anyhow::Result<Admission> {
    let mut admission = Admission::open(args.max_viewers);
    if let Some(token) = &args.token {
        admission.add_token("token", token).context("--token")?;
    }
    if let Some(path) = &args.token_file {
        admission.add_token_file(path)?;
    }
    if args.require_viewer_cert || args.viewer_ca.is_some() {
        admission.require_certificates();
    }
    Ok(admission)
}

#[tokio::main]
async fn main() -> ExitCode {
    streamsocket_transport::init_logging();
    let args = Args::parse();
    if let Some(Subcommand::Devices) = args.command {
        return list_devices();
    }
    let wanted = PictureFormat {
        width: args.width,
        height: args.height,
        fps: args.fps,
    };
    let looping = !args.no_loop;
    let clock = MediaClock::start();
    let opened = capture::open_video(&args.video, args.camera.as_ref(), wanted, looping, clock)
        .and_then(|video| {
            capture::open_audio(&args.audio, args.microphone.as_deref(), looping)
                .map(|audio| (video, audio))
        });
    let ((video, video_why), (audio, audio_why)) = match opened {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let format = video.format();
    let ladder = match (&args.config, &args.ladder) {
        (Some(path), _) => Ladder::from_file(path),
        (None, Some(text)) => Ladder::parse_renditions(text).map(|renditions| Ladder {
            renditions,
            audio_bitrates_kbps: args.audio_bitrates.clone(),
        }),
        (None, None) => Ok(Ladder {
            audio_bitrates_kbps: args.audio_bitrates.clone(),
            ..Ladder::default_for(
                format.width,
                format.height,
                format.fps,
                args.bitrate
                    .unwrap_or_else(|| Ladder::default_bitrate_kbps(format.width, format.height)),
            )
        }),
    };
    let ladder = match ladder.and_then(|l| l.validate().map(|()| l)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let admission = match admission(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let viewer_ca = match (&args.viewer_ca, args.require_viewer_cert) {
        (Some(ca), _) => Some(ca.clone()),
        (None, true) => Some(args.certs.join("ca.pem")),
        (None, false) => None,
    };
    if admission.requires_token() {
        tracing::info!(
            "viewers need a token ({} accepted); at most {} at once",
            admission.token_count(),
            admission.max_viewers()
        );
    } else if viewer_ca.is_none() {
        tracing::warn!(
            "anyone who can reach {} may watch: pass --token, --token-file or --require-viewer-cert to restrict; at most {} viewers at once",
            args.listen,
            admission.max_viewers()
        );
    }
    let metrics_token = match args
        .metrics_token
        .as_deref()
        .map(MetricsToken::new)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --metrics-token: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let publish_token = match (&args.publish_token, &args.publish_token_file) {
        (Some(t), _) => Some(streamsocket_server::publish::PublishToken::Given(
            t.trim().to_string(),
        )),
        (None, Some(path)) => Some(streamsocket_server::publish::PublishToken::File(
            path.clone(),
        )),
        (None, None) => None,
    };
    let publish =
        (!args.publish.is_empty()).then(|| streamsocket_server::publish::PublishOptions {
            relays: args.publish.clone(),
            broadcast: args.broadcast.clone(),
            token: publish_token,
            trust: if args.publish_fingerprint.is_empty() {
                streamsocket_server::publish::RelayTrust::Ca(
                    args.publish_ca
                        .clone()
                        .unwrap_or_else(|| args.certs.join("ca.pem")),
                )
            } else {
                streamsocket_server::publish::RelayTrust::Pinned(args.publish_fingerprint.clone())
            },
            // Whether there is sound is known once the sources are open.
            audio: true,
        });
    let opts = ServerOptions {
        publish,
        metrics_token,
        metrics_listen: args.metrics_listen,
        viewer_ca,
        cert_check: (args.cert_check > 0).then(|| std::time::Duration::from_secs(args.cert_check)),
        audio_frame_ms: args.audio_frame_ms,
        listen: args.listen,
        http: match (args.no_http, args.http_listen) {
            (true, _) => None,
            (false, Some(addr)) => Some(addr),
            // Port 0 with --listen's IP: whatever port QUIC got.
            (false, None) => Some(args.listen),
        },
        allow_origins: args.allow_origins,
        certs: args.certs,
        hosts: args.hosts,
        ladder,
        congestion: args.congestion,
        admission: Arc::new(admission),
        join: match args.join {
            Join::Gop => JoinStrategy::Gop,
            Join::Keyframe => JoinStrategy::Keyframe,
            Join::Hybrid => JoinStrategy::Hybrid,
        },
        encoder: EncoderTuning {
            kind: args.encoder,
            speed: args.speed,
            tiles: args.tiles as usize,
            threads: args.threads as usize,
            keyframe_interval_s: args.keyframe_interval,
            rdo_lookahead_frames: args.rdo_lookahead,
            error_resilient: args.error_resilient,
        },
    };
    let video_description = video.describe();
    let audio_description = audio.as_ref().map(|a| a.describe());
    let (preview_tx, preview_rx) = match args.preview {
        true => {
            let (tx, rx) = crossbeam_channel::bounded(2);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let server = match Server::start(
        &opts,
        Inputs {
            clock,
            video,
            audio,
            preview: preview_tx,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let local = match server.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Machine-readable lines first (tests and scripts read them), then a human hint.
    println!("listening on {local}");
    println!("fingerprint {}", server.fingerprint);
    if let Some(page) = server.page_addr() {
        println!("web page https://{}/", viewer_address(&page));
    }
    if let Some(metrics) = server.metrics_addr() {
        println!("metrics http://{metrics}/metrics");
    }
    println!(
        "media clock: 0 = CLOCK_MONOTONIC {} us",
        clock.monotonic_origin_us()
    );
    println!("video: {video_description} ({video_why})");
    match &audio_description {
        Some(a) => println!("audio source: {a} ({audio_why})"),
        None => println!("audio source: none ({audio_why})"),
    }
    for (i, r) in opts.ladder.renditions.iter().enumerate() {
        println!(
            "rendition {}: {} {}x{} @ {} fps, AV1 {} kbit/s ({})",
            i + 1,
            r.name,
            r.width,
            r.height,
            r.fps,
            r.bitrate_kbps,
            opts.encoder.kind
        );
    }
    println!(
        "audio: Opus 48 kHz mono at {:?} kbit/s, {} ms packets",
        opts.ladder.audio_bitrates_kbps, opts.audio_frame_ms
    );
    println!(
        "watch with: streamsocket-client {} --ca {}",
        viewer_address(&local),
        opts.certs.join("ca.pem").display()
    );
    // Q in the preview window stops the server like Ctrl-C.
    let (quit_tx, quit_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(frames) = preview_rx {
        streamsocket_server::ui::spawn_preview(frames, server.hub(), move || {
            let _ = quit_tx.send(());
        });
    }
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            Ok(()) = quit_rx => {}
        }
    };
    match server.serve(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The address a local viewer would use: the listening address, with a wildcard replaced by
/// localhost (the certificate's name).
fn viewer_address(listen: &SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("localhost:{}", listen.port())
    } else {
        listen.to_string()
    }
}
