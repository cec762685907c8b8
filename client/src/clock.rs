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
}
