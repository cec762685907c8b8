//! Fan-out: the hub that shares every encoded frame and audio packet with the sessions by
//! reference, the broadcaster's controls, and what viewers report back to the encoders.

pub mod audio_loss;
pub mod controls;
pub mod hub;
