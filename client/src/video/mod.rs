//! The video stage: per-rendition reordering (`reorder`), dav1d decoding on its own thread
//! (`decoder`), pictures waiting for their time (`presenter`), and the minifb window.

pub mod decoder;
pub mod presenter;
pub mod reorder;
pub mod window;
