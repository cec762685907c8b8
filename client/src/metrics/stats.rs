//! What the viewer measures: counts, latency histograms per stage, and the JSON written by
//! `--stats-json`.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

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

    pub fn to_json(&self) -> Value {
        let r = |v: f64| (v * 100.0).round() / 100.0;
        if self.0.is_empty() {
            return json!({"count": 0, "p50": null, "p95": null, "p99": null, "max": null});
        }
        json!({
            "count": self.0.len(),
            "p50": r(self.percentile_ms(0.50)),
            "p95": r(self.percentile_ms(0.95)),
            "p99": r(self.percentile_ms(0.99)),
            "max": r(self.0.max() as f64 / 1000.0),
            "mean": r(self.0.mean() / 1000.0),
        })
    }
}

/// Where a frame's time went, capture to decoded.
#[derive(Debug, Default, Clone)]
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

#[derive(Debug, Default)]
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
    pub longest_freeze_us: u64,
    pub last_decoded_us: Option<u64>,
    /// Pictures written by --dump-y4m, and writes that failed.
    pub frames_dumped: u64,
    pub dump_errors: u64,
    /// Decoded frames by picture size (width, height).
    pub frames_by_size: std::collections::BTreeMap<(u32, u32), u64>,
    /// Times the picture moved to another rendition.
    pub rendition_switches: u64,
    /// When the viewer last asked for another rendition (viewer clock), until the switch.
    pub switch_requested_us: Option<u64>,
    /// Request to first decoded frame of the new rendition.
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
    pub first_frame_ms: Option<f64>,
    /// From the start of connecting to the first decoded frame that is live (captured less
    /// than the latency target before it was decoded).
    pub live_ms: Option<f64>,
    pub latency_decoded: Latency,
    /// The same, since automatic quality last looked (it empties this once a second).
    pub latency_last_second: Latency,
    pub latency_presented: Latency,
    pub stages: Stages,
    /// Timestamps read back from the decoded pixels.
    pub pixel_clock_read: u64,
    pub pixel_clock_matched: u64,
    pub pixel_clock_unreadable: u64,
}

/// The broadcaster's pauses (BroadcastPaused messages) and what arrived around them.
#[derive(Debug, Default)]
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
#[derive(Debug, Default)]
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

#[derive(Debug, Default)]
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
    pub playout_nudged_us: u64,
    /// The playout delay aimed for now, and the jitter it covers (ms).
    pub target_delay_ms: f64,
    pub jitter_ms: f64,
    /// Capture to heard, per packet played (the audio clock video follows).
    pub playout_delay: Latency,
    /// Packets lost because the audio thread's input queue was full.
    pub packets_dropped_busy: u64,
    pub packets_malformed: u64,
    pub decode_errors: u64,
    pub latency: Latency,
    pub output_device: Option<String>,
    pub output_underruns: u64,
    /// The viewer's current audio bitrate.
    pub bitrate_bps: u32,
    pub muted: bool,
}

/// QUIC-level counters of the connection, read when the viewer ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct TransportStats {
    pub udp_rx_bytes: u64,
    pub udp_rx_datagrams: u64,
    pub udp_tx_bytes: u64,
    pub lost_packets: u64,
    pub rtt_us: u64,
}

/// A/V sync as seen and heard: the test source flashes and clicks at every whole second of
/// its clock; the skew is when the flash was shown minus when the click was heard (viewer
/// clock), so positive means the audio is ahead.
#[derive(Debug, Default)]
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

    pub fn to_json(&self) -> Value {
        let r = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
        json!({
            "count": self.skews_us.len(),
            "p5": r(self.percentile_ms(0.05)),
            "p50": r(self.percentile_ms(0.5)),
            "p95": r(self.percentile_ms(0.95)),
            "min": r(self.percentile_ms(0.0)),
            "max": r(self.percentile_ms(1.0)),
        })
    }
}

/// The connection's losses and the viewer's reconnections.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections lost (not closed by either side on purpose).
    pub lost: u64,
    pub reconnects: u64,
    /// Set while the viewer tries to connect again.
    pub reconnecting: Option<Reconnecting>,
    /// Connection lost to connected again.
    pub reconnect_time: Latency,
}

#[derive(Debug, Clone)]
pub struct Reconnecting {
    pub reason: String,
    pub attempt: u32,
    /// Viewer clock when the connection was lost.
    pub since_us: u64,
}

/// One entry of the rendition timeline.
#[derive(Debug, Clone)]
pub struct RenditionChange {
    /// Viewer clock when the server confirmed it.
    pub at_us: u64,
    pub rendition: u8,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub transport: Option<TransportStats>,
    pub video: VideoStats,
    pub audio: AudioStats,
    pub recording: RecordingStats,
    pub broadcast: BroadcastStats,
    pub av_skew: AvSkew,
    pub connection: ConnectionStats,
    pub clock_offset_us: Option<i64>,
    pub rtt_us: Option<u64>,
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

impl Stats {
    pub fn to_json(&self, duration: Duration) -> Value {
        let v = &self.video;
        let a = &self.audio;
        let s = &v.stages;
        json!({
            "duration_s": (duration.as_secs_f64() * 1000.0).round() / 1000.0,
            "rendition": self.rendition,
            "auto": self.auto,
            "auto_reason": self.auto_reason,
            "rendition_timeline": self
                .rendition_timeline
                .iter()
                .map(|c| json!({
                    "at_ms": c.at_us / 1000,
                    "rendition": c.rendition,
                    "reason": c.reason,
                }))
                .collect::<Vec<_>>(),
            "paused": self.paused,
            "transport": self.transport.map(|t| json!({
                "udp_rx_bytes": t.udp_rx_bytes,
                "udp_rx_datagrams": t.udp_rx_datagrams,
                "udp_tx_bytes": t.udp_tx_bytes,
                "lost_packets": t.lost_packets,
                "rtt_ms": t.rtt_us as f64 / 1000.0,
            })),
            "clock": {"offset_us": self.clock_offset_us, "rtt_us": self.rtt_us},
            "video": {
                "frames_received": v.frames_received,
                "frames_decoded": v.frames_decoded,
                "frames_skipped": v.frames_skipped,
                "frames_late": v.frames_late,
                "frames_dropped_decoder_busy": v.frames_dropped_decoder_busy,
                "frames_reset": v.frames_reset,
                "frames_malformed": v.frames_malformed,
                "decode_errors": v.decode_errors,
                "frames_presented": v.frames_presented,
                "frames_dumped": v.frames_dumped,
                "longest_freeze_ms": v.longest_freeze_us as f64 / 1000.0,
                "dump_errors": v.dump_errors,
                "rendition_switches": v.rendition_switches,
                "frames_by_size": v
                    .frames_by_size
                    .iter()
                    .map(|((w, h), n)| (format!("{w}x{h}"), *n))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                "switch_ms": v.switch_time.to_json(),
                "frames_not_presented": v.frames_not_presented,
                "frames_too_late": v.frames_too_late,
                "frames_shown_late": v.frames_shown_late,
                "frames_dropped_queue_full": v.frames_dropped_queue_full,
                "keyframes": v.keyframes,
                "keyframe_requests": v.keyframe_requests,
                "bytes": v.bytes,
                "width": v.width,
                "height": v.height,
                "first_frame_ms": v.first_frame_ms.map(|x| (x * 100.0).round() / 100.0),
                "live_ms": v.live_ms.map(|x| (x * 100.0).round() / 100.0),
                "latency_ms": v.latency_decoded.to_json(),
                "latency_presented_ms": v.latency_presented.to_json(),
                "stages_ms": {
                    "encoder_queue": s.encoder_queue.to_json(),
                    "encoder_wait": s.encoder_wait.to_json(),
                    "encode": s.encode.to_json(),
                    "transport": s.transport.to_json(),
                    "reassembly": s.reassembly.to_json(),
                    "reorder": s.reorder.to_json(),
                    "decode": s.decode.to_json(),
                    "present": s.present.to_json(),
                    "outside_encoder": s.outside_encoder.to_json(),
                },
                "pixel_clock": {
                    "read": v.pixel_clock_read,
                    "matched": v.pixel_clock_matched,
                    "unreadable": v.pixel_clock_unreadable,
                },
            },
            "av_skew_ms": self.av_skew.to_json(),
            "connection": {
                "lost": self.connection.lost,
                "reconnects": self.connection.reconnects,
                "reconnecting": self.connection.reconnecting.is_some(),
                "reconnect_ms": self.connection.reconnect_time.to_json(),
            },
            "broadcast": {
                "paused": self.broadcast.paused,
                "pauses": self.broadcast.pauses,
                "resumes": self.broadcast.resumes,
                "frames_during_pause": self.broadcast.frames_during_pause,
                "resumed_on_keyframe": self.broadcast.resumed_on_keyframe,
                "resumed_without_keyframe": self.broadcast.resumed_without_keyframe,
            },
            "recording": {
                "video_frames": self.recording.video_frames,
                "audio_packets": self.recording.audio_packets,
                "bytes": self.recording.bytes,
                "waiting_for_keyframe": self.recording.waiting_for_keyframe,
                "video_span_ms": self.recording.video_span_ms,
                "span_ms": self.recording.span_ms,
                "dropped": self.recording.dropped,
                "errors": self.recording.errors,
            },
            "audio": {
                "packets_received": a.packets_received,
                "dump_errors": a.dump_errors,
                "bytes": a.bytes,
                "packets_decoded": a.packets_decoded,
                "packets_concealed": a.packets_concealed,
                "packets_recovered_fec": a.packets_recovered_fec,
                "packets_late": a.packets_late,
                "packets_dropped_overflow": a.packets_dropped_overflow,
                "packets_dropped_catch_up": a.packets_dropped_catch_up,
                "packets_stretched": a.packets_stretched,
                "playout_nudged_ms": a.playout_nudged_us as f64 / 1000.0,
                "concealed_percent": if a.packets_decoded + a.packets_concealed > 0 {
                    (1000.0 * a.packets_concealed as f64
                        / (a.packets_decoded + a.packets_concealed) as f64).round() / 10.0
                } else {
                    0.0
                },
                "target_delay_ms": (a.target_delay_ms * 10.0).round() / 10.0,
                "jitter_ms": (a.jitter_ms * 10.0).round() / 10.0,
                "playout_delay_ms": a.playout_delay.to_json(),
                "packets_dropped_busy": a.packets_dropped_busy,
                "packets_malformed": a.packets_malformed,
                "decode_errors": a.decode_errors,
                "latency_ms": a.latency.to_json(),
                "output_device": a.output_device,
                "output_underruns": a.output_underruns,
                "bitrate_bps": a.bitrate_bps,
            },
        })
    }

    pub fn write_json(&self, path: &Path, duration: Duration) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json(duration))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write stats to {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
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
        s.clock_offset_us = Some(-42_000);
        s.rtt_us = Some(900);
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
        v.switch_requested_us = Some(1);
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
            v.pixel_clock_read,
            v.pixel_clock_matched,
            v.pixel_clock_unreadable,
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
