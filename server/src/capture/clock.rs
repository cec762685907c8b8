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

    /// The clock's reading at `at` (0 before the clock started).
    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The system's monotonic clock (`CLOCK_MONOTONIC`, which `Instant` reads on Linux) at this
    /// clock's zero, in microseconds: another process on the same machine can put media
    /// times on its own clock with it (the glass-to-glass benchmark compares capture times
    /// with the moment a screen grab sees them).
    pub fn monotonic_origin_us(&self) -> u64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let now_us = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
        now_us.saturating_sub(self.now_us())
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
