//! Viewers' audio loss reports (ReceiverReport), turned into the loss rate the Opus encoders
//! size their in-band FEC for.
//!
//! Every encoder (one per bitrate) is sized for the worst report among all current viewers,
//! whatever their bitrate: FEC costs a little quality for viewers who do not need it, while
//! a viewer without it hears every lost packet. The rate is capped, so one viewer (even a
//! hostile one) can cost the others only that much; its report counts until it leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// Loss percentage the encoders assume before any viewer has reported (and with none).
pub const DEFAULT_PERCENT: u8 = 5;
/// The highest loss percentage the encoders are ever sized for.
pub const MAX_PERCENT: u8 = 25;

#[derive(Debug)]
pub struct AudioLossReports {
    by_session: Mutex<HashMap<u64, u16>>,
    /// What the encoders should use now.
    expected_percent: AtomicU8,
}

impl Default for AudioLossReports {
    fn default() -> Self {
        Self {
            by_session: Mutex::new(HashMap::new()),
            expected_percent: AtomicU8::new(DEFAULT_PERCENT),
        }
    }
}

impl AudioLossReports {
    /// A session's latest report (per thousand, already checked ≤ 1000 by the decoder).
    pub fn report(&self, session: u64, loss_permille: u16) {
        let mut by_session = self.by_session.lock().expect("not poisoned");
        by_session.insert(session, loss_permille);
        self.update(&by_session);
    }

    /// A session ended: its report no longer counts.
    pub fn remove(&self, session: u64) {
        let mut by_session = self.by_session.lock().expect("not poisoned");
        if by_session.remove(&session).is_some() {
            self.update(&by_session);
        }
    }

    /// The loss, in percent, the encoders should size FEC for.
    pub fn expected_percent(&self) -> u8 {
        self.expected_percent.load(Ordering::Relaxed)
    }

    fn update(&self, by_session: &HashMap<u64, u16>) {
        let percent = match by_session.values().max() {
            // Round up: 0.4% loss still wants some FEC. Never below 1% once anyone reports,
            // so a single loss is still recoverable.
            Some(&worst) => (worst.div_ceil(10) as u8).clamp(1, MAX_PERCENT),
            None => DEFAULT_PERCENT,
        };
        self.expected_percent.store(percent, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_recent_report_sizes_fec_within_bounds() {
        let r = AudioLossReports::default();
        assert_eq!(r.expected_percent(), DEFAULT_PERCENT);
        r.report(1, 0);
        assert_eq!(
            r.expected_percent(),
            1,
            "a clean viewer still gets a little FEC"
        );
        r.report(2, 123);
        assert_eq!(r.expected_percent(), 13);
        r.report(3, 1000);
        assert_eq!(r.expected_percent(), MAX_PERCENT, "capped");
        r.remove(3);
        assert_eq!(r.expected_percent(), 13);
        r.report(2, 5);
        assert_eq!(r.expected_percent(), 1);
        r.remove(1);
        r.remove(2);
        assert_eq!(r.expected_percent(), DEFAULT_PERCENT);
    }
}
