//! The viewer's side of a session: connecting and verifying the server, hello and welcome,
//! clock pings, and receiving frame streams and audio datagrams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use streamsocket_proto::control::{
    ControlMessage, Hello, Ping, Rendition, Welcome, WishedRendition,
};
use streamsocket_proto::media::AudioHeader;
use streamsocket_proto::{ErrorCode, PROTOCOL_VERSION};
use streamsocket_transport::{read_frame, ControlReader, ControlWriter, ReadError};
use thiserror::Error;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::audio::NetAudio;
use crate::auto_quality::{AutoQuality, Observation};
use crate::clock::ViewerClock;
use crate::clock_sync::{ClockSync, Exchange};
use crate::commands::Command;
use crate::stats::{Reconnecting, RenditionChange, Stats};
use crate::tls::{client_config, explain_refusal, Trust, VerifyFailure, ViewerIdentity};
use crate::video_decoder::NetFrame;

/// How long connecting (handshake, hello, welcome) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the viewer could not connect, worded for the person running it.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("{0}")]
    Verify(VerifyFailure),
    /// The server refused the viewer's own certificate (or its lack of one).
    #[error("{0}")]
    ViewerCertificate(&'static str),
    #[error("the server refused the session ({}): {message}", code.describe())]
    Refused { code: ErrorCode, message: String },
    #[error("no answer from {0} within 5 s: is streamsocket-server running there, and is its UDP port reachable?")]
    Unreachable(SocketAddr),
    #[error("connection to {addr} failed: {detail}")]
    Failed { addr: SocketAddr, detail: String },
    #[error("{0:#}")]
    Setup(anyhow::Error),
}

/// Where to connect and how to trust the server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` as given on the command line.
    pub server: String,
    /// Name to verify in the certificate; the host part of `server` when not given.
    pub server_name: Option<String>,
    pub trust: Trust,
    pub rendition: WishedRendition,
    pub latency_target_ms: u16,
    /// The access token for servers that require one (empty: none).
    pub token: streamsocket_proto::control::AccessToken,
    /// The viewer's certificate, for servers that require one.
    pub identity: Option<ViewerIdentity>,
}

/// A connected, welcomed session.
pub struct Session {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub welcome: Welcome,
    /// The latency target the hello asked for, ms.
    pub latency_target_ms: u16,
    pub writer: ControlWriter,
    pub reader: ControlReader,
}

/// Splits `host:port` (or `[v6]:port`, or a bare host with the default port).
pub fn split_host_port(server: &str) -> (String, u16) {
    if let Some(rest) = server.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            if let Ok(p) = port.parse() {
                return (host.to_string(), p);
            }
        }
        return (
            rest.trim_end_matches(']').to_string(),
            streamsocket_proto::DEFAULT_PORT,
        );
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host.to_string(), p),
            Err(_) => (server.to_string(), streamsocket_proto::DEFAULT_PORT),
        },
        _ => (server.to_string(), streamsocket_proto::DEFAULT_PORT),
    }
}

pub async fn connect(
    opts: &ConnectOptions,
    clock: ViewerClock,
    sync: &Mutex<ClockSync>,
) -> Result<Session, ConnectError> {
    let (host, port) = split_host_port(&opts.server);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ConnectError::Resolve(opts.server.clone(), e.to_string()))?
        .next()
        .ok_or_else(|| ConnectError::Resolve(opts.server.clone(), "no address".into()))?;
    let server_name = opts.server_name.clone().unwrap_or(host);

    let (config, verifier) =
        client_config(opts.trust.clone(), opts.identity.as_ref()).map_err(ConnectError::Setup)?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let endpoint = streamsocket_transport::endpoint::client(bind)
        .map_err(|e| ConnectError::Setup(e.into()))?;
    let connecting = endpoint
        .connect_with(config, addr, &server_name)
        .map_err(|e| ConnectError::Failed {
            addr,
            detail: e.to_string(),
        })?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => return Err(ConnectError::Unreachable(addr)),
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            if let Some(f) = verifier.failure() {
                return Err(ConnectError::Verify(f));
            }
            return Err(connection_error(addr, e));
        }
    };

    let handshake = async {
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connection_error(addr, e))?;
        let mut writer = ControlWriter::new(send);
        let mut reader = ControlReader::new(recv);
        let hello = ControlMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            rendition: opts.rendition,
            latency_target_ms: opts.latency_target_ms,
            client_name: format!("streamsocket-client {}", env!("CARGO_PKG_VERSION")),
            token: opts.token.clone(),
        });
        // The server may refuse our certificate just after our side of the handshake is done
        // (TLS 1.3 client authentication): its reason arrives as the connection's close.
        writer.send(&hello).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => connection_error(addr, e),
            e => ConnectError::Failed {
                addr,
                detail: e.to_string(),
            },
        })?;
        loop {
            match reader.next().await {
                Ok(Some(ControlMessage::Welcome(w))) => {
                    sync.lock()
                        .expect("not poisoned")
                        .set_coarse(w.server_time_us, clock.now_us());
                    return Ok((w, writer, reader));
                }
                Ok(Some(ControlMessage::Error {
                    code: ErrorCode::UnknownRendition,
                    message,
                })) => {
                    tracing::warn!("{message}");
                }
                Ok(Some(ControlMessage::Error { code, message })) => {
                    return Err(ConnectError::Refused { code, message })
                }
                Ok(Some(other)) => {
                    return Err(ConnectError::Failed {
                        addr,
                        detail: format!("the server sent {} before its welcome", other.name()),
                    })
                }
                Ok(None) => {
                    return Err(ConnectError::Failed {
                        addr,
                        detail: "the server closed the control stream".into(),
                    })
                }
                Err(ReadError::Stream(quinn::ReadError::ConnectionLost(e))) => {
                    return Err(connection_error(addr, e))
                }
                Err(e) => {
                    return Err(ConnectError::Failed {
                        addr,
                        detail: e.to_string(),
                    })
                }
            }
        }
    };
    let (welcome, writer, reader) = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Err(_) => {
            return Err(ConnectError::Failed {
                addr,
                detail: "no welcome from the server within 5 s".into(),
            })
        }
        Ok(r) => r?,
    };
    Ok(Session {
        endpoint,
        conn,
        welcome,
        latency_target_ms: opts.latency_target_ms,
        writer,
        reader,
    })
}

fn connection_error(addr: SocketAddr, e: quinn::ConnectionError) -> ConnectError {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => ConnectError::Refused {
            code: ErrorCode::from_u16(c.error_code.into_inner().min(u16::MAX as u64) as u16),
            message: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        quinn::ConnectionError::TimedOut => ConnectError::Unreachable(addr),
        quinn::ConnectionError::ConnectionClosed(close) => {
            // TLS alerts arrive as QUIC crypto errors, 0x100 + the alert number.
            let code = u64::from(close.error_code);
            match (code & !0xff == 0x100)
                .then(|| explain_refusal((code & 0xff) as u8))
                .flatten()
            {
                Some(text) => ConnectError::ViewerCertificate(text),
                None => ConnectError::Failed {
                    addr,
                    detail: quinn::ConnectionError::ConnectionClosed(close).to_string(),
                },
            }
        }
        other => ConnectError::Failed {
            addr,
            detail: other.to_string(),
        },
    }
}

/// Why a running session ended.
#[derive(Debug)]
pub enum Ended {
    /// We closed it (duration over, window closed).
    Local,
    /// The server closed it, with its reason.
    Server { code: ErrorCode, message: String },
    /// The connection was lost.
    Lost(String),
}

/// Everything the receive tasks feed, and what drives the control task.
pub struct Pipes {
    pub frames: Sender<NetFrame>,
    pub audio: Sender<NetAudio>,
    pub keyframe_requests: UnboundedReceiver<u8>,
    /// Requests from the keyboard or a script (those the server must hear of).
    pub commands: UnboundedReceiver<Command>,
    /// The rendition the server last confirmed, for the decoder.
    pub target_rendition: Arc<AtomicU8>,
    /// Tells the decoder the broadcaster paused (see `DecoderContext::resync`).
    pub resync: Arc<std::sync::atomic::AtomicBool>,
    /// The highest rung automatic quality may choose (0 = the top of the ladder).
    pub auto_cap: usize,
}

/// Runs the control task and the receivers until the connection ends. `auto` starts
/// automatic quality at once (a reconnection of a viewer that had it on).
pub async fn run(
    mut session: Session,
    pipes: &mut Pipes,
    auto: bool,
    clock: ViewerClock,
    sync: Arc<Mutex<ClockSync>>,
    stats: Arc<Mutex<Stats>>,
) -> Ended {
    let conn = session.conn.clone();
    let video = tokio::spawn(receive_frames(
        conn.clone(),
        pipes.frames.clone(),
        clock,
        stats.clone(),
    ));
    let audio = tokio::spawn(receive_audio(
        conn.clone(),
        pipes.audio.clone(),
        stats.clone(),
    ));
    let ended = control(&mut session, pipes, auto, clock, sync, stats).await;
    video.abort();
    audio.abort();
    ended
}

/// The connection in use now (it changes when the viewer reconnects).
#[derive(Clone, Default)]
pub struct CurrentConnection(Arc<Mutex<Option<(quinn::Endpoint, quinn::Connection)>>>);

impl CurrentConnection {
    fn set(&self, s: &Session) {
        *self.0.lock().expect("not poisoned") = Some((s.endpoint.clone(), s.conn.clone()));
    }

    pub fn get(&self) -> Option<(quinn::Endpoint, quinn::Connection)> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Waits between reconnection attempts: 250 ms, doubling up to 5 s, each ±20% at random so
/// that the viewers of a restarted server do not all come back at the same instant.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    rng: rand_chacha::ChaCha8Rng,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// Repeatable waits, for tests.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            next: Self::FIRST,
            rng: rand::SeedableRng::seed_from_u64(seed),
        }
    }

    pub fn next_wait(&mut self) -> Duration {
        let spread = rand::Rng::random_range(&mut self.rng, 0.8..1.2);
        let wait = self.next.mul_f64(spread);
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether connecting again may help: the network or the server may come back, while a
/// certificate that fails verification or a refusal on principle will not change by itself.
fn worth_retrying(e: &ConnectError) -> bool {
    match e {
        ConnectError::Resolve(..) | ConnectError::Unreachable(_) | ConnectError::Failed { .. } => {
            true
        }
        ConnectError::Refused { code, .. } => {
            matches!(code, ErrorCode::ServerShuttingDown | ErrorCode::RateLimited)
        }
        ConnectError::Verify(_) | ConnectError::ViewerCertificate(_) | ConnectError::Setup(_) => {
            false
        }
    }
}

/// Runs sessions until one ends for good: when the connection is lost, connects again with
/// back-off (the decoder and the audio go on, and resynchronise), for as long as it takes.
pub async fn run_with_reconnect(
    mut opts: ConnectOptions,
    first: Session,
    mut pipes: Pipes,
    current: CurrentConnection,
    clock: ViewerClock,
    sync: Arc<Mutex<ClockSync>>,
    stats: Arc<Mutex<Stats>>,
) -> Ended {
    let mut session = first;
    let mut auto = false;
    loop {
        current.set(&session);
        let reason = match run(
            session,
            &mut pipes,
            auto,
            clock,
            sync.clone(),
            stats.clone(),
        )
        .await
        {
            Ended::Lost(reason) => reason,
            other => return other,
        };
        tracing::warn!("connection lost ({reason}); reconnecting");
        {
            let mut s = stats.lock().expect("not poisoned");
            auto = s.auto;
            // Ask for what was playing (or automatic) when connecting again.
            opts.rendition = match (s.auto, s.rendition) {
                (true, _) if pipes.auto_cap > 0 => WishedRendition::Fixed(pipes.auto_cap as u8),
                (true, _) | (false, None) => WishedRendition::Auto,
                (false, Some(r)) => WishedRendition::Fixed(r),
            };
            s.connection.lost += 1;
            s.connection.reconnecting = Some(Reconnecting {
                reason: reason.clone(),
                attempt: 0,
                since_us: clock.now_us(),
            });
        }
        let mut backoff = Backoff::new();
        session = loop {
            tokio::time::sleep(backoff.next_wait()).await;
            if let Some(r) = stats
                .lock()
                .expect("not poisoned")
                .connection
                .reconnecting
                .as_mut()
            {
                r.attempt += 1;
            }
            // A restarted server has another clock: measure the offset afresh.
            *sync.lock().expect("not poisoned") = ClockSync::default();
            match connect(&opts, clock, &sync).await {
                Ok(s) => break s,
                Err(e) if worth_retrying(&e) => tracing::info!("reconnecting: {e}"),
                Err(e) => {
                    stats.lock().expect("not poisoned").connection.reconnecting = None;
                    return Ended::Lost(format!("{reason}; reconnecting failed: {e}"));
                }
            }
        };
        // The numbering may start over (a restarted server): the decoder waits for a
        // keyframe without counting the gap as loss.
        pipes.resync.store(true, Ordering::Relaxed);
        let mut s = stats.lock().expect("not poisoned");
        let since = s.connection.reconnecting.take().map(|r| r.since_us);
        s.connection.reconnects += 1;
        if let Some(since) = since {
            s.connection
                .reconnect_time
                .record_us(clock.now_us().saturating_sub(since));
        }
        s.clock_offset_us = sync.lock().expect("not poisoned").offset_us();
        s.rendition = Some(session.welcome.rendition);
        s.rendition_timeline.push(RenditionChange {
            at_us: clock.now_us(),
            rendition: session.welcome.rendition,
            reason: "reconnected".into(),
        });
        pipes
            .target_rendition
            .store(session.welcome.rendition, Ordering::Relaxed);
        tracing::info!(
            "reconnected (session {}) after {} attempt(s)",
            session.welcome.session_id,
            s.connection.reconnects
        );
    }
}

/// The viewer's choices, as the control task tracks them.
struct Choices {
    ladder: Vec<Rendition>,
    /// Position in the ladder of the rendition asked for last.
    index: usize,
    auto: bool,
    audio_bitrates: Vec<u32>,
    audio_bitrate: u32,
    paused: bool,
    /// The highest rung automatic quality may choose.
    auto_cap: usize,
}

impl Choices {
    fn from_welcome(w: &Welcome, auto_cap: usize) -> Self {
        Self {
            auto_cap: auto_cap.min(w.video.renditions.len().saturating_sub(1)),
            ladder: w.video.renditions.clone(),
            index: w
                .video
                .renditions
                .iter()
                .position(|r| r.id == w.rendition)
                .unwrap_or(0),
            auto: false,
            audio_bitrates: w.audio_bitrates.clone(),
            audio_bitrate: w.audio.bitrate_bps,
            paused: false,
        }
    }

    /// The message a command sends to the server, if any.
    fn apply(&mut self, cmd: Command) -> Option<ControlMessage> {
        let select = |index: usize, choices: &mut Self| {
            let r = choices.ladder.get(index)?;
            choices.index = index;
            Some(ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed(r.id),
            })
        };
        match cmd {
            Command::Quality(i) => {
                if (i as usize) >= self.ladder.len() {
                    tracing::warn!(
                        "no rendition {}: the server offers {}",
                        i + 1,
                        self.ladder.len()
                    );
                    return None;
                }
                self.auto = false;
                select(i as usize, self)
            }
            Command::QualityUp => {
                self.auto = false;
                select(self.index.checked_sub(1)?, self)
            }
            Command::QualityDown => {
                self.auto = false;
                select(self.index + 1, self)
            }
            Command::Auto => {
                self.auto = true;
                if self.auto_cap > 0 {
                    // Start at the cap (or where we are, if lower).
                    return select(self.index.max(self.auto_cap), self);
                }
                Some(ControlMessage::SelectRendition {
                    rendition: WishedRendition::Auto,
                })
            }
            Command::AudioBitrateUp | Command::AudioBitrateDown => {
                let at = self
                    .audio_bitrates
                    .iter()
                    .position(|b| *b == self.audio_bitrate)?;
                let to = if cmd == Command::AudioBitrateUp {
                    at + 1
                } else {
                    at.checked_sub(1)?
                };
                let bitrate_bps = *self.audio_bitrates.get(to)?;
                Some(ControlMessage::SetAudioBitrate { bitrate_bps })
            }
            Command::TogglePause | Command::Pause | Command::Resume => {
                self.paused = match cmd {
                    Command::Pause => true,
                    Command::Resume => false,
                    _ => !self.paused,
                };
                Some(ControlMessage::SetPaused {
                    paused: self.paused,
                })
            }
            // Local commands: the window and the speakers handle them.
            Command::ToggleMute | Command::ToggleStats | Command::ToggleHelp | Command::Quit => {
                None
            }
        }
    }
}

async fn control(
    session: &mut Session,
    pipes: &mut Pipes,
    start_auto: bool,
    clock: ViewerClock,
    sync: Arc<Mutex<ClockSync>>,
    stats: Arc<Mutex<Stats>>,
) -> Ended {
    let Pipes {
        keyframe_requests,
        commands,
        target_rendition,
        resync,
        auto_cap,
        ..
    } = pipes;
    let auto_cap = *auto_cap;
    // Five quick pings for a first good estimate, then one a second.
    let mut ping_seq = 0u32;
    let mut pings_sent_at = std::collections::HashMap::new();
    let mut ping_timer = tokio::time::interval(Duration::from_millis(50));
    let mut choices = Choices::from_welcome(&session.welcome, auto_cap);
    let mut auto = AutoQuality::new(
        choices.ladder.iter().map(|r| r.bitrate_kbps).collect(),
        auto_cap,
        session.latency_target_ms as u64 * 1000,
    );
    let mut auto_timer = tokio::time::interval(Duration::from_secs(1));
    // While automatic quality is off the timer is not polled: no burst of missed ticks when
    // it comes back on.
    auto_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report_timer = tokio::time::interval(REPORT_EVERY);
    // Reports cover this connection's periods only, not what came before a reconnection.
    let mut loss = {
        let s = stats.lock().expect("not poisoned");
        LossWindow {
            played: s.audio.packets_decoded,
            lost: s.audio.packets_concealed + s.audio.packets_late,
        }
    };
    if start_auto {
        if let Some(msg) = choices.apply(Command::Auto) {
            if let Err(e) = session.writer.send(&msg).await {
                return ended_by(&session.conn, e.to_string());
            }
        }
    }
    loop {
        tokio::select! {
            Some(cmd) = commands.recv() => {
                let Some(msg) = choices.apply(cmd) else { continue };
                {
                    let mut s = stats.lock().expect("not poisoned");
                    s.auto = choices.auto;
                    s.paused = choices.paused;
                    if matches!(msg, ControlMessage::SelectRendition { .. }) {
                        s.video.switch_requested_us = Some(clock.now_us());
                        s.auto_reason = Some(if choices.auto {
                            "automatic: starting from the top".to_string()
                        } else {
                            "chosen by the viewer".to_string()
                        });
                        if choices.auto {
                            auto.restart();
                            auto_timer.reset();
                        }
                    }
                }
                if let Err(e) = session.writer.send(&msg).await {
                    return ended_by(&session.conn, e.to_string());
                }
            }
            _ = auto_timer.tick(), if choices.auto => {
                let decision = {
                    let mut s = stats.lock().expect("not poisoned");
                    let obs = observe(&mut s, session.conn.rtt());
                    auto.tick(obs, choices.index)
                };
                if let Some(d) = decision {
                    let to = &choices.ladder[d.to];
                    let direction = if d.to > choices.index { "down" } else { "up" };
                    let why = format!("{direction} to {}: {}", to.name, d.reason);
                    tracing::info!("automatic quality: {why} ({} kbit/s came through)", d.throughput_kbps);
                    choices.index = d.to;
                    let msg = ControlMessage::SelectRendition { rendition: WishedRendition::Fixed(to.id) };
                    {
                        let mut s = stats.lock().expect("not poisoned");
                        s.video.switch_requested_us = Some(clock.now_us());
                        s.auto_reason = Some(why);
                    }
                    if let Err(e) = session.writer.send(&msg).await {
                        return ended_by(&session.conn, e.to_string());
                    }
                }
            }
            _ = report_timer.tick() => {
                let permille = {
                    let s = stats.lock().expect("not poisoned");
                    loss.permille(s.audio.packets_decoded, s.audio.packets_concealed + s.audio.packets_late)
                };
                if let Some(audio_loss_permille) = permille {
                    let msg = ControlMessage::ReceiverReport { audio_loss_permille };
                    if let Err(e) = session.writer.send(&msg).await {
                        return ended_by(&session.conn, e.to_string());
                    }
                }
            }
            _ = ping_timer.tick() => {
                // Pings 0 to 4 go 50 ms apart; after the fifth, one a second.
                if ping_seq == 4 {
                    ping_timer = tokio::time::interval_at(
                        tokio::time::Instant::now() + Duration::from_secs(1),
                        Duration::from_secs(1),
                    );
                }
                let now = clock.now_us();
                pings_sent_at.insert(ping_seq, now);
                pings_sent_at.retain(|s, _| ping_seq.wrapping_sub(*s) < 16);
                let ping = ControlMessage::Ping(Ping { seq: ping_seq, client_time_us: now });
                ping_seq = ping_seq.wrapping_add(1);
                if let Err(e) = session.writer.send(&ping).await {
                    return ended_by(&session.conn, e.to_string());
                }
            }
            Some(rendition) = keyframe_requests.recv() => {
                // Coalesce a burst of requests into one message.
                while keyframe_requests.try_recv().is_ok() {}
                if let Err(e) = session.writer.send(&ControlMessage::KeyframeRequest { rendition }).await {
                    return ended_by(&session.conn, e.to_string());
                }
            }
            msg = session.reader.next() => match msg {
                Ok(Some(ControlMessage::Pong(p))) => {
                    let client_receive = clock.now_us();
                    if pings_sent_at.remove(&p.seq).is_some_and(|sent| sent == p.client_time_us) {
                        let mut s = sync.lock().expect("not poisoned");
                        s.add(Exchange {
                            client_send: p.client_time_us,
                            server_receive: p.server_receive_us,
                            server_send: p.server_send_us,
                            client_receive,
                        });
                        let mut st = stats.lock().expect("not poisoned");
                        st.clock_offset_us = s.offset_us();
                        st.rtt_us = s.min_rtt_us();
                    }
                }
                Ok(Some(ControlMessage::RenditionChanged { rendition, .. })) => {
                    target_rendition.store(rendition, Ordering::Relaxed);
                    if let Some(i) = choices.ladder.iter().position(|r| r.id == rendition) {
                        choices.index = i;
                    }
                    let mut s = stats.lock().expect("not poisoned");
                    s.rendition = Some(rendition);
                    let reason = s.auto_reason.clone().unwrap_or_else(|| "the server's choice".into());
                    s.rendition_timeline.push(RenditionChange {
                        at_us: clock.now_us(),
                        rendition,
                        reason,
                    });
                }
                Ok(Some(ControlMessage::BroadcastPaused { paused })) => {
                    tracing::info!(
                        "the broadcaster {} the stream",
                        if paused { "paused" } else { "resumed" }
                    );
                    if paused {
                        resync.store(true, Ordering::Relaxed);
                    }
                    auto.restart();
                    stats.lock().expect("not poisoned").broadcast.on_message(paused);
                }
                Ok(Some(ControlMessage::AudioBitrateChanged { bitrate_bps })) => {
                    choices.audio_bitrate = bitrate_bps;
                    stats.lock().expect("not poisoned").audio.bitrate_bps = bitrate_bps;
                }
                Ok(Some(ControlMessage::Error { code, message })) => {
                    tracing::warn!("server: {} ({message})", code.describe());
                    if code == ErrorCode::UnknownRendition {
                        stats.lock().expect("not poisoned").video.switch_requested_us = None;
                    }
                }
                Ok(Some(ControlMessage::Goodbye { code, message })) => return Ended::Server { code, message },
                Ok(Some(other)) => tracing::debug!("ignoring {} from the server", other.name()),
                Ok(None) => return ended_by(&session.conn, "the server closed the control stream".into()),
                Err(e) => return ended_by(&session.conn, e.to_string()),
            }
        }
    }
}

/// How often the viewer reports its audio loss to the server (which sizes FEC by it).
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Audio loss over one report period, from the running totals.
#[derive(Default)]
struct LossWindow {
    played: u64,
    lost: u64,
}

impl LossWindow {
    /// Lost per thousand since the last call; `None` when too few packets were due to tell.
    fn permille(&mut self, played: u64, lost: u64) -> Option<u16> {
        let (dp, dl) = (
            played.saturating_sub(self.played),
            lost.saturating_sub(self.lost),
        );
        (self.played, self.lost) = (played, lost);
        (dp + dl >= 20).then(|| (1000 * dl / (dp + dl)) as u16)
    }
}

/// What automatic quality sees this second, from the stats (whose last-second latency
/// window it empties) and QUIC's round trip.
fn observe(s: &mut Stats, rtt: Duration) -> Observation {
    let recent = &mut s.video.latency_last_second;
    let quantile = |q: f64| (recent.count() > 0).then(|| (recent.percentile_ms(q) * 1000.0) as u64);
    let (latency_p50_us, latency_p90_us) = (quantile(0.5), quantile(0.9));
    recent.reset();
    Observation {
        frames_reset: s.video.frames_reset,
        frames_skipped: s.video.frames_skipped,
        frames_dropped_busy: s.video.frames_dropped_decoder_busy,
        video_bytes: s.video.bytes,
        audio_played: s.audio.packets_decoded,
        audio_concealed: s.audio.packets_concealed,
        latency_p50_us,
        latency_p90_us,
        rtt_us: Some(rtt.as_micros() as u64),
    }
}

/// Classifies the end of a connection from its close reason.
fn ended_by(conn: &quinn::Connection, fallback: String) -> Ended {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => Ended::Server {
            code: ErrorCode::from_u16(c.error_code.into_inner().min(u16::MAX as u64) as u16),
            message: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        Some(quinn::ConnectionError::LocallyClosed) => Ended::Local,
        Some(e) => Ended::Lost(e.to_string()),
        None => Ended::Lost(fallback),
    }
}

async fn receive_frames(
    conn: quinn::Connection,
    out: Sender<NetFrame>,
    clock: ViewerClock,
    stats: Arc<Mutex<Stats>>,
) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let first_byte_us = clock.now_us();
        let out = out.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let result = read_frame(&mut recv).await;
            let complete_us = clock.now_us();
            let mut s = stats.lock().expect("not poisoned");
            match result {
                Ok(f) => {
                    s.video.frames_received += 1;
                    s.video.bytes += f.payload.len() as u64;
                    s.broadcast.on_frame(f.header.keyframe);
                    if f.header.keyframe {
                        s.video.keyframes += 1;
                    }
                    let frame = NetFrame {
                        header: f.header,
                        payload: f.payload,
                        first_byte_us,
                        complete_us,
                    };
                    match out.try_send(frame) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => s.video.frames_dropped_decoder_busy += 1,
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
                Err(ReadError::Malformed(e)) => {
                    s.video.frames_malformed += 1;
                    drop(s);
                    tracing::warn!("malformed frame stream: {e}");
                    let _ = recv.stop(quinn::VarInt::from_u32(
                        ErrorCode::MalformedMessage.to_u16() as u32,
                    ));
                }
                Err(ReadError::Stream(quinn::ReadError::Reset(_))) | Err(ReadError::Truncated) => {
                    s.video.frames_reset += 1;
                }
                Err(_) => {} // connection gone
            }
        });
    }
}

async fn receive_audio(conn: quinn::Connection, out: Sender<NetAudio>, stats: Arc<Mutex<Stats>>) {
    while let Ok(datagram) = conn.read_datagram().await {
        let mut s = stats.lock().expect("not poisoned");
        match AudioHeader::decode(&datagram) {
            Ok((header, payload)) => {
                s.audio.packets_received += 1;
                s.audio.bytes += payload.len() as u64;
                let packet = NetAudio {
                    header,
                    payload: datagram.slice_ref(payload),
                };
                if out.try_send(packet).is_err() {
                    s.audio.packets_dropped_busy += 1;
                }
            }
            Err(e) => {
                s.audio.packets_malformed += 1;
                tracing::debug!("malformed audio datagram: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_spread() {
        let mut b = Backoff::with_seed(42);
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        let nominal = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000];
        for (w, n) in waits.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(
                *w >= n.mul_f64(0.8) && *w <= n.mul_f64(1.2),
                "{w:?} for {n:?}"
            );
        }
        // Two viewers do not wait alike.
        let mut other = Backoff::with_seed(7);
        assert_ne!(other.next_wait(), Backoff::with_seed(42).next_wait());
    }

    #[test]
    fn only_errors_that_may_pass_are_retried() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(worth_retrying(&ConnectError::Unreachable(addr)));
        assert!(worth_retrying(&ConnectError::Refused {
            code: ErrorCode::ServerShuttingDown,
            message: String::new()
        }));
        assert!(!worth_retrying(&ConnectError::Refused {
            code: ErrorCode::UnsupportedVersion,
            message: String::new()
        }));
        assert!(!worth_retrying(&ConnectError::Setup(anyhow::anyhow!("x"))));
    }

    #[test]
    fn loss_is_reported_per_period_and_only_with_enough_packets() {
        let mut w = LossWindow::default();
        assert_eq!(w.permille(95, 5), Some(50));
        assert_eq!(w.permille(100, 5), None, "5 packets are too few to tell");
        assert_eq!(w.permille(200, 5), Some(0));
        assert_eq!(w.permille(200, 105), Some(1000));
    }

    #[test]
    fn host_and_port_are_split_as_people_write_them() {
        assert_eq!(
            split_host_port("localhost:4443"),
            ("localhost".into(), 4443)
        );
        assert_eq!(split_host_port("127.0.0.1:9"), ("127.0.0.1".into(), 9));
        assert_eq!(split_host_port("[::1]:5000"), ("::1".into(), 5000));
        assert_eq!(
            split_host_port("example.test"),
            ("example.test".into(), 4443)
        );
        assert_eq!(split_host_port("::1"), ("::1".into(), 4443));
    }
}
