//! The broadcaster's user interface: the preview window with its keys and status.

pub(crate) mod preview;

pub use preview::spawn as spawn_preview;
