//! rav1e as an [`Av1Backend`]: pure Rust, always available, and slower than libaom on 2
//! cores with a floor of 4 pictures in before the first packet out (its keyframe-placement
//! lookahead, which no public setting lowers: docs/BENCHMARKS.md, section 1).

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use rav1e::config::SpeedSettings;
use rav1e::prelude::*;

use super::{Av1Backend, Av1Packet, EncoderSettings, FrameTag, Packets};
use crate::capture::frame::RawFrame;

/// rav1e's own settings. The defaults are the real-time tuning measured in
/// docs/BENCHMARKS.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Rav1eTuning {
    /// Speed preset, 0 (slowest) to 10 (fastest).
    pub speed: u8,
    /// Frames rav1e looks ahead for rate-distortion decisions; each one adds a frame of delay.
    pub rdo_lookahead_frames: usize,
    /// Highest quantizer (0-255) the rate control may use; keeps low bitrates from smearing.
    pub max_quantizer: u8,
    pub min_quantizer: u8,
    /// Tune for PSNR (cheaper) instead of psychovisual quality.
    pub tune_psnr: bool,
    /// Scene-change detection (inserts keyframes at cuts). Off for live content: keyframes
    /// come on an interval and on request.
    pub scene_detection: bool,
}

impl Default for Rav1eTuning {
    fn default() -> Self {
        Self {
            speed: 10,
            rdo_lookahead_frames: 1,
            max_quantizer: 255,
            min_quantizer: 0,
            tune_psnr: true,
            scene_detection: false,
        }
    }
}

fn config(settings: &EncoderSettings, tuning: &Rav1eTuning) -> Config {
    let mut speed = SpeedSettings::from_preset(tuning.speed);
    speed.rdo_lookahead_frames = tuning.rdo_lookahead_frames;
    if !tuning.scene_detection {
        speed.scene_detection_mode = SceneDetectionSpeed::None;
    }
    let enc = EncoderConfig {
        width: settings.width,
        height: settings.height,
        time_base: Rational::new(1, settings.fps as u64),
        low_latency: true,
        min_key_frame_interval: 0,
        max_key_frame_interval: settings.keyframe_interval,
        bitrate: (settings.bitrate_kbps as i32).saturating_mul(1000),
        quantizer: tuning.max_quantizer as usize,
        min_quantizer: tuning.min_quantizer,
        tiles: settings.tiles,
        tune: if tuning.tune_psnr {
            Tune::Psnr
        } else {
            Tune::Psychovisual
        },
        speed_settings: speed,
        // The shortest reservoir rav1e allows: rate control reacts within 12 frames.
        reservoir_frame_delay: Some(12),
        ..EncoderConfig::default()
    };
    Config::new()
        .with_encoder_config(enc)
        .with_threads(settings.threads)
}

/// A rav1e context for one rendition.
pub struct Rav1eEncoder {
    ctx: Context<u8>,
}

impl Rav1eEncoder {
    pub fn new(settings: &EncoderSettings, tuning: &Rav1eTuning) -> anyhow::Result<Self> {
        let ctx = config(settings, tuning)
            .new_context()
            .map_err(|e| anyhow!("invalid rav1e settings {settings:?}: {e}"))?;
        Ok(Self { ctx })
    }
}

impl Av1Backend for Rav1eEncoder {
    fn encode(&mut self, raw: &RawFrame, force_keyframe: bool, tag: FrameTag) -> Packets {
        let mut frame = self.ctx.new_frame();
        frame.planes[0].copy_from_raw_u8(&raw.y, raw.width, 1);
        frame.planes[1].copy_from_raw_u8(&raw.u, raw.width / 2, 1);
        frame.planes[2].copy_from_raw_u8(&raw.v, raw.width / 2, 1);
        let params = FrameParameters {
            frame_type_override: if force_keyframe {
                FrameTypeOverride::Key
            } else {
                FrameTypeOverride::No
            },
            opaque: Some(Opaque::new(tag)),
            t35_metadata: Box::new([]),
        };
        self.ctx
            .send_frame((Arc::new(frame), params))
            .map_err(|e| anyhow!("rav1e refused a frame: {e}"))?;
        let mut out = Vec::new();
        loop {
            match self.ctx.receive_packet() {
                Ok(packet) => {
                    let tag = *packet
                        .opaque
                        .context("rav1e lost a frame's tag")?
                        .downcast::<FrameTag>()
                        .map_err(|_| anyhow!("rav1e returned a foreign tag"))?;
                    out.push(Av1Packet {
                        keyframe: packet.frame_type == FrameType::KEY,
                        data: packet.data,
                        tag,
                    });
                }
                Err(EncoderStatus::Encoded) => continue,
                Err(EncoderStatus::NeedMoreData) | Err(EncoderStatus::LimitReached) => break,
                Err(e) => return Err(anyhow!("rav1e failed: {e}")),
            }
        }
        Ok(out)
    }
}
