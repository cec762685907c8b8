//! The viewer's own monotonic clock.

use std::time::Instant;

/// Microseconds since the viewer started.
#[derive(Clone, Copy, Debug)]
pub struct ViewerClock {
    epoch: Instant,
}

impl ViewerClock {
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The instant a reading of this clock stands for.
    pub fn instant_at(&self, us: u64) -> Instant {
        self.epoch + std::time::Duration::from_micros(us)
    }
}

/// A viewer-clock time on the server's clock, given the estimated offset (server − viewer;
/// none yet counts as zero).
pub fn to_server_us(viewer_us: u64, offset_us: Option<i64>) -> u64 {
    (viewer_us as i64 + offset_us.unwrap_or(0)).max(0) as u64
}
