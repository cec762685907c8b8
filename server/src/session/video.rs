//! The video forwarder: which rendition's frames one viewer gets, from which keyframe, and
//! what a lost or late frame costs. Sans-I/O: it takes events (a frame from the hub, the
//! viewer's choices, a frame stream's fate, a timer) and queues actions (watch or unwatch a
//! rendition, send a frame on its own stream, ask for a keyframe). The QUIC driver
//! (`super::quic`) performs them; a second transport would drive the same forwarder.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamsocket_proto::RenditionId;

use super::JoinStrategy;
use crate::encode::video::EncodedFrame;

/// Shortest time between two rendition switches of one viewer: a viewer flooding quality
/// requests gets the last one it asked for, without starting and stopping encoders at will.
pub const MIN_SWITCH_INTERVAL: Duration = Duration::from_millis(250);
/// Longest group the hybrid strategy sends a joiner: ~0.27 s at 30 fps.
pub const YOUNG_GOP: usize = 8;

/// What happened that the forwarder must know.
#[derive(Debug)]
pub enum VideoEvent {
    /// The viewer asked for a rendition the hub offers.
    Select(RenditionId),
    /// The viewer paused (`true`) or resumed its own stream.
    ViewerPaused(bool),
    /// The broadcaster paused or resumed the whole stream.
    BroadcastPaused(bool),
    /// A [`VideoAction::Watch`] took effect: the rendition's frames follow as [`Self::Frame`],
    /// after `group`, the current group of pictures from before (possibly empty).
    Watching {
        rendition: RenditionId,
        group: Vec<Arc<EncodedFrame>>,
    },
    /// A [`VideoAction::Watch`] failed (the encoder could not start).
    WatchFailed(RenditionId),
    /// A frame of a watched rendition.
    Frame(Arc<EncodedFrame>),
    /// The forwarder fell behind a watched rendition by this many frames (lost to it).
    Lagged { rendition: RenditionId, frames: u64 },
    /// A watched rendition ended (the hub is shutting down).
    Closed(RenditionId),
    /// A frame sent with [`VideoAction::Send`] was acknowledged by the viewer.
    Delivered { bytes: u64 },
    /// A frame missed its deadline (its stream was reset, or could not even open in time).
    Missed,
}

/// What the driver must do.
#[derive(Debug)]
pub enum VideoAction {
    /// Start receiving a rendition's frames (starting its encoder if nobody watched it) and
    /// answer with [`VideoEvent::Watching`] or [`VideoEvent::WatchFailed`].
    Watch(RenditionId),
    /// Stop receiving a rendition (its encoder may stop).
    Unwatch(RenditionId),
    /// Send a frame on a stream of its own, at this priority (higher goes first), and reset
    /// the stream unless it is acknowledged within the deadline; answer with
    /// [`VideoEvent::Delivered`] or [`VideoEvent::Missed`].
    Send {
        frame: Arc<EncodedFrame>,
        priority: i32,
        deadline: Duration,
    },
    /// Ask the rendition's encoder for a keyframe (a joiner or resumed viewer waits for it).
    AskKeyframe(RenditionId),
    /// The stream is broken (a frame was lost): the viewer needs a keyframe to decode again.
    /// The driver asks as [`KeyframeAsker`] says, so that a viewer in an outage does not
    /// force keyframes on the others watching the rendition.
    RepairKeyframe(RenditionId),
}

/// Frames counted by the forwarder, logged when the session ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VideoCounters {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames reset because they missed their deadline.
    pub frames_reset: u64,
    /// Frames lost because the session fell behind the encoder (hub queue overflow).
    pub frames_lagged: u64,
    /// Frames not sent while waiting for a keyframe (after joining, switching or a loss).
    pub frames_skipped_for_keyframe: u64,
}

/// A rendition being received: asked for (no answer yet) or flowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Feed {
    rendition: RenditionId,
    flowing: bool,
}

/// One viewer's video: the rendition on screen (`current`), the one it is switching to
/// (`next`, sent from its first keyframe on, so the picture never stops), pauses and losses.
#[derive(Debug)]
pub struct VideoForwarder {
    strategy: JoinStrategy,
    deadline: Duration,
    current: Option<Feed>,
    next: Option<Feed>,
    /// The rendition the viewer asked for last.
    wanted: RenditionId,
    last_switch: Instant,
    switch_due: Option<Instant>,
    /// A frame was lost: the ones after it are undecodable until a keyframe.
    broken: bool,
    broadcast_paused: bool,
    /// Frames were withheld during the broadcaster's pause: start again from a keyframe.
    held_for_pause: bool,
    counters: VideoCounters,
    actions: VecDeque<VideoAction>,
}

impl VideoForwarder {
    /// Starts forwarding `rendition` (queues its [`VideoAction::Watch`]); frames get
    /// `deadline` to be delivered.
    pub fn new(
        rendition: RenditionId,
        deadline: Duration,
        strategy: JoinStrategy,
        broadcast_paused: bool,
        now: Instant,
    ) -> Self {
        let mut forwarder = Self {
            strategy,
            deadline,
            current: None,
            next: None,
            wanted: rendition,
            last_switch: now,
            switch_due: None,
            broken: true,
            broadcast_paused,
            held_for_pause: false,
            counters: VideoCounters::default(),
            actions: VecDeque::new(),
        };
        forwarder.current = Some(forwarder.watch(rendition));
        forwarder
    }

    pub fn counters(&self) -> VideoCounters {
        self.counters
    }

    /// The rendition whose frames the viewer gets now, if any.
    pub fn current(&self) -> Option<RenditionId> {
        self.current.map(|f| f.rendition)
    }

    /// The renditions being received (the driver's subscriptions).
    #[cfg(test)]
    pub fn watched(&self) -> impl Iterator<Item = RenditionId> {
        self.current
            .into_iter()
            .chain(self.next)
            .map(|f| f.rendition)
    }

    /// The next action to perform.
    pub fn poll_action(&mut self) -> Option<VideoAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.switch_due
    }

    /// Applies a pending switch once its time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.switch_due.is_none_or(|due| now < due) {
            return;
        }
        self.switch_due = None;
        self.last_switch = now;
        let wanted = self.wanted;
        if self.current() == Some(wanted) {
            self.drop_next();
        } else if self.current.is_some() && self.next.is_none_or(|n| n.rendition != wanted) {
            self.drop_next();
            self.next = Some(self.watch(wanted));
        }
        self.check_broken();
    }

    pub fn handle(&mut self, event: VideoEvent, now: Instant) {
        match event {
            VideoEvent::Select(id) => {
                self.wanted = id;
                self.switch_due = Some(
                    self.switch_due
                        .unwrap_or(self.last_switch + MIN_SWITCH_INTERVAL),
                );
                self.handle_timeout(now);
            }
            VideoEvent::ViewerPaused(true) => {
                self.drop_next();
                if let Some(c) = self.current.take() {
                    self.actions.push_back(VideoAction::Unwatch(c.rendition));
                }
            }
            VideoEvent::ViewerPaused(false) => {
                if self.current.is_none() {
                    self.broken = true;
                    self.current = Some(self.watch(self.wanted));
                }
            }
            VideoEvent::BroadcastPaused(paused) => self.broadcast_paused = paused,
            VideoEvent::Watching { rendition, group } => self.watching(rendition, group),
            VideoEvent::WatchFailed(id) => {
                if self.next.is_some_and(|n| n.rendition == id) {
                    self.next = None;
                }
                if self.current.is_some_and(|c| c.rendition == id) {
                    self.current = None;
                }
            }
            VideoEvent::Frame(frame) => self.frame(frame),
            VideoEvent::Lagged { rendition, frames } => {
                self.counters.frames_lagged += frames;
                if self.current() == Some(rendition) {
                    self.broken = true;
                    self.actions.push_back(VideoAction::AskKeyframe(rendition));
                }
            }
            VideoEvent::Closed(id) => {
                if self.next.is_some_and(|n| n.rendition == id) {
                    self.drop_next();
                }
                if self.current() == Some(id) {
                    self.current = None;
                }
            }
            VideoEvent::Delivered { bytes } => {
                self.counters.frames_sent += 1;
                self.counters.bytes_sent += bytes;
            }
            VideoEvent::Missed => {
                self.counters.frames_reset += 1;
                self.broken = true;
            }
        }
        self.check_broken();
    }

    fn watch(&mut self, rendition: RenditionId) -> Feed {
        self.actions.push_back(VideoAction::Watch(rendition));
        Feed {
            rendition,
            flowing: false,
        }
    }

    fn drop_next(&mut self) {
        if let Some(n) = self.next.take() {
            self.actions.push_back(VideoAction::Unwatch(n.rendition));
        }
    }

    /// A watch took effect: the group it starts from is sent at once when the strategy
    /// allows (a switch then happens now); otherwise a new keyframe is asked for.
    fn watching(&mut self, rendition: RenditionId, group: Vec<Arc<EncodedFrame>>) {
        let usable = group.first().is_some_and(|f| f.keyframe);
        let group = match self.strategy {
            JoinStrategy::Gop if usable => group,
            JoinStrategy::Hybrid if usable && group.len() <= YOUNG_GOP => group,
            _ => {
                self.actions.push_back(VideoAction::AskKeyframe(rendition));
                Vec::new()
            }
        };
        if let Some(c) = self.current.as_mut().filter(|c| c.rendition == rendition) {
            c.flowing = true;
        } else if self.next.is_some_and(|n| n.rendition == rendition) {
            self.next = Some(Feed {
                rendition,
                flowing: true,
            });
            if group.is_empty() {
                return;
            }
            // With a group to start from, the switch happens now.
            self.promote_next();
            self.broken = true;
        } else {
            return;
        }
        if !self.broadcast_paused && !group.is_empty() {
            self.broken = false;
            for frame in group {
                self.send(frame);
            }
        }
    }

    /// The rendition switched to becomes the current one; the old one is let go.
    fn promote_next(&mut self) {
        if let Some(old) = std::mem::replace(&mut self.current, self.next.take()) {
            self.actions.push_back(VideoAction::Unwatch(old.rendition));
        }
    }

    fn frame(&mut self, frame: Arc<EncodedFrame>) {
        let rendition = frame.rendition;
        if self.next.is_some_and(|n| n.rendition == rendition) {
            if frame.keyframe && !self.broadcast_paused {
                // The new rendition is decodable from here: switch.
                self.promote_next();
                self.broken = false;
                self.send(frame);
            } else {
                self.counters.frames_skipped_for_keyframe += 1;
            }
            return;
        }
        if self.current() != Some(rendition) {
            return; // let go of a moment ago: its frames no longer matter
        }
        // The broadcaster's pause: nothing goes out; after it, a keyframe first.
        if self.broadcast_paused {
            self.held_for_pause = true;
            return;
        }
        if std::mem::take(&mut self.held_for_pause) {
            self.broken = true;
            self.actions.push_back(VideoAction::AskKeyframe(rendition));
        }
        if self.broken && !frame.keyframe {
            // Undecodable without the frames lost before it: skipped (the keyframe is asked
            // for by `check_broken`).
            self.counters.frames_skipped_for_keyframe += 1;
        } else {
            self.broken = false;
            self.send(frame);
        }
    }

    fn send(&mut self, frame: Arc<EncodedFrame>) {
        // Newer frames first: strict priority by sequence number. Keyframes of a rendition
        // are sent in order with the rest, so no special case.
        let priority = frame.seq.min(i32::MAX as u64) as i32;
        self.actions.push_back(VideoAction::Send {
            frame,
            priority,
            deadline: self.deadline,
        });
    }

    /// A broken stream needs a keyframe of the rendition being sent.
    fn check_broken(&mut self) {
        if let Some(c) = self.current.filter(|c| self.broken && c.flowing) {
            self.actions
                .push_back(VideoAction::RepairKeyframe(c.rendition));
        }
    }
}

/// Decides whether a broken stream's [`VideoAction::RepairKeyframe`] reaches the encoder.
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
pub struct KeyframeAsker {
    /// ACK frames received from the viewer when the session last asked.
    acks_at_last_request: Option<u64>,
}

impl KeyframeAsker {
    /// Whether to ask now, `acks` ACK frames having been received from the viewer so far;
    /// `alone`: the viewer is the only one watching the rendition.
    pub fn should_ask(&mut self, acks: u64, alone: bool) -> bool {
        if !alone && self.acks_at_last_request.is_some_and(|last| acks <= last) {
            return false;
        }
        self.acks_at_last_request = Some(acks);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const DEADLINE: Duration = Duration::from_millis(300);

    fn frame(rendition: RenditionId, seq: u64, keyframe: bool) -> Arc<EncodedFrame> {
        Arc::new(EncodedFrame {
            rendition,
            seq,
            capture_us: seq * 33_333,
            keyframe,
            header: Bytes::new(),
            payload: Bytes::from_static(b"av1"),
        })
    }

    /// A group: a keyframe and `len - 1` frames after it.
    fn group(rendition: RenditionId, first_seq: u64, len: u64) -> Vec<Arc<EncodedFrame>> {
        (0..len)
            .map(|i| frame(rendition, first_seq + i, i == 0))
            .collect()
    }

    fn actions(f: &mut VideoForwarder) -> Vec<VideoAction> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    /// The sequence numbers of the frames sent, and whether a keyframe was asked for.
    fn sent(actions: &[VideoAction]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                VideoAction::Send { frame, .. } => Some(frame.seq),
                _ => None,
            })
            .collect()
    }

    fn asked(actions: &[VideoAction]) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, VideoAction::AskKeyframe(_)))
    }

    fn repairs(actions: &[VideoAction]) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, VideoAction::RepairKeyframe(_)))
    }

    /// A viewer on rendition 0 that joined with an empty group and got its first keyframe.
    fn watching_live(t0: Instant) -> VideoForwarder {
        let mut f = VideoForwarder::new(0, DEADLINE, JoinStrategy::Hybrid, false, t0);
        f.handle(
            VideoEvent::Watching {
                rendition: 0,
                group: Vec::new(),
            },
            t0,
        );
        f.handle(VideoEvent::Frame(frame(0, 10, true)), t0);
        actions(&mut f);
        f
    }

    #[test]
    fn a_joiner_with_a_young_group_gets_it_at_once() {
        let t0 = Instant::now();
        let mut f = VideoForwarder::new(0, DEADLINE, JoinStrategy::Hybrid, false, t0);
        assert!(matches!(actions(&mut f)[..], [VideoAction::Watch(0)]));
        f.handle(
            VideoEvent::Watching {
                rendition: 0,
                group: group(0, 5, 4),
            },
            t0,
        );
        let a = actions(&mut f);
        assert_eq!(sent(&a), [5, 6, 7, 8]);
        assert!(!asked(&a) && !repairs(&a));
        f.handle(VideoEvent::Frame(frame(0, 9, false)), t0);
        assert_eq!(sent(&actions(&mut f)), [9]);
    }

    #[test]
    fn a_joiner_with_an_old_group_waits_for_a_new_keyframe_skipping_what_comes_before() {
        let t0 = Instant::now();
        let mut f = VideoForwarder::new(0, DEADLINE, JoinStrategy::Hybrid, false, t0);
        actions(&mut f);
        f.handle(
            VideoEvent::Watching {
                rendition: 0,
                group: group(0, 0, YOUNG_GOP as u64 + 1),
            },
            t0,
        );
        let a = actions(&mut f);
        assert!(sent(&a).is_empty());
        assert!(asked(&a), "asks the encoder for a keyframe");
        f.handle(VideoEvent::Frame(frame(0, 9, false)), t0);
        f.handle(VideoEvent::Frame(frame(0, 10, true)), t0);
        f.handle(VideoEvent::Frame(frame(0, 11, false)), t0);
        assert_eq!(sent(&actions(&mut f)), [10, 11]);
        assert_eq!(f.counters().frames_skipped_for_keyframe, 1);
    }

    #[test]
    fn the_gop_and_keyframe_strategies() {
        let t0 = Instant::now();
        let mut gop = VideoForwarder::new(0, DEADLINE, JoinStrategy::Gop, false, t0);
        gop.handle(
            VideoEvent::Watching {
                rendition: 0,
                group: group(0, 0, 20),
            },
            t0,
        );
        assert_eq!(sent(&actions(&mut gop)).len(), 20, "any group, however old");
        let mut key = VideoForwarder::new(0, DEADLINE, JoinStrategy::Keyframe, false, t0);
        key.handle(
            VideoEvent::Watching {
                rendition: 0,
                group: group(0, 0, 2),
            },
            t0,
        );
        let a = actions(&mut key);
        assert!(sent(&a).is_empty() && asked(&a), "never the group");
    }

    #[test]
    fn frames_go_out_newest_first_with_the_viewers_deadline() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        f.handle(VideoEvent::Frame(frame(0, 11, false)), t0);
        match &actions(&mut f)[..] {
            [VideoAction::Send {
                frame,
                priority,
                deadline,
            }] => {
                assert_eq!((frame.seq, *priority, *deadline), (11, 11, DEADLINE));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_switch_keeps_the_old_rendition_until_the_new_ones_keyframe() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        // Asked at once after joining: held back until the switch interval has passed.
        f.handle(VideoEvent::Select(1), t0);
        assert!(actions(&mut f).is_empty());
        assert_eq!(f.poll_timeout(), Some(t0 + MIN_SWITCH_INTERVAL));
        let t1 = t0 + MIN_SWITCH_INTERVAL;
        f.handle_timeout(t1);
        assert!(matches!(actions(&mut f)[..], [VideoAction::Watch(1)]));
        f.handle(
            VideoEvent::Watching {
                rendition: 1,
                group: group(1, 0, 30),
            },
            t1,
        );
        assert!(asked(&actions(&mut f)), "an old group: a new keyframe");
        // The old rendition goes on; the new one's frames before its keyframe are skipped.
        f.handle(VideoEvent::Frame(frame(0, 11, false)), t1);
        f.handle(VideoEvent::Frame(frame(1, 31, false)), t1);
        assert_eq!(sent(&actions(&mut f)), [11]);
        f.handle(VideoEvent::Frame(frame(1, 32, true)), t1);
        let a = actions(&mut f);
        assert_eq!(sent(&a), [32]);
        assert!(a.iter().any(|a| matches!(a, VideoAction::Unwatch(0))));
        assert_eq!(f.current(), Some(1));
        // Frames of the old rendition still in the driver's queue are not sent.
        f.handle(VideoEvent::Frame(frame(0, 12, false)), t1);
        f.handle(VideoEvent::Frame(frame(1, 33, false)), t1);
        assert_eq!(sent(&actions(&mut f)), [33]);
    }

    #[test]
    fn a_switch_with_a_young_group_happens_at_once() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        let t1 = t0 + Duration::from_secs(1);
        f.handle(VideoEvent::Select(2), t1);
        assert!(matches!(actions(&mut f)[..], [VideoAction::Watch(2)]));
        f.handle(
            VideoEvent::Watching {
                rendition: 2,
                group: group(2, 40, 3),
            },
            t1,
        );
        let a = actions(&mut f);
        assert_eq!(sent(&a), [40, 41, 42]);
        assert!(a.iter().any(|a| matches!(a, VideoAction::Unwatch(0))));
        assert_eq!(f.current(), Some(2));
    }

    #[test]
    fn a_burst_of_switches_yields_the_last_one_asked_for() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        for id in [1, 2, 1, 2, 1] {
            f.handle(VideoEvent::Select(id), t0 + Duration::from_millis(10));
        }
        assert!(actions(&mut f).is_empty());
        f.handle_timeout(t0 + MIN_SWITCH_INTERVAL);
        assert!(matches!(actions(&mut f)[..], [VideoAction::Watch(1)]));
        // The next one waits a whole interval after that switch.
        f.handle(VideoEvent::Select(2), t0 + MIN_SWITCH_INTERVAL);
        assert!(actions(&mut f).is_empty());
        assert_eq!(f.poll_timeout(), Some(t0 + 2 * MIN_SWITCH_INTERVAL));
    }

    #[test]
    fn asking_for_the_current_rendition_cancels_a_switch_under_way() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        let t1 = t0 + Duration::from_secs(1);
        f.handle(VideoEvent::Select(1), t1);
        actions(&mut f);
        f.handle(VideoEvent::Select(0), t1 + Duration::from_secs(1));
        assert!(matches!(actions(&mut f)[..], [VideoAction::Unwatch(1)]));
        assert_eq!(f.watched().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_pause_lets_go_and_a_resume_starts_from_a_keyframe_of_the_last_choice() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        f.handle(VideoEvent::ViewerPaused(true), t0);
        assert!(matches!(actions(&mut f)[..], [VideoAction::Unwatch(0)]));
        assert_eq!(f.watched().count(), 0);
        // A choice made while paused applies when the viewer resumes.
        f.handle(VideoEvent::Select(1), t0 + Duration::from_secs(1));
        f.handle(VideoEvent::ViewerPaused(false), t0 + Duration::from_secs(2));
        assert!(matches!(actions(&mut f)[..], [VideoAction::Watch(1)]));
        f.handle(
            VideoEvent::Watching {
                rendition: 1,
                group: Vec::new(),
            },
            t0,
        );
        assert!(asked(&actions(&mut f)));
        f.handle(VideoEvent::Frame(frame(1, 50, false)), t0);
        f.handle(VideoEvent::Frame(frame(1, 51, true)), t0);
        assert_eq!(sent(&actions(&mut f)), [51]);
    }

    #[test]
    fn the_broadcasters_pause_withholds_frames_and_resumes_from_a_keyframe() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        f.handle(VideoEvent::BroadcastPaused(true), t0);
        f.handle(VideoEvent::Frame(frame(0, 11, false)), t0);
        assert!(sent(&actions(&mut f)).is_empty());
        f.handle(VideoEvent::BroadcastPaused(false), t0);
        f.handle(VideoEvent::Frame(frame(0, 12, false)), t0);
        let a = actions(&mut f);
        assert!(sent(&a).is_empty(), "not decodable after the gap");
        assert!(asked(&a));
        f.handle(VideoEvent::Frame(frame(0, 13, true)), t0);
        assert_eq!(sent(&actions(&mut f)), [13]);
    }

    #[test]
    fn a_missed_deadline_breaks_the_stream_until_a_keyframe() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        f.handle(VideoEvent::Delivered { bytes: 1000 }, t0);
        f.handle(VideoEvent::Missed, t0);
        assert!(repairs(&actions(&mut f)), "the loss asks for a keyframe");
        f.handle(VideoEvent::Frame(frame(0, 11, false)), t0);
        let a = actions(&mut f);
        assert!(
            sent(&a).is_empty() && repairs(&a),
            "still broken: asks again"
        );
        f.handle(VideoEvent::Frame(frame(0, 12, true)), t0);
        let a = actions(&mut f);
        assert_eq!(sent(&a), [12]);
        assert!(!repairs(&a), "mended");
        assert_eq!(
            f.counters(),
            VideoCounters {
                frames_sent: 1,
                bytes_sent: 1000,
                frames_reset: 1,
                frames_lagged: 0,
                frames_skipped_for_keyframe: 1,
            }
        );
    }

    #[test]
    fn an_outage_loses_every_frame_then_the_first_keyframe_after_it_mends_the_stream() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        for seq in 11..41 {
            f.handle(VideoEvent::Frame(frame(0, seq, seq == 30)), t0);
            f.handle(VideoEvent::Missed, t0);
        }
        let a = actions(&mut f);
        assert_eq!(f.counters().frames_reset, 30);
        assert!(repairs(&a));
        // The path is back: the next keyframe goes out and the frames after it.
        f.handle(VideoEvent::Frame(frame(0, 41, false)), t0);
        f.handle(VideoEvent::Frame(frame(0, 42, true)), t0);
        f.handle(VideoEvent::Frame(frame(0, 43, false)), t0);
        assert_eq!(sent(&actions(&mut f)), [42, 43]);
    }

    #[test]
    fn falling_behind_the_encoder_is_counted_and_asks_for_a_keyframe() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        f.handle(
            VideoEvent::Lagged {
                rendition: 0,
                frames: 7,
            },
            t0,
        );
        let a = actions(&mut f);
        assert!(asked(&a));
        assert_eq!(f.counters().frames_lagged, 7);
        f.handle(VideoEvent::Frame(frame(0, 18, false)), t0);
        assert!(sent(&actions(&mut f)).is_empty());
    }

    #[test]
    fn an_encoder_that_cannot_start_leaves_the_viewer_on_what_it_had() {
        let t0 = Instant::now();
        let mut f = watching_live(t0);
        f.handle(VideoEvent::Select(1), t0 + Duration::from_secs(1));
        actions(&mut f);
        f.handle(VideoEvent::WatchFailed(1), t0 + Duration::from_secs(1));
        assert_eq!(f.watched().collect::<Vec<_>>(), [0]);
        f.handle(VideoEvent::Frame(frame(0, 11, false)), t0);
        assert_eq!(sent(&actions(&mut f)), [11]);
    }

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
}
