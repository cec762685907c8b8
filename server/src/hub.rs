//! The hub: fan-out of encoded media from the encoders to every viewer session. Frames are
//! shared by reference count; a session that falls behind loses frames (counted), it never
//! slows the encoders or other sessions.

use std::sync::Arc;
use std::time::Duration;

use streamsocket_proto::control::{AudioFormat, Rendition};
use streamsocket_proto::RenditionId;
use tokio::sync::broadcast;

use crate::audio_encoder::AudioPacket;
use crate::video_encoder::{EncodedFrame, EncoderStats, KeyframeRequests};

/// Frames a session may fall behind before it loses some: about half a second at 30 fps.
pub const VIDEO_QUEUE: usize = 16;
/// Audio packets a session may fall behind: 0.5 s of 20 ms packets.
pub const AUDIO_QUEUE: usize = 25;
/// At most one forced keyframe per rendition per interval, whoever asks.
pub const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// One rendition's output.
pub struct RenditionChannel {
    pub info: Rendition,
    pub frames: broadcast::Sender<Arc<EncodedFrame>>,
    pub keyframes: Arc<KeyframeRequests>,
    pub stats: Arc<EncoderStats>,
}

pub struct Hub {
    renditions: Vec<RenditionChannel>,
    audio: broadcast::Sender<Arc<AudioPacket>>,
    audio_format: AudioFormat,
}

impl Hub {
    pub fn new(ladder: Vec<Rendition>, audio_format: AudioFormat) -> Self {
        let renditions = ladder
            .into_iter()
            .map(|info| RenditionChannel {
                info,
                frames: broadcast::channel(VIDEO_QUEUE).0,
                keyframes: Arc::new(KeyframeRequests::new(KEYFRAME_MIN_INTERVAL)),
                stats: Arc::new(EncoderStats::default()),
            })
            .collect();
        Self {
            renditions,
            audio: broadcast::channel(AUDIO_QUEUE).0,
            audio_format,
        }
    }

    pub fn ladder(&self) -> Vec<Rendition> {
        self.renditions.iter().map(|r| r.info.clone()).collect()
    }

    pub fn rendition(&self, id: RenditionId) -> Option<&RenditionChannel> {
        self.renditions.iter().find(|r| r.info.id == id)
    }

    pub fn renditions(&self) -> &[RenditionChannel] {
        &self.renditions
    }

    pub fn audio_format(&self) -> AudioFormat {
        self.audio_format
    }

    pub fn publish_video(&self, frame: EncodedFrame) {
        if let Some(r) = self.rendition(frame.rendition) {
            // No receiver means no viewer: nothing to do.
            let _ = r.frames.send(Arc::new(frame));
        }
    }

    pub fn publish_audio(&self, packet: AudioPacket) {
        let _ = self.audio.send(Arc::new(packet));
    }

    pub fn subscribe_audio(&self) -> broadcast::Receiver<Arc<AudioPacket>> {
        self.audio.subscribe()
    }
}
