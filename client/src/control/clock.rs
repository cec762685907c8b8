//! The viewer's own monotonic clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
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

/// The server's clock as the viewer estimates it: the control driver publishes the offset
/// (from the welcome, then from pings), the pipeline's threads read it without a lock to put
/// their readings on the server's clock.
#[derive(Clone, Debug)]
pub struct ServerClock {
    viewer: ViewerClock,
    offset_us: Arc<AtomicI64>,
}

impl ServerClock {
    /// No estimate yet.
    const UNKNOWN: i64 = i64::MIN;

    pub fn new(viewer: ViewerClock) -> Self {
        Self {
            viewer,
            offset_us: Arc::new(AtomicI64::new(Self::UNKNOWN)),
        }
    }

    /// server clock − viewer clock, if known.
    pub fn offset_us(&self) -> Option<i64> {
        Some(self.offset_us.load(Ordering::Relaxed)).filter(|o| *o != Self::UNKNOWN)
    }

    pub fn set_offset_us(&self, offset: Option<i64>) {
        self.offset_us
            .store(offset.unwrap_or(Self::UNKNOWN), Ordering::Relaxed);
    }

    /// A viewer-clock reading on the server's clock (an unknown offset counts as zero).
    pub fn to_server_us(&self, viewer_us: u64) -> u64 {
        to_server_us(viewer_us, self.offset_us())
    }

    /// The viewer's own clock.
    pub fn viewer(&self) -> ViewerClock {
        self.viewer
    }
}

/// A viewer-clock time on the server's clock, given the estimated offset (server − viewer;
/// none yet counts as zero).
pub fn to_server_us(viewer_us: u64, offset_us: Option<i64>) -> u64 {
    (viewer_us as i64 + offset_us.unwrap_or(0)).max(0) as u64
}
