//! Putting video frames back in order, and never decoding past a missing one.
//!
//! Frames arrive on independent streams, so in any order. An AV1 inter frame needs every
//! frame before it since the last keyframe: when a frame is missing for longer than the gap
//! timeout (or a newer keyframe is already here), the frames depending on it are skipped,
//! counted, and decoding resumes at the next keyframe, which the viewer asks for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the reorder stage needs of a frame.
pub trait Sequenced {
    fn seq(&self) -> u64;
    fn is_keyframe(&self) -> bool;
}

/// Frames kept while waiting for a gap to fill or for a keyframe; beyond this the oldest are
/// dropped (they would be too late to show anyway).
const MAX_PENDING: usize = 64;

#[derive(Debug)]
pub struct Reorder<F> {
    next_seq: Option<u64>,
    pending: BTreeMap<u64, F>,
    waiting_keyframe: bool,
    gap_since: Option<Instant>,
    gap_timeout: Duration,
    /// Frames never decoded because a frame before them was lost.
    pub skipped: u64,
    /// Frames that arrived after decoding had moved past them.
    pub late: u64,
    /// Times decoding had to wait for a keyframe after a loss.
    pub keyframe_waits: u64,
}

/// What the caller should do after feeding or polling the reorder stage.
#[derive(Debug)]
pub struct Ready<F> {
    /// Frames to decode, in order.
    pub frames: Vec<F>,
    /// Ask the server for a keyframe: decoding is stuck until one arrives.
    pub need_keyframe: bool,
}

impl<F> Default for Ready<F> {
    fn default() -> Self {
        Self {
            frames: Vec::new(),
            need_keyframe: false,
        }
    }
}

impl<F: Sequenced> Reorder<F> {
    pub fn new(gap_timeout: Duration) -> Self {
        Self {
            next_seq: None,
            pending: BTreeMap::new(),
            waiting_keyframe: true,
            gap_since: None,
            gap_timeout,
            skipped: 0,
            late: 0,
            keyframe_waits: 0,
        }
    }

    /// Takes a received frame and returns whatever became decodable.
    pub fn push(&mut self, frame: F, now: Instant) -> Ready<F> {
        let seq = frame.seq();
        if self.next_seq.is_some_and(|next| seq < next) || self.pending.contains_key(&seq) {
            self.late += 1;
            return Ready::default();
        }
        self.pending.insert(seq, frame);
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_first();
            self.skipped += 1;
        }
        self.drain(now)
    }

    /// Called periodically: declares a gap lost once it is older than the gap timeout.
    pub fn poll(&mut self, now: Instant) -> Ready<F> {
        if let Some(since) = self.gap_since {
            if now.duration_since(since) >= self.gap_timeout {
                self.lose_gap();
                let mut ready = self.drain(now);
                ready.need_keyframe |= self.waiting_keyframe;
                return ready;
            }
        }
        Ready::default()
    }

    /// The decoder failed on a frame: whatever follows depends on garbage.
    pub fn decoder_failed(&mut self) -> Ready<F> {
        if !self.waiting_keyframe {
            self.waiting_keyframe = true;
            self.keyframe_waits += 1;
        }
        Ready {
            frames: Vec::new(),
            need_keyframe: true,
        }
    }

    /// When the oldest unfilled gap started, if there is one.
    pub fn gap_deadline(&self) -> Option<Instant> {
        self.gap_since.map(|t| t + self.gap_timeout)
    }

    fn lose_gap(&mut self) {
        self.gap_since = None;
        self.waiting_keyframe = true;
        self.keyframe_waits += 1;
    }

    fn drain(&mut self, now: Instant) -> Ready<F> {
        let mut ready = Ready::default();
        loop {
            if self.waiting_keyframe {
                let Some(key_seq) = self
                    .pending
                    .values()
                    .find(|f| f.is_keyframe())
                    .map(|f| f.seq())
                else {
                    // Nothing decodable until a keyframe: everything pending is waste.
                    if let Some(next) = self.next_seq {
                        let newest = self.pending.keys().next_back().copied();
                        if let Some(newest) = newest {
                            self.skipped += newest + 1 - next;
                            self.next_seq = Some(newest + 1);
                        }
                    }
                    self.pending.clear();
                    self.gap_since = None;
                    break;
                };
                let from = self.next_seq.unwrap_or(key_seq);
                self.skipped += key_seq.saturating_sub(from);
                self.pending = self.pending.split_off(&key_seq);
                self.next_seq = Some(key_seq);
                self.waiting_keyframe = false;
            }
            let next = self.next_seq.expect("set once a keyframe was found");
            if let Some(frame) = self.pending.remove(&next) {
                ready.frames.push(frame);
                self.next_seq = Some(next + 1);
                self.gap_since = None;
                continue;
            }
            if self.pending.is_empty() {
                self.gap_since = None;
                break;
            }
            // A gap. A newer keyframe already here makes waiting pointless: jump to it.
            if self.pending.values().any(|f| f.is_keyframe()) {
                self.lose_gap();
                continue;
            }
            self.gap_since.get_or_insert(now);
            break;
        }
        ready.need_keyframe = self.waiting_keyframe && self.next_seq.is_some();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct F(u64, bool);
    impl Sequenced for F {
        fn seq(&self) -> u64 {
            self.0
        }
        fn is_keyframe(&self) -> bool {
            self.1
        }
    }

    fn seqs(r: &Ready<F>) -> Vec<u64> {
        r.frames.iter().map(|f| f.0).collect()
    }

    #[test]
    fn in_order_frames_pass_straight_through() {
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(seqs(&r.push(F(0, true), t)), vec![0]);
        assert_eq!(seqs(&r.push(F(1, false), t)), vec![1]);
        assert_eq!(seqs(&r.push(F(2, false), t)), vec![2]);
        assert_eq!(r.skipped, 0);
    }

    #[test]
    fn out_of_order_frames_are_reordered() {
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(seqs(&r.push(F(0, true), t)), vec![0]);
        assert!(r.push(F(2, false), t).frames.is_empty());
        assert!(r.push(F(3, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(1, false), t)), vec![1, 2, 3]);
        assert_eq!(r.skipped, 0);
    }

    #[test]
    fn nothing_is_decoded_before_the_first_keyframe() {
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        assert!(r.push(F(5, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(6, true), t)), vec![6]);
        assert_eq!(seqs(&r.push(F(7, false), t)), vec![7]);
    }

    #[test]
    fn a_lost_frame_skips_to_the_next_keyframe_and_asks_for_one() {
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        r.push(F(0, true), t);
        r.push(F(1, false), t);
        // 2 never arrives.
        assert!(r.push(F(3, false), t).frames.is_empty());
        assert!(r.push(F(4, false), t).frames.is_empty());
        assert!(
            r.poll(t + Duration::from_millis(50)).frames.is_empty(),
            "still waiting"
        );
        let lost = r.poll(t + Duration::from_millis(150));
        assert!(lost.frames.is_empty(), "3 and 4 depend on 2: never decoded");
        assert!(lost.need_keyframe);
        // Inter frames keep coming and are skipped until a keyframe.
        assert!(r.push(F(5, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(6, true), t)), vec![6]);
        assert_eq!(r.skipped, 4, "2, 3, 4, 5");
        assert_eq!(r.keyframe_waits, 1);
    }

    #[test]
    fn a_newer_keyframe_ends_the_wait_at_once() {
        let mut r = Reorder::new(Duration::from_secs(10));
        let t = Instant::now();
        r.push(F(0, true), t);
        assert!(r.push(F(2, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(3, true), t)), vec![3]);
        assert_eq!(r.skipped, 2, "1 missing, 2 undecodable");
        // The missing frame arriving now is late, not decoded.
        assert!(r.push(F(1, false), t).frames.is_empty());
        assert_eq!(r.late, 1);
    }

    #[test]
    fn decoder_failure_waits_for_a_keyframe() {
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        r.push(F(0, true), t);
        assert!(r.decoder_failed().need_keyframe);
        assert!(r.push(F(1, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(2, true), t)), vec![2]);
        assert_eq!(r.skipped, 1);
    }

    #[test]
    fn duplicates_are_ignored_and_pending_is_bounded() {
        let mut r = Reorder::new(Duration::from_secs(10));
        let t = Instant::now();
        r.push(F(0, true), t);
        r.push(F(0, true), t);
        assert_eq!(r.late, 1);
        for s in 2..200 {
            r.push(F(s, false), t);
        }
        assert!(r.pending.len() <= MAX_PENDING);
    }
}
