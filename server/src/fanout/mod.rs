//! Fan-out: the hub that shares every encoded frame and audio packet with the sessions by
//! reference, the broadcaster's controls, and what viewers report back to the encoders.

pub(crate) mod audio_loss;
pub(crate) mod controls;
pub(crate) mod hub;

pub use controls::Controls;
pub use hub::Hub;
