//! The capture clock: one monotonic clock stamps every video frame and audio packet.

use std::time::{Duration, Instant};

/// Microseconds since the server started, on a monotonic clock. Viewers estimate their offset
/// to it with ping/pong, so it never needs to agree with wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct MediaClock {
    epoch: Instant,
}

impl MediaClock {
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The instant a clock reading refers to, for sleeping until a scheduled capture.
    pub fn instant_at(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }
}

impl Default for MediaClock {
    fn default() -> Self {
        Self::start()
    }
}
