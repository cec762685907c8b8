//! Playout timing, sans-I/O: when each audio packet plays, how much delay to aim for, and the
//! audio clock that video follows.
//!
//! Audio is the master clock. Each packet plays at its capture time plus a playout delay;
//! the delay aims at a target that covers the audio's measured network jitter and the video's
//! measured latency (so pictures can be shown in sync instead of late), between a floor and a
//! ceiling (the viewer's latency target). Video pictures are shown at their capture time plus
//! the delay audio actually has ([`AvSync`]).
//!
//! The buffer holds packets by sequence number. Each 20 ms tick plays the next one, unless
//! the delay strayed from the target: too short and it stretches (conceals one packet
//! without advancing), too long and it drops packets to catch up. So the buffer never grows
//! without bound, however the sender's and the sound card's clocks drift.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use streamsocket_proto::media::AudioHeader;

/// One packet's duration until the packets say otherwise (a StreamSocket server sends 10 or
/// 20 ms packets; the audio stage reads each packet's duration and tells the buffer).
pub const DEFAULT_PACKET_US: u64 = 20_000;
/// The shortest packet the buffer is sized for.
const SHORTEST_PACKET_US: u64 = 10_000;
/// The least playout delay: a packet can play only once all its samples were captured.
pub const FLOOR_US: u64 = SHORTEST_PACKET_US;
/// The delay aimed for before the first packet's transit is measured.
pub const START_US: u64 = 40_000;
/// Above the slowest packets' transit: the tick timer's and the thread's wake-up jitter.
const AUDIO_MARGIN_US: u64 = 5_000;
/// Above the video's latency: the presenter's poll and the window's update.
const PRESENT_MARGIN_US: u64 = 3_000;
/// How far ahead of its sound a picture may be shown. Sound a little behind the picture is
/// natural (light outruns sound: 20 ms is 7 m away) and hardly noticed, and ATSC IS-191
/// accepts 45 ms of it, against 15 ms of sound ahead of the picture. So a picture does not
/// wait for the last 20 ms of its sound's delay (which, with 20 ms packets, is mostly the
/// packet filling up at the sender): it is shown up to this much before the sound of the
/// same instant, and audio waits for video only beyond it.
pub const PICTURE_LEAD_US: u64 = 20_000;
/// Delay this far under the target stretches playout by one packet. Less than the packet's
/// own share of the target, so a slow drift stretches before the buffer runs dry.
const STRETCH_BELOW_US: u64 = 10_000;
/// Delay this far over the target drops packets to catch up (after a stall or a burst).
/// Smaller errors are nudged away a millisecond per packet ([`Nudger`]), without the
/// audible jump of a dropped packet; a narrower band made jittery paths (a microphone
/// delivering in bursts) alternate between drops and stretches.
const CATCH_UP_ABOVE_US: u64 = 40_000;
/// Per packet, the most playout is shortened or lengthened to follow the target: 1 ms in
/// 20 (5%), spliced with a crossfade, too little to hear as a change of tempo, and enough to
/// follow any clock drift or bring the delay back within a packet's time.
pub const MAX_NUDGE_US: u64 = 1_000;
/// A delay this close to the target (smoothed) is left alone.
const NUDGE_DEADBAND_US: u64 = 2_000;
/// How much of each new reading the smoothed delay error takes (about ten packets' memory).
const NUDGE_SMOOTHING: f64 = 0.1;
/// Crossfade length of a splice, samples (5 ms at 48 kHz).
const SPLICE_SAMPLES: usize = 240;
/// The longest splice searched for an in-phase point, samples (2 ms at 48 kHz: with the
/// 1 ms asked for, a whole period of any tone above 500 Hz is within reach).
const SPLICE_SEARCH: usize = 96;
/// After this long with nothing to play, stop and re-buffer rather than conceal an outage.
const MAX_CONCEALED_US: u64 = 100_000;
/// How many recent packets (3 s) the audio's jitter is measured over.
const AUDIO_WINDOW: usize = 150;
/// How many recent pictures (3 s at 30 fps) the video's latency is measured over.
const VIDEO_WINDOW: usize = 90;

/// An audio packet as it came off the network.
#[derive(Debug)]
pub struct NetAudio {
    pub header: AudioHeader,
    pub payload: Bytes,
}

/// What to play at the next 20 ms tick.
#[derive(Debug, PartialEq)]
pub enum Playout {
    /// Decode this packet.
    Packet(AudioHeader, Bytes),
    /// The packet is missing; rebuild it from the next one's FEC data if given, else conceal.
    Missing { seq: u32, next: Option<Bytes> },
    /// The delay is below its target: play 20 ms of concealment without advancing.
    Stretch,
    /// Buffering: play silence.
    Idle,
}

/// Orders packets by sequence number and decides what plays at each tick.
#[derive(Debug)]
pub struct JitterBuffer {
    pending: BTreeMap<u32, NetAudio>,
    next_seq: Option<u32>,
    /// Capture time of the last packet played or concealed.
    last_capture_us: Option<u64>,
    concealed_run: u32,
    ceiling_us: u64,
    max_depth: usize,
    packet_us: u64,
    pub late: u64,
    pub dropped_overflow: u64,
    /// Packets dropped (or gaps skipped) to bring the delay back down to the target.
    pub dropped_catch_up: u64,
    pub stretched: u64,
}

impl JitterBuffer {
    /// A buffer for delays up to `ceiling_us`.
    pub fn new(ceiling_us: u64) -> Self {
        Self {
            pending: BTreeMap::new(),
            next_seq: None,
            last_capture_us: None,
            concealed_run: 0,
            ceiling_us,
            // The ceiling's worth of the shortest packets, plus room for a burst at once.
            max_depth: (ceiling_us / SHORTEST_PACKET_US) as usize + 10,
            packet_us: DEFAULT_PACKET_US,
            late: 0,
            dropped_overflow: 0,
            dropped_catch_up: 0,
            stretched: 0,
        }
    }

    pub fn insert(&mut self, packet: NetAudio) {
        let seq = packet.header.seq;
        if self.next_seq.is_some_and(|n| seq < n) {
            self.late += 1;
            return;
        }
        self.pending.insert(seq, packet);
        while self.pending.len() > self.max_depth {
            self.pending.pop_first();
            self.dropped_overflow += 1;
            if let (Some(n), Some(first)) = (self.next_seq, self.pending.keys().next()) {
                self.next_seq = Some(n.max(*first));
            }
        }
    }

    /// One packet's duration, as the packets say; the depth bound follows it.
    pub fn set_packet_us(&mut self, packet_us: u64) {
        self.packet_us = packet_us.max(1);
        self.max_depth = (self.ceiling_us / self.packet_us.min(SHORTEST_PACKET_US)) as usize + 10;
    }

    pub fn packet_us(&self) -> u64 {
        self.packet_us
    }

    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    pub fn playing(&self) -> bool {
        self.next_seq.is_some()
    }

    /// The capture time of slot `seq`: the packet's own, or one packet after the last one.
    fn capture_of(&self, seq: u32) -> Option<u64> {
        self.pending
            .get(&seq)
            .map(|p| p.header.capture_us)
            .or(self.last_capture_us.map(|c| c + self.packet_us))
    }

    /// Called once per packet duration. `now_us` is when this tick's samples will be heard, on the
    /// server's clock; `target_us` the playout delay to aim for.
    pub fn tick(&mut self, now_us: u64, target_us: u64) -> Playout {
        let Some(mut seq) = self.next_seq else {
            // Start once the first packet has waited out the target delay.
            let Some(first) = self.pending.values().next() else {
                return Playout::Idle;
            };
            if now_us.saturating_sub(first.header.capture_us) < target_us {
                return Playout::Idle;
            }
            self.next_seq = Some(first.header.seq);
            self.last_capture_us = None;
            return self.tick(now_us, target_us);
        };
        // Too far behind: skip slots while later packets wait.
        while let Some(capture) = self.capture_of(seq) {
            let behind = now_us.saturating_sub(capture) > target_us + CATCH_UP_ABOVE_US;
            if !behind || self.pending.range(seq.wrapping_add(1)..).next().is_none() {
                break;
            }
            self.pending.remove(&seq);
            self.dropped_catch_up += 1;
            self.last_capture_us = Some(capture);
            seq = seq.wrapping_add(1);
        }
        self.next_seq = Some(seq);
        if let Some(p) = self.pending.get(&seq) {
            if now_us + STRETCH_BELOW_US < p.header.capture_us + target_us {
                self.stretched += 1;
                return Playout::Stretch;
            }
            let p = self.pending.remove(&seq).expect("present");
            self.next_seq = Some(seq.wrapping_add(1));
            self.last_capture_us = Some(p.header.capture_us);
            self.concealed_run = 0;
            return Playout::Packet(p.header, p.payload);
        }
        if self.pending.is_empty() {
            self.concealed_run += 1;
            if self.concealed_run as u64 * self.packet_us > MAX_CONCEALED_US {
                // An outage, not a loss: stop and re-buffer from whatever comes next.
                self.next_seq = None;
                self.concealed_run = 0;
                return Playout::Idle;
            }
        }
        self.next_seq = Some(seq.wrapping_add(1));
        self.last_capture_us = self.capture_of(seq);
        let next = self
            .pending
            .get(&seq.wrapping_add(1))
            .map(|p| p.payload.clone());
        Playout::Missing { seq, next }
    }
}

/// Decides, packet by packet, how many samples (at `sample_rate`) to take out of (negative)
/// or add to (positive) the packet about to play, so that the playout delay stays within a
/// few milliseconds of its target: a whole-packet stretch or drop is too coarse for that. It
/// follows the delay's error smoothed over about ten packets, because a sound card's queue
/// drains in bursts and makes each single reading jump; and it acts only beyond a dead band,
/// so that a steady stream is left untouched.
#[derive(Debug, Default)]
pub struct Nudger {
    /// `None` until the first packet (or a reset).
    smoothed_error_us: Option<f64>,
}

impl Nudger {
    pub fn samples(&mut self, delay_us: u64, target_us: u64, sample_rate: u32) -> i32 {
        let error = delay_us as f64 - target_us as f64;
        // From zero: playout starts (and restarts) at its target.
        let previous = self.smoothed_error_us.unwrap_or(0.0);
        let smoothed = previous + (error - previous) * NUDGE_SMOOTHING;
        self.smoothed_error_us = Some(smoothed);
        if smoothed.abs() <= NUDGE_DEADBAND_US as f64 {
            return 0;
        }
        let us = smoothed.abs().min(MAX_NUDGE_US as f64);
        let samples = (us * sample_rate as f64 / 1e6) as i32;
        if smoothed > 0.0 {
            -samples
        } else {
            samples
        }
    }

    /// The packet was changed by `samples` (what [`retime`] did, which may differ from what
    /// was asked): that much of the error is gone.
    pub fn applied(&mut self, samples: i32, sample_rate: u32) {
        if let Some(s) = self.smoothed_error_us.as_mut() {
            *s += samples as f64 * 1e6 / sample_rate as f64;
        }
    }

    /// A jump (a dropped or stretched packet, a new start): forget the history.
    pub fn reset(&mut self) {
        self.smoothed_error_us = None;
    }
}

/// `pcm` shortened (`change < 0`) or lengthened (`change > 0`) by about `|change|`
/// samples without changing its pitch: a splice in the middle crossfades from one point of
/// the waveform to a point further on (or back). The splice length is chosen between half
/// and twice `|change|` (at most [`SPLICE_SEARCH`] samples) where the two points' waveforms
/// agree best, so a periodic sound (a tone, a voice) is spliced in phase instead of
/// cancelling itself in the crossfade; the returned length says what was done. A packet left
/// alone (no change asked, or too short for a splice) is returned as it is, not copied.
pub fn retime(pcm: &[i16], change: i32) -> std::borrow::Cow<'_, [i16]> {
    let want = change.unsigned_abs() as usize;
    // Splice a quarter of the way in, crossfading over a quarter (at most 5 ms): a 10 ms
    // packet has room for it and a 1 ms nudge.
    let l = SPLICE_SAMPLES.min(pcm.len() / 4);
    let m = l;
    let shortest = (want / 2).max(1);
    let longest = (want * 2)
        .min(SPLICE_SEARCH)
        .max(want)
        .min(pcm.len().saturating_sub(m + l));
    // Below half a millisecond of crossfade a splice would click.
    if want == 0 || l < 24 || longest < shortest {
        return pcm.into();
    }
    // How alike the crossfaded stretches are at a lag of k samples (normalised correlation),
    // a little in favour of the length asked for when several agree as well (silence).
    let score = |k: usize| -> f64 {
        let (a, b) = (&pcm[m..m + l], &pcm[m + k..m + k + l]);
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64, y as f64);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        let alike = if aa == 0.0 || bb == 0.0 {
            1.0
        } else {
            ab / (aa * bb).sqrt()
        };
        alike - 0.001 * (k as f64 - want as f64).abs() / want as f64
    };
    // Each lag scored once.
    let (k, _) = (shortest..=longest)
        .map(|k| (k, score(k)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a non-empty range");
    let mix = |from: i16, to: i16, j: usize| -> i16 {
        let w = (j as f32 + 0.5) / l as f32;
        (from as f32 * (1.0 - w) + to as f32 * w).round() as i16
    };
    let mut out = Vec::with_capacity(pcm.len() + k);
    if change < 0 {
        // ... m | fade pcm[m..m+l] into pcm[m+k..m+k+l] | pcm[m+k+l..]
        out.extend_from_slice(&pcm[..m]);
        out.extend((0..l).map(|j| mix(pcm[m + j], pcm[m + k + j], j)));
        out.extend_from_slice(&pcm[m + k + l..]);
    } else {
        // ... m+k | fade pcm[m+k..m+k+l] into pcm[m..m+l] | pcm[m+l..]: k samples twice.
        out.extend_from_slice(&pcm[..m + k]);
        out.extend((0..l).map(|j| mix(pcm[m + k + j], pcm[m + j], j)));
        out.extend_from_slice(&pcm[m + l..]);
    }
    out.into()
}

/// The playout delay to aim for, from what arrives.
#[derive(Debug)]
pub struct PlayoutTarget {
    /// Recent audio transit times: arrival minus capture, server clock.
    transit_us: VecDeque<u64>,
    ceiling_us: u64,
}

impl PlayoutTarget {
    pub fn new(ceiling_us: u64) -> Self {
        Self {
            transit_us: VecDeque::with_capacity(AUDIO_WINDOW),
            ceiling_us: ceiling_us.max(FLOOR_US),
        }
    }

    /// A packet captured at `capture_us` arrived at `arrival_us` (both server clock).
    pub fn on_audio(&mut self, capture_us: u64, arrival_us: u64) {
        push_bounded(
            &mut self.transit_us,
            arrival_us.saturating_sub(capture_us),
            AUDIO_WINDOW,
        );
    }

    /// The audio's own need, following the measured jitter: late enough for 99% of packets
    /// to be there in time (their transit includes the packet's own duration), plus a
    /// margin for waking up on time.
    pub fn audio_need_us(&self) -> u64 {
        quantile(&self.transit_us, 0.99).map_or(START_US, |t| t + AUDIO_MARGIN_US)
    }

    /// The jitter the audio sees: how much later than the quickest packet the 95th percentile
    /// arrives.
    pub fn jitter_us(&self) -> u64 {
        match (
            quantile(&self.transit_us, 0.95),
            self.transit_us.iter().min(),
        ) {
            (Some(p95), Some(min)) => p95 - min,
            _ => 0,
        }
    }

    /// The delay to aim for, given the video's need (its recent latency, when there is
    /// video) and how long the output holds samples before they are heard.
    pub fn target_us(&self, video_need_us: Option<u64>, output_queue_us: u64) -> u64 {
        (self.audio_need_us() + output_queue_us)
            .max(video_need_us.unwrap_or(0))
            .clamp(FLOOR_US, self.ceiling_us)
    }
}

/// What audio and video share to stay in sync: audio publishes the playout delay it has,
/// video its recent latency (capture to decoded).
#[derive(Debug, Default)]
pub struct AvSync {
    /// Capture-to-heard delay of the audio playing now, µs; 0 while no audio plays.
    audio_delay_us: AtomicU64,
    /// The most delay audio will take (the viewer's latency target), µs; 0: no limit.
    ceiling_us: AtomicU64,
    /// One audio packet's duration, µs (0: not known yet, taken as the default).
    packet_us: AtomicU64,
    video_latency_us: Mutex<VecDeque<u64>>,
}

impl AvSync {
    pub fn set_audio_delay(&self, delay_us: Option<u64>) {
        self.audio_delay_us
            .store(delay_us.unwrap_or(0), Ordering::Relaxed);
    }

    /// The delay audio plays at; `None` while no audio plays (video then shows pictures as
    /// soon as they are decoded).
    pub fn audio_delay_us(&self) -> Option<u64> {
        match self.audio_delay_us.load(Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    pub fn set_ceiling(&self, ceiling_us: u64) {
        self.ceiling_us.store(ceiling_us, Ordering::Relaxed);
    }

    /// Whether audio can still wait for late pictures. At its ceiling it cannot: pictures
    /// later than the sound are then shown late rather than dropped, since dropping them all
    /// would freeze the picture while sync is out of reach anyway.
    pub fn audio_can_wait(&self) -> bool {
        let ceiling = self.ceiling_us.load(Ordering::Relaxed);
        let packet = match self.packet_us.load(Ordering::Relaxed) {
            0 => DEFAULT_PACKET_US,
            p => p,
        };
        ceiling == 0 || self.audio_delay_us.load(Ordering::Relaxed) + packet < ceiling
    }

    /// The audio packets' duration (what one stretch adds to the delay).
    pub fn set_packet_us(&self, packet_us: u64) {
        self.packet_us.store(packet_us, Ordering::Relaxed);
    }

    /// A picture is ready to show (decoded and converted), `latency_us` after its capture.
    pub fn on_video_ready(&self, latency_us: u64) {
        push_bounded(
            &mut self.video_latency_us.lock().expect("not poisoned"),
            latency_us,
            VIDEO_WINDOW,
        );
    }

    /// The delay video needs from the audio for 95% of its pictures to be ready in time (plus
    /// a little for showing them), given that pictures may lead their sound by
    /// [`PICTURE_LEAD_US`].
    pub fn video_need_us(&self) -> Option<u64> {
        quantile(&self.video_latency_us.lock().expect("not poisoned"), 0.95)
            .map(|l| (l + PRESENT_MARGIN_US).saturating_sub(PICTURE_LEAD_US))
    }
}

fn push_bounded(window: &mut VecDeque<u64>, value: u64, len: usize) {
    if window.len() == len {
        window.pop_front();
    }
    window.push_back(value);
}

fn quantile(values: &VecDeque<u64>, q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<u64> = values.iter().copied().collect();
    sorted.sort_unstable();
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: u64 = 60_000;
    const PACKET_US: u64 = DEFAULT_PACKET_US;

    fn pkt(seq: u32) -> NetAudio {
        NetAudio {
            header: AudioHeader {
                seq,
                capture_us: 1_000_000 + seq as u64 * PACKET_US,
            },
            payload: Bytes::from(vec![seq as u8]),
        }
    }

    /// The server-clock time at which packet `seq` is due with the target delay.
    fn due(seq: u32) -> u64 {
        1_000_000 + seq as u64 * PACKET_US + TARGET
    }

    fn played(p: &Playout) -> Option<u32> {
        match p {
            Playout::Packet(h, _) => Some(h.seq),
            _ => None,
        }
    }

    #[test]
    fn playout_starts_when_the_first_packet_has_waited_out_the_target() {
        let mut j = JitterBuffer::new(300_000);
        j.insert(pkt(0));
        assert_eq!(j.tick(due(0) - 1, TARGET), Playout::Idle);
        j.insert(pkt(1));
        assert_eq!(played(&j.tick(due(0), TARGET)), Some(0));
        assert_eq!(played(&j.tick(due(1), TARGET)), Some(1));
    }

    #[test]
    fn a_missing_packet_is_concealed_with_fec_from_the_next() {
        let mut j = JitterBuffer::new(300_000);
        for s in [0, 1, 3] {
            j.insert(pkt(s));
        }
        assert_eq!(played(&j.tick(due(0), TARGET)), Some(0));
        assert_eq!(played(&j.tick(due(1), TARGET)), Some(1));
        assert_eq!(
            j.tick(due(2), TARGET),
            Playout::Missing {
                seq: 2,
                next: Some(Bytes::from(vec![3u8]))
            }
        );
        assert_eq!(played(&j.tick(due(3), TARGET)), Some(3));
        // Packet 2 arriving now is late.
        j.insert(pkt(2));
        assert_eq!(j.late, 1);
    }

    #[test]
    fn an_outage_stops_playout_instead_of_concealing_forever() {
        let mut j = JitterBuffer::new(300_000);
        j.insert(pkt(0));
        j.insert(pkt(1));
        j.tick(due(0), TARGET);
        j.tick(due(1), TARGET);
        let mut concealed = 0;
        let mut seq = 2;
        while let Playout::Missing { .. } = j.tick(due(seq), TARGET) {
            concealed += 1;
            seq += 1;
        }
        assert_eq!(concealed as u64, MAX_CONCEALED_US / PACKET_US);
        assert!(!j.playing());
        // Playout resumes at what arrives after the outage, at the target delay, not at the
        // backlog's start.
        j.insert(pkt(100));
        j.insert(pkt(101));
        assert_eq!(j.tick(due(100) - 10_000, TARGET), Playout::Idle);
        assert_eq!(played(&j.tick(due(100), TARGET)), Some(100));
    }

    #[test]
    fn a_delay_above_the_target_drops_packets_to_catch_up() {
        let mut j = JitterBuffer::new(300_000);
        for s in 0..20 {
            j.insert(pkt(s));
        }
        // Playing starts late: 200 ms behind packet 0's due time.
        let now = due(0) + 200_000;
        let first = played(&j.tick(now, TARGET)).expect("plays");
        assert_eq!(first, 8, "skips to within the margin of the target");
        assert_eq!(j.dropped_catch_up, first as u64);
        // And then plays on, one per tick.
        assert_eq!(played(&j.tick(now + PACKET_US, TARGET)), Some(first + 1));
    }

    #[test]
    fn a_delay_below_the_target_stretches() {
        let mut j = JitterBuffer::new(300_000);
        for s in 0..10 {
            j.insert(pkt(s));
        }
        assert_eq!(played(&j.tick(due(0), TARGET)), Some(0));
        // The target rises by 100 ms: playout holds back until the delay reaches it.
        let target = TARGET + 100_000;
        let mut stretched = 0;
        let mut now = due(1);
        while j.tick(now, target) == Playout::Stretch {
            stretched += 1;
            now += PACKET_US;
        }
        assert_eq!(stretched, 5);
        assert_eq!(j.stretched, stretched);
    }

    #[test]
    fn the_buffer_never_grows_past_its_ceiling() {
        let mut j = JitterBuffer::new(100_000);
        for s in 0..50 {
            j.insert(pkt(s));
        }
        // 100 ms of the shortest (10 ms) packets, plus 10.
        assert_eq!(j.depth(), 20);
        assert_eq!(j.dropped_overflow, 30);
    }

    #[test]
    fn a_long_run_with_a_drifting_clock_keeps_the_delay_bounded() {
        // The viewer's ticks run 1% fast (without correction the buffer would drain) or 1%
        // slow (the delay would grow without end) against the sender: with it, the delay
        // stays near the target and every packet is counted.
        for (rate_percent, stretching) in [(99, true), (101, false)] {
            let mut j = JitterBuffer::new(300_000);
            let mut now = due(0);
            let mut sent = 0u32;
            let (mut played_n, mut stretches) = (0u64, 0u64);
            for tick in 0..30_000u64 {
                // Packets arrive 40 ms after capture.
                while 1_000_000 + sent as u64 * PACKET_US + 40_000 <= now {
                    j.insert(pkt(sent));
                    sent += 1;
                }
                match j.tick(now, TARGET) {
                    Playout::Packet(h, _) => {
                        played_n += 1;
                        let delay = now - h.capture_us;
                        assert!(
                            delay + STRETCH_BELOW_US >= TARGET
                                && delay <= TARGET + CATCH_UP_ABOVE_US,
                            "{rate_percent}%, tick {tick}: delay {delay}"
                        );
                    }
                    Playout::Stretch => stretches += 1,
                    other => panic!("tick {tick}: {other:?}"),
                }
                now += PACKET_US * rate_percent / 100;
            }
            assert!(j.depth() <= 5, "depth {}", j.depth());
            assert_eq!(stretches > 0, stretching, "{rate_percent}%");
            assert_eq!(j.dropped_catch_up > 0, !stretching, "{rate_percent}%");
            assert_eq!(
                played_n + j.dropped_catch_up + j.depth() as u64,
                sent as u64
            );
        }
    }

    #[test]
    fn the_target_covers_jitter_and_video_between_floor_and_ceiling() {
        let mut t = PlayoutTarget::new(300_000);
        assert_eq!(t.target_us(None, 0), START_US, "nothing measured yet");
        // A clean path: every packet 21 ms after its capture (20 ms of it the packet's own
        // duration). The target follows: no fixed floor above what the audio needs.
        for i in 0..150u64 {
            t.on_audio(i * PACKET_US, i * PACKET_US + 21_000);
        }
        assert_eq!(t.jitter_us(), 0);
        assert_eq!(t.target_us(None, 0), 26_000);
        assert_eq!(t.target_us(Some(5_000), 0), 26_000, "video is quicker");
        assert_eq!(
            t.target_us(None, 30_000),
            56_000,
            "a sound card holding 30 ms: heard 30 ms later"
        );
        // Transit 30 ms, every tenth packet 110 ms: the slow ones set the target.
        for i in 0..150u64 {
            let transit = if i % 10 == 0 { 110_000 } else { 30_000 };
            t.on_audio(i * PACKET_US, i * PACKET_US + transit);
        }
        assert_eq!(t.jitter_us(), 80_000);
        assert_eq!(t.target_us(None, 0), 115_000);
        assert_eq!(t.target_us(Some(200_000), 0), 200_000, "video needs more");
        assert_eq!(t.target_us(Some(900_000), 0), 300_000, "the ceiling");
    }

    #[test]
    fn a_lasting_delay_error_is_nudged_away_and_a_jumpy_one_is_left_alone() {
        // 10 ms too late, steadily: shortened by at most 1 ms a packet until the delay is
        // within a few milliseconds of the target.
        let mut n = Nudger::default();
        let mut delay = 40_000u64;
        for _ in 0..60 {
            let change = n.samples(delay, 30_000, 48_000);
            assert!((-48..=0).contains(&change), "{change}");
            n.applied(change, 48_000);
            delay -= (-change) as u64 * 1_000_000 / 48_000;
        }
        assert!((30_000..=33_000).contains(&delay), "{delay}");
        // Readings that jump ±10 ms around the target (a sound card's queue draining in
        // bursts) average out: nothing to do.
        let mut n = Nudger::default();
        let nudged: i32 = (0..200)
            .map(|i| n.samples(if i % 2 == 0 { 40_000 } else { 20_000 }, 30_000, 48_000))
            .map(i32::abs)
            .sum();
        assert!(nudged <= 96, "{nudged} samples nudged for noise");
        // Too early, lastingly: lengthened.
        let mut n = Nudger::default();
        let changes: Vec<i32> = (0..5).map(|_| n.samples(20_000, 30_000, 48_000)).collect();
        assert_eq!(changes[..2], [0, 0], "not at once: it may be noise");
        assert!(changes[2..].iter().all(|&c| c == 48), "{changes:?}");
    }

    #[test]
    fn retiming_changes_the_length_and_keeps_the_waveform_whole() {
        let tone = |hz: f32| -> Vec<i16> {
            (0..960)
                .map(|i| {
                    ((i as f32 * 2.0 * std::f32::consts::PI * hz / 48_000.0).sin() * 8000.0) as i16
                })
                .collect()
        };
        let largest_step = |pcm: &[i16]| {
            pcm.windows(2)
                .map(|w| (w[1] as i32 - w[0] as i32).abs())
                .max()
                .unwrap_or(0)
        };
        let rms = |pcm: &[i16]| {
            (pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
        };
        // 440 Hz (the test tone; its period, 109 samples, is longer than any splice), and
        // 1 kHz (a period of 48 samples).
        for hz in [440.0, 1000.0] {
            let pcm = tone(hz);
            for change in [-48, -10, 10, 48] {
                let out = retime(&pcm, change);
                let k = out.len() as i32 - 960;
                assert!(
                    k.signum() == change.signum()
                        && k.abs() >= change.abs() / 2
                        && k.abs() <= (change.abs() * 2).max(change.abs()),
                    "{hz} Hz, {change}: changed by {k}"
                );
                // No click, and no dip where the crossfade mixes the two points.
                assert!(
                    largest_step(&out) <= largest_step(&pcm) * 2,
                    "{hz} Hz, {change}: a click"
                );
                assert!(
                    rms(&out) > rms(&pcm) * 0.97,
                    "{hz} Hz, {change}: level {:.0} against {:.0}",
                    rms(&out),
                    rms(&pcm)
                );
                // The start and the end are the packet's own samples.
                assert_eq!(out[..SPLICE_SAMPLES], pcm[..SPLICE_SAMPLES]);
                assert_eq!(out[out.len() - 100..], pcm[960 - 100..]);
            }
        }
        let pcm = tone(440.0);
        assert_eq!(retime(&pcm, 0), pcm);
        assert_eq!(
            retime(&pcm[..80], -10),
            pcm[..80].to_vec(),
            "too short to splice"
        );
        // Silence: any splice will do, the one asked for is taken.
        assert_eq!(retime(&[0; 960], -30).len(), 930);
        // A 10 ms packet is retimed too.
        assert_eq!(retime(&[0; 480], 48).len(), 528);
        let short = &tone(1000.0)[..480];
        assert!(rms(&retime(short, -48)) > rms(short) * 0.97);
    }

    #[test]
    fn video_follows_the_audio_delay() {
        let sync = AvSync::default();
        assert_eq!(sync.audio_delay_us(), None);
        sync.set_audio_delay(Some(120_000));
        assert_eq!(sync.audio_delay_us(), Some(120_000));
        assert_eq!(sync.video_need_us(), None);
        for l in 0..100 {
            sync.on_video_ready(100_000 + l * 1000);
        }
        // The last 90 pictures: 110..199 ms; 95th percentile 195 ms, plus 3 to show it, less
        // the 20 ms a picture may lead its sound.
        assert_eq!(sync.video_need_us(), Some(178_000));
        sync.set_audio_delay(None);
        assert_eq!(sync.audio_delay_us(), None);
        sync.set_ceiling(300_000);
        sync.set_audio_delay(Some(200_000));
        assert!(sync.audio_can_wait());
        sync.set_audio_delay(Some(295_000));
        assert!(!sync.audio_can_wait(), "at the ceiling");
    }
}
