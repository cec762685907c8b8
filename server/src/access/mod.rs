//! Access: who may watch (tokens, viewer certificates, the viewer limit) and the server's
//! own certificate, both reloaded when their files change.

pub mod admission;
pub mod certificates;
pub mod file_watch;
