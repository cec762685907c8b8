//! The broadcaster's user interface: the preview window with its keys and status.

pub mod preview;
