//! The AV1 encoder stage: rav1e on a dedicated thread, fed raw I420 frames through a bounded
//! channel, publishing encoded frames to the hub.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use crossbeam_channel::Receiver;
use rav1e::config::SpeedSettings;
use rav1e::prelude::*;
use streamsocket_proto::media::{FrameHeader, ServerTiming};
use streamsocket_proto::RenditionId;

use crate::clock::MediaClock;
use crate::frame::RawFrame;
use crate::scaler::Scaler;

/// rav1e settings for one rendition. The defaults are the real-time tuning measured in
/// `docs/BENCHMARKS.md` for 2 cores.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// rav1e speed preset, 0 (slowest) to 10 (fastest).
    pub speed: u8,
    /// Tiles per frame: rav1e encodes tiles in parallel, which is how it uses several threads.
    pub tiles: usize,
    pub threads: usize,
    /// Longest distance between keyframes, in frames.
    pub keyframe_interval: u64,
    /// Frames rav1e looks ahead for rate-distortion decisions; each one adds a frame of delay.
    pub rdo_lookahead_frames: usize,
    /// Highest quantizer (0-255) the rate control may use; keeps low bitrates from smearing.
    pub max_quantizer: u8,
    pub min_quantizer: u8,
    /// Tune for PSNR (cheaper) instead of psychovisual quality.
    pub tune_psnr: bool,
    /// rav1e's scene-change detection (inserts keyframes at cuts). Off for live content:
    /// keyframes come on an interval and on request.
    pub scene_detection: bool,
}

impl EncoderSettings {
    pub fn realtime(width: usize, height: usize, fps: u32, bitrate_kbps: u32) -> Self {
        Self {
            width,
            height,
            fps,
            bitrate_kbps,
            speed: 10,
            tiles: 2,
            threads: 2,
            keyframe_interval: fps as u64 * 2,
            rdo_lookahead_frames: 1,
            max_quantizer: 255,
            min_quantizer: 0,
            tune_psnr: true,
            scene_detection: false,
        }
    }

    fn rav1e_config(&self) -> Config {
        let mut speed = SpeedSettings::from_preset(self.speed);
        speed.rdo_lookahead_frames = self.rdo_lookahead_frames;
        if !self.scene_detection {
            speed.scene_detection_mode = SceneDetectionSpeed::None;
        }
        let enc = EncoderConfig {
            width: self.width,
            height: self.height,
            time_base: Rational::new(1, self.fps as u64),
            low_latency: true,
            min_key_frame_interval: 0,
            max_key_frame_interval: self.keyframe_interval,
            bitrate: (self.bitrate_kbps as i32).saturating_mul(1000),
            quantizer: self.max_quantizer as usize,
            min_quantizer: self.min_quantizer,
            tiles: self.tiles,
            tune: if self.tune_psnr {
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
            .with_threads(self.threads)
    }
}

/// One encoded frame, shared by every viewer of its rendition (reference-counted, never
/// copied per viewer). `header` is the wire header, built once.
#[derive(Debug)]
pub struct EncodedFrame {
    pub rendition: RenditionId,
    pub seq: u64,
    pub capture_us: u64,
    pub keyframe: bool,
    pub header: Bytes,
    pub payload: Bytes,
}

/// What travels through rav1e beside each frame.
struct FrameTag {
    capture_us: u64,
    /// Media clock when the frame entered the encoder.
    input_us: u64,
}

/// Keyframe requests for one rendition: coalesced (any number of requests before the next
/// frame make one keyframe) and rate-limited (at most one forced keyframe per interval), so
/// one viewer cannot make every viewer pay for keyframes at will.
#[derive(Debug)]
pub struct KeyframeRequests {
    pending: AtomicBool,
    min_interval: Duration,
    last_forced: Mutex<Option<Instant>>,
    pub requested: AtomicU64,
    pub forced: AtomicU64,
}

impl KeyframeRequests {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            pending: AtomicBool::new(false),
            min_interval,
            last_forced: Mutex::new(None),
            requested: AtomicU64::new(0),
            forced: AtomicU64::new(0),
        }
    }

    pub fn request(&self) {
        self.requested.fetch_add(1, Ordering::Relaxed);
        self.pending.store(true, Ordering::Release);
    }

    /// Called by the encoder before each frame: should this one be forced to a keyframe?
    /// A request made too soon after the last forced keyframe stays pending until allowed.
    fn take(&self, now: Instant) -> bool {
        if !self.pending.load(Ordering::Acquire) {
            return false;
        }
        let mut last = self.last_forced.lock().expect("not poisoned");
        if last.is_some_and(|t| now.duration_since(t) < self.min_interval) {
            return false;
        }
        self.pending.store(false, Ordering::Release);
        *last = Some(now);
        self.forced.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A natural keyframe satisfies pending requests too.
    fn keyframe_emitted(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// Counters of an encoder, read by the status log and benchmarks.
#[derive(Debug, Default)]
pub struct EncoderStats {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub keyframes: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// rav1e wrapped for one rendition.
pub struct VideoEncoder {
    ctx: Context<u8>,
    settings: EncoderSettings,
    rendition: RenditionId,
    next_seq: u64,
    clock: MediaClock,
}

impl VideoEncoder {
    /// `first_seq` continues a rendition's numbering across encoder restarts, so a viewer
    /// never sees sequence numbers go backwards.
    pub fn new(
        settings: EncoderSettings,
        rendition: RenditionId,
        clock: MediaClock,
        first_seq: u64,
    ) -> anyhow::Result<Self> {
        let ctx = settings
            .rav1e_config()
            .new_context()
            .map_err(|e| anyhow!("invalid encoder settings {settings:?}: {e}"))?;
        Ok(Self {
            ctx,
            settings,
            rendition,
            next_seq: first_seq,
            clock,
        })
    }

    /// Sends one frame into rav1e and returns the frames it emitted (with rav1e's pipeline
    /// delay, usually none for the first few inputs, then one per input).
    pub fn encode(
        &mut self,
        raw: &RawFrame,
        force_keyframe: bool,
    ) -> anyhow::Result<Vec<EncodedFrame>> {
        let mut frame = self.ctx.new_frame();
        let (w, h) = (self.settings.width, self.settings.height);
        anyhow::ensure!(
            raw.width == w && raw.height == h,
            "frame is {}x{}, encoder expects {w}x{h}",
            raw.width,
            raw.height
        );
        frame.planes[0].copy_from_raw_u8(&raw.y, raw.width, 1);
        frame.planes[1].copy_from_raw_u8(&raw.u, raw.width / 2, 1);
        frame.planes[2].copy_from_raw_u8(&raw.v, raw.width / 2, 1);
        let params = FrameParameters {
            frame_type_override: if force_keyframe {
                FrameTypeOverride::Key
            } else {
                FrameTypeOverride::No
            },
            opaque: Some(Opaque::new(FrameTag {
                capture_us: raw.capture_us,
                input_us: self.clock.now_us(),
            })),
            t35_metadata: Box::new([]),
        };
        self.ctx
            .send_frame((Arc::new(frame), params))
            .map_err(|e| anyhow!("rav1e refused a frame: {e}"))?;
        self.drain()
    }

    fn drain(&mut self) -> anyhow::Result<Vec<EncodedFrame>> {
        let mut out = Vec::new();
        loop {
            let started = self.clock.now_us();
            match self.ctx.receive_packet() {
                Ok(packet) => {
                    let done = self.clock.now_us();
                    let tag = packet
                        .opaque
                        .context("rav1e lost a frame's tag")?
                        .downcast::<FrameTag>()
                        .map_err(|_| anyhow!("rav1e returned a foreign tag"))?;
                    let keyframe = packet.frame_type == FrameType::KEY;
                    let timing = ServerTiming {
                        queue_us: clamp_u32(tag.input_us.saturating_sub(tag.capture_us)),
                        encoder_wait_us: clamp_u32(started.saturating_sub(tag.input_us)),
                        encode_us: clamp_u32(done - started),
                    };
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let header = FrameHeader {
                        rendition: self.rendition,
                        keyframe,
                        seq,
                        capture_us: tag.capture_us,
                        payload_len: packet.data.len() as u32,
                        timing,
                    };
                    out.push(EncodedFrame {
                        rendition: self.rendition,
                        seq,
                        capture_us: tag.capture_us,
                        keyframe,
                        header: Bytes::copy_from_slice(&header.to_bytes()),
                        payload: Bytes::from(packet.data),
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

fn clamp_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

/// Runs an encoder on its own thread until its input channel closes: takes source frames at
/// the rendition's frame rate, scales them to its size, encodes them and hands every encoded
/// frame to `publish`.
pub fn spawn(
    mut encoder: VideoEncoder,
    input: Receiver<Arc<RawFrame>>,
    keyframes: Arc<KeyframeRequests>,
    stats: Arc<EncoderStats>,
    mut publish: impl FnMut(EncodedFrame) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(format!("rav1e-{}", encoder.rendition))
        .spawn(move || {
            let (w, h, fps) = (
                encoder.settings.width,
                encoder.settings.height,
                encoder.settings.fps,
            );
            let mut scaler = Scaler::new(w, h);
            let interval_us = 1_000_000 / fps as u64;
            let mut next_due = 0u64;
            for source in input {
                // A rung at a lower frame rate than the source takes every n-th frame.
                if source.capture_us + interval_us / 2 < next_due {
                    continue;
                }
                next_due = source.capture_us.max(next_due) + interval_us;
                stats.frames_in.fetch_add(1, Ordering::Relaxed);
                let raw = match scaler.scale(&source) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("scaling to {w}x{h} failed, encoder stopped: {e:#}");
                        return;
                    }
                };
                let force = keyframes.take(Instant::now());
                match encoder.encode(&raw, force) {
                    Ok(frames) => {
                        for f in frames {
                            stats.frames_out.fetch_add(1, Ordering::Relaxed);
                            stats
                                .bytes_out
                                .fetch_add(f.payload.len() as u64, Ordering::Relaxed);
                            if f.keyframe {
                                stats.keyframes.fetch_add(1, Ordering::Relaxed);
                                keyframes.keyframe_emitted();
                            }
                            publish(f);
                        }
                    }
                    Err(e) => {
                        tracing::error!("video encoder stopped: {e:#}");
                        return;
                    }
                }
            }
        })
        .expect("spawn encoder thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_requests_are_coalesced_and_rate_limited() {
        let k = KeyframeRequests::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert!(!k.take(t0), "nothing requested");
        for _ in 0..10 {
            k.request();
        }
        assert!(k.take(t0), "first request honoured");
        assert!(!k.take(t0), "ten requests, one keyframe");
        k.request();
        assert!(!k.take(t0 + Duration::from_millis(100)), "too soon");
        assert!(
            k.take(t0 + Duration::from_millis(600)),
            "still pending, honoured later"
        );
        assert_eq!(k.forced.load(Ordering::Relaxed), 2);
        assert_eq!(k.requested.load(Ordering::Relaxed), 11);
    }
}
