//! Encode: the ladder of renditions, scaling to each rung, one AV1 encoder per watched
//! rendition and one Opus encoder per audio bitrate, each on its own thread.

pub(crate) mod audio;
pub(crate) mod ladder;
pub(crate) mod scaler;
pub(crate) mod video;

pub use audio::{
    DEFAULT_FRAME_MS as DEFAULT_AUDIO_FRAME_MS, FRAME_DURATIONS_MS as AUDIO_FRAME_DURATIONS_MS,
};
pub use ladder::Ladder;
pub use scaler::Scaler;
pub use video::{AomTuning, EncoderKind, EncoderSettings, Rav1eTuning, VideoEncoder};
