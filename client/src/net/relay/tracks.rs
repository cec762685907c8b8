//! Reading subscribed tracks into the pipeline: a rendition's groups become frames for the
//! decoder's queue (the first of a group is its keyframe), an audio track's one-packet
//! groups become packets for the audio thread. Each reader runs on a task of its own until
//! it is aborted (unsubscribed) or the track ends, and then says why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use streamsocket_moq::media::{decode_frame, AUDIO_PRIORITY, VIDEO_PRIORITY};
use streamsocket_moq::moq_net;
use streamsocket_proto::media::{AudioHeader, FrameHeader, ServerTiming};
use tokio::task::AbortHandle;

use super::connect::MediaClock;
use crate::audio::NetAudio;
use crate::control::clock::ViewerClock;
use crate::net::receive::{add, deliver_audio, deliver_frame, ReceiveCounters, FRAME_QUEUE};
use crate::video::decoder::{DecoderInput, NetFrame};

/// The largest video frame taken from a relay; a bigger object is counted as malformed and
/// its group dropped. (A 4K AV1 keyframe is well under this; moq-net itself refuses objects
/// over 32 MiB.)
pub const MAX_VIDEO_OBJECT: usize = 8 * 1024 * 1024;
/// The largest audio packet taken (an Opus packet is at most 1275 bytes per frame).
pub const MAX_AUDIO_OBJECT: usize = 4 * 1024;
/// How far behind the newest audio group an older one may still be read: audio groups are
/// streams of their own and may arrive out of order; the jitter buffer puts them back.
const AUDIO_REORDER: Duration = Duration::from_millis(60);

/// A reader's standing among the session's subscriptions. At equal priority a relay sends
/// the older subscription's groups first (moq-net ranks by track priority, then subscription
/// age), so on a path too narrow for both, a new rendition's track would wait behind the one
/// being left, for ever when the old one alone fills the path (a capped path and automatic
/// quality stepping down, exactly). The reader being left therefore steps aside: its
/// subscription drops one priority step (SUBSCRIBE_UPDATE) until the new one delivers.
#[derive(Default)]
pub struct Standing(Mutex<StandingState>);

#[derive(Default)]
struct StandingState {
    leaving: bool,
    /// The subscription, once made.
    control: Option<moq_net::track::Control>,
}

impl Standing {
    /// The reader has subscribed: stepping aside now changes its priority.
    fn subscribed(&self, control: moq_net::track::Control) {
        let mut state = self.0.lock().expect("not poisoned");
        state.control = Some(control);
        if state.leaving {
            state.apply();
        }
    }

    /// Another reader replaces this one: let it go first.
    pub fn step_aside(&self) {
        let mut state = self.0.lock().expect("not poisoned");
        if !state.leaving {
            state.leaving = true;
            state.apply();
        }
    }
}

impl StandingState {
    /// Lowers the subscription's priority by one: called once, when the reader subscribed
    /// or stepped aside, whichever comes second.
    fn apply(&self) {
        if let Some(control) = &self.control {
            let now = control.subscription();
            let priority = now.priority.saturating_sub(1);
            let lower = now.with_priority(priority);
            // The track already ended: nothing left to reorder.
            let _ = control.update(lower);
        }
    }
}

/// A subscription's first group whose keyframe is older than this is one a relay kept from
/// an earlier subscription, not the live stream's: skipped. A live group joined at its end is
/// as old as the origin's keyframe interval (2 s by default); origins with a longer one than
/// this make a joining viewer wait for the next group.
pub const STALE_GROUP: Duration = Duration::from_secs(4);

/// Where the readers deliver, and what they count.
#[derive(Clone)]
pub struct TrackContext {
    pub decoder: Sender<DecoderInput>,
    pub audio: Sender<NetAudio>,
    pub clock: ViewerClock,
    pub counters: Arc<ReceiveCounters>,
    pub media_clock: MediaClock,
}

/// One rendition's track.
#[derive(Debug, Clone)]
pub struct VideoTrack {
    pub rendition: u8,
    pub name: String,
}

/// Frame numbers for the decoder's reorder stage, which counts a gap as lost frames: one
/// more per frame within a group and across consecutive, complete groups; where a group was
/// skipped or cut short, as many more as the capture times say were missing (at the
/// track's frame rate). The next group starts with a keyframe, so a gap never holds up
/// decoding; it is only counted.
#[derive(Debug)]
pub struct Sequencer {
    frame_us: u64,
    next: u64,
    /// The last group read: its sequence, whether it was read to its end, the capture time
    /// of its last frame.
    last: Option<(u64, bool, u64)>,
}

impl Sequencer {
    pub fn new(fps: u16) -> Self {
        Self {
            frame_us: 1_000_000 / u64::from(fps.max(1)),
            next: 0,
            last: None,
        }
    }

    /// The number of frame `index` of group `group`, captured at `pts_us`.
    pub fn frame(&mut self, group: u64, index: u64, pts_us: u64) -> u64 {
        if index == 0 {
            if let Some((last_group, complete, last_pts)) = self.last {
                if !(group == last_group + 1 && complete) {
                    let periods = (pts_us.saturating_sub(last_pts) + self.frame_us / 2)
                        / self.frame_us.max(1);
                    self.next += periods.saturating_sub(1);
                }
            }
        }
        let seq = self.next;
        self.next += 1;
        self.last = Some((group, false, pts_us));
        seq
    }

    /// Where a new subscription to the rendition starts: after the last group read. A relay
    /// keeps a track's newest group when nobody watches it and hands it to the next
    /// subscriber, so without this floor coming back to a rendition would first replay the
    /// group left seconds ago (and on a narrow path spend its bandwidth doing so).
    pub fn resume_at(&self) -> Option<u64> {
        self.last.map(|(group, _, _)| group + 1)
    }

    /// The group being read ended: `complete` when it was read to its end.
    pub fn end_group(&mut self, complete: bool) {
        if let Some(last) = self.last.as_mut() {
            last.1 = complete;
        }
    }
}

/// Reads a rendition's track until the track ends (its reason is returned) or the task is
/// aborted. A group is read to its end unless a newer one overtakes it (moq-net then ends the
/// read: the newer group starts with a keyframe). `replaces`: the reader of the rendition
/// being left, stopped when this one delivers its first frame (so the picture never stops
/// during a switch). `seq` numbers the rendition's frames, kept from one reader of the
/// rendition to the next (a switch back continues the numbering the decoder knows).
pub async fn read_video(
    broadcast: moq_net::broadcast::Consumer,
    track: VideoTrack,
    ctx: TrackContext,
    replaces: Option<AbortHandle>,
    seq: Arc<Mutex<Sequencer>>,
    standing: Arc<Standing>,
) -> String {
    let resume = seq.lock().expect("not poisoned").resume_at();
    let subscription = moq_net::track::Subscription::default()
        .with_priority(VIDEO_PRIORITY)
        .with_start(resume.map(moq_net::track::Position::group));
    let subscriber = match subscribe(&broadcast, &track.name, subscription).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    standing.subscribed(subscriber.control());
    let mut groups = subscriber.ordered();
    let end_group = |complete| seq.lock().expect("not poisoned").end_group(complete);
    let mut replaces = replaces;
    let mut first_group = true;
    loop {
        let mut group = match groups.next_group().await {
            Ok(Some(g)) => g,
            Ok(None) => return format!("the track {} ended", track.name),
            Err(e) => return format!("the track {} broke off: {e}", track.name),
        };
        let sequence = group.sequence;
        let mut index = 0;
        loop {
            let frame = match group.read_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => {
                    end_group(true);
                    break;
                }
                Err(e) => {
                    // Overtaken by a newer group, or reset: the frames left are lost (and
                    // counted by the gap they leave).
                    tracing::debug!("group {sequence} of {} cut short: {e}", track.name);
                    add(&ctx.counters.frames_reset, 1);
                    end_group(false);
                    break;
                }
            };
            let complete_us = ctx.clock.now_us();
            if frame.payload.len() > MAX_VIDEO_OBJECT {
                malformed_video(
                    &ctx,
                    &track,
                    format!("an object of {} bytes", frame.payload.len()),
                );
                end_group(false);
                break;
            }
            let (pts_us, payload) = match decode_frame(frame.payload) {
                Ok(f) => f,
                Err(e) => {
                    malformed_video(
                        &ctx,
                        &track,
                        format!("an object that is not a hang frame ({e})"),
                    );
                    end_group(false);
                    break;
                }
            };
            ctx.media_clock.learn(pts_us);
            // Capture to now on the catalog's clock (known from here on: `learn`).
            let age_us = ctx
                .media_clock
                .now_us()
                .map_or(0, |now| now.saturating_sub(pts_us));
            if first_group && index == 0 && age_us > STALE_GROUP.as_micros() as u64 {
                // A relay keeps a track's newest group after its last subscriber left, and
                // hands it to the next one: seconds old, not part of the live stream. The
                // next group is.
                tracing::info!(
                    "the relay handed over group {sequence} of {}, {:.1} s old (kept from an earlier subscription): waiting for the next",
                    track.name,
                    age_us as f64 / 1e6
                );
                // Only the first: groups after it this old are the clock check's business
                // (frames of a restarted origin read against the old catalog's clock).
                first_group = false;
                break;
            }
            first_group = false;
            if let Some(off) = ctx.media_clock.mismatch_us(pts_us) {
                // A relay may still hold a restarted origin's old catalog (another clock)
                // while forwarding the new origin's frames: start over, catalog included.
                return format!(
                    "the frames of {} are {:.1} s away from the catalog's clock (a restarted origin?)",
                    track.name,
                    off as f64 / 1e6
                );
            }
            if let Some(old) = replaces.take() {
                old.abort();
            }
            tracing::trace!(
                "{} group {sequence} frame {index}: {} bytes, {:.1} ms after capture",
                track.name,
                payload.len(),
                age_us as f64 / 1e3
            );
            let header = FrameHeader {
                rendition: track.rendition,
                keyframe: index == 0,
                seq: seq
                    .lock()
                    .expect("not poisoned")
                    .frame(sequence, index, pts_us),
                capture_us: pts_us,
                payload_len: payload.len() as u32,
                timing: ServerTiming::default(),
            };
            index += 1;
            // A group is one ordered stream, so the reader waits for the decoder rather than
            // drop a frame every later one of the group needs: joining mid-group delivers
            // the group's frames since its keyframe at once (the decoder catches up, the
            // presenter shows the newest). Reading waits meanwhile; if it falls a group
            // behind, moq-net ends the stale group and the next starts at its keyframe.
            while ctx.decoder.len() >= FRAME_QUEUE {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            deliver_frame(
                &ctx.decoder,
                &ctx.counters,
                NetFrame {
                    header,
                    payload,
                    // A group's frames share one stream: each is complete when read.
                    first_byte_us: complete_us,
                    complete_us,
                },
            );
        }
    }
}

fn malformed_video(ctx: &TrackContext, track: &VideoTrack, what: String) {
    add(&ctx.counters.frames_malformed, 1);
    tracing::warn!(
        "the relay sent {what} on the track {}: its group is dropped",
        track.name
    );
}

/// Packet numbers for the jitter buffer: within a track, the group's sequence (one packet
/// per group) plus an offset; each audio bitrate is a track of its own with its own
/// numbering, so a reader (another bitrate, a resume) aligns its offset at its first packet
/// with the last packet delivered from any track, by the time between the two. Shared by the
/// readers; each keeps its own offset.
#[derive(Debug)]
pub struct AudioNumbering {
    packet_us: u64,
    /// The newest packet delivered: its number and capture time.
    last: Option<(u32, u64)>,
}

impl AudioNumbering {
    pub fn new(packet_us: u32) -> Self {
        Self {
            packet_us: u64::from(packet_us.max(1)),
            last: None,
        }
    }

    /// The offset for a track whose packet in group `group` was captured at `pts_us`; `None`
    /// while the track only repeats what another track delivered (the same capture times).
    pub fn align(&self, group: u64, pts_us: u64) -> Option<i64> {
        match self.last {
            Some((_, pts)) if pts_us <= pts => None,
            Some((seq, pts)) => {
                let periods = ((pts_us - pts + self.packet_us / 2) / self.packet_us).max(1);
                Some(i64::from(seq) + periods as i64 - group as i64)
            }
            None => Some(0),
        }
    }

    /// A packet went out with this number and capture time.
    pub fn delivered(&mut self, seq: u32, pts_us: u64) {
        if self.last.is_none_or(|(_, pts)| pts_us > pts) {
            self.last = Some((seq, pts_us));
        }
    }
}

/// Reads an audio track (one packet per group) until the track ends or the task is aborted.
/// `replaces`: the reader of the bitrate being left, stopped once this one delivers (so the
/// sound never stops for a switch).
pub async fn read_audio(
    broadcast: moq_net::broadcast::Consumer,
    name: String,
    ctx: TrackContext,
    numbering: Arc<Mutex<AudioNumbering>>,
    replaces: Option<AbortHandle>,
    standing: Arc<Standing>,
) -> String {
    let mut replaces = replaces;
    let mut offset: Option<i64> = None;
    let subscription = moq_net::track::Subscription::default()
        .with_priority(AUDIO_PRIORITY)
        .with_max_age(AUDIO_REORDER);
    let mut subscriber = match subscribe(&broadcast, &name, subscription).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    standing.subscribed(subscriber.control());
    loop {
        let mut group = match subscriber.recv_group().await {
            Ok(Some(g)) => g,
            Ok(None) => return format!("the track {name} ended"),
            Err(e) => return format!("the track {name} broke off: {e}"),
        };
        let frame = match group.read_frame().await {
            Ok(Some(f)) => f,
            // Empty, overtaken or reset: the packet is lost (the jitter buffer counts the gap).
            Ok(None) | Err(_) => continue,
        };
        if frame.payload.len() > MAX_AUDIO_OBJECT {
            add(&ctx.counters.audio_packets_malformed, 1);
            tracing::warn!(
                "the relay sent an audio object of {} bytes on {name}: dropped",
                frame.payload.len()
            );
            continue;
        }
        match decode_frame(frame.payload) {
            Ok((pts_us, payload)) => {
                ctx.media_clock.learn(pts_us);
                let seq = {
                    let mut n = numbering.lock().expect("not poisoned");
                    if offset.is_none() {
                        offset = n.align(group.sequence, pts_us);
                    }
                    // Not yet past what the track being left delivered.
                    let Some(offset) = offset else { continue };
                    let seq = (group.sequence as i64 + offset) as u32;
                    n.delivered(seq, pts_us);
                    seq
                };
                if let Some(old) = replaces.take() {
                    old.abort();
                }
                deliver_audio(
                    &ctx.audio,
                    &ctx.counters,
                    NetAudio {
                        header: AudioHeader {
                            seq,
                            capture_us: pts_us,
                        },
                        payload,
                    },
                );
            }
            Err(e) => {
                add(&ctx.counters.audio_packets_malformed, 1);
                tracing::debug!("the relay sent an audio object that is not a hang frame: {e}");
            }
        }
    }
}

async fn subscribe(
    broadcast: &moq_net::broadcast::Consumer,
    name: &str,
    subscription: moq_net::track::Subscription,
) -> Result<moq_net::track::Subscriber, String> {
    let track = broadcast
        .track(name)
        .map_err(|e| format!("the relay has no track {name}: {e}"))?;
    track
        .subscribe(subscription)
        .await
        .map_err(|e| format!("cannot subscribe to the track {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use moq_net::track::Subscription;

    #[test]
    fn a_reader_being_left_steps_aside_for_the_new_one() {
        let broadcast = moq_net::broadcast::Producer::new(Default::default());
        let track = broadcast
            .create_track("360p", streamsocket_moq::media::track_info(VIDEO_PRIORITY))
            .unwrap();
        let asked = || track.subscription().map(|s| s.priority);

        let subscriber = track.subscribe(Subscription::default().with_priority(VIDEO_PRIORITY));
        let standing = Standing::default();
        standing.subscribed(subscriber.control());
        assert_eq!(asked(), Some(VIDEO_PRIORITY));
        standing.step_aside();
        assert_eq!(asked(), Some(VIDEO_PRIORITY - 1), "what the relay is told");
        standing.step_aside();
        assert_eq!(
            asked(),
            Some(VIDEO_PRIORITY - 1),
            "once, not a step per call"
        );
        drop(subscriber);

        // Left before its subscription was made: it subscribes stepped aside.
        let subscriber = track.subscribe(Subscription::default().with_priority(AUDIO_PRIORITY));
        let standing = Standing::default();
        standing.step_aside();
        standing.subscribed(subscriber.control());
        assert_eq!(asked(), Some(AUDIO_PRIORITY - 1));
    }

    #[test]
    fn audio_numbers_continue_across_tracks() {
        let mut n = AudioNumbering::new(20_000);
        // A first track: its own group numbers.
        let first = n.align(500, 1_000_000).unwrap();
        for (group, pts) in [(500, 1_000_000), (501, 1_020_000)] {
            n.delivered((group + first) as u32, pts);
        }
        // Another bitrate's track, numbered from 7, overlapping: its copy of the packet
        // already delivered is skipped, the next continues at 502.
        assert_eq!(n.align(6, 1_020_000), None);
        let second = n.align(7, 1_040_000).unwrap();
        assert_eq!(7 + second, 502);
        assert_eq!(10 + second, 505, "3 packets later on it is 3 numbers later");
        n.delivered(505, 1_100_000);
        // A resume after a pause: the numbers skip the time paused.
        assert_eq!(9_000 + n.align(9_000, 3_100_000).unwrap(), 605);
    }

    const FRAME: u64 = 33_333;

    #[test]
    fn frames_are_numbered_through_complete_groups() {
        let mut s = Sequencer::new(30);
        let mut seqs = Vec::new();
        for (group, len) in [(4, 3), (5, 2)] {
            for i in 0..len {
                let pts = (group * 10 + i) * FRAME;
                seqs.push(s.frame(group, i, pts));
            }
            s.end_group(true);
        }
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        assert_eq!(
            s.resume_at(),
            Some(6),
            "a new subscription starts after group 5"
        );
        assert_eq!(
            Sequencer::new(30).resume_at(),
            None,
            "never read: the newest group"
        );
    }

    #[test]
    fn a_skipped_or_cut_group_leaves_a_gap_of_the_frames_missing() {
        let mut s = Sequencer::new(30);
        assert_eq!(s.frame(1, 0, 0), 0);
        assert_eq!(s.frame(1, 1, FRAME), 1);
        // Cut short after two frames; the next group starts 4 frame times later.
        s.end_group(false);
        assert_eq!(s.frame(2, 0, 5 * FRAME), 5, "frames 2, 3 and 4 are missing");
        s.end_group(true);
        // Group 3 was skipped: 10 frames in all are missing before group 4.
        assert_eq!(s.frame(4, 0, 16 * FRAME + 2_000), 16);
        // Capture jitter does not make a gap where none is.
        s.end_group(false);
        assert_eq!(s.frame(5, 0, 17 * FRAME - 3_000), 17);
    }
}
