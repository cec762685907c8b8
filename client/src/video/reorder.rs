//! Putting video frames back in order, and never decoding past a missing one.
//!
//! Frames arrive on independent streams, so in any order. An AV1 inter frame needs every
//! frame before it since the last keyframe. When a frame is missing for longer than the gap
//! timeout the viewer asks for a keyframe, and whichever comes first ends the wait: the
//! missing frame (its retransmission was only slow; everything after it is decoded, late
//! but not lost) or a newer keyframe (the frames in between are skipped and counted).

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

/// While a gap lasts past its timeout, the keyframe request is repeated this often (the
/// server honours at most one forced keyframe per 500 ms per rendition).
pub const REASK_KEYFRAME: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Reorder<F> {
    next_seq: Option<u64>,
    pending: BTreeMap<u64, F>,
    waiting_keyframe: bool,
    gap_since: Option<Instant>,
    gap_timeout: Duration,
    /// When a keyframe was last asked for because of the current gap.
    asked_keyframe: Option<Instant>,
    /// Frames never decoded because a frame before them was lost.
    pub skipped: u64,
    /// Frames that arrived after decoding had moved past them.
    pub late: u64,
    /// Losses that made decoding ask for a keyframe (a gap past the timeout, counted once
    /// even if a late retransmission then filled it; a decoder failure; a broken chain).
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
            asked_keyframe: None,
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
        // Drained first: the frame that just came may be the one everything waits for.
        let mut ready = self.drain(now);
        if self.pending.len() > MAX_PENDING {
            while self.pending.len() > MAX_PENDING {
                let Some((oldest, _)) = self.pending.pop_first() else {
                    break;
                };
                // Counted once: from where decoding stood to the dropped frame.
                if let Some(next) = self.next_seq.filter(|&next| oldest >= next) {
                    self.skipped += oldest + 1 - next;
                    self.next_seq = Some(oldest + 1);
                }
            }
            // What was dropped broke the chain: waiting for the gap is pointless now.
            if !self.waiting_keyframe {
                self.lose_gap();
            }
            ready.need_keyframe |= self.waiting_keyframe && self.next_seq.is_some();
        }
        ready
    }

    /// Called when [`Self::gap_deadline`] passes: a gap older than the gap timeout asks for a
    /// keyframe (again every [`REASK_KEYFRAME`] while it lasts). The frames after the gap are
    /// kept: the missing one may still come, and then nothing is skipped.
    pub fn poll(&mut self, now: Instant) -> Ready<F> {
        match self.gap_deadline() {
            Some(due) if now >= due => {
                if self.asked_keyframe.replace(now).is_none() {
                    self.keyframe_waits += 1;
                }
                Ready {
                    frames: Vec::new(),
                    need_keyframe: true,
                }
            }
            _ => Ready::default(),
        }
    }

    /// The decoder failed on a frame: whatever follows depends on garbage.
    pub fn decoder_failed(&mut self) -> Ready<F> {
        if !self.waiting_keyframe {
            self.waiting_keyframe = true;
            self.keyframe_waits += 1;
        }
        self.end_gap();
        Ready {
            frames: Vec::new(),
            need_keyframe: true,
        }
    }

    /// The frame a gap waits for, if there is a gap.
    pub fn awaited(&self) -> Option<u64> {
        self.gap_since.and(self.next_seq)
    }

    /// When [`Self::poll`] should next be called: the gap timeout, then every
    /// [`REASK_KEYFRAME`] while the gap lasts.
    pub fn gap_deadline(&self) -> Option<Instant> {
        let since = self.gap_since?;
        Some(match self.asked_keyframe {
            None => since + self.gap_timeout,
            Some(asked) => asked + REASK_KEYFRAME,
        })
    }

    /// Gives up on the gap: decoding waits for a keyframe.
    fn lose_gap(&mut self) {
        if self.asked_keyframe.is_none() {
            self.keyframe_waits += 1;
        }
        self.end_gap();
        self.waiting_keyframe = true;
    }

    fn end_gap(&mut self) {
        self.gap_since = None;
        self.asked_keyframe = None;
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
                    // Nothing decodable until a keyframe. What is pending is kept: a keyframe
                    // is larger than the frames after it, so on a lossy path it often
                    // completes after them, and they follow it (skipped once it comes if not).
                    self.end_gap();
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
                self.end_gap();
                continue;
            }
            if self.pending.is_empty() {
                self.end_gap();
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
        assert_eq!(r.gap_deadline(), Some(t + Duration::from_millis(100)));
        let overdue = r.poll(t + Duration::from_millis(150));
        assert!(overdue.frames.is_empty(), "3 and 4 depend on 2");
        assert!(overdue.need_keyframe);
        assert!(
            !r.poll(t + Duration::from_millis(160)).need_keyframe,
            "asked once"
        );
        assert_eq!(
            r.gap_deadline(),
            Some(t + Duration::from_millis(150) + REASK_KEYFRAME)
        );
        assert!(
            r.poll(t + Duration::from_millis(150) + REASK_KEYFRAME)
                .need_keyframe,
            "asked again while the gap lasts"
        );
        // Inter frames keep coming; the keyframe ends the wait, and what it overtook is skipped.
        assert!(r.push(F(5, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(6, true), t)), vec![6]);
        assert_eq!(r.skipped, 4, "2, 3, 4, 5");
        assert_eq!(r.keyframe_waits, 1);
        assert_eq!(r.gap_deadline(), None);
    }

    #[test]
    fn a_slow_retransmission_before_the_keyframe_loses_nothing() {
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        r.push(F(0, true), t);
        assert!(r.push(F(2, false), t).frames.is_empty());
        assert!(r.push(F(3, false), t).frames.is_empty());
        assert!(r.poll(t + Duration::from_millis(100)).need_keyframe);
        assert!(
            r.push(F(4, false), t).frames.is_empty(),
            "still waiting for 1"
        );
        // 1 arrives after the timeout, before any keyframe: 1 to 4 are all decoded.
        let ready = r.push(F(1, false), t + Duration::from_millis(250));
        assert_eq!(seqs(&ready), vec![1, 2, 3, 4]);
        assert!(!ready.need_keyframe);
        assert_eq!(r.skipped, 0);
        assert_eq!(r.gap_deadline(), None);
        // The keyframe asked for is then decoded in order like any frame.
        assert_eq!(seqs(&r.push(F(5, true), t)), vec![5]);
    }

    #[test]
    fn a_keyframe_completing_after_its_successors_is_decoded_with_them() {
        // At the start: the first keyframe is large, and a loss in it makes frame 1 and 2
        // complete first. They wait for it instead of being thrown away.
        let mut r = Reorder::new(Duration::from_millis(100));
        let t = Instant::now();
        assert!(r.push(F(1, false), t).frames.is_empty());
        assert!(r.push(F(2, false), t).frames.is_empty());
        assert_eq!(seqs(&r.push(F(0, true), t)), vec![0, 1, 2]);
        assert_eq!((r.skipped, r.late), (0, 0));

        // The same for the keyframe that ends a wait after a loss.
        r.push(F(3, false), t);
        r.push(F(5, false), t);
        assert!(
            r.poll(t + Duration::from_millis(100)).need_keyframe,
            "4 is overdue"
        );
        // Given up on 4 (here: the decoder failed on garbage), decoding waits for a keyframe.
        assert!(r.decoder_failed().need_keyframe);
        assert!(
            r.push(F(21, false), t).frames.is_empty(),
            "waits for a keyframe"
        );
        assert_eq!(seqs(&r.push(F(20, true), t)), vec![20, 21]);
        assert_eq!(r.skipped, 16, "4 to 19");
        assert_eq!(r.late, 0);
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
    fn the_awaited_frame_is_decoded_even_when_the_pending_set_is_full() {
        let mut r = Reorder::new(Duration::from_secs(10));
        let t = Instant::now();
        r.push(F(0, true), t);
        let last = MAX_PENDING as u64 + 1;
        for s in 2..=last {
            assert!(r.push(F(s, false), t).frames.is_empty());
        }
        assert_eq!(r.pending.len(), MAX_PENDING);
        // 1 comes last, with the pending set full: it and everything after it decode.
        let ready = r.push(F(1, false), t);
        assert_eq!(seqs(&ready), (1..=last).collect::<Vec<_>>());
        assert_eq!((r.skipped, r.late), (0, 0));
        assert!(!ready.need_keyframe);
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
        assert!(
            r.waiting_keyframe,
            "frames dropped from the pending set break the chain"
        );
    }
}
