//! The QUIC driver of a [`Session`]: one task per viewer that turns what happens on the
//! connection and in the hub into the core's events and performs the core's actions. It
//! decides nothing itself.
//!
//! Both bindings of the protocol come through here: a native viewer's QUIC connection
//! (ALPN `streamsocket/1`) and a browser's WebTransport session (HTTP/3), each as a
//! `web_transport_quinn::Session` (the native one "raw": the same calls straight on the
//! connection). Streams, datagrams, resets and close codes mean the same on both.
//!
//! Everything a viewer's session waits for is one `select!` here: the control stream, the
//! broadcaster's pause, the frames of the (at most two) renditions being received, the audio
//! packets, the fate of frames in flight, and the core's next timer. Control messages go out
//! through a writer task, so a viewer that stops reading its control stream holds up nothing
//! but its own replies.

use std::sync::Arc;
use std::time::Duration;

use streamsocket_proto::control::{AccessToken, ControlMessage, Hello};
use streamsocket_proto::{ErrorCode, RenditionId};
use streamsocket_transport::{ControlReader, ControlWriter, ReadError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use tokio_stream::StreamExt as _;
use web_transport_quinn::{RecvStream, SendStream, SessionError};

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
use crate::metrics::{code_name, Stage};
use crate::web::framing::MediaFraming;

/// Stream reset code for a frame that missed its deadline.
pub const RESET_DEADLINE: u32 = 1;

/// How long a refusal waits for the viewer to acknowledge the Error that explains it before
/// the connection is closed anyway (a viewer that never acknowledges holds its own session
/// this long, nobody else's).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Control messages waiting to be written. A viewer gets one reply per request and requests
/// are rate-limited, so only a viewer that reads none of its replies fills this.
const CONTROL_BACKLOG: usize = 256;

/// Which binding of the protocol a viewer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerKind {
    /// QUIC with ALPN `streamsocket/1` (`streamsocket-client`).
    Native,
    /// WebTransport over HTTP/3 (the browser page).
    Web,
}

impl ViewerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewerKind::Native => "native",
            ViewerKind::Web => "web",
        }
    }
}

/// A viewer's connection, ready for its control stream.
pub struct Connection {
    pub link: web_transport_quinn::Session,
    pub kind: ViewerKind,
    /// A token given in the WebTransport URL (`?token=`), used when the hello has none.
    pub url_token: Option<AccessToken>,
}

impl Connection {
    /// A native viewer's QUIC connection.
    pub fn native(conn: quinn::Connection) -> Self {
        Self {
            link: web_transport_quinn::Session::raw(conn),
            kind: ViewerKind::Native,
            url_token: None,
        }
    }
}

/// Closes a viewer's connection with a protocol error code and a reason it can show: a
/// QUIC CONNECTION_CLOSE for a native viewer, a WebTransport close (the browser's
/// `closed` gives `closeCode` and `reason`) for a web one.
pub fn close(link: &web_transport_quinn::Session, code: ErrorCode, reason: &str) {
    link.close(u32::from(code.to_u16()), reason.as_bytes());
}

/// Serves one viewer until it leaves or misbehaves.
pub async fn serve(
    connection: Connection,
    hub: Arc<Hub>,
    admission: Arc<Admission>,
    clock: MediaClock,
    session_id: u64,
    strategy: JoinStrategy,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let offer = Arc::new(Offer::of(&hub));
    let session = Session::new(
        session_id,
        offer,
        clock,
        strategy,
        Instant::now().into_std(),
    );
    let Connection {
        link: conn,
        kind,
        url_token,
    } = connection;
    let mut driver = Driver {
        conn: conn.clone(),
        kind,
        url_token,
        hub: hub.clone(),
        admission: &admission,
        session,
        session_id,
        messages: None,
        writer: None,
        admitted: None,
        feeds: [None, None],
        audio: None,
        fates: mpsc::unbounded_channel(),
        asker: KeyframeAsker::default(),
        warned_datagrams: false,
        framing: match kind {
            ViewerKind::Native => MediaFraming::native(),
            ViewerKind::Web => MediaFraming::web(),
        },
    };
    let ending = driver.run(stopping).await;
    // Fates that came in after the loop's last look still count.
    while let Ok(fate) = driver.fates.1.try_recv() {
        driver.count_fate(&fate);
    }
    let admitted = driver.admitted.is_some();
    let (video, audio) = driver.session.counters();
    let writer = driver.writer.take();
    // Media stops before the goodbye is said; the viewer is no longer counted.
    drop(driver);
    hub.audio_loss().remove(session_id);
    let remote = conn.remote_address();
    let metrics = hub.metrics();
    match &ending {
        Ending::Left if admitted => metrics.ended("left"),
        Ending::Refuse { code, .. } if !admitted => {
            metrics.refused(Stage::Session, code_name(*code))
        }
        Ending::Refuse { code, .. } | Ending::Close { code, .. } if admitted => {
            metrics.ended(code_name(*code))
        }
        Ending::Close { code, .. } => metrics.refused(Stage::Session, code_name(*code)),
        // Gone before its hello.
        Ending::Left | Ending::Refuse { .. } => {}
    }
    match ending {
        Ending::Left => {
            drop(writer);
            tracing::info!(session_id, %remote, kind = kind.as_str(), "viewer left");
        }
        Ending::Refuse { code, reason } => {
            tracing::warn!(session_id, %remote, code = code.to_u16(), "closing session: {reason}");
            if let Some(w) = writer {
                w.refuse(code, reason.clone()).await;
                if kind == ViewerKind::Web {
                    // A browser drops what it has received but not yet handed to the page
                    // when the connection closes under it, the Error and the close capsule
                    // included. The page closes the session itself once it has read the
                    // Error; the server closes only if it has not within the wait.
                    let _ = tokio::time::timeout(REFUSAL_WAIT, conn.closed()).await;
                }
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
///
/// The frames come through a `BroadcastStream`, which keeps its place in the hub's queue
/// between polls: the session's loop wakes for many reasons, and a plain `recv()` made anew
/// at each wake-up would register and unregister with the queue shared by every viewer.
struct Feed {
    watch: Watch,
    frames: BroadcastStream<Arc<EncodedFrame>>,
}

struct Driver<'a> {
    conn: web_transport_quinn::Session,
    kind: ViewerKind,
    url_token: Option<AccessToken>,
    hub: Arc<Hub>,
    admission: &'a Admission,
    session: Session,
    session_id: u64,
    /// Messages read from the control stream by its reader task.
    messages: Option<ControlReceiver>,
    writer: Option<ControlSender>,
    /// Held while the viewer is admitted (the viewer limit and withdrawn tokens count it).
    admitted: Option<(Admitted<'a>, ViewerCount)>,
    /// The renditions being received: the one shown and the one being switched to.
    feeds: [Option<Feed>; 2],
    audio: Option<BroadcastStream<Arc<AudioPacket>>>,
    /// What became of frames in flight, from their send tasks.
    fates: (
        mpsc::UnboundedSender<VideoEvent>,
        mpsc::UnboundedReceiver<VideoEvent>,
    ),
    asker: KeyframeAsker,
    warned_datagrams: bool,
    /// How this viewer's binding frames media on its QUIC connection.
    framing: MediaFraming,
}

impl Driver<'_> {
    async fn run(&mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Ending {
        // Through a stream, which keeps its place between wake-ups (the receiver is shared
        // by every session).
        let mut stopping = Some(WatchStream::new(stopping));
        // Changes from now on; the state itself is read as the viewer is admitted (a change
        // in between comes again through here, and telling the session twice is harmless).
        let mut paused = Some(WatchStream::from_changes(
            self.hub.controls().watch_paused(),
        ));
        // The viewer's streams come from a task of their own: an accept made anew at every
        // wake-up of this loop would register and unregister with the connection each time.
        let mut streams = Some(spawn_stream_watch(self.conn.clone()));
        loop {
            // What became of frames in flight is taken in passing, not waited for: it only
            // matters to the next frame (a miss means a keyframe first), and a wake-up per
            // frame per viewer is a cost that grows with the audience.
            while let Ok(fate) = self.fates.1.try_recv() {
                self.count_fate(&fate);
                self.session.video(fate, now());
            }
            if let Some(ending) = self.perform_actions() {
                return ending;
            }
            let timeout = self.session.poll_timeout().map(Instant::from_std);
            let [first, second] = &mut self.feeds;
            tokio::select! {
                opened = next_stream(&mut streams) => match opened {
                    Some(Opened::Control(send, recv)) => {
                        self.messages = Some(spawn_reader(ControlReader::new(recv)));
                        self.writer = Some(ControlSender::spawn(ControlWriter::new(send)));
                        self.session.control_stream_opened(now());
                    }
                    Some(Opened::Unexpected(what)) => self.session.stream_opened(what),
                    Some(Opened::Gone(e)) => {
                        streams = None;
                        if self.messages.is_none() {
                            tracing::debug!(session_id = self.session_id, "connection ended before the control stream: {e}");
                            self.session.control_ended();
                        }
                    }
                    // The watch ended after saying why; nothing more comes.
                    None => streams = None,
                },
                next = next_message(&mut self.messages) => match next {
                    Ok(Some(msg)) => self.session.message(msg, now()),
                    Ok(None) => self.session.control_ended(),
                    // The viewer went away (closed the connection or reset the stream).
                    Err(ReadError::Stream(_) | ReadError::WebTransport(_)) => self.session.control_ended(),
                    Err(e) => self.session.control_failed(e.close_code(), read_error_text(&e)),
                },
                stop = changed(&mut stopping) => match stop {
                    Some(true) => self.session.server_stopping(),
                    Some(false) => {}
                    None => stopping = None,
                },
                changed = changed(&mut paused) => match changed {
                    Some(p) => self.session.set_broadcast_paused(p, now()),
                    // The broadcaster's controls are gone (the server is stopping).
                    None => paused = None,
                },
                (rendition, frame) = next_frame(first) => self.frame(rendition, frame),
                (rendition, frame) = next_frame(second) => self.frame(rendition, frame),
                packet = next_packet(&mut self.audio) => self.audio_packet(packet),
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

    /// Counts a frame's fate for `/metrics` (a relaxed add, no lock).
    fn count_fate(&self, fate: &VideoEvent) {
        let m = self.hub.metrics();
        match fate {
            VideoEvent::Delivered { bytes } => {
                m.frames_sent.inc();
                m.frame_bytes_sent.inc_by(*bytes);
            }
            VideoEvent::Missed => {
                m.frames_reset.inc();
            }
            _ => {}
        }
    }

    /// Performs the session's actions until it has none; the ending, once there is one.
    fn perform_actions(&mut self) -> Option<Ending> {
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
                    let paused = self.hub.controls().paused();
                    self.session.set_broadcast_paused(paused, now());
                    self.admit(&hello);
                }
                Action::Video(v) => self.video(v),
                Action::Audio(AudioAction::Listen(bps)) => {
                    self.audio = self
                        .hub
                        .audio_channel(bps)
                        .map(|a| BroadcastStream::new(a.packets.subscribe()));
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

    fn admit(&mut self, hello: &Hello) {
        let session_id = self.session_id;
        let remote = self.conn.remote_address();
        let withdrawn = self.conn.clone();
        let withdraw = move || {
            tracing::info!(session_id, remote = %withdrawn.remote_address(), "ending the session of a viewer whose token or certificate was withdrawn");
            close(&withdrawn, ErrorCode::AccessRevoked, "access withdrawn");
        };
        let certificate = crate::access::certificates::viewer_certificate(&self.conn);
        let serial = certificate.as_ref().map(|c| c.serial.clone());
        // The hello's token, else one from the WebTransport URL.
        let token = match (hello.token.expose(), &self.url_token) {
            ("", Some(url)) => url.expose(),
            (hello, _) => hello,
        };
        match self.admission.admit(token, serial, withdraw) {
            Ok(admitted) => {
                tracing::info!(
                    session_id,
                    %remote,
                    kind = self.kind.as_str(),
                    client = %hello.client_name,
                    token = %admitted.name.as_deref().unwrap_or("-"),
                    viewer_cert = %certificate.as_ref().map_or("-", |c| c.common_name.as_str()),
                    latency_target_ms = hello.latency_target_ms,
                    "viewer joined"
                );
                let metrics = self.hub.metrics();
                metrics.admitted(self.kind);
                let counted =
                    ViewerCount::new(self.hub.controls().clone(), metrics.viewers(self.kind));
                self.admitted = Some((admitted, counted));
                self.session.admitted(now());
            }
            Err((code, message)) => {
                if code == ErrorCode::TokenInvalid {
                    self.hub.metrics().tokens_rejected.inc();
                }
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
                        self.feeds[slot] = Some(Feed {
                            watch,
                            frames: BroadcastStream::new(frames),
                        });
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
                    quinn::Connection::clone(&self.conn),
                    self.framing.clone(),
                    frame,
                    priority,
                    deadline,
                    self.fates.0.clone(),
                ));
            }
            VideoAction::AskKeyframe(id) => self.request_keyframe(id),
            VideoAction::RepairKeyframe(id) => {
                if let Some(r) = self.hub.rendition(id) {
                    let acks = quinn::Connection::stats(&self.conn).frame_rx.acks;
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

    fn frame(&mut self, rendition: RenditionId, frame: Received<Arc<EncodedFrame>>) {
        let event = match frame {
            Received::Item(f) => VideoEvent::Frame(f),
            Received::Lagged(frames) => {
                self.hub.metrics().frames_lagged.inc_by(frames);
                VideoEvent::Lagged { rendition, frames }
            }
            Received::Closed => {
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

    fn audio_packet(&mut self, packet: Received<Arc<AudioPacket>>) {
        let packet = match packet {
            Received::Item(p) => p,
            Received::Lagged(n) => {
                self.hub.metrics().audio_dropped.inc_by(n);
                return self.session.audio_lagged(n);
            }
            Received::Closed => {
                self.audio = None;
                return;
            }
        };
        let max = quinn::Connection::max_datagram_size(&self.conn)
            .map(|m| m.saturating_sub(self.framing.datagram_overhead()))
            .filter(|&m| m > 0);
        match self.session.audio_packet(packet.datagram.len(), max) {
            Verdict::Withhold => {}
            Verdict::TooBig { first } => {
                self.hub.metrics().audio_dropped.inc();
                if first {
                    tracing::warn!(
                        session_id = self.session_id,
                        "audio packet of {} bytes does not fit a datagram (max {max:?}); dropping",
                        packet.datagram.len()
                    );
                }
            }
            Verdict::Send => match quinn::Connection::send_datagram(
                &self.conn,
                self.framing.datagram(&packet.datagram, &packet.framed),
            ) {
                Ok(()) => {
                    self.hub.metrics().audio_sent.inc();
                    self.session.audio_sent(true)
                }
                // The connection is gone: the control stream says so next.
                Err(quinn::SendDatagramError::ConnectionLost(_)) => self.audio = None,
                Err(e) => {
                    if !std::mem::replace(&mut self.warned_datagrams, true) {
                        tracing::warn!(
                            session_id = self.session_id,
                            "cannot send audio datagrams: {e}"
                        );
                    }
                    self.hub.metrics().audio_dropped.inc();
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

/// What the reader task got from the control stream.
type Read = Result<Option<ControlMessage>, ReadError>;

/// Reads the control stream on a task of its own, so that the session's loop waits on a
/// channel rather than on the connection. Bounded: a viewer flooding messages is read no
/// faster than the session takes them (QUIC flow control holds it back).
struct ControlReceiver {
    messages: mpsc::Receiver<Read>,
    task: JoinHandle<()>,
}

impl Drop for ControlReceiver {
    fn drop(&mut self) {
        // The stream holds the connection open: it goes with the session.
        self.task.abort();
    }
}

fn spawn_reader(mut reader: ControlReader<RecvStream>) -> ControlReceiver {
    let (tx, messages) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        loop {
            let read = reader.next().await;
            let last = !matches!(read, Ok(Some(_)));
            if tx.send(read).await.is_err() || last {
                return;
            }
        }
    });
    ControlReceiver { messages, task }
}

/// The next control message, or never before the control stream is open.
async fn next_message(receiver: &mut Option<ControlReceiver>) -> Read {
    match receiver {
        Some(r) => match r.messages.recv().await {
            Some(read) => read,
            // The reader ended after its last result, which the session has taken.
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// A stream the viewer opened, or why no more will come.
enum Opened {
    /// The first bidirectional stream: the control stream.
    Control(SendStream, RecvStream),
    /// Any other (a unidirectional stream, a second bidirectional one).
    Unexpected(&'static str),
    /// The connection is gone.
    Gone(SessionError),
}

/// Watches for the streams a viewer opens, on a task of its own (aborted when dropped).
struct StreamWatch {
    opened: mpsc::Receiver<Opened>,
    task: JoinHandle<()>,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spawn_stream_watch(link: web_transport_quinn::Session) -> StreamWatch {
    let (tx, opened) = mpsc::channel(2);
    let task = tokio::spawn(async move {
        let first = match link.accept_bi().await {
            Ok((send, recv)) => Opened::Control(send, recv),
            Err(e) => Opened::Gone(e),
        };
        let gone = matches!(first, Opened::Gone(_));
        if tx.send(first).await.is_err() || gone {
            return;
        }
        let next = tokio::select! {
            bi = link.accept_bi() => bi.map(|_| Opened::Unexpected("a second bidirectional stream")),
            uni = link.accept_uni() => uni.map(|_| Opened::Unexpected("a unidirectional stream")),
        };
        let _ = tx.send(next.unwrap_or_else(Opened::Gone)).await;
    });
    StreamWatch { opened, task }
}

async fn next_stream(watch: &mut Option<StreamWatch>) -> Option<Opened> {
    match watch {
        Some(w) => w.opened.recv().await,
        None => std::future::pending().await,
    }
}

/// The broadcaster's pause when it changes; `None` once its sender is gone.
async fn changed(paused: &mut Option<WatchStream<bool>>) -> Option<bool> {
    match paused {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}

/// What a hub queue gave: an item, or how many the session fell behind by, or its end.
enum Received<T> {
    Item(T),
    Lagged(u64),
    Closed,
}

async fn next_of<T: Clone + Send + 'static>(stream: &mut BroadcastStream<T>) -> Received<T> {
    match stream.next().await {
        Some(Ok(item)) => Received::Item(item),
        Some(Err(BroadcastStreamRecvError::Lagged(n))) => Received::Lagged(n),
        None => Received::Closed,
    }
}

/// The next frame of a feed, or never without one.
async fn next_frame(feed: &mut Option<Feed>) -> (RenditionId, Received<Arc<EncodedFrame>>) {
    match feed {
        Some(f) => (f.watch.rendition(), next_of(&mut f.frames).await),
        None => std::future::pending().await,
    }
}

async fn next_packet(
    packets: &mut Option<BroadcastStream<Arc<AudioPacket>>>,
) -> Received<Arc<AudioPacket>> {
    match packets {
        Some(p) => next_of(p).await,
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
    task: JoinHandle<Result<(), web_transport_quinn::WriteError>>,
}

impl ControlSender {
    fn spawn(mut writer: ControlWriter<SendStream>) -> Self {
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

/// Counts a viewer as connected while it lives: in the broadcaster's status and in the
/// `/metrics` gauge of its kind.
struct ViewerCount {
    controls: Arc<Controls>,
    _connected: crate::metrics::Held,
}

impl ViewerCount {
    fn new(controls: Arc<Controls>, by_kind: &prometheus_client::metrics::gauge::Gauge) -> Self {
        controls.viewer_joined();
        Self {
            controls,
            _connected: crate::metrics::Held::new(by_kind),
        }
    }
}

impl Drop for ViewerCount {
    fn drop(&mut self) {
        self.controls.viewer_left();
    }
}

/// Sends one frame on its own stream and reports its fate: delivered (acknowledged) within
/// the deadline, or missed (the stream is reset). Nothing when the connection is gone.
///
/// The stream is opened on the QUIC connection and framed here ([`MediaFraming`]), so the
/// binding's stream header, the frame header and the payload go out in one write.
async fn send_frame(
    conn: quinn::Connection,
    framing: MediaFraming,
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
        send.write_all_chunks(&mut [
            framing.stream_prefix().clone(),
            frame.header.clone(),
            frame.payload.clone(),
        ])
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
            let _ = send.reset(framing.reset_code(RESET_DEADLINE));
            VideoEvent::Missed
        }
    };
    let _ = fates.send(fate);
}
