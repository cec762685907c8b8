//! The AV1 encoder stage: one encoder per rendition on a dedicated thread, fed raw I420
//! frames through a bounded channel, publishing encoded frames to the hub.
//!
//! Two backends sit behind [`Av1Backend`]: libaom in its real-time mode ([`aom`], the
//! default: no frame lag, each picture's packet comes out of the call that took it) and
//! rav1e ([`rav1e`], pure Rust, with a floor of 4 frames of lookahead). [`VideoEncoder`] does
//! what is common: frame numbering, the wire header and the server's timings.

pub mod aom;
pub mod rav1e;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use streamsocket_proto::media::{FrameHeader, ServerTiming};
use streamsocket_proto::RenditionId;

use crate::capture::clock::MediaClock;
use crate::capture::frame::RawFrame;
use crate::encode::scaler::Scaler;

pub use self::aom::AomTuning;
pub use self::rav1e::Rav1eTuning;

/// Which AV1 encoder a server runs (`--encoder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderKind {
    /// libaom in real-time mode: zero frame lag, about 4x rav1e's speed here.
    #[default]
    Aom,
    /// rav1e: pure Rust, 4 frames of lookahead that its API cannot lower.
    Rav1e,
}

impl EncoderKind {
    pub const ALL: [EncoderKind; 2] = [EncoderKind::Aom, EncoderKind::Rav1e];

    pub fn name(self) -> &'static str {
        match self {
            EncoderKind::Aom => "aom",
            EncoderKind::Rav1e => "rav1e",
        }
    }
}

impl fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EncoderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "aom" | "libaom" => Ok(EncoderKind::Aom),
            "rav1e" => Ok(EncoderKind::Rav1e),
            other => Err(format!("expected aom or rav1e, got {other:?}")),
        }
    }
}

/// The backend's own settings.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendTuning {
    Aom(AomTuning),
    Rav1e(Rav1eTuning),
}

impl BackendTuning {
    /// The real-time defaults of a backend, measured in docs/BENCHMARKS.md.
    pub fn realtime(kind: EncoderKind) -> Self {
        match kind {
            EncoderKind::Aom => BackendTuning::Aom(AomTuning::default()),
            EncoderKind::Rav1e => BackendTuning::Rav1e(Rav1eTuning::default()),
        }
    }

    pub fn kind(&self) -> EncoderKind {
        match self {
            BackendTuning::Aom(_) => EncoderKind::Aom,
            BackendTuning::Rav1e(_) => EncoderKind::Rav1e,
        }
    }
}

/// Whether a picture is 1280x720 or more (in pixels): from there the default ladder halves at
/// each rung and libaom takes its fastest preset, so that 2 cores encode every rung at once
/// (docs/BENCHMARKS.md, section 2, "The ladder, every rung encoded at once").
pub fn is_hd(width: usize, height: usize) -> bool {
    width * height >= 1280 * 720
}

/// Settings for one rendition's encoder. The defaults are the real-time tuning measured in
/// `docs/BENCHMARKS.md` for 2 cores.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Tiles per frame: how both encoders spread a frame over threads.
    pub tiles: usize,
    pub threads: usize,
    /// Longest distance between keyframes, in frames.
    pub keyframe_interval: u64,
    pub backend: BackendTuning,
}

impl EncoderSettings {
    pub fn realtime(
        kind: EncoderKind,
        width: usize,
        height: usize,
        fps: u32,
        bitrate_kbps: u32,
    ) -> Self {
        let mut backend = BackendTuning::realtime(kind);
        // From 1280x720 up, libaom's fastest preset: it keeps a 720p rung and the rungs below
        // it on time on 2 cores, for 0.02 dB (docs/BENCHMARKS.md, section 1 and "The ladder,
        // every rung encoded at once").
        if let BackendTuning::Aom(t) = &mut backend {
            if is_hd(width, height) {
                t.cpu_used = 10;
            }
        }
        Self {
            width,
            height,
            fps,
            bitrate_kbps,
            tiles: 2,
            threads: 2,
            keyframe_interval: fps as u64 * 2,
            backend,
        }
    }

    pub fn kind(&self) -> EncoderKind {
        self.backend.kind()
    }

    /// The rav1e tuning, for changes (benchmarks); `None` for another backend.
    pub fn rav1e_mut(&mut self) -> Option<&mut Rav1eTuning> {
        match &mut self.backend {
            BackendTuning::Rav1e(t) => Some(t),
            _ => None,
        }
    }

    /// The libaom tuning, for changes (benchmarks); `None` for another backend.
    pub fn aom_mut(&mut self) -> Option<&mut AomTuning> {
        match &mut self.backend {
            BackendTuning::Aom(t) => Some(t),
            _ => None,
        }
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

/// What travels through an encoder beside each picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTag {
    pub capture_us: u64,
    /// Media clock when the picture entered the encoder.
    pub input_us: u64,
}

/// One compressed picture as a backend returns it.
#[derive(Debug)]
pub struct Av1Packet {
    /// The temporal unit, in the low-overhead bitstream format (OBUs with sizes).
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// The tag of the picture this packet encodes.
    pub tag: FrameTag,
}

/// What a backend's `encode` returns: the packets ready now.
pub type Packets = anyhow::Result<Vec<Av1Packet>>;

/// An AV1 encoder for one rendition. Calls come from one thread, one picture at a time.
pub trait Av1Backend: Send {
    /// Takes one picture (of the settings' size) and returns the packets ready now, in
    /// order: with a zero-delay encoder, this picture's; with a lookahead, an earlier one's
    /// or none.
    fn encode(&mut self, raw: &RawFrame, force_keyframe: bool, tag: FrameTag) -> Packets;
}

/// Opens the backend the settings name.
pub fn open_backend(settings: &EncoderSettings) -> anyhow::Result<Box<dyn Av1Backend>> {
    Ok(match &settings.backend {
        BackendTuning::Aom(t) => Box::new(aom::AomEncoder::new(settings, t)?),
        BackendTuning::Rav1e(t) => Box::new(rav1e::Rav1eEncoder::new(settings, t)?),
    })
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
    /// Time spent in the encoder (scaling excluded), microseconds.
    pub encode_us_total: AtomicU64,
}

/// One rendition's encoder: a backend, the rendition's frame numbering and the wire headers.
pub struct VideoEncoder {
    backend: Box<dyn Av1Backend>,
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
        let backend = open_backend(&settings)?;
        Ok(Self {
            backend,
            settings,
            rendition,
            next_seq: first_seq,
            clock,
        })
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// Sends one frame into the encoder and returns the frames it emitted: this one's with
    /// libaom, an earlier one's (or none, for the first few) with rav1e's lookahead.
    pub fn encode(
        &mut self,
        raw: &RawFrame,
        force_keyframe: bool,
    ) -> anyhow::Result<Vec<EncodedFrame>> {
        let (w, h) = (self.settings.width, self.settings.height);
        anyhow::ensure!(
            raw.width == w && raw.height == h,
            "frame is {}x{}, encoder expects {w}x{h}",
            raw.width,
            raw.height
        );
        let started = self.clock.now_us();
        let tag = FrameTag {
            capture_us: raw.capture_us,
            input_us: started,
        };
        let packets = self.backend.encode(raw, force_keyframe, tag)?;
        let done = self.clock.now_us();
        Ok(packets
            .into_iter()
            .map(|packet| {
                // A packet of an earlier picture waited in the encoder from its input until
                // this call began (the lookahead); the call's time is its encode.
                let timing = ServerTiming {
                    queue_us: clamp_u32(packet.tag.input_us.saturating_sub(packet.tag.capture_us)),
                    encoder_wait_us: clamp_u32(started.saturating_sub(packet.tag.input_us)),
                    encode_us: clamp_u32(done.saturating_sub(started)),
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                let header = FrameHeader {
                    rendition: self.rendition,
                    keyframe: packet.keyframe,
                    seq,
                    capture_us: packet.tag.capture_us,
                    payload_len: packet.data.len() as u32,
                    timing,
                };
                EncodedFrame {
                    rendition: self.rendition,
                    seq,
                    capture_us: packet.tag.capture_us,
                    keyframe: packet.keyframe,
                    header: Bytes::copy_from_slice(&header.to_bytes()),
                    payload: Bytes::from(packet.data),
                }
            })
            .collect())
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
        .name(format!("{}-{}", encoder.settings.kind(), encoder.rendition))
        .spawn(move || {
            let (w, h, fps) = (
                encoder.settings.width,
                encoder.settings.height,
                encoder.settings.fps,
            );
            let mut scaler = Scaler::new(w, h);
            let interval_us = 1_000_000 / fps as u64;
            let mut next_due = 0u64;
            let opened_us = encoder.clock.now_us();
            let mut first = true;
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
                let encode_start_us = encoder.clock.now_us();
                let encoded = encoder.encode(&raw, force);
                stats.encode_us_total.fetch_add(
                    encoder.clock.now_us().saturating_sub(encode_start_us),
                    Ordering::Relaxed,
                );
                match encoded {
                    Ok(frames) => {
                        if std::mem::take(&mut first) {
                            let now = encoder.clock.now_us();
                            tracing::debug!(
                                rendition = encoder.rendition,
                                "first picture encoded {:.1} ms after the encoder opened: captured {:.1} ms after, encoded in {:.1} ms",
                                now.saturating_sub(opened_us) as f64 / 1000.0,
                                source.capture_us as f64 / 1000.0 - opened_us as f64 / 1000.0,
                                now.saturating_sub(encode_start_us) as f64 / 1000.0,
                            );
                        }
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
    use crate::capture::test_source::VideoPattern;

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

    #[test]
    fn encoder_kinds_parse_and_print() {
        for kind in EncoderKind::ALL {
            assert_eq!(kind.to_string().parse::<EncoderKind>(), Ok(kind));
        }
        assert_eq!("libaom".parse::<EncoderKind>(), Ok(EncoderKind::Aom));
        assert!("x264".parse::<EncoderKind>().is_err());
    }

    /// Test-pattern pictures at 30 fps, capture times one frame period apart.
    pub(crate) fn pattern_frames(width: usize, height: usize, count: u64) -> Vec<RawFrame> {
        let mut pattern = VideoPattern::new(width, height);
        (0..count)
            .map(|i| {
                let us = i * 1_000_000 / 30;
                let rgb = pattern.render(i, us, false).to_vec();
                RawFrame::from_rgb(&rgb, width, height, us).expect("even size")
            })
            .collect()
    }

    /// Feeds pictures one at a time and returns, for each packet that came out, the index of
    /// the picture it encodes and the number of pictures that had gone in by then.
    fn packets_against_inputs(kind: EncoderKind, frames: &[RawFrame]) -> Vec<(usize, usize)> {
        let settings = EncoderSettings::realtime(kind, 320, 180, 30, 300);
        let mut encoder = VideoEncoder::new(settings, 0, MediaClock::start(), 0).unwrap();
        let mut out = Vec::new();
        for (i, raw) in frames.iter().enumerate() {
            for f in encoder.encode(raw, false).unwrap() {
                let index = frames
                    .iter()
                    .position(|r| r.capture_us == f.capture_us)
                    .expect("a packet of a picture that went in");
                out.push((index, i + 1));
            }
        }
        out
    }

    #[test]
    fn aom_returns_each_pictures_packet_before_the_next_goes_in() {
        let frames = pattern_frames(320, 180, 12);
        let out = packets_against_inputs(EncoderKind::Aom, &frames);
        // Zero frame delay: the packet of picture i comes out of the call that took it,
        // every picture is encoded (none dropped), in order.
        let expected: Vec<(usize, usize)> = (0..frames.len()).map(|i| (i, i + 1)).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn rav1e_holds_four_more_pictures_before_each_packet() {
        let frames = pattern_frames(320, 180, 12);
        let out = packets_against_inputs(EncoderKind::Rav1e, &frames);
        // rav1e's lookahead: picture 0 comes out only once pictures 0..=4 went in (4 frame
        // periods, 133 ms at 30 fps), and every later packet trails its picture as far.
        assert_eq!(out.first(), Some(&(0, 5)), "{out:?}");
        for (n, &(index, inputs)) in out.iter().enumerate() {
            assert_eq!(index, n, "packets in order: {out:?}");
            assert_eq!(inputs - index, 5, "a constant delay of 4 pictures: {out:?}");
        }
    }

    #[test]
    fn forced_keyframes_come_out_as_keyframes() {
        for kind in EncoderKind::ALL {
            let frames = pattern_frames(320, 180, 10);
            let settings = EncoderSettings::realtime(kind, 320, 180, 30, 300);
            let mut encoder = VideoEncoder::new(settings, 0, MediaClock::start(), 7).unwrap();
            let mut out = Vec::new();
            for (i, raw) in frames.iter().enumerate() {
                out.extend(encoder.encode(raw, i == 5).unwrap());
            }
            let keyframes: Vec<u64> = out
                .iter()
                .filter(|f| f.keyframe)
                .map(|f| f.capture_us)
                .collect();
            assert_eq!(
                keyframes,
                vec![frames[0].capture_us, frames[5].capture_us],
                "{kind}: the first picture and the forced one"
            );
            assert_eq!(
                out.first().map(|f| f.seq),
                Some(7),
                "{kind}: numbering continues"
            );
            for pair in out.windows(2) {
                assert_eq!(pair[1].seq, pair[0].seq + 1, "{kind}: consecutive numbers");
            }
        }
    }
}
