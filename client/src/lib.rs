//! StreamSocket viewer: receives AV1 frames and Opus packets over QUIC, reorders and decodes
//! them on their own threads, shows the newest picture and plays the sound.
//!
//! Stages: `net` (connect, control stream, receive, reconnect, TLS) → `video` (reorder, dav1d
//! thread, presenter, minifb window) and `audio` (jitter buffer, Opus, speakers); `control`
//! decides, without I/O, what to ask of the server and when; `record` writes what arrives;
//! `metrics` assembles the stats from the counters each stage keeps. The public API is what
//! the binary, the end-to-end tests and the benchmarks use.

mod audio;
mod control;
mod metrics;
mod net;
mod record;
mod video;
mod viewer;

pub use audio::speakers::list as list_speakers;
pub use control::clock::ViewerClock;
pub use control::clock_sync::{ClockSync, Exchange};
pub use control::commands::{parse_script, Command, CoreCommand, LocalCommand, QualityWish};
pub use control::latency_budget::LatencyBudget;
pub use net::relay::RelayOptions;

/// Watching through Media over QUIC relays, for the benchmarks' light subscribers: find a
/// relay carrying a broadcast and read its catalog.
pub mod relay {
    pub use crate::net::relay::connect::{connect, MediaClock, RelayError, RelaySession};
    pub use crate::net::relay::tracks::STALE_GROUP;
}
pub use net::tls::{client_config, client_config_with_alpn, default_ca, Trust, ViewerIdentity};
pub use viewer::{run, ViewerOptions};
