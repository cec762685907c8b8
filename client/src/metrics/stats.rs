//! What the viewer measures: counts, latency histograms per stage, and the JSON written by
//! `--stats-json`.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};
#[cfg(test)]
use serde_json::Value;

/// A latency histogram in microseconds, reported in milliseconds.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // 1 µs to 1 hour, 3 significant digits.
        Latency(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
    }
}

impl Latency {
    pub fn record_us(&mut self, us: u64) {
        let _ = self.0.record(us.clamp(1, 3_600_000_000));
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Empties it, keeping its allocation.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
}

/// A latency in the JSON: milliseconds to two decimals, `mean` once there are values.
#[derive(Serialize)]
struct LatencyReport {
    count: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mean: Option<f64>,
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = |us: f64| (!self.0.is_empty()).then(|| round(us / 1000.0, 2));
        LatencyReport {
            count: self.0.len(),
            p50: ms(self.0.value_at_quantile(0.50) as f64),
            p95: ms(self.0.value_at_quantile(0.95) as f64),
            p99: ms(self.0.value_at_quantile(0.99) as f64),
            max: ms(self.0.max() as f64),
            mean: ms(self.0.mean()),
        }
        .serialize(s)
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (v * k).round() / k
}

fn us_as_ms<S: Serializer>(us: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*us as f64 / 1000.0)
}

fn us_as_whole_ms<S: Serializer>(us: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(us / 1000)
}

fn round1<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round(*v, 1))
}

fn round2_opt<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    v.map(|v| round(v, 2)).serialize(s)
}

fn is_some<T, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(v.is_some())
}

/// Picture sizes as `"WxH"` keys.
fn sizes<S: Serializer>(
    by_size: &std::collections::BTreeMap<(u32, u32), u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(by_size.iter().map(|((w, h), n)| (format!("{w}x{h}"), n)))
}

/// Where a frame's time went, capture to decoded.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stages {
    /// Capture to the encoder taking the frame.
    pub encoder_queue: Latency,
    /// Inside the encoder before the encode call that produced the frame (rav1e's lookahead;
    /// 0 with libaom in real-time mode).
    pub encoder_wait: Latency,
    pub encode: Latency,
    /// Encoder output to the first byte at the viewer (server send path and network).
    pub transport: Latency,
    /// First byte to last byte of the frame's stream.
    pub reassembly: Latency,
    /// Last byte to the start of decoding (reordering and the decoder's queue).
    pub reorder: Latency,
    pub decode: Latency,
    /// Decoded to shown in the window (conversion and waiting for the window).
    pub present: Latency,
    /// Everything after the encoder, per frame: encoder output to decoded (transport,
    /// reassembly, reordering, decoding).
    pub outside_encoder: Latency,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct VideoStats {
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub frames_skipped: u64,
    pub frames_late: u64,
    /// Frames lost because the decoder's input queue was full.
    pub frames_dropped_decoder_busy: u64,
    /// Frame streams the server reset (deadline passed) or that broke off.
    pub frames_reset: u64,
    pub frames_malformed: u64,
    pub decode_errors: u64,
    pub frames_presented: u64,
    /// Longest time between two decoded pictures after the first (a freeze), and when the
    /// last picture was decoded (viewer clock).
    #[serde(rename = "longest_freeze_ms", serialize_with = "us_as_ms")]
    pub longest_freeze_us: u64,
    #[serde(skip)]
    pub last_decoded_us: Option<u64>,
    /// Pictures written by --dump-y4m, and writes that failed.
    pub frames_dumped: u64,
    pub dump_errors: u64,
    /// Decoded frames by picture size (width, height).
    #[serde(serialize_with = "sizes")]
    pub frames_by_size: std::collections::BTreeMap<(u32, u32), u64>,
    /// Times the picture moved to another rendition.
    pub rendition_switches: u64,
    /// Request to first decoded frame of the new rendition.
    #[serde(rename = "switch_ms")]
    pub switch_time: Latency,
    /// Decoded frames replaced by a newer one before the window could show them.
    pub frames_not_presented: u64,
    /// Decoded frames dropped because they came too late for the audio clock (A/V sync).
    pub frames_too_late: u64,
    /// Frames shown later than the sound because audio was at its ceiling delay.
    pub frames_shown_late: u64,
    /// Decoded pictures dropped because the picture queue was full.
    pub frames_dropped_queue_full: u64,
    pub keyframes: u64,
    pub keyframe_requests: u64,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    #[serde(serialize_with = "round2_opt")]
    pub first_frame_ms: Option<f64>,
    /// From the start of connecting to the first decoded frame that is live (captured less
    /// than the latency target before it was decoded).
    #[serde(serialize_with = "round2_opt")]
    pub live_ms: Option<f64>,
    #[serde(rename = "latency_ms")]
    pub latency_decoded: Latency,
    /// The same, since automatic quality last looked (it empties this once a second).
    #[serde(skip)]
    pub latency_last_second: Latency,
    #[serde(rename = "latency_presented_ms")]
    pub latency_presented: Latency,
    #[serde(rename = "stages_ms")]
    pub stages: Stages,
    pub pixel_clock: PixelClockStats,
}

/// Timestamps read back from the decoded pixels.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PixelClockStats {
    pub read: u64,
    pub matched: u64,
    pub unreadable: u64,
}

/// The broadcaster's pauses (BroadcastPaused messages) and what arrived around them.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BroadcastStats {
    pub paused: bool,
    pub pauses: u64,
    pub resumes: u64,
    /// Frames that arrived while paused (only those already in flight should).
    pub frames_during_pause: u64,
    /// After each resume: was the first frame a keyframe?
    pub resumed_on_keyframe: u64,
    pub resumed_without_keyframe: u64,
    /// Waiting for the first frame after a resume.
    #[serde(skip)]
    pub awaiting_first_frame: bool,
}

impl BroadcastStats {
    /// Accounts for the server's BroadcastPaused message.
    pub fn on_message(&mut self, paused: bool) {
        if paused && !self.paused {
            self.pauses += 1;
        }
        if !paused && self.paused {
            self.resumes += 1;
            self.awaiting_first_frame = true;
        }
        self.paused = paused;
    }

    /// Accounts for a frame that arrived.
    pub fn on_frame(&mut self, keyframe: bool) {
        if self.paused {
            self.frames_during_pause += 1;
        } else if std::mem::take(&mut self.awaiting_first_frame) {
            if keyframe {
                self.resumed_on_keyframe += 1;
            } else {
                self.resumed_without_keyframe += 1;
            }
        }
    }
}

/// `--record`: what went into the file, and what did not.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RecordingStats {
    pub video_frames: u64,
    pub audio_packets: u64,
    pub bytes: u64,
    /// Frames before the first keyframe (the file starts at a keyframe).
    pub waiting_for_keyframe: u64,
    /// Time of the last video frame written, from the first (ms).
    pub video_span_ms: u64,
    /// Time of the last block of either track (ms).
    pub span_ms: u64,
    /// Items lost because the writer's queue was full (disk too slow).
    pub dropped: u64,
    pub errors: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AudioStats {
    pub packets_received: u64,
    /// Failed writes of --dump-wav.
    pub dump_errors: u64,
    /// Opus payload bytes received.
    pub bytes: u64,
    pub packets_decoded: u64,
    pub packets_concealed: u64,
    /// Of the concealed packets, those rebuilt from the next packet's FEC data.
    pub packets_recovered_fec: u64,
    pub packets_late: u64,
    pub packets_dropped_overflow: u64,
    /// Packets dropped to bring the playout delay back down to its target (after a burst, or
    /// a sound card slower than the sender).
    pub packets_dropped_catch_up: u64,
    /// Ticks stretched with concealment to bring the delay up to its target.
    pub packets_stretched: u64,
    /// Playout time taken out of or added to packets to hold the delay at its target
    /// (a millisecond at most per packet, spliced), in total.
    #[serde(rename = "playout_nudged_ms", serialize_with = "us_as_ms")]
    pub playout_nudged_us: u64,
    /// The playout delay aimed for now, and the jitter it covers (ms).
    #[serde(serialize_with = "round1")]
    pub target_delay_ms: f64,
    #[serde(serialize_with = "round1")]
    pub jitter_ms: f64,
    /// Capture to heard, per packet played (the audio clock video follows).
    #[serde(rename = "playout_delay_ms")]
    pub playout_delay: Latency,
    /// Packets lost because the audio thread's input queue was full.
    pub packets_dropped_busy: u64,
    pub packets_malformed: u64,
    pub decode_errors: u64,
    #[serde(rename = "latency_ms")]
    pub latency: Latency,
    pub output_device: Option<String>,
    pub output_underruns: u64,
    /// The viewer's current audio bitrate.
    pub bitrate_bps: u32,
    /// Shown in the window; not part of the JSON.
    #[serde(skip)]
    pub muted: bool,
}

impl AudioStats {
    /// Concealed packets per hundred played, to one decimal.
    pub fn concealed_percent(&self) -> f64 {
        let due = self.packets_decoded + self.packets_concealed;
        if due == 0 {
            return 0.0;
        }
        round(100.0 * self.packets_concealed as f64 / due as f64, 1)
    }
}

/// The audio section: the counters and the concealed share.
#[derive(Serialize)]
struct AudioReport<'a> {
    #[serde(flatten)]
    counts: &'a AudioStats,
    concealed_percent: f64,
}

fn audio_report<S: Serializer>(a: &AudioStats, s: S) -> Result<S::Ok, S::Error> {
    AudioReport {
        counts: a,
        concealed_percent: a.concealed_percent(),
    }
    .serialize(s)
}

/// QUIC-level counters of the connection, read when the viewer ends.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct TransportStats {
    pub udp_rx_bytes: u64,
    pub udp_rx_datagrams: u64,
    pub udp_tx_bytes: u64,
    pub lost_packets: u64,
    #[serde(rename = "rtt_ms", serialize_with = "us_as_ms")]
    pub rtt_us: u64,
}

/// A/V sync as seen and heard: the test source flashes and clicks at every whole second of
/// its clock; the skew is when the flash was shown minus when the click was heard (viewer
/// clock), so positive means the audio is ahead.
#[derive(Debug, Default, Clone)]
pub struct AvSkew {
    flashes: std::collections::BTreeMap<u64, u64>,
    clicks: std::collections::BTreeMap<u64, u64>,
    pub skews_us: Vec<i64>,
}

impl AvSkew {
    /// Unpaired events kept at most (a real source has clicks without flashes).
    const KEEP: usize = 8;

    pub fn on_flash(&mut self, second: u64, shown_us: u64) {
        match self.clicks.remove(&second) {
            Some(heard) => self.skews_us.push(shown_us as i64 - heard as i64),
            None => Self::keep(&mut self.flashes, second, shown_us),
        }
    }

    pub fn on_click(&mut self, second: u64, heard_us: u64) {
        match self.flashes.remove(&second) {
            Some(shown) => self.skews_us.push(shown as i64 - heard_us as i64),
            None => Self::keep(&mut self.clicks, second, heard_us),
        }
    }

    fn keep(events: &mut std::collections::BTreeMap<u64, u64>, second: u64, at: u64) {
        events.insert(second, at);
        while events.len() > Self::KEEP {
            events.pop_first();
        }
    }

    /// The skew at quantile `q`, in ms.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        if self.skews_us.is_empty() {
            return None;
        }
        let mut sorted = self.skews_us.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() - 1) as f64 * q).round() as usize;
        Some(sorted[i] as f64 / 1000.0)
    }
}

/// The skew in the JSON: milliseconds to one decimal.
#[derive(Serialize)]
struct SkewReport {
    count: usize,
    p5: Option<f64>,
    p50: Option<f64>,
    p95: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

impl Serialize for AvSkew {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let q = |q: f64| self.percentile_ms(q).map(|v| round(v, 1));
        SkewReport {
            count: self.skews_us.len(),
            p5: q(0.05),
            p50: q(0.5),
            p95: q(0.95),
            min: q(0.0),
            max: q(1.0),
        }
        .serialize(s)
    }
}

/// The connection's losses and the viewer's reconnections.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ConnectionStats {
    /// Connections lost (not closed by either side on purpose).
    pub lost: u64,
    pub reconnects: u64,
    /// Set while the viewer tries to connect again.
    #[serde(serialize_with = "is_some")]
    pub reconnecting: Option<Reconnecting>,
    /// Connection lost to connected again.
    #[serde(rename = "reconnect_ms")]
    pub reconnect_time: Latency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnecting {
    pub reason: String,
    pub attempt: u32,
    /// Viewer clock when the connection was lost.
    pub since_us: u64,
}

/// One entry of the rendition timeline.
#[derive(Debug, Clone, Serialize)]
pub struct RenditionChange {
    /// Viewer clock when the server confirmed it.
    #[serde(rename = "at_ms", serialize_with = "us_as_whole_ms")]
    pub at_us: u64,
    pub rendition: u8,
    pub reason: String,
}

/// The estimate of the server's clock.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ClockStats {
    /// server clock − viewer clock.
    pub offset_us: Option<i64>,
    /// The smallest ping round trip seen recently.
    pub rtt_us: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub transport: Option<TransportStats>,
    pub video: VideoStats,
    #[serde(serialize_with = "audio_report")]
    pub audio: AudioStats,
    pub recording: RecordingStats,
    pub broadcast: BroadcastStats,
    #[serde(rename = "av_skew_ms")]
    pub av_skew: AvSkew,
    pub connection: ConnectionStats,
    pub clock: ClockStats,
    /// The rendition the server last confirmed.
    pub rendition: Option<u8>,
    /// Automatic quality is on.
    pub auto: bool,
    /// Why the rendition last changed (automatic quality's reason, or the viewer's choice).
    pub auto_reason: Option<String>,
    /// Every rendition the server confirmed, in order.
    pub rendition_timeline: Vec<RenditionChange>,
    pub paused: bool,
}

/// What the window's banner depends on: the connection, the pauses, the last picture.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Condition {
    pub reconnecting: Option<Reconnecting>,
    /// The broadcaster paused.
    pub broadcast_paused: bool,
    /// The viewer paused.
    pub paused: bool,
    /// Viewer clock when the last picture was decoded.
    pub last_decoded_us: Option<u64>,
}

/// The JSON of `--stats-json`: the run's length, then the stats.
#[derive(Serialize)]
struct Report<'a> {
    duration_s: f64,
    #[serde(flatten)]
    stats: &'a Stats,
}

impl Stats {
    /// What [`Metrics::condition`](super::Metrics::condition) reads, from a snapshot.
    #[cfg(test)]
    pub fn condition(&self) -> Condition {
        Condition {
            reconnecting: self.connection.reconnecting.clone(),
            broadcast_paused: self.broadcast.paused,
            paused: self.paused,
            last_decoded_us: self.video.last_decoded_us,
        }
    }

    fn report(&self, duration: Duration) -> Report<'_> {
        Report {
            duration_s: round(duration.as_secs_f64(), 3),
            stats: self,
        }
    }

    #[cfg(test)]
    pub fn to_json(&self, duration: Duration) -> Value {
        serde_json::to_value(self.report(duration)).expect("stats serialize")
    }

    pub fn write_json(&self, path: &Path, duration: Duration) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.report(duration))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write stats to {}: {e}", path.display()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn skew_pairs_flash_and_click_of_the_same_second_in_either_order() {
        let mut k = AvSkew::default();
        k.on_flash(3, 1_000_000);
        k.on_click(3, 990_000); // heard 10 ms before shown: audio ahead
        k.on_click(4, 2_000_000);
        k.on_flash(4, 1_980_000); // shown 20 ms before heard: audio behind
        k.on_click(5, 3_000_000); // never paired
        assert_eq!(k.skews_us, [10_000, -20_000]);
        assert_eq!(k.percentile_ms(0.0), Some(-20.0));
        assert_eq!(k.percentile_ms(1.0), Some(10.0));
        for s in 10..100 {
            k.on_click(s, 0);
        }
        assert!(
            k.clicks.len() <= AvSkew::KEEP,
            "unpaired events stay bounded"
        );
    }

    #[test]
    fn json_has_the_promised_fields() {
        let mut s = Stats::default();
        s.video.latency_decoded.record_us(12_345);
        s.audio.latency.record_us(40_000);
        let j = s.to_json(Duration::from_secs(3));
        for key in [
            "frames_received",
            "frames_decoded",
            "frames_skipped",
            "keyframes",
            "bytes",
            "width",
            "height",
            "first_frame_ms",
        ] {
            assert!(j["video"].get(key).is_some(), "video.{key}");
        }
        for key in ["packets_received", "packets_decoded", "packets_concealed"] {
            assert!(j["audio"].get(key).is_some(), "audio.{key}");
        }
        for q in ["p50", "p95", "p99", "max"] {
            assert!(j["video"]["latency_ms"][q].is_number(), "video {q}");
            assert!(j["audio"]["latency_ms"][q].is_number(), "audio {q}");
        }
        assert!((j["video"]["latency_ms"]["p50"].as_f64().unwrap() - 12.35).abs() < 0.05);
        assert_eq!(j["duration_s"], 3.0);
    }

    /// Every section with something in it, as a viewer would end with.
    pub(crate) fn sample() -> Stats {
        let mut s = Stats {
            rendition: Some(1),
            auto: true,
            auto_reason: Some("down to 360p: 4 frames missed their deadline".into()),
            ..Stats::default()
        };
        s.rendition_timeline.push(RenditionChange {
            at_us: 1_234_567,
            rendition: 0,
            reason: "the server's first choice".into(),
        });
        s.rendition_timeline.push(RenditionChange {
            at_us: 5_000_999,
            rendition: 1,
            reason: "down to 360p".into(),
        });
        s.transport = Some(TransportStats {
            udp_rx_bytes: 1_000_000,
            udp_rx_datagrams: 900,
            udp_tx_bytes: 20_000,
            lost_packets: 3,
            rtt_us: 1_234,
        });
        s.clock.offset_us = Some(-42_000);
        s.clock.rtt_us = Some(900);
        let v = &mut s.video;
        (
            v.frames_received,
            v.frames_decoded,
            v.frames_skipped,
            v.frames_late,
        ) = (300, 290, 5, 2);
        (
            v.frames_dropped_decoder_busy,
            v.frames_reset,
            v.frames_malformed,
        ) = (1, 4, 0);
        (
            v.decode_errors,
            v.frames_presented,
            v.frames_dumped,
            v.dump_errors,
        ) = (0, 280, 0, 0);
        v.longest_freeze_us = 123_456;
        v.last_decoded_us = Some(9_000_000);
        v.frames_by_size.insert((1280, 720), 100);
        v.frames_by_size.insert((640, 360), 190);
        v.rendition_switches = 1;
        v.switch_time.record_us(45_000);
        (
            v.frames_not_presented,
            v.frames_too_late,
            v.frames_shown_late,
        ) = (3, 2, 1);
        (
            v.frames_dropped_queue_full,
            v.keyframes,
            v.keyframe_requests,
        ) = (0, 3, 1);
        (v.bytes, v.width, v.height) = (2_000_000, 640, 360);
        (v.first_frame_ms, v.live_ms) = (Some(123.456), Some(234.567));
        v.latency_decoded.record_us(150_000);
        v.latency_decoded.record_us(180_000);
        v.latency_last_second.record_us(1);
        v.latency_presented.record_us(190_000);
        let st = &mut v.stages;
        for (l, us) in [
            (&mut st.encoder_queue, 1_000),
            (&mut st.encoder_wait, 2_000),
            (&mut st.encode, 30_000),
            (&mut st.transport, 5_000),
            (&mut st.reassembly, 700),
            (&mut st.reorder, 300),
            (&mut st.decode, 4_000),
            (&mut st.present, 8_000),
            (&mut st.outside_encoder, 12_000),
        ] {
            l.record_us(us);
        }
        (
            v.pixel_clock.read,
            v.pixel_clock.matched,
            v.pixel_clock.unreadable,
        ) = (10, 9, 1);
        let a = &mut s.audio;
        (
            a.packets_received,
            a.dump_errors,
            a.bytes,
            a.packets_decoded,
        ) = (500, 0, 40_000, 480);
        (a.packets_concealed, a.packets_recovered_fec, a.packets_late) = (20, 5, 2);
        (a.packets_dropped_overflow, a.packets_dropped_catch_up) = (1, 2);
        (a.packets_stretched, a.playout_nudged_us) = (3, 2_500);
        (a.target_delay_ms, a.jitter_ms) = (61.234, 12.345);
        a.playout_delay.record_us(80_000);
        (a.packets_dropped_busy, a.packets_malformed, a.decode_errors) = (0, 1, 0);
        a.latency.record_us(95_000);
        a.output_device = Some("default".into());
        (a.output_underruns, a.bitrate_bps, a.muted) = (2, 32_000, true);
        let r = &mut s.recording;
        (
            r.video_frames,
            r.audio_packets,
            r.bytes,
            r.waiting_for_keyframe,
        ) = (290, 480, 9_999, 3);
        (r.video_span_ms, r.span_ms, r.dropped, r.errors) = (9_600, 9_620, 0, 0);
        s.broadcast.on_message(true);
        s.broadcast.on_frame(false);
        s.broadcast.on_message(false);
        s.broadcast.on_frame(true);
        s.av_skew.on_flash(1, 1_000_000);
        s.av_skew.on_click(1, 990_000);
        s.av_skew.on_click(2, 2_000_000);
        s.av_skew.on_flash(2, 2_030_000);
        s.connection.lost = 1;
        s.connection.reconnects = 1;
        s.connection.reconnect_time.record_us(750_000);
        s
    }

    /// The `--stats-json` names are read by the end-to-end tests, the benchmarks and the
    /// documentation: they must not drift. Regenerate the sample on purpose with
    /// `STREAMSOCKET_WRITE_SAMPLE=1`.
    #[test]
    fn stats_json_matches_the_checked_in_sample() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/metrics/testdata/stats.json"
        );
        let got = sample().to_json(Duration::from_millis(12_345));
        if std::env::var_os("STREAMSOCKET_WRITE_SAMPLE").is_some() {
            std::fs::write(path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let want: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
        let empty = Stats::default().to_json(Duration::ZERO);
        assert!(empty["video"]["latency_ms"]["p50"].is_null());
        assert!(empty["video"]["latency_ms"].get("mean").is_none());
        assert!(empty["transport"].is_null());
    }
}
