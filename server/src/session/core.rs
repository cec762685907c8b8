//! The session core: one viewer's conversation with the server, without I/O. It takes what
//! happens (the control stream opened, a message arrived, access was granted, the broadcaster
//! paused, a frame came from the hub, a timer fired) and queues what to do (send a control
//! message, admit, forward media, end). It owns the viewer's [`VideoForwarder`] and
//! [`AudioForwarder`]. Every decision about a viewer is made here, so every transport (the
//! QUIC driver in `super::quic`, and the next one) behaves the same and the rules are tested
//! without a network, on injected time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamsocket_proto::control::{
    AudioFormat, ControlMessage, Hello, Pong, Rendition, VideoFormat, Welcome, WishedRendition,
    VIDEO_CODEC_AV1,
};
use streamsocket_proto::{ErrorCode, RenditionId, PROTOCOL_VERSION};

use super::audio::{AudioAction, AudioCounters, AudioForwarder, Verdict};
use super::video::{VideoAction, VideoCounters, VideoEvent, VideoForwarder};
use super::JoinStrategy;
use crate::capture::clock::MediaClock;
use crate::fanout::hub::Hub;

/// How long a new connection has to open its control stream, and then to say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Latency target used when the viewer gives none.
pub const DEFAULT_LATENCY_TARGET_MS: u16 = 300;
/// Frame deadlines are clamped to this range whatever the viewer asks.
const MIN_DEADLINE: Duration = Duration::from_millis(50);
const MAX_DEADLINE: Duration = Duration::from_secs(5);
/// A viewer that sends more than `CONTROL_RATE` control messages a second (after a burst of
/// `CONTROL_BURST`) is disconnected with `RateLimited`, so a flood costs the server little
/// and nobody else anything.
pub const CONTROL_RATE: f64 = 100.0;
pub const CONTROL_BURST: f64 = 200.0;

/// What the server offers a viewer: the ladder and the audio bitrates.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Highest first.
    pub renditions: Vec<Rendition>,
    /// The audio format at the default bitrate.
    pub audio: AudioFormat,
    /// Lowest first.
    pub audio_bitrates: Vec<u32>,
}

impl Offer {
    pub fn of(hub: &Hub) -> Self {
        let audio_bitrates = hub.audio_bitrates();
        let wanted = crate::encode::ladder::DEFAULT_AUDIO_KBPS * 1000;
        // The default when offered, else the middle one.
        let bitrate = if audio_bitrates.contains(&wanted) {
            wanted
        } else {
            audio_bitrates[audio_bitrates.len() / 2]
        };
        Self {
            renditions: hub.ladder(),
            audio: hub.audio_format(bitrate),
            audio_bitrates,
        }
    }

    /// The one place the server decides which rendition a wish means: a rendition on offer
    /// is itself, `Auto` is the top rung (the viewer steps down when it cannot keep up).
    /// `None` for a rendition not on offer. The flag says whether the choice was automatic.
    pub fn rendition_for(&self, wish: WishedRendition) -> Option<(RenditionId, bool)> {
        match wish {
            WishedRendition::Auto => Some((self.renditions[0].id, true)),
            WishedRendition::Fixed(id) => self
                .renditions
                .iter()
                .any(|r| r.id == id)
                .then_some((id, false)),
        }
    }
}

/// How a session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The viewer left (said goodbye, finished its control stream, or went away).
    Left,
    /// Tell the viewer why with an `Error` on the control stream, then close with `code`.
    Refuse { code: ErrorCode, reason: String },
    /// Close with `code` at once: there is no control stream to explain on.
    Close { code: ErrorCode, reason: String },
}

/// What the driver must do.
#[derive(Debug)]
pub enum Action {
    /// Send a message on the control stream.
    Send(ControlMessage),
    /// Check the hello's token (and the viewer's certificate, and the viewer limit); answer
    /// with [`Session::admitted`] or [`Session::refused`].
    Admit(Box<Hello>),
    Video(VideoAction),
    Audio(AudioAction),
    /// The viewer asked for a keyframe of this rendition.
    KeyframeRequest(RenditionId),
    /// The viewer's audio loss, per mille, for the Opus encoders' FEC.
    ReportAudioLoss(u16),
    /// The session is over: nothing else follows.
    End(Ending),
}

#[derive(Debug)]
enum Phase {
    AwaitingControlStream { until: Instant },
    AwaitingHello { until: Instant },
    Admitting(Box<Hello>),
    Running,
    Ended,
}

/// A token bucket on a viewer's control messages.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(now: Instant) -> Self {
        Self {
            tokens: CONTROL_BURST,
            last: now,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * CONTROL_RATE;
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

/// One viewer's session, from the connection to its end.
#[derive(Debug)]
pub struct Session {
    id: u64,
    offer: Arc<Offer>,
    clock: MediaClock,
    strategy: JoinStrategy,
    phase: Phase,
    limit: RateLimit,
    broadcast_paused: bool,
    video: Option<VideoForwarder>,
    audio: Option<AudioForwarder>,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session for a connection established at `now`; it waits for the control stream.
    pub fn new(
        id: u64,
        offer: Arc<Offer>,
        clock: MediaClock,
        strategy: JoinStrategy,
        now: Instant,
    ) -> Self {
        Self {
            id,
            offer,
            clock,
            strategy,
            phase: Phase::AwaitingControlStream {
                until: now + HELLO_TIMEOUT,
            },
            limit: RateLimit::new(now),
            broadcast_paused: false,
            video: None,
            audio: None,
            actions: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        if self.is_ended() {
            return None;
        }
        if let Some(a) = self.video.as_mut().and_then(|v| v.poll_action()) {
            return Some(Action::Video(a));
        }
        self.audio
            .as_mut()
            .and_then(|a| a.poll_action())
            .map(Action::Audio)
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingControlStream { until } | Phase::AwaitingHello { until } => Some(until),
            Phase::Running => self.video.as_ref().and_then(|v| v.poll_timeout()),
            Phase::Admitting(_) | Phase::Ended => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitingControlStream { until } if now >= until => {
                self.end(Ending::Close {
                    code: ErrorCode::Timeout,
                    reason: format!("no control stream within {} s", HELLO_TIMEOUT.as_secs()),
                });
            }
            Phase::AwaitingHello { until } if now >= until => {
                self.refuse(
                    ErrorCode::Timeout,
                    format!("no hello within {} s", HELLO_TIMEOUT.as_secs()),
                );
            }
            Phase::Running => {
                if let Some(v) = self.video.as_mut() {
                    v.handle_timeout(now);
                }
            }
            _ => {}
        }
    }

    /// Whether the session is over (its [`Action::End`] has been queued).
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// Whether the viewer has been welcomed (and counts as watching).
    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    pub fn counters(&self) -> (VideoCounters, AudioCounters) {
        (
            self.video
                .as_ref()
                .map(|v| v.counters())
                .unwrap_or_default(),
            self.audio
                .as_ref()
                .map(|a| a.counters())
                .unwrap_or_default(),
        )
    }

    /// The viewer opened its control stream; the hello must follow in time.
    pub fn control_stream_opened(&mut self, now: Instant) {
        if let Phase::AwaitingControlStream { .. } = self.phase {
            self.phase = Phase::AwaitingHello {
                until: now + HELLO_TIMEOUT,
            };
        }
    }

    /// The viewer finished its control stream cleanly, or went away.
    pub fn control_ended(&mut self) {
        self.end(Ending::Left);
    }

    /// The control stream carried something that is not a message (`code` says what).
    pub fn control_failed(&mut self, code: ErrorCode, reason: String) {
        self.refuse(code, reason);
    }

    /// The server is stopping: the session ends with `ServerShuttingDown`, which the driver
    /// says in the close (a browser reads it from its session's close, as a native viewer
    /// reads it from the connection's).
    pub fn server_stopping(&mut self) {
        self.end(Ending::Close {
            code: ErrorCode::ServerShuttingDown,
            reason: "server shutting down".into(),
        });
    }

    /// The viewer opened a stream the protocol gives it no use for: a unidirectional stream,
    /// or a bidirectional one besides the control stream (`what` says which).
    ///
    /// Flow control allows a few (a browser's HTTP/3 needs three unidirectional streams on
    /// the same endpoint, and a browser refuses a server that grants fewer), so the rule is
    /// kept here instead.
    pub fn stream_opened(&mut self, what: &str) {
        self.refuse(
            ErrorCode::UnexpectedMessage,
            format!("the viewer opened {what}; the protocol has no use for it"),
        );
    }

    /// The broadcaster paused or resumed the stream (also to be called with the state before
    /// the viewer is admitted).
    pub fn set_broadcast_paused(&mut self, paused: bool, now: Instant) {
        if paused == self.broadcast_paused || self.is_ended() {
            return;
        }
        self.broadcast_paused = paused;
        if let Phase::Running = self.phase {
            self.actions
                .push_back(Action::Send(ControlMessage::BroadcastPaused { paused }));
        }
        if let Some(v) = self.video.as_mut() {
            v.handle(VideoEvent::BroadcastPaused(paused), now);
        }
        if let Some(a) = self.audio.as_mut() {
            a.set_broadcast_paused(paused);
        }
    }

    pub fn message(&mut self, msg: ControlMessage, now: Instant) {
        match self.phase {
            Phase::AwaitingControlStream { .. } | Phase::AwaitingHello { .. } => match msg {
                ControlMessage::Hello(hello) => {
                    let hello = Box::new(hello);
                    self.actions.push_back(Action::Admit(hello.clone()));
                    self.phase = Phase::Admitting(hello);
                }
                other => self.refuse(
                    ErrorCode::UnexpectedMessage,
                    format!("expected hello, got {}", other.name()),
                ),
            },
            // Nothing is read while access is being checked.
            Phase::Admitting(_) | Phase::Ended => {}
            Phase::Running => {
                if !self.limit.allow(now) {
                    return self.refuse(
                        ErrorCode::RateLimited,
                        format!("more than {CONTROL_RATE} control messages a second"),
                    );
                }
                self.running_message(msg, now);
            }
        }
    }

    fn running_message(&mut self, msg: ControlMessage, now: Instant) {
        match msg {
            ControlMessage::Ping(p) => {
                let at = self.clock.us_at(now);
                self.send(ControlMessage::Pong(Pong {
                    seq: p.seq,
                    client_time_us: p.client_time_us,
                    server_receive_us: at,
                    server_send_us: at,
                }));
            }
            ControlMessage::KeyframeRequest { rendition } => {
                match self.offer.rendition_for(WishedRendition::Fixed(rendition)) {
                    Some(_) => self.actions.push_back(Action::KeyframeRequest(rendition)),
                    None => self.send(ControlMessage::Error {
                        code: ErrorCode::UnknownRendition,
                        message: format!("no rendition {rendition}"),
                    }),
                }
            }
            ControlMessage::SelectRendition { rendition } => {
                match self.offer.rendition_for(rendition) {
                    Some((id, automatic)) => {
                        if let Some(v) = self.video.as_mut() {
                            v.handle(VideoEvent::Select(id), now);
                        }
                        self.send(ControlMessage::RenditionChanged {
                            rendition: id,
                            automatic,
                        });
                    }
                    None => {
                        let on_offer = self.offer.renditions.len();
                        let asked = match rendition {
                            WishedRendition::Fixed(id) => id.to_string(),
                            WishedRendition::Auto => "auto".into(),
                        };
                        self.send(ControlMessage::Error {
                            code: ErrorCode::UnknownRendition,
                            message: format!("no rendition {asked}; {on_offer} on offer"),
                        })
                    }
                }
            }
            ControlMessage::SetPaused { paused } => {
                if let Some(v) = self.video.as_mut() {
                    v.handle(VideoEvent::ViewerPaused(paused), now);
                }
                if let Some(a) = self.audio.as_mut() {
                    a.set_viewer_paused(paused);
                }
            }
            ControlMessage::SetAudioBitrate { bitrate_bps } => {
                if self.offer.audio_bitrates.contains(&bitrate_bps) {
                    if let Some(a) = self.audio.as_mut() {
                        a.set_bitrate(bitrate_bps);
                    }
                    self.send(ControlMessage::AudioBitrateChanged { bitrate_bps });
                } else {
                    self.send(ControlMessage::Error {
                        code: ErrorCode::UnknownRendition,
                        message: format!(
                            "no audio bitrate {bitrate_bps}; on offer: {:?}",
                            self.offer.audio_bitrates
                        ),
                    });
                }
            }
            ControlMessage::ReceiverReport {
                audio_loss_permille,
            } => self
                .actions
                .push_back(Action::ReportAudioLoss(audio_loss_permille)),
            ControlMessage::Goodbye { .. } => self.end(Ending::Left),
            other => self.refuse(
                ErrorCode::UnexpectedMessage,
                format!("a viewer may not send {}", other.name()),
            ),
        }
    }

    /// Access control let the viewer in: welcome it and start its media.
    pub fn admitted(&mut self, now: Instant) {
        let Phase::Admitting(hello) = std::mem::replace(&mut self.phase, Phase::Running) else {
            return;
        };
        let rendition = match self.offer.rendition_for(hello.rendition) {
            Some((id, _)) => id,
            None => {
                // A rendition not on offer: the first rung, and a word about it.
                let first = self.offer.renditions[0].id;
                if let WishedRendition::Fixed(id) = hello.rendition {
                    self.send(ControlMessage::Error {
                        code: ErrorCode::UnknownRendition,
                        message: format!("no rendition {id}; sending rendition {first}"),
                    });
                }
                first
            }
        };
        self.send(ControlMessage::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session_id: self.id,
            server_time_us: self.clock.us_at(now),
            video: VideoFormat {
                codec: VIDEO_CODEC_AV1,
                renditions: self.offer.renditions.clone(),
            },
            rendition,
            audio: self.offer.audio,
            audio_bitrates: self.offer.audio_bitrates.clone(),
        }));
        if self.broadcast_paused {
            self.send(ControlMessage::BroadcastPaused { paused: true });
        }
        self.video = Some(VideoForwarder::new(
            rendition,
            frame_deadline(hello.latency_target_ms),
            self.strategy,
            self.broadcast_paused,
            now,
        ));
        self.audio = Some(AudioForwarder::new(
            self.offer.audio.bitrate_bps,
            self.broadcast_paused,
        ));
    }

    /// Access control turned the viewer away.
    pub fn refused(&mut self, code: ErrorCode, reason: String) {
        if let Phase::Admitting(_) = self.phase {
            self.refuse(code, reason);
        }
    }

    /// Something happened to the viewer's video (see [`VideoEvent`]).
    pub fn video(&mut self, event: VideoEvent, now: Instant) {
        if self.is_ended() {
            return;
        }
        if let Some(v) = self.video.as_mut() {
            v.handle(event, now);
        }
    }

    /// Whether an audio packet of `len` bytes goes out (see [`AudioForwarder::packet`]).
    pub fn audio_packet(&mut self, len: usize, max_datagram: Option<usize>) -> Verdict {
        match self.audio.as_mut() {
            Some(a) => a.packet(len, max_datagram),
            None => Verdict::Withhold,
        }
    }

    /// The session fell behind the audio encoder by `packets`.
    pub fn audio_lagged(&mut self, packets: u64) {
        if let Some(a) = self.audio.as_mut() {
            a.lagged(packets);
        }
    }

    /// What became of an audio packet the driver sent.
    pub fn audio_sent(&mut self, queued: bool) {
        if let Some(a) = self.audio.as_mut() {
            a.sent(queued);
        }
    }

    fn send(&mut self, msg: ControlMessage) {
        self.actions.push_back(Action::Send(msg));
    }

    fn refuse(&mut self, code: ErrorCode, reason: String) {
        self.end(Ending::Refuse { code, reason });
    }

    fn end(&mut self, ending: Ending) {
        if self.is_ended() {
            return;
        }
        self.phase = Phase::Ended;
        // Media stops with the session: what the forwarders still had to do is moot (their
        // counters stay, for the log).
        while self.video.as_mut().and_then(|v| v.poll_action()).is_some() {}
        while self.audio.as_mut().and_then(|a| a.poll_action()).is_some() {}
        self.actions.retain(|a| matches!(a, Action::Send(_)));
        self.actions.push_back(Action::End(ending));
    }
}

/// How long a frame may take to be delivered, from the viewer's latency target.
fn frame_deadline(latency_target_ms: u16) -> Duration {
    let target_ms = match latency_target_ms {
        0 => DEFAULT_LATENCY_TARGET_MS,
        ms => ms,
    };
    Duration::from_millis(target_ms as u64).clamp(MIN_DEADLINE, MAX_DEADLINE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamsocket_proto::control::Ping;

    fn offer() -> Arc<Offer> {
        let rung = |id: u8, width: u16| Rendition {
            id,
            width,
            height: width * 9 / 16,
            fps: 30,
            bitrate_kbps: 100,
            name: format!("{}p", width * 9 / 16),
        };
        Arc::new(Offer {
            renditions: vec![rung(0, 640), rung(1, 320), rung(2, 160)],
            audio: AudioFormat {
                codec: streamsocket_proto::control::AUDIO_CODEC_OPUS,
                sample_rate: 48_000,
                channels: 1,
                frame_duration_us: 10_000,
                bitrate_bps: 32_000,
            },
            audio_bitrates: vec![16_000, 32_000, 64_000],
        })
    }

    fn hello(rendition: WishedRendition) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            rendition,
            latency_target_ms: 200,
            client_name: "test".into(),
            token: Default::default(),
        }
    }

    fn actions(s: &mut Session) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn sent(actions: &[Action]) -> Vec<&ControlMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn ending(actions: &[Action]) -> Option<&Ending> {
        actions.iter().find_map(|a| match a {
            Action::End(e) => Some(e),
            _ => None,
        })
    }

    /// A session that has been welcomed on `wish`, its start-up actions drained.
    fn running(wish: WishedRendition, t0: Instant) -> (Session, Vec<Action>) {
        let mut s = Session::new(7, offer(), MediaClock::start(), JoinStrategy::Hybrid, t0);
        s.control_stream_opened(t0);
        s.message(ControlMessage::Hello(hello(wish)), t0);
        assert!(matches!(actions(&mut s)[..], [Action::Admit(_)]));
        s.admitted(t0);
        let a = actions(&mut s);
        (s, a)
    }

    #[test]
    fn a_hello_is_admitted_then_welcomed_and_its_rendition_watched() {
        let t0 = Instant::now();
        let (s, a) = running(WishedRendition::Fixed(1), t0);
        assert!(s.is_running());
        match sent(&a)[..] {
            [ControlMessage::Welcome(w)] => {
                assert_eq!(
                    (w.session_id, w.rendition, w.version),
                    (7, 1, PROTOCOL_VERSION)
                );
                assert_eq!(w.video.renditions.len(), 3);
                assert_eq!(w.audio.bitrate_bps, 32_000);
                assert_eq!(w.audio_bitrates, [16_000, 32_000, 64_000]);
            }
            ref other => panic!("{other:?}"),
        }
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Video(VideoAction::Watch(1)))));
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Audio(AudioAction::Listen(32_000)))));
    }

    #[test]
    fn an_unknown_rendition_in_the_hello_gets_the_first_rung_and_a_word() {
        let (_, a) = running(WishedRendition::Fixed(9), Instant::now());
        match sent(&a)[..] {
            [ControlMessage::Error { code, message }, ControlMessage::Welcome(w)] => {
                assert_eq!(*code, ErrorCode::UnknownRendition);
                assert!(message.contains("no rendition 9"), "{message}");
                assert_eq!(w.rendition, 0);
            }
            ref other => panic!("{other:?}"),
        }
        let (_, a) = running(WishedRendition::Auto, Instant::now());
        assert!(matches!(
            sent(&a)[..],
            [ControlMessage::Welcome(Welcome { rendition: 0, .. })]
        ));
    }

    #[test]
    fn a_viewer_turned_away_hears_why_before_the_close() {
        let t0 = Instant::now();
        let mut s = Session::new(1, offer(), MediaClock::start(), JoinStrategy::Hybrid, t0);
        s.control_stream_opened(t0);
        s.message(ControlMessage::Hello(hello(WishedRendition::Auto)), t0);
        actions(&mut s);
        s.refused(ErrorCode::TokenInvalid, "not a token of ours".into());
        let a = actions(&mut s);
        assert_eq!(
            ending(&a),
            Some(&Ending::Refuse {
                code: ErrorCode::TokenInvalid,
                reason: "not a token of ours".into()
            })
        );
        assert!(s.is_ended() && !s.is_running());
    }

    #[test]
    fn anything_but_a_hello_first_is_refused() {
        let t0 = Instant::now();
        let mut s = Session::new(1, offer(), MediaClock::start(), JoinStrategy::Hybrid, t0);
        s.control_stream_opened(t0);
        s.message(ControlMessage::SetPaused { paused: true }, t0);
        assert!(matches!(
            ending(&actions(&mut s)),
            Some(Ending::Refuse {
                code: ErrorCode::UnexpectedMessage,
                ..
            })
        ));
    }

    #[test]
    fn a_silent_connection_times_out_without_and_with_a_control_stream() {
        let t0 = Instant::now();
        let mut s = Session::new(1, offer(), MediaClock::start(), JoinStrategy::Hybrid, t0);
        assert_eq!(s.poll_timeout(), Some(t0 + HELLO_TIMEOUT));
        s.handle_timeout(t0 + HELLO_TIMEOUT - Duration::from_millis(1));
        assert!(actions(&mut s).is_empty());
        s.handle_timeout(t0 + HELLO_TIMEOUT);
        assert!(matches!(
            ending(&actions(&mut s)),
            Some(Ending::Close {
                code: ErrorCode::Timeout,
                ..
            })
        ));

        // The stream opened late: the hello gets its own five seconds from then.
        let mut s = Session::new(1, offer(), MediaClock::start(), JoinStrategy::Hybrid, t0);
        let opened = t0 + Duration::from_secs(4);
        s.control_stream_opened(opened);
        assert_eq!(s.poll_timeout(), Some(opened + HELLO_TIMEOUT));
        s.handle_timeout(opened + HELLO_TIMEOUT);
        match ending(&actions(&mut s)) {
            Some(Ending::Refuse { code, reason }) => {
                assert_eq!(*code, ErrorCode::Timeout);
                assert_eq!(reason, "no hello within 5 s");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pings_are_answered_on_the_servers_clock() {
        let t0 = Instant::now();
        let (mut s, _) = running(WishedRendition::Auto, t0);
        let at = t0 + Duration::from_millis(1500);
        s.message(
            ControlMessage::Ping(Ping {
                seq: 3,
                client_time_us: 42,
            }),
            at,
        );
        match sent(&actions(&mut s))[..] {
            [ControlMessage::Pong(p)] => {
                assert_eq!((p.seq, p.client_time_us), (3, 42));
                assert_eq!(p.server_receive_us, s.clock.us_at(at));
                assert_eq!(p.server_send_us, p.server_receive_us);
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_switch_is_confirmed_and_reaches_the_forwarder() {
        let t0 = Instant::now();
        let (mut s, _) = running(WishedRendition::Fixed(0), t0);
        let t1 = t0 + Duration::from_secs(1);
        s.message(
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed(2),
            },
            t1,
        );
        let a = actions(&mut s);
        assert!(matches!(
            sent(&a)[..],
            [ControlMessage::RenditionChanged {
                rendition: 2,
                automatic: false
            }]
        ));
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Video(VideoAction::Watch(2)))));
        // Automatic means the top rung, said to be automatic.
        s.message(
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Auto,
            },
            t1,
        );
        assert!(matches!(
            sent(&actions(&mut s))[..],
            [ControlMessage::RenditionChanged {
                rendition: 0,
                automatic: true
            }]
        ));
        // Not on offer: an error, and the session goes on.
        s.message(
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed(5),
            },
            t1,
        );
        let a = actions(&mut s);
        assert!(matches!(
            sent(&a)[..],
            [ControlMessage::Error {
                code: ErrorCode::UnknownRendition,
                ..
            }]
        ));
        assert!(ending(&a).is_none());
    }

    #[test]
    fn pause_and_resume_stop_and_restart_video_and_audio() {
        let t0 = Instant::now();
        let (mut s, _) = running(WishedRendition::Fixed(0), t0);
        s.video(
            VideoEvent::Watching {
                rendition: 0,
                group: Vec::new(),
            },
            t0,
        );
        actions(&mut s);
        s.message(ControlMessage::SetPaused { paused: true }, t0);
        let a = actions(&mut s);
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Video(VideoAction::Unwatch(0)))));
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Audio(AudioAction::Stop))));
        s.message(ControlMessage::SetPaused { paused: false }, t0);
        let a = actions(&mut s);
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Video(VideoAction::Watch(0)))));
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Audio(AudioAction::Listen(32_000)))));
    }

    #[test]
    fn audio_bitrates_on_offer_are_confirmed_others_refused() {
        let t0 = Instant::now();
        let (mut s, _) = running(WishedRendition::Auto, t0);
        s.message(
            ControlMessage::SetAudioBitrate {
                bitrate_bps: 64_000,
            },
            t0,
        );
        let a = actions(&mut s);
        assert!(matches!(
            sent(&a)[..],
            [ControlMessage::AudioBitrateChanged {
                bitrate_bps: 64_000
            }]
        ));
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Audio(AudioAction::Listen(64_000)))));
        s.message(ControlMessage::SetAudioBitrate { bitrate_bps: 1 }, t0);
        assert!(matches!(
            sent(&actions(&mut s))[..],
            [ControlMessage::Error {
                code: ErrorCode::UnknownRendition,
                ..
            }]
        ));
    }

    #[test]
    fn the_broadcasters_pause_is_told_at_welcome_and_on_every_change() {
        let t0 = Instant::now();
        let mut s = Session::new(1, offer(), MediaClock::start(), JoinStrategy::Hybrid, t0);
        s.set_broadcast_paused(true, t0);
        s.control_stream_opened(t0);
        s.message(ControlMessage::Hello(hello(WishedRendition::Auto)), t0);
        s.admitted(t0);
        let a = actions(&mut s);
        assert!(matches!(
            sent(&a)[..],
            [
                ControlMessage::Welcome(_),
                ControlMessage::BroadcastPaused { paused: true }
            ]
        ));
        s.set_broadcast_paused(false, t0);
        s.set_broadcast_paused(false, t0);
        assert!(matches!(
            sent(&actions(&mut s))[..],
            [ControlMessage::BroadcastPaused { paused: false }]
        ));
    }

    #[test]
    fn a_flood_of_control_messages_is_cut_off_after_the_burst() {
        let t0 = Instant::now();
        let (mut s, _) = running(WishedRendition::Auto, t0);
        let ping = ControlMessage::Ping(Ping {
            seq: 0,
            client_time_us: 0,
        });
        for _ in 0..CONTROL_BURST as usize {
            s.message(ping.clone(), t0);
        }
        assert!(ending(&actions(&mut s)).is_none());
        // 100 ms later, ten more are allowed; the eleventh ends the session.
        let t1 = t0 + Duration::from_millis(100);
        for _ in 0..(CONTROL_RATE / 10.0) as usize {
            s.message(ping.clone(), t1);
        }
        assert!(ending(&actions(&mut s)).is_none());
        s.message(ping, t1);
        let a = actions(&mut s);
        assert!(matches!(
            ending(&a),
            Some(Ending::Refuse {
                code: ErrorCode::RateLimited,
                ..
            })
        ));
        // Nothing more: no media after the end.
        s.message(ControlMessage::SetPaused { paused: true }, t1);
        assert!(actions(&mut s).is_empty());
    }

    #[test]
    fn goodbye_or_a_finished_stream_is_leaving_and_a_hello_again_is_refused() {
        let t0 = Instant::now();
        let (mut s, _) = running(WishedRendition::Auto, t0);
        s.message(
            ControlMessage::Goodbye {
                code: ErrorCode::NoError,
                message: String::new(),
            },
            t0,
        );
        assert_eq!(ending(&actions(&mut s)), Some(&Ending::Left));

        let (mut s, _) = running(WishedRendition::Auto, t0);
        s.control_ended();
        assert_eq!(ending(&actions(&mut s)), Some(&Ending::Left));

        let (mut s, _) = running(WishedRendition::Auto, t0);
        s.message(ControlMessage::Hello(hello(WishedRendition::Auto)), t0);
        assert!(matches!(
            ending(&actions(&mut s)),
            Some(Ending::Refuse {
                code: ErrorCode::UnexpectedMessage,
                ..
            })
        ));
    }

    #[test]
    fn the_frame_deadline_follows_the_latency_target_within_bounds() {
        assert_eq!(frame_deadline(0), Duration::from_millis(300));
        assert_eq!(frame_deadline(120), Duration::from_millis(120));
        assert_eq!(frame_deadline(1), MIN_DEADLINE);
        assert_eq!(frame_deadline(u16::MAX), MAX_DEADLINE);
    }
}
