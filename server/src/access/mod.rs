//! Access: who may watch (tokens, viewer certificates, the viewer limit) and the server's
//! own certificate, both reloaded when their files change.

pub(crate) mod admission;
pub(crate) mod certificates;
pub(crate) mod file_watch;

pub use admission::{Admission, DEFAULT_MAX_VIEWERS};
