//! The QUIC driver of a [`Session`]: one task per viewer that turns what happens on the
//! connection and in the hub into the core's events and performs the core's actions. It
//! decides nothing itself; a second transport is a second driver like this one.
//!
//! Everything a viewer's session waits for is one `select!` here: the control stream, the
//! broadcaster's pause, the frames of the (at most two) renditions being received, the audio
//! packets, the fate of frames in flight, and the core's next timer. Control messages go out
//! through a writer task, so a viewer that stops reading its control stream holds up nothing
//! but its own replies.

use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use streamsocket_proto::control::ControlMessage;
use streamsocket_proto::{ErrorCode, RenditionId};
use streamsocket_transport::{close, ControlReader, ControlWriter, ReadError};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::audio::{AudioAction, Verdict};
use super::core::{Action, Ending, Offer, Session};
use super::video::{KeyframeAsker, VideoAction, VideoEvent};
use super::JoinStrategy;
use crate::access::admission::{Admission, Admitted};
use crate::capture::clock::MediaClock;
use crate::encode::audio::AudioPacket;
use crate::encode::video::EncodedFrame;
use crate::fanout::controls::Controls;
use crate::fanout::hub::{Hub, Watch};

/// Stream reset code for a frame that missed its deadline.
pub const RESET_DEADLINE: VarInt = VarInt::from_u32(1);

/// How long a refusal waits for the viewer to acknowledge the Error that explains it before
/// the connection is closed anyway (a viewer that never acknowledges holds its own session
/// this long, nobody else's).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Control messages waiting to be written. A viewer gets one reply per request and requests
/// are rate-limited, so only a viewer that reads none of its replies fills this.
const CONTROL_BACKLOG: usize = 256;

/// Serves one viewer until it leaves or misbehaves.
pub async fn serve(
    conn: quinn::Connection,
    hub: Arc<Hub>,
    admission: Arc<Admission>,
    clock: MediaClock,
    session_id: u64,
    strategy: JoinStrategy,
) {
    let offer = Arc::new(Offer::of(&hub));
    let session = Session::new(
        session_id,
        offer,
        clock,
        strategy,
        Instant::now().into_std(),
    );
    let mut driver = Driver {
        conn: conn.clone(),
        hub: hub.clone(),
        admission: &admission,
        session,
        session_id,
        reader: None,
        writer: None,
        admitted: None,
        feeds: [None, None],
        audio: None,
        fates: mpsc::unbounded_channel(),
        asker: KeyframeAsker::default(),
        warned_datagrams: false,
    };
    let ending = driver.run().await;
    let (video, audio) = driver.session.counters();
    let writer = driver.writer.take();
    // Media stops before the goodbye is said; the viewer is no longer counted.
    drop(driver);
    hub.audio_loss().remove(session_id);
    let remote = conn.remote_address();
    match ending {
        Ending::Left => {
            drop(writer);
            tracing::info!(session_id, %remote, "viewer left");
        }
        Ending::Refuse { code, reason } => {
            tracing::warn!(session_id, %remote, code = code.to_u16(), "closing session: {reason}");
            if let Some(w) = writer {
                w.refuse(code, reason.clone()).await;
            }
            close(&conn, code, &reason);
        }
        Ending::Close { code, reason } => {
            tracing::warn!(session_id, %remote, code = code.to_u16(), "closing session: {reason}");
            close(&conn, code, &reason);
        }
    }
    tracing::info!(
        session_id,
        frames_sent = video.frames_sent,
        frames_reset = video.frames_reset,
        frames_lagged = video.frames_lagged,
        frames_skipped_for_keyframe = video.frames_skipped_for_keyframe,
        audio_sent = audio.sent,
        audio_dropped = audio.dropped,
        bytes_sent = video.bytes_sent,
        "session stats"
    );
}

/// The receiving end of one rendition's frames; holding it keeps the encoder running.
struct Feed {
    watch: Watch,
    frames: broadcast::Receiver<Arc<EncodedFrame>>,
}

struct Driver<'a> {
    conn: quinn::Connection,
    hub: Arc<Hub>,
    admission: &'a Admission,
    session: Session,
    session_id: u64,
    reader: Option<ControlReader>,
    writer: Option<ControlSender>,
    /// Held while the viewer is admitted (the viewer limit and withdrawn tokens count it).
    admitted: Option<(Admitted<'a>, ViewerCount)>,
    /// The renditions being received: the one shown and the one being switched to.
    feeds: [Option<Feed>; 2],
    audio: Option<broadcast::Receiver<Arc<AudioPacket>>>,
    /// What became of frames in flight, from their send tasks.
    fates: (
        mpsc::UnboundedSender<VideoEvent>,
        mpsc::UnboundedReceiver<VideoEvent>,
    ),
    asker: KeyframeAsker,
    warned_datagrams: bool,
}

impl Driver<'_> {
    async fn run(&mut self) -> Ending {
        let mut paused: Option<watch::Receiver<bool>> = Some(self.hub.controls().watch_paused());
        loop {
            if let Some(ending) = self.perform_actions(paused.as_mut()) {
                return ending;
            }
            let timeout = self.session.poll_timeout().map(Instant::from_std);
            let [first, second] = &mut self.feeds;
            tokio::select! {
                streams = self.conn.accept_bi(), if self.reader.is_none() => match streams {
                    Ok((send, recv)) => {
                        self.reader = Some(ControlReader::new(recv));
                        self.writer = Some(ControlSender::spawn(ControlWriter::new(send)));
                        self.session.control_stream_opened(now());
                    }
                    Err(e) => {
                        tracing::debug!(session_id = self.session_id, "connection ended before the control stream: {e}");
                        self.session.control_ended();
                    }
                },
                next = next_message(&mut self.reader) => match next {
                    Ok(Some(msg)) => self.session.message(msg, now()),
                    Ok(None) => self.session.control_ended(),
                    // The viewer went away (closed the connection or reset the stream).
                    Err(ReadError::Stream(_)) => self.session.control_ended(),
                    Err(e) => self.session.control_failed(e.close_code(), read_error_text(&e)),
                },
                changed = changed(&mut paused) => match changed {
                    Some(p) => self.session.set_broadcast_paused(p, now()),
                    // The broadcaster's controls are gone (the server is stopping).
                    None => paused = None,
                },
                (rendition, frame) = next_frame(first) => self.frame(rendition, frame),
                (rendition, frame) = next_frame(second) => self.frame(rendition, frame),
                packet = next_packet(&mut self.audio) => self.audio_packet(packet),
                Some(fate) = self.fates.1.recv() => self.session.video(fate, now()),
                failed = writer_failed(&mut self.writer) => {
                    self.writer = None;
                    return Ending::Close {
                        code: ErrorCode::Internal,
                        reason: failed,
                    };
                }
                _ = sleep_until(timeout) => self.session.handle_timeout(now()),
            }
        }
    }

    /// Performs the session's actions until it has none; the ending, once there is one.
    fn perform_actions(&mut self, paused: Option<&mut watch::Receiver<bool>>) -> Option<Ending> {
        let mut paused = paused;
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Send(msg) => {
                    let sent = self.writer.as_ref().map(|w| w.send(msg));
                    if sent == Some(false) {
                        return Some(Ending::Close {
                            code: ErrorCode::RateLimited,
                            reason: format!(
                                "{CONTROL_BACKLOG} control replies unread: the viewer reads none of them"
                            ),
                        });
                    }
                }
                Action::Admit(hello) => {
                    // The broadcaster's pause as the viewer joins; changes follow in `run`.
                    if let Some(p) = paused.as_deref_mut() {
                        let state = *p.borrow_and_update();
                        self.session.set_broadcast_paused(state, now());
                    }
                    self.admit(&hello);
                }
                Action::Video(v) => self.video(v),
                Action::Audio(AudioAction::Listen(bps)) => {
                    self.audio = self.hub.audio_channel(bps).map(|a| a.packets.subscribe());
                }
                Action::Audio(AudioAction::Stop) => self.audio = None,
                Action::KeyframeRequest(id) => self.request_keyframe(id),
                Action::ReportAudioLoss(permille) => {
                    self.hub.audio_loss().report(self.session_id, permille)
                }
                Action::End(ending) => return Some(ending),
            }
        }
        None
    }

    fn admit(&mut self, hello: &streamsocket_proto::control::Hello) {
        let session_id = self.session_id;
        let remote = self.conn.remote_address();
        let withdrawn = self.conn.clone();
        let withdraw = move || {
            tracing::info!(session_id, remote = %withdrawn.remote_address(), "ending the session of a viewer whose token or certificate was withdrawn");
            close(&withdrawn, ErrorCode::AccessRevoked, "access withdrawn");
        };
        let certificate = crate::access::certificates::viewer_certificate(&self.conn);
        let serial = certificate.as_ref().map(|c| c.serial.clone());
        match self.admission.admit(hello.token.expose(), serial, withdraw) {
            Ok(admitted) => {
                tracing::info!(
                    session_id,
                    %remote,
                    client = %hello.client_name,
                    token = %admitted.name.as_deref().unwrap_or("-"),
                    viewer_cert = %certificate.as_ref().map_or("-", |c| c.common_name.as_str()),
                    latency_target_ms = hello.latency_target_ms,
                    "viewer joined"
                );
                let counted = ViewerCount::new(self.hub.controls().clone());
                self.admitted = Some((admitted, counted));
                self.session.admitted(now());
            }
            Err((code, message)) => {
                tracing::info!(session_id, %remote, "turned away: {} ({message})", code.describe());
                self.session.refused(code, message);
            }
        }
    }

    fn video(&mut self, action: VideoAction) {
        match action {
            VideoAction::Watch(id) => {
                let free = self.feeds.iter().position(Option::is_none);
                match (free, self.hub.watch(id)) {
                    (Some(slot), Some((watch, frames, group))) => {
                        self.feeds[slot] = Some(Feed { watch, frames });
                        self.session.video(
                            VideoEvent::Watching {
                                rendition: id,
                                group,
                            },
                            now(),
                        );
                    }
                    _ => self.session.video(VideoEvent::WatchFailed(id), now()),
                }
            }
            VideoAction::Unwatch(id) => {
                for feed in &mut self.feeds {
                    if feed.as_ref().is_some_and(|f| f.watch.rendition() == id) {
                        *feed = None;
                    }
                }
            }
            VideoAction::Send {
                frame,
                priority,
                deadline,
            } => {
                tokio::spawn(send_frame(
                    self.conn.clone(),
                    frame,
                    priority,
                    deadline,
                    self.fates.0.clone(),
                ));
            }
            VideoAction::AskKeyframe(id) => self.request_keyframe(id),
            VideoAction::RepairKeyframe(id) => {
                if let Some(r) = self.hub.rendition(id) {
                    let acks = self.conn.stats().frame_rx.acks;
                    if self.asker.should_ask(acks, r.viewers() <= 1) {
                        r.keyframes.request();
                    }
                }
            }
        }
    }

    fn request_keyframe(&self, id: RenditionId) {
        if let Some(r) = self.hub.rendition(id) {
            r.keyframes.request();
        }
    }

    fn frame(&mut self, rendition: RenditionId, frame: Result<Arc<EncodedFrame>, RecvError>) {
        let event = match frame {
            Ok(f) => VideoEvent::Frame(f),
            Err(RecvError::Lagged(frames)) => VideoEvent::Lagged { rendition, frames },
            Err(RecvError::Closed) => {
                for feed in &mut self.feeds {
                    if feed
                        .as_ref()
                        .is_some_and(|f| f.watch.rendition() == rendition)
                    {
                        *feed = None;
                    }
                }
                VideoEvent::Closed(rendition)
            }
        };
        self.session.video(event, now());
    }

    fn audio_packet(&mut self, packet: Result<Arc<AudioPacket>, RecvError>) {
        let packet = match packet {
            Ok(p) => p,
            Err(RecvError::Lagged(n)) => return self.session.audio_lagged(n),
            Err(RecvError::Closed) => {
                self.audio = None;
                return;
            }
        };
        let max = self.conn.max_datagram_size();
        match self.session.audio_packet(packet.datagram.len(), max) {
            Verdict::Withhold => {}
            Verdict::TooBig { first } => {
                if first {
                    tracing::warn!(
                        session_id = self.session_id,
                        "audio packet of {} bytes does not fit a datagram (max {max:?}); dropping",
                        packet.datagram.len()
                    );
                }
            }
            Verdict::Send => match self.conn.send_datagram(packet.datagram.clone()) {
                Ok(()) => self.session.audio_sent(true),
                // The connection is gone: the control stream says so next.
                Err(quinn::SendDatagramError::ConnectionLost(_)) => self.audio = None,
                Err(e) => {
                    if !std::mem::replace(&mut self.warned_datagrams, true) {
                        tracing::warn!(
                            session_id = self.session_id,
                            "cannot send audio datagrams: {e}"
                        );
                    }
                    self.session.audio_sent(false);
                }
            },
        }
    }
}

fn now() -> std::time::Instant {
    std::time::Instant::now()
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

/// The next control message, or never before the control stream is open.
async fn next_message(
    reader: &mut Option<ControlReader>,
) -> Result<Option<ControlMessage>, ReadError> {
    match reader {
        // `next` is cancel-safe: a message half read stays in the reader.
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// The broadcaster's pause when it changes; `None` once its sender is gone.
async fn changed(paused: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match paused {
        Some(p) => match p.changed().await {
            Ok(()) => Some(*p.borrow_and_update()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The next frame of a feed, or never without one.
async fn next_frame(
    feed: &mut Option<Feed>,
) -> (RenditionId, Result<Arc<EncodedFrame>, RecvError>) {
    match feed {
        Some(f) => (f.watch.rendition(), f.frames.recv().await),
        None => std::future::pending().await,
    }
}

async fn next_packet(
    packets: &mut Option<broadcast::Receiver<Arc<AudioPacket>>>,
) -> Result<Arc<AudioPacket>, RecvError> {
    match packets {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why the writer task stopped, once it has; never while it runs.
async fn writer_failed(writer: &mut Option<ControlSender>) -> String {
    match writer {
        Some(w) => match (&mut w.task).await {
            Ok(Err(e)) => format!("writing to the control stream failed: {e}"),
            // Only after the sender is dropped or the last message, so not while the session runs.
            Ok(Ok(())) => "the control stream's writer stopped".into(),
            Err(e) => format!("the control stream's writer failed: {e}"),
        },
        None => std::future::pending().await,
    }
}

/// What the writer task writes.
enum Outgoing {
    Message(ControlMessage),
    /// The last message: written, the stream finished, and its delivery awaited for at most
    /// [`REFUSAL_WAIT`].
    Last(ControlMessage),
}

/// The control stream's sending half, written by a task of its own.
struct ControlSender {
    queue: mpsc::Sender<Outgoing>,
    task: JoinHandle<Result<(), quinn::WriteError>>,
}

impl ControlSender {
    fn spawn(mut writer: ControlWriter) -> Self {
        let (queue, mut outgoing) = mpsc::channel(CONTROL_BACKLOG);
        let task = tokio::spawn(async move {
            // Ends when the session lets go of its sender, or after the last message.
            while let Some(out) = outgoing.recv().await {
                match out {
                    Outgoing::Message(msg) => writer.send(&msg).await?,
                    Outgoing::Last(msg) => {
                        writer.send_and_finish(&msg, REFUSAL_WAIT).await;
                        break;
                    }
                }
            }
            Ok(())
        });
        Self { queue, task }
    }

    /// Queues a message; false when the viewer has left `CONTROL_BACKLOG` of them unread.
    fn send(&self, msg: ControlMessage) -> bool {
        match self.queue.try_send(Outgoing::Message(msg)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // The writer stopped: `writer_failed` reports why.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Tells the viewer why it is being disconnected, after what is already queued: returns
    /// once the Error is delivered, or after about [`REFUSAL_WAIT`] (twice that if the
    /// queue ahead of it does not drain either).
    async fn refuse(mut self, code: ErrorCode, reason: String) {
        let last = Outgoing::Last(ControlMessage::Error {
            code,
            message: reason,
        });
        if self.queue.try_send(last).is_ok() {
            let _ = tokio::time::timeout(REFUSAL_WAIT * 2, &mut self.task).await;
        }
        self.task.abort();
    }
}

/// Counts a viewer as connected while it lives.
struct ViewerCount(Arc<Controls>);

impl ViewerCount {
    fn new(controls: Arc<Controls>) -> Self {
        controls.viewer_joined();
        Self(controls)
    }
}

impl Drop for ViewerCount {
    fn drop(&mut self) {
        self.0.viewer_left();
    }
}

/// Sends one frame on its own stream and reports its fate: delivered (acknowledged) within
/// the deadline, or missed (the stream is reset). Nothing when the connection is gone.
async fn send_frame(
    conn: quinn::Connection,
    frame: Arc<EncodedFrame>,
    priority: i32,
    deadline: Duration,
    fates: mpsc::UnboundedSender<VideoEvent>,
) {
    let due = Instant::now() + deadline;
    let mut send = match tokio::time::timeout_at(due, conn.open_uni()).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return, // connection gone
        Err(_) => {
            // Could not even open a stream in time (the viewer's stream limit is full).
            let _ = fates.send(VideoEvent::Missed);
            return;
        }
    };
    let _ = send.set_priority(priority);
    let delivered = tokio::time::timeout_at(due, async {
        send.write_all_chunks(&mut [frame.header.clone(), frame.payload.clone()])
            .await
            .ok()?;
        send.finish().ok()?;
        send.stopped().await.ok()
    })
    .await;
    let fate = match delivered {
        Ok(Some(None)) => VideoEvent::Delivered {
            bytes: (frame.header.len() + frame.payload.len()) as u64,
        },
        Ok(_) => return, // stopped by the viewer, or the connection is gone
        Err(_) => {
            let _ = send.reset(RESET_DEADLINE);
            VideoEvent::Missed
        }
    };
    let _ = fates.send(fate);
}
