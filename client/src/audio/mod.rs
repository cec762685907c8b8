//! The audio stage: the jitter buffer and playout clock (`playout`), Opus decoding on its
//! own thread (`decoder`), and where the sound goes (`output`, `speakers`).

pub mod decoder;
pub mod output;
pub mod playout;
pub mod speakers;

pub use decoder::{spawn, AudioContext};
pub use playout::NetAudio;
