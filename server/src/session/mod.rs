//! One viewer's session: the control stream (hello, welcome, pings, requests), one
//! unidirectional stream per video frame with a delivery deadline, and audio datagrams.
//! Sessions are independent: a slow or hostile viewer only ever loses its own frames or its
//! own connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use streamsocket_proto::control::{
    ControlMessage, Hello, Pong, Welcome, WishedRendition, VIDEO_CODEC_AV1,
};
use streamsocket_proto::{ErrorCode, RenditionId, PROTOCOL_VERSION};
use streamsocket_transport::{close, ControlReader, ControlWriter, ReadError};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{timeout, Instant};

use crate::capture::clock::MediaClock;
use crate::encode::video::{EncodedFrame, KeyframeRequests};
use crate::fanout::hub::{Hub, Watch};

/// How long a new connection has to open its control stream and say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Latency target used when the viewer gives none.
pub const DEFAULT_LATENCY_TARGET_MS: u16 = 300;
/// Frame deadlines are clamped to this range whatever the viewer asks.
const MIN_DEADLINE: Duration = Duration::from_millis(50);
const MAX_DEADLINE: Duration = Duration::from_secs(5);
/// Shortest time between two rendition switches of one viewer.
pub const MIN_SWITCH_INTERVAL: Duration = Duration::from_millis(250);
/// Stream reset code for a frame that missed its deadline.
pub const RESET_DEADLINE: VarInt = VarInt::from_u32(1);

/// Counters of one session, logged when it ends.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub frames_sent: AtomicU64,
    /// Frames reset because they missed their deadline.
    pub frames_reset: AtomicU64,
    /// Frames lost because the session fell behind the encoder (hub queue overflow).
    pub frames_lagged: AtomicU64,
    /// Frames not sent while waiting for a keyframe (after joining or after a loss).
    pub frames_skipped_for_keyframe: AtomicU64,
    pub audio_sent: AtomicU64,
    pub audio_dropped: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// Serves one viewer until it leaves or misbehaves.
pub async fn serve(
    conn: quinn::Connection,
    hub: Arc<Hub>,
    admission: Arc<crate::access::admission::Admission>,
    clock: MediaClock,
    session_id: u64,
    strategy: JoinStrategy,
) {
    let remote = conn.remote_address();
    let stats = Arc::new(SessionStats::default());
    let outcome = run(&conn, &hub, &admission, clock, session_id, strategy, &stats).await;
    hub.audio_loss().remove(session_id);
    match &outcome {
        Ok(()) => tracing::info!(session_id, %remote, "viewer left"),
        Err((code, reason)) => {
            tracing::warn!(session_id, %remote, code = code.to_u16(), "closing session: {reason}");
            close(&conn, *code, reason);
        }
    }
    tracing::info!(
        session_id,
        frames_sent = stats.frames_sent.load(Ordering::Relaxed),
        frames_reset = stats.frames_reset.load(Ordering::Relaxed),
        frames_lagged = stats.frames_lagged.load(Ordering::Relaxed),
        frames_skipped_for_keyframe = stats.frames_skipped_for_keyframe.load(Ordering::Relaxed),
        audio_sent = stats.audio_sent.load(Ordering::Relaxed),
        audio_dropped = stats.audio_dropped.load(Ordering::Relaxed),
        bytes_sent = stats.bytes_sent.load(Ordering::Relaxed),
        "session stats"
    );
}

type Fatal = (ErrorCode, String);

async fn run(
    conn: &quinn::Connection,
    hub: &Arc<Hub>,
    admission: &crate::access::admission::Admission,
    clock: MediaClock,
    session_id: u64,
    strategy: JoinStrategy,
    stats: &Arc<SessionStats>,
) -> Result<(), Fatal> {
    let (send, recv) = match timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Err(_) => return Err((ErrorCode::Timeout, "no control stream within 5 s".into())),
        Ok(Err(e)) => {
            tracing::debug!(
                session_id,
                "connection ended before the control stream: {e}"
            );
            return Ok(());
        }
        Ok(Ok(streams)) => streams,
    };
    let mut writer = ControlWriter::new(send);
    let mut reader = ControlReader::new(recv);

    let hello = match timeout(HELLO_TIMEOUT, reader.next()).await {
        Err(_) => {
            return Err(refuse(
                &mut writer,
                ErrorCode::Timeout,
                "no hello within 5 s".into(),
            )
            .await)
        }
        Ok(Ok(Some(ControlMessage::Hello(h)))) => h,
        Ok(Ok(Some(other))) => {
            return Err(refuse(
                &mut writer,
                ErrorCode::UnexpectedMessage,
                format!("expected hello, got {}", other.name()),
            )
            .await)
        }
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(refuse(&mut writer, e.close_code(), read_error_text(&e)).await),
    };
    let withdrawn = conn.clone();
    let withdraw = move || {
        tracing::info!(session_id, remote = %withdrawn.remote_address(), "ending the session of a viewer whose token or certificate was withdrawn");
        withdrawn.close(
            quinn::VarInt::from_u32(ErrorCode::AccessRevoked.to_u16() as u32),
            b"access withdrawn",
        );
    };
    let certificate = crate::access::certificates::viewer_certificate(conn);
    let admitted = match admission.admit(
        &hello.token,
        certificate.as_ref().map(|c| c.serial.clone()),
        withdraw,
    ) {
        Ok(a) => a,
        Err((code, message)) => {
            tracing::info!(
                session_id,
                remote = %conn.remote_address(),
                "turned away: {} ({message})",
                code.describe()
            );
            return Err(refuse(&mut writer, code, message).await);
        }
    };
    tracing::info!(
        session_id,
        remote = %conn.remote_address(),
        client = %hello.client_name,
        token = %admitted.name.as_deref().unwrap_or("-"),
        viewer_cert = %certificate.as_ref().map_or("-", |c| c.common_name.as_str()),
        latency_target_ms = hello.latency_target_ms,
        "viewer joined"
    );

    let rendition = choose_rendition(hub, &hello);
    let audio_bitrate = default_audio_bitrate(hub);
    if let WishedRendition::Fixed(id) = hello.rendition {
        if id != rendition {
            let msg = ControlMessage::Error {
                code: ErrorCode::UnknownRendition,
                message: format!("no rendition {id}; sending rendition {rendition}"),
            };
            writer.send(&msg).await.map_err(write_failed)?;
        }
    }
    let welcome = ControlMessage::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session_id,
        server_time_us: clock.now_us(),
        video: streamsocket_proto::control::VideoFormat {
            codec: VIDEO_CODEC_AV1,
            renditions: hub.ladder(),
        },
        rendition,
        audio: hub.audio_format(audio_bitrate),
        audio_bitrates: hub.audio_bitrates(),
    });
    // Watch the broadcaster's pause from before the welcome, so no change is missed.
    let mut paused = hub.controls().watch_paused();
    writer.send(&welcome).await.map_err(write_failed)?;
    let controls = hub.controls().clone();
    controls.viewer_joined();
    let _counted = ViewerCount(controls.clone());
    if *paused.borrow_and_update() {
        let msg = ControlMessage::BroadcastPaused { paused: true };
        writer.send(&msg).await.map_err(write_failed)?;
    }

    let target_ms = if hello.latency_target_ms == 0 {
        DEFAULT_LATENCY_TARGET_MS
    } else {
        hello.latency_target_ms
    };
    let deadline = Duration::from_millis(target_ms as u64).clamp(MIN_DEADLINE, MAX_DEADLINE);
    let (video_tx, video_rx) = mpsc::unbounded_channel();
    let (audio_tx, audio_rx) = mpsc::unbounded_channel();
    let video = tokio::spawn(send_video(
        conn.clone(),
        hub.clone(),
        rendition,
        deadline,
        strategy,
        stats.clone(),
        video_rx,
    ));
    let audio = tokio::spawn(send_audio(
        conn.clone(),
        hub.clone(),
        audio_bitrate,
        stats.clone(),
        audio_rx,
    ));

    let commands = Commands {
        video: video_tx,
        audio: audio_tx,
    };
    let result = control_loop(
        &mut reader,
        &mut writer,
        hub,
        clock,
        &commands,
        paused,
        session_id,
    )
    .await;
    video.abort();
    audio.abort();
    if let Err((code, reason)) = result {
        return Err(refuse(&mut writer, code, reason).await);
    }
    Ok(())
}

/// Counts a viewer as connected while it lives.
struct ViewerCount(Arc<crate::fanout::controls::Controls>);

impl Drop for ViewerCount {
    fn drop(&mut self) {
        self.0.viewer_left();
    }
}

/// The audio bitrate a viewer starts with: the default when offered, else the middle one.
fn default_audio_bitrate(hub: &Hub) -> u32 {
    let rates = hub.audio_bitrates();
    let wanted = crate::encode::ladder::DEFAULT_AUDIO_KBPS * 1000;
    if rates.contains(&wanted) {
        wanted
    } else {
        rates[rates.len() / 2]
    }
}

/// What the control loop tells the media tasks.
#[derive(Debug, Clone, Copy)]
enum MediaCommand {
    Select(RenditionId),
    AudioBitrate(u32),
    Pause(bool),
}

struct Commands {
    video: mpsc::UnboundedSender<MediaCommand>,
    audio: mpsc::UnboundedSender<MediaCommand>,
}

fn choose_rendition(hub: &Hub, hello: &Hello) -> RenditionId {
    let ladder = hub.renditions();
    match hello.rendition {
        WishedRendition::Fixed(id) if hub.rendition(id).is_some() => id,
        // Automatic, or a rendition we do not have: start with the first (highest) rung.
        _ => ladder[0].info.id,
    }
}

/// A token bucket on a viewer's control messages: a viewer that sends more than
/// `CONTROL_RATE` messages a second (after a burst of `CONTROL_BURST`) is disconnected with
/// `RateLimited`, so a flood costs the server little and nobody else anything.
pub const CONTROL_RATE: f64 = 100.0;
pub const CONTROL_BURST: f64 = 200.0;

struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new() -> Self {
        Self {
            tokens: CONTROL_BURST,
            last: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * CONTROL_RATE;
        self.tokens = (self.tokens + refill).min(CONTROL_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn control_loop(
    reader: &mut ControlReader,
    writer: &mut ControlWriter,
    hub: &Hub,
    clock: MediaClock,
    commands: &Commands,
    mut paused: tokio::sync::watch::Receiver<bool>,
    session_id: u64,
) -> Result<(), Fatal> {
    let mut limit = RateLimit::new();
    loop {
        let next = tokio::select! {
            next = reader.next() => next,
            changed = paused.changed() => {
                if changed.is_ok() {
                    let msg = ControlMessage::BroadcastPaused { paused: *paused.borrow_and_update() };
                    writer.send(&msg).await.map_err(write_failed)?;
                }
                continue;
            }
        };
        let msg = match next {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            // The viewer went away (closed the connection or reset the stream): not an error.
            Err(ReadError::Stream(_)) => return Ok(()),
            Err(e) => return Err((e.close_code(), read_error_text(&e))),
        };
        if !limit.allow(Instant::now()) {
            return Err((
                ErrorCode::RateLimited,
                format!("more than {CONTROL_RATE} control messages a second"),
            ));
        }
        match msg {
            ControlMessage::Ping(p) => {
                let receive = clock.now_us();
                let pong = ControlMessage::Pong(Pong {
                    seq: p.seq,
                    client_time_us: p.client_time_us,
                    server_receive_us: receive,
                    server_send_us: clock.now_us(),
                });
                writer.send(&pong).await.map_err(write_failed)?;
            }
            ControlMessage::KeyframeRequest { rendition } => match hub.rendition(rendition) {
                Some(r) => r.keyframes.request(),
                None => {
                    let msg = ControlMessage::Error {
                        code: ErrorCode::UnknownRendition,
                        message: format!("no rendition {rendition}"),
                    };
                    writer.send(&msg).await.map_err(write_failed)?;
                }
            },
            ControlMessage::SelectRendition { rendition } => {
                let (id, automatic) = match rendition {
                    // Automatic for now: the top rung; the viewer steps down when it cannot
                    // keep up (network-driven choice comes with congestion control).
                    WishedRendition::Auto => (hub.renditions()[0].info.id, true),
                    WishedRendition::Fixed(id) => (id, false),
                };
                let reply = if hub.rendition(id).is_some() {
                    let _ = commands.video.send(MediaCommand::Select(id));
                    ControlMessage::RenditionChanged {
                        rendition: id,
                        automatic,
                    }
                } else {
                    ControlMessage::Error {
                        code: ErrorCode::UnknownRendition,
                        message: format!("no rendition {id}; {} on offer", hub.renditions().len()),
                    }
                };
                writer.send(&reply).await.map_err(write_failed)?;
            }
            ControlMessage::SetPaused { paused } => {
                let _ = commands.video.send(MediaCommand::Pause(paused));
                let _ = commands.audio.send(MediaCommand::Pause(paused));
            }
            ControlMessage::SetAudioBitrate { bitrate_bps } => {
                let reply = if hub.audio_channel(bitrate_bps).is_some() {
                    let _ = commands.audio.send(MediaCommand::AudioBitrate(bitrate_bps));
                    ControlMessage::AudioBitrateChanged { bitrate_bps }
                } else {
                    ControlMessage::Error {
                        code: ErrorCode::UnknownRendition,
                        message: format!(
                            "no audio bitrate {bitrate_bps}; on offer: {:?}",
                            hub.audio_bitrates()
                        ),
                    }
                };
                writer.send(&reply).await.map_err(write_failed)?;
            }
            ControlMessage::ReceiverReport {
                audio_loss_permille,
            } => {
                hub.audio_loss().report(session_id, audio_loss_permille);
            }
            ControlMessage::Goodbye { .. } => return Ok(()),
            other => {
                return Err((
                    ErrorCode::UnexpectedMessage,
                    format!("a viewer may not send {}", other.name()),
                ))
            }
        }
    }
}

fn read_error_text(e: &ReadError) -> String {
    match e {
        // Not malformed: another version, said as such.
        ReadError::Malformed(v @ streamsocket_proto::DecodeError::UnsupportedVersion { .. }) => {
            v.to_string()
        }
        _ => format!("control stream: {e}"),
    }
}

fn write_failed(e: quinn::WriteError) -> Fatal {
    (
        ErrorCode::Internal,
        format!("writing to the control stream failed: {e}"),
    )
}

/// How long a refusal waits for the viewer to acknowledge the Error that explains it before
/// the connection is closed anyway (a viewer that never acknowledges holds its own session
/// this long, nobody else's).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Tells the viewer why it is being disconnected (delivered before the close, unless the
/// viewer does not acknowledge it within [`REFUSAL_WAIT`]) and returns the reason.
async fn refuse(writer: &mut ControlWriter, code: ErrorCode, reason: String) -> Fatal {
    writer
        .send_and_finish(
            &ControlMessage::Error {
                code,
                message: reason.clone(),
            },
            REFUSAL_WAIT,
        )
        .await;
    (code, reason)
}

/// How a viewer gets its first decodable frame when it joins or switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinStrategy {
    /// Send the current group of pictures from its keyframe at once (the picture appears
    /// immediately and catches up to live as fast as the viewer decodes); ask for a keyframe
    /// only when there is no group yet.
    Gop,
    /// Ask the encoder for a new keyframe (coalesced, rate-limited) and wait for it.
    Keyframe,
    /// The group when it is young (at most `YOUNG_GOP` frames, so catching up is quick),
    /// otherwise a new keyframe.
    #[default]
    Hybrid,
}

/// Longest group the hybrid strategy sends a joiner: ~0.27 s at 30 fps.
pub const YOUNG_GOP: usize = 8;

/// A subscription to one rendition's frames; holding it keeps the encoder running.
struct Subscription {
    watch: Watch,
    frames: broadcast::Receiver<Arc<EncodedFrame>>,
    /// Frames from before the subscription to send first (the current group, or nothing).
    backlog: Vec<Arc<EncodedFrame>>,
}

impl Subscription {
    fn new(hub: &Arc<Hub>, id: RenditionId, strategy: JoinStrategy) -> Option<Self> {
        let (watch, frames, gop) = hub.watch(id)?;
        let usable = gop.first().is_some_and(|f| f.keyframe);
        let backlog = match strategy {
            JoinStrategy::Gop if usable => gop,
            JoinStrategy::Hybrid if usable && gop.len() <= YOUNG_GOP => gop,
            _ => {
                if let Some(r) = hub.rendition(id) {
                    r.keyframes.request();
                }
                Vec::new()
            }
        };
        Some(Self {
            watch,
            frames,
            backlog,
        })
    }

    fn rendition(&self) -> RenditionId {
        self.watch.rendition()
    }
}

/// The next frame of a subscription, or never when there is none.
async fn next_frame(sub: &mut Option<Subscription>) -> Result<Arc<EncodedFrame>, RecvError> {
    match sub {
        Some(s) => s.frames.recv().await,
        None => std::future::pending().await,
    }
}

/// Forwards a rendition's frames to the viewer, starting at a keyframe. A switch subscribes to
/// the new rendition and keeps sending the old one until the new one's first keyframe, so the
/// picture never stops; pausing drops the subscription (the encoder may stop) and resuming
/// starts again from a keyframe.
async fn send_video(
    conn: quinn::Connection,
    hub: Arc<Hub>,
    rendition: RenditionId,
    deadline: Duration,
    strategy: JoinStrategy,
    stats: Arc<SessionStats>,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
) {
    let mut current = Subscription::new(&hub, rendition, strategy);
    let mut next: Option<Subscription> = None;
    let mut wanted = rendition;
    // Switches are applied at most once per MIN_SWITCH_INTERVAL: a viewer flooding quality
    // requests gets the last one it asked for, without starting and stopping encoders at will.
    let mut last_switch = Instant::now();
    let mut switch_due: Option<Instant> = None;
    // Set after a loss (reset stream, lag): the frames after it are undecodable until a keyframe.
    let broken = Arc::new(AtomicBool::new(true));
    let controls = hub.controls().clone();
    let mut held_for_pause = false;
    let mut asker = KeyframeAsker::default();
    if let Some(c) = current.as_mut() {
        send_backlog(&conn, c, deadline, &stats, &broken, controls.paused());
    }
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(MediaCommand::Select(id)) => {
                    wanted = id;
                    switch_due = Some(switch_due.unwrap_or(last_switch + MIN_SWITCH_INTERVAL));
                }
                Some(MediaCommand::Pause(true)) => {
                    current = None;
                    next = None;
                }
                Some(MediaCommand::Pause(false)) => {
                    if current.is_none() {
                        current = Subscription::new(&hub, wanted, strategy);
                        broken.store(true, Ordering::Relaxed);
                        if let Some(c) = current.as_mut() {
                            send_backlog(&conn, c, deadline, &stats, &broken, controls.paused());
                        }
                    }
                }
                Some(MediaCommand::AudioBitrate(_)) => {}
            },
            _ = async { tokio::time::sleep_until(switch_due.expect("guarded")).await }, if switch_due.is_some() => {
                switch_due = None;
                last_switch = Instant::now();
                if current.as_ref().is_some_and(|c| c.rendition() == wanted) {
                    next = None;
                } else if current.is_some() && next.as_ref().is_none_or(|n| n.rendition() != wanted) {
                    next = Subscription::new(&hub, wanted, strategy);
                    // With a group to start from, the switch happens now.
                    if next.as_ref().is_some_and(|n| !n.backlog.is_empty()) {
                        current = next.take();
                        broken.store(true, Ordering::Relaxed);
                        if let Some(c) = current.as_mut() {
                            send_backlog(&conn, c, deadline, &stats, &broken, controls.paused());
                        }
                    }
                }
            }
            frame = next_frame(&mut next) => match frame {
                Ok(f) if f.keyframe && !controls.paused() => {
                    // The new rendition is decodable from here: switch.
                    current = next.take();
                    broken.store(false, Ordering::Relaxed);
                    forward(&conn, f, deadline, &stats, &broken);
                }
                Ok(_) => {
                    stats.frames_skipped_for_keyframe.fetch_add(1, Ordering::Relaxed);
                }
                Err(RecvError::Lagged(n)) => {
                    stats.frames_lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => next = None,
            },
            frame = next_frame(&mut current) => match frame {
                Ok(f) => {
                    // The broadcaster's pause: nothing goes out; after it, a keyframe first.
                    if controls.paused() {
                        held_for_pause = true;
                        continue;
                    }
                    if std::mem::take(&mut held_for_pause) {
                        // Resumed: start again from a fresh keyframe.
                        broken.store(true, Ordering::Relaxed);
                        if let Some(r) = current.as_ref().and_then(|c| hub.rendition(c.rendition())) {
                            r.keyframes.request();
                        }
                    }
                    if broken.load(Ordering::Relaxed) && !f.keyframe {
                        // Undecodable without the frames lost before it: skipped, and the
                        // keyframe is asked for below.
                        stats.frames_skipped_for_keyframe.fetch_add(1, Ordering::Relaxed);
                    } else {
                        broken.store(false, Ordering::Relaxed);
                        forward(&conn, f, deadline, &stats, &broken);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    stats.frames_lagged.fetch_add(n, Ordering::Relaxed);
                    broken.store(true, Ordering::Relaxed);
                    if let Some(r) = current.as_ref().and_then(|c| hub.rendition(c.rendition())) {
                        r.keyframes.request();
                    }
                }
                Err(RecvError::Closed) => return,
            },
        }
        // A frame task that hit its deadline marked the stream broken: ask for a keyframe
        // (when the path shows it can carry one).
        if broken.load(Ordering::Relaxed) {
            if let Some(r) = current.as_ref().and_then(|c| hub.rendition(c.rendition())) {
                asker.ask(&conn, &r.keyframes, r.viewers() <= 1);
            }
        }
    }
}

/// Asks for the keyframe a broken stream needs.
///
/// A viewer alone on its rendition asks whenever its stream is broken: during an outage the
/// keyframes it asks for (one per `KEYFRAME_MIN_INTERVAL`) are lost like the frames around
/// them, but whichever is still within its deadline when the link returns is retransmitted
/// at once and brings the picture back within tens of milliseconds, and they cost nobody
/// else anything.
///
/// When others watch the same rendition, every forced keyframe costs all of them bitrate (the
/// encoder's rate control takes it from the frames around it), so a viewer in an outage must
/// not keep forcing keyframes into a dead path: after its first request it asks again only
/// once an acknowledgement has arrived since, which on a working path is within milliseconds
/// (audio datagrams and frames are acknowledged as they arrive), so nothing changes there,
/// and after an outage is the first packet back from the viewer. Having asked for nothing
/// during the outage, its request then finds the rendition's allowance free.
/// (docs/BENCHMARKS.md, section 5, "Outage recovery".)
#[derive(Debug, Default)]
struct KeyframeAsker {
    /// ACK frames received from the viewer when the session last asked.
    acks_at_last_request: Option<u64>,
}

impl KeyframeAsker {
    /// `alone`: the viewer is the only one watching the rendition.
    fn ask(&mut self, conn: &quinn::Connection, keyframes: &KeyframeRequests, alone: bool) {
        let acks = conn.stats().frame_rx.acks;
        if self.should_ask(acks, alone) {
            keyframes.request();
        }
    }

    /// Whether to ask now, `acks` ACK frames having been received so far.
    fn should_ask(&mut self, acks: u64, alone: bool) -> bool {
        if !alone && self.acks_at_last_request.is_some_and(|last| acks <= last) {
            return false;
        }
        self.acks_at_last_request = Some(acks);
        true
    }
}

/// Sends a subscription's backlog (a group from its keyframe) and clears the loss flag;
/// nothing while the broadcaster has paused the stream (the first live frame after the pause
/// starts it again from a keyframe).
fn send_backlog(
    conn: &quinn::Connection,
    sub: &mut Subscription,
    deadline: Duration,
    stats: &Arc<SessionStats>,
    broken: &Arc<AtomicBool>,
    paused: bool,
) {
    let backlog = std::mem::take(&mut sub.backlog);
    if !paused && backlog.first().is_some_and(|f| f.keyframe) {
        broken.store(false, Ordering::Relaxed);
        for f in backlog {
            forward(conn, f, deadline, stats, broken);
        }
    }
}

fn forward(
    conn: &quinn::Connection,
    frame: Arc<EncodedFrame>,
    deadline: Duration,
    stats: &Arc<SessionStats>,
    broken: &Arc<AtomicBool>,
) {
    tokio::spawn(send_frame(
        conn.clone(),
        frame,
        deadline,
        stats.clone(),
        broken.clone(),
    ));
}

/// Sends one frame on its own stream; resets the stream if it is not delivered (acknowledged)
/// within the deadline.
async fn send_frame(
    conn: quinn::Connection,
    frame: Arc<EncodedFrame>,
    deadline: Duration,
    stats: Arc<SessionStats>,
    broken: Arc<AtomicBool>,
) {
    let due = Instant::now() + deadline;
    let mut send = match tokio::time::timeout_at(due, conn.open_uni()).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return, // connection gone
        Err(_) => {
            // Could not even open a stream in time (the viewer's stream limit is full).
            stats.frames_reset.fetch_add(1, Ordering::Relaxed);
            broken.store(true, Ordering::Relaxed);
            return;
        }
    };
    // Newer frames first: strict priority by sequence number. Keyframes of a rendition are
    // sent in order with the rest, so no special case.
    let _ = send.set_priority(frame.seq.min(i32::MAX as u64) as i32);
    let delivered = tokio::time::timeout_at(due, async {
        send.write_all_chunks(&mut [frame.header.clone(), frame.payload.clone()])
            .await
            .ok()?;
        send.finish().ok()?;
        send.stopped().await.ok()
    })
    .await;
    match delivered {
        Ok(Some(None)) => {
            stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            stats.bytes_sent.fetch_add(
                (frame.header.len() + frame.payload.len()) as u64,
                Ordering::Relaxed,
            );
        }
        Ok(_) => {} // stopped by the viewer, or the connection is gone
        Err(_) => {
            let _ = send.reset(RESET_DEADLINE);
            stats.frames_reset.fetch_add(1, Ordering::Relaxed);
            broken.store(true, Ordering::Relaxed);
        }
    }
}

/// Forwards audio packets of the viewer's bitrate as datagrams.
async fn send_audio(
    conn: quinn::Connection,
    hub: Arc<Hub>,
    bitrate_bps: u32,
    stats: Arc<SessionStats>,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
) {
    let subscribe = |bps: u32| hub.audio_channel(bps).map(|a| a.packets.subscribe());
    let mut bitrate = bitrate_bps;
    let mut packets = subscribe(bitrate);
    let mut warned = false;
    loop {
        let packet = tokio::select! {
            command = commands.recv() => {
                match command {
                    None => return,
                    Some(MediaCommand::AudioBitrate(bps)) => {
                        bitrate = bps;
                        if packets.is_some() {
                            packets = subscribe(bps);
                        }
                    }
                    Some(MediaCommand::Pause(true)) => packets = None,
                    Some(MediaCommand::Pause(false)) => packets = packets.or_else(|| subscribe(bitrate)),
                    Some(MediaCommand::Select(_)) => {}
                }
                continue;
            }
            packet = async {
                match packets.as_mut() {
                    Some(p) => p.recv().await,
                    None => std::future::pending().await,
                }
            } => packet,
        };
        if hub.controls().paused() {
            continue;
        }
        let packet = match packet {
            Ok(p) => p,
            Err(RecvError::Lagged(n)) => {
                stats.audio_dropped.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match conn.max_datagram_size() {
            Some(max) if packet.datagram.len() <= max => {}
            max => {
                if !warned {
                    tracing::warn!(
                        "audio packet of {} bytes does not fit a datagram (max {max:?}); dropping",
                        packet.datagram.len()
                    );
                    warned = true;
                }
                stats.audio_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        match conn.send_datagram(packet.datagram.clone()) {
            Ok(()) => {
                stats.audio_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(quinn::SendDatagramError::ConnectionLost(_)) => return,
            Err(e) => {
                if !warned {
                    tracing::warn!("cannot send audio datagrams: {e}");
                    warned = true;
                }
                stats.audio_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_other_viewers_keyframes_are_asked_for_once_per_sign_of_life() {
        let mut asker = KeyframeAsker::default();
        assert!(asker.should_ask(7, false), "the first loss asks at once");
        // An outage: nothing acknowledged, no more requests however often the loop checks.
        assert!(!asker.should_ask(7, false));
        assert!(!asker.should_ask(7, false));
        // The path is back: the first acknowledgement asks again, once.
        assert!(asker.should_ask(8, false));
        assert!(!asker.should_ask(8, false));
        // On a working path every check has new acknowledgements behind it.
        assert!(asker.should_ask(9, false));
        assert!(asker.should_ask(12, false));
    }

    #[test]
    fn a_viewer_alone_on_its_rendition_always_asks() {
        let mut asker = KeyframeAsker::default();
        assert!(asker.should_ask(7, true));
        assert!(
            asker.should_ask(7, true),
            "nothing acknowledged, still asks"
        );
        assert!(
            !asker.should_ask(7, false),
            "another viewer joined: waits for a sign of life"
        );
        assert!(asker.should_ask(8, false));
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let mut l = RateLimit::new();
        let t0 = l.last;
        let burst = (0..1000).take_while(|_| l.allow(t0)).count();
        assert_eq!(burst, CONTROL_BURST as usize);
        assert!(!l.allow(t0));
        // After 100 ms, 10 more.
        let t1 = t0 + Duration::from_millis(100);
        let more = (0..1000).take_while(|_| l.allow(t1)).count();
        assert_eq!(more, (CONTROL_RATE / 10.0) as usize);
    }
}
