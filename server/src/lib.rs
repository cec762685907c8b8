//! StreamSocket server: captures (or synthesises) audio and video, encodes AV1 and Opus once
//! per rendition, and fans the result out to every viewer over QUIC.
//!
//! Pipeline: `source` → `video_encoder` / `audio_encoder` (own threads, bounded channels) →
//! `hub` (fan-out by reference) → `session` (one per viewer, async).

pub mod admission;
pub mod audio_encoder;
pub mod audio_loss;
pub mod certificates;
pub mod clock;
pub mod controls;
pub mod file_watch;
pub mod frame;
pub mod hub;
pub mod ladder;
pub mod preview;
pub mod scaler;
pub mod server;
pub mod session;
pub mod source;
pub mod test_source;
pub mod video_encoder;
