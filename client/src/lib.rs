//! StreamSocket viewer: receives AV1 frames and Opus packets over QUIC, reorders and decodes
//! them on their own threads, shows the newest picture and plays the sound.
//!
//! Pipeline: `session` (QUIC receive, control, clock pings) → `reorder` + `video_decoder`
//! (dav1d thread) → `window` (minifb) or headless; `session` → `audio` (jitter buffer, Opus,
//! `speakers`).

// The stats JSON is one large `json!` literal.
#![recursion_limit = "256"]

pub mod audio;
pub mod auto_quality;
pub mod clock;
pub mod clock_sync;
pub mod commands;
pub mod playout;
pub mod presenter;
pub mod record;
pub mod reorder;
pub mod session;
pub mod speakers;
pub mod stats;
pub mod tls;
pub mod video_decoder;
pub mod window;
pub mod y4m_dump;
