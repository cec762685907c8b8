//! Encode: the ladder of renditions, scaling to each rung, one AV1 encoder per watched
//! rendition and one Opus encoder per audio bitrate, each on its own thread.

pub mod audio;
pub mod ladder;
pub mod scaler;
pub mod video;
