//! The hub: fan-out of encoded media from the encoders to every viewer session, and the
//! encoders' lifecycle. An encoder runs while at least one viewer watches its rendition: it
//! starts with the first and stops after the last leaves. Frames are shared by reference
//! count; a session that falls behind loses frames (counted), it never slows the encoders or
//! other sessions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use streamsocket_proto::control::{AudioFormat, Rendition};
use streamsocket_proto::RenditionId;
use tokio::sync::broadcast;

use crate::capture::clock::MediaClock;
use crate::capture::frame::RawFrame;
use crate::encode::audio::AudioPacket;
use crate::encode::video::{
    EncodedFrame, EncoderSettings, EncoderStats, KeyframeRequests, VideoEncoder,
};
use crate::fanout::controls::Controls;

/// Frames a session may fall behind before it loses some: about half a second at 30 fps.
pub const VIDEO_QUEUE: usize = 16;
/// Audio packets a session may fall behind: 0.5 s of 10 ms packets (1 s of 20 ms ones).
pub const AUDIO_QUEUE: usize = 50;
/// At most one forced keyframe per rendition per interval, whoever asks.
pub const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Longest group of pictures kept for joiners (frames); a longer group is not cached past this.
const GOP_CACHE_MAX: usize = 300;
/// Source frames waiting for an encoder: more would only add latency when it is slow.
const ENCODER_INPUT: usize = 2;

/// Where the source delivers frames: one entry per running encoder.
pub type Taps = Arc<Mutex<Vec<(RenditionId, Sender<Arc<RawFrame>>)>>>;

/// What watching a rendition gives: the guard that keeps its encoder running, the live
/// frames, and the current group of pictures from before the subscription.
pub type Watching = (
    Watch,
    broadcast::Receiver<Arc<EncodedFrame>>,
    Vec<Arc<EncodedFrame>>,
);

/// One rendition: its encoder's output, keyframe requests and counters.
pub struct RenditionChannel {
    pub info: Rendition,
    pub frames: broadcast::Sender<Arc<EncodedFrame>>,
    /// The current group of pictures: the last keyframe and every frame since, for joiners
    /// that start from it instead of waiting for a new keyframe. Publishing and subscribing
    /// both happen under this lock, so a joiner sees every frame exactly once.
    gop: Arc<Mutex<Vec<Arc<EncodedFrame>>>>,
    pub keyframes: Arc<KeyframeRequests>,
    pub stats: Arc<EncoderStats>,
    settings: EncoderSettings,
    viewers: Mutex<usize>,
    next_seq: Arc<AtomicU64>,
    /// Times the encoder was started.
    pub starts: AtomicU64,
}

impl RenditionChannel {
    pub fn viewers(&self) -> usize {
        *self.viewers.lock().expect("not poisoned")
    }
}

/// One audio bitrate on offer.
pub struct AudioChannel {
    pub bitrate_bps: u32,
    pub packets: broadcast::Sender<Arc<AudioPacket>>,
}

pub struct Hub {
    renditions: Vec<RenditionChannel>,
    audio: Vec<AudioChannel>,
    audio_format: AudioFormat,
    taps: Taps,
    clock: MediaClock,
    controls: Arc<Controls>,
    audio_loss: Arc<crate::fanout::audio_loss::AudioLossReports>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A viewer watching a rendition; dropping it may stop the encoder.
pub struct Watch {
    hub: Arc<Hub>,
    rendition: RenditionId,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unwatch(self.rendition);
    }
}

impl Watch {
    pub fn rendition(&self) -> RenditionId {
        self.rendition
    }
}

impl Hub {
    /// For unit tests: a hub with the 640x360 ladder (360p, 240p, 180p), one 48 kbit/s audio
    /// bitrate, and no encoder running.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        let ladder = crate::encode::ladder::Ladder::default_for(640, 360, 30, 800);
        let renditions = ladder
            .wire()
            .into_iter()
            .zip(&ladder.renditions)
            .map(|(info, spec)| {
                let settings = crate::encode::video::EncoderSettings::realtime(
                    crate::encode::video::EncoderKind::default(),
                    spec.width,
                    spec.height,
                    spec.fps,
                    spec.bitrate_kbps,
                );
                (info, settings)
            })
            .collect();
        Self::new(
            renditions,
            crate::encode::audio::OpusSettings::default().format(),
            &[48_000],
            crate::capture::clock::MediaClock::start(),
        )
    }

    /// The broadcaster's controls (pause, mute) and status.
    /// The clock every frame and packet is stamped with.
    pub fn clock(&self) -> MediaClock {
        self.clock
    }

    pub fn controls(&self) -> &Arc<Controls> {
        &self.controls
    }

    /// The server's counters for `/metrics` (sessions count their frames' fates here).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Viewers' audio loss reports, which size the Opus encoders' FEC.
    pub fn audio_loss(&self) -> &Arc<crate::fanout::audio_loss::AudioLossReports> {
        &self.audio_loss
    }

    /// `renditions` pairs each rung with its encoder settings; `audio_bitrates` lists the
    /// Opus bitrates, each with its encoder fed by the audio source.
    pub fn new(
        renditions: Vec<(Rendition, EncoderSettings)>,
        audio_format: AudioFormat,
        audio_bitrates: &[u32],
        clock: MediaClock,
    ) -> Self {
        Self::with_metrics(
            renditions,
            audio_format,
            audio_bitrates,
            clock,
            Arc::default(),
        )
    }

    /// [`Hub::new`] counting into `metrics` (shared with the certificate reloader).
    pub fn with_metrics(
        renditions: Vec<(Rendition, EncoderSettings)>,
        audio_format: AudioFormat,
        audio_bitrates: &[u32],
        clock: MediaClock,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let renditions = renditions
            .into_iter()
            .map(|(info, settings)| RenditionChannel {
                info,
                frames: broadcast::channel(VIDEO_QUEUE).0,
                gop: Arc::new(Mutex::new(Vec::new())),
                keyframes: Arc::new(KeyframeRequests::new(KEYFRAME_MIN_INTERVAL)),
                stats: Arc::new(EncoderStats::default()),
                settings,
                viewers: Mutex::new(0),
                next_seq: Arc::new(AtomicU64::new(0)),
                starts: AtomicU64::new(0),
            })
            .collect();
        let audio = audio_bitrates
            .iter()
            .map(|&bitrate_bps| AudioChannel {
                bitrate_bps,
                packets: broadcast::channel(AUDIO_QUEUE).0,
            })
            .collect();
        Self {
            renditions,
            audio,
            audio_format,
            taps: Arc::new(Mutex::new(Vec::new())),
            controls: Arc::new(Controls::default()),
            audio_loss: Arc::default(),
            metrics,
            clock,
        }
    }

    pub fn taps(&self) -> Taps {
        self.taps.clone()
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

    /// The audio format with the given bitrate.
    pub fn audio_format(&self, bitrate_bps: u32) -> AudioFormat {
        AudioFormat {
            bitrate_bps,
            ..self.audio_format
        }
    }

    pub fn audio_bitrates(&self) -> Vec<u32> {
        self.audio.iter().map(|a| a.bitrate_bps).collect()
    }

    pub fn audio_channel(&self, bitrate_bps: u32) -> Option<&AudioChannel> {
        self.audio.iter().find(|a| a.bitrate_bps == bitrate_bps)
    }

    pub fn publish_audio(&self, index: usize, packet: AudioPacket) {
        if let Some(a) = self.audio.get(index) {
            // No receiver means no viewer at this bitrate: nothing to do.
            let _ = a.packets.send(Arc::new(packet));
        }
    }

    /// Starts watching a rendition: subscribes to its frames and starts its encoder if this
    /// is the first viewer. Also returns the current group of pictures (from its keyframe,
    /// possibly empty) that came before the subscription. `None` if there is no such
    /// rendition or its encoder cannot start.
    pub fn watch(self: &Arc<Self>, id: RenditionId) -> Option<Watching> {
        let r = self.rendition(id)?;
        let mut viewers = r.viewers.lock().expect("not poisoned");
        if *viewers == 0 {
            if let Err(e) = self.start_encoder(r) {
                tracing::error!(rendition = %r.info.name, "cannot start the encoder: {e:#}");
                return None;
            }
        }
        let (frames, gop) = {
            let gop = r.gop.lock().expect("not poisoned");
            (r.frames.subscribe(), gop.clone())
        };
        *viewers += 1;
        Some((
            Watch {
                hub: self.clone(),
                rendition: id,
            },
            frames,
            gop,
        ))
    }

    fn start_encoder(&self, r: &RenditionChannel) -> anyhow::Result<()> {
        let opening = std::time::Instant::now();
        let encoder = VideoEncoder::new(
            r.settings.clone(),
            r.info.id,
            self.clock,
            r.next_seq.load(Ordering::Relaxed),
        )?;
        let (tx, rx) = crossbeam_channel::bounded(ENCODER_INPUT);
        let frames = r.frames.clone();
        let next_seq = r.next_seq.clone();
        let gop = r.gop.clone();
        // A new encoder starts a new group: what the last one left is not decodable after it.
        gop.lock().expect("not poisoned").clear();
        crate::encode::video::spawn(
            encoder,
            rx,
            r.keyframes.clone(),
            r.stats.clone(),
            move |f| {
                next_seq.store(f.seq + 1, Ordering::Relaxed);
                let f = Arc::new(f);
                let mut gop = gop.lock().expect("not poisoned");
                if f.keyframe {
                    gop.clear();
                }
                if gop.len() < GOP_CACHE_MAX {
                    gop.push(f.clone());
                }
                let _ = frames.send(f);
            },
        );
        self.taps
            .lock()
            .expect("not poisoned")
            .push((r.info.id, tx));
        r.starts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            rendition = %r.info.name,
            encoder = %r.settings.kind(),
            opened_ms = format!("{:.1}", opening.elapsed().as_secs_f64() * 1000.0),
            "encoder started (first viewer)"
        );
        Ok(())
    }

    fn unwatch(&self, id: RenditionId) {
        let Some(r) = self.rendition(id) else { return };
        let mut viewers = r.viewers.lock().expect("not poisoned");
        *viewers = viewers.saturating_sub(1);
        if *viewers == 0 {
            // Dropping the tap closes the encoder's input: its thread finishes and exits.
            self.taps
                .lock()
                .expect("not poisoned")
                .retain(|(tap, _)| *tap != id);
            // The group ends with its encoder: nobody may start from it later.
            r.gop.lock().expect("not poisoned").clear();
            tracing::info!(rendition = %r.info.name, "encoder stopped (last viewer left)");
        }
    }
}
