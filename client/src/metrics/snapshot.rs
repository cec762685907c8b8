//! The [`Stats`] snapshot, read from every stage's own counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::stats::{
    AudioStats, AvSkew, Condition, Latency, RecordingStats, Stats, TransportStats, VideoStats,
};
use crate::net::control_stream::SessionStats;
use crate::net::receive::ReceiveCounters;
use crate::video::presenter::PresenterCounters;

/// A handle to each stage's counters. The stages get their own handle (and no other); only
/// the snapshot reads them all.
#[derive(Default)]
pub struct Metrics {
    /// Frames and datagrams received, and the broadcaster's pauses around them.
    pub receive: Arc<ReceiveCounters>,
    /// The decoder thread's share of the video section (its reordering and decoding, the
    /// decode-side latencies); the received and presented counts come from the others.
    pub decoder: Arc<Mutex<VideoStats>>,
    pub presenter: Arc<PresenterCounters>,
    /// The audio thread's share of the audio section (playout, decoding, its output).
    pub audio: Arc<Mutex<AudioStats>>,
    /// `--record`'s writer.
    pub recording: Arc<Mutex<RecordingStats>>,
    /// What the control core noted: renditions, clock, connection, audio bitrate.
    pub session: Arc<Mutex<SessionStats>>,
    /// Flashes (presenter) and clicks (audio thread) pair here, once a second each.
    pub av_skew: Arc<Mutex<AvSkew>>,
    /// The M key's state (the audio thread plays silence while it is set).
    pub muted: Arc<AtomicBool>,
    /// The last connection's QUIC counters, read when the viewer ends.
    pub transport: Mutex<Option<TransportStats>>,
}

fn n(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    /// Everything measured so far, as `--stats-json` writes it.
    pub fn snapshot(&self) -> Stats {
        let r = &self.receive;
        let mut video = self.decoder.lock().expect("not poisoned").clone();
        video.frames_received = n(&r.frames_received);
        video.bytes = n(&r.frame_bytes);
        video.keyframes = n(&r.keyframes);
        video.frames_dropped_decoder_busy = n(&r.frames_dropped_decoder_busy);
        video.frames_reset = n(&r.frames_reset);
        video.frames_malformed = n(&r.frames_malformed);
        let p = &self.presenter;
        video.frames_presented = n(&p.frames_presented);
        video.frames_not_presented = n(&p.frames_not_presented);
        video.frames_too_late = n(&p.frames_too_late);
        video.frames_shown_late = n(&p.frames_shown_late);
        video.frames_dropped_queue_full = n(&p.frames_dropped_queue_full);
        {
            let l = p.latency.lock().expect("not poisoned");
            video.stages.present = l.present.clone();
            video.latency_presented = l.presented.clone();
        }

        let session = self.session.lock().expect("not poisoned").clone();
        let mut audio = self.audio.lock().expect("not poisoned").clone();
        audio.packets_received = n(&r.audio_packets_received);
        audio.bytes = n(&r.audio_bytes);
        audio.packets_dropped_busy = n(&r.audio_packets_dropped_busy);
        audio.packets_malformed = n(&r.audio_packets_malformed);
        audio.bitrate_bps = session.audio_bitrate_bps;
        audio.muted = self.muted.load(Ordering::Relaxed);

        Stats {
            transport: *self.transport.lock().expect("not poisoned"),
            video,
            audio,
            recording: self.recording.lock().expect("not poisoned").clone(),
            broadcast: r.broadcast.lock().expect("not poisoned").clone(),
            av_skew: self.av_skew.lock().expect("not poisoned").clone(),
            connection: session.connection,
            clock: session.clock,
            rendition: session.rendition,
            auto: session.auto,
            auto_reason: session.auto_reason,
            rendition_timeline: session.rendition_timeline,
            paused: session.paused,
        }
    }

    /// The few readings the window's banner depends on, without copying every histogram as
    /// [`Metrics::snapshot`] does (the window looks ten times a second).
    pub fn condition(&self) -> Condition {
        let session = self.session.lock().expect("not poisoned");
        Condition {
            reconnecting: session.connection.reconnecting.clone(),
            paused: session.paused,
            broadcast_paused: self.receive.broadcast.lock().expect("not poisoned").paused,
            last_decoded_us: self.decoder.lock().expect("not poisoned").last_decoded_us,
        }
    }

    /// Lends automatic quality the decoded latencies of the last second (it empties them).
    pub fn with_recent_latency<R>(&self, f: impl FnOnce(&mut Latency) -> R) -> R {
        f(&mut self
            .decoder
            .lock()
            .expect("not poisoned")
            .latency_last_second)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::stats::tests::sample;

    fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }

    /// Each stage's counters, filled with the checked-in sample's values, make the same JSON.
    #[test]
    fn the_snapshot_assembles_every_stage_into_the_sample() {
        let want = sample();
        let m = Metrics::default();
        let (v, a) = (&want.video, &want.audio);
        let r = &m.receive;
        set(&r.frames_received, v.frames_received);
        set(&r.frame_bytes, v.bytes);
        set(&r.keyframes, v.keyframes);
        set(
            &r.frames_dropped_decoder_busy,
            v.frames_dropped_decoder_busy,
        );
        set(&r.frames_reset, v.frames_reset);
        set(&r.frames_malformed, v.frames_malformed);
        set(&r.audio_packets_received, a.packets_received);
        set(&r.audio_bytes, a.bytes);
        set(&r.audio_packets_dropped_busy, a.packets_dropped_busy);
        set(&r.audio_packets_malformed, a.packets_malformed);
        *r.broadcast.lock().unwrap() = want.broadcast.clone();
        let p = &m.presenter;
        set(&p.frames_presented, v.frames_presented);
        set(&p.frames_not_presented, v.frames_not_presented);
        set(&p.frames_too_late, v.frames_too_late);
        set(&p.frames_shown_late, v.frames_shown_late);
        set(&p.frames_dropped_queue_full, v.frames_dropped_queue_full);
        {
            let mut l = p.latency.lock().unwrap();
            l.present = v.stages.present.clone();
            l.presented = v.latency_presented.clone();
        }
        // The decoder's and the audio thread's own shares: what others count stays unset.
        let mut decoder = v.clone();
        (decoder.frames_received, decoder.bytes, decoder.keyframes) = (0, 0, 0);
        decoder.frames_presented = 0;
        decoder.stages.present = Latency::default();
        decoder.latency_presented = Latency::default();
        *m.decoder.lock().unwrap() = decoder;
        let mut audio = a.clone();
        (audio.packets_received, audio.bytes, audio.bitrate_bps) = (0, 0, 0);
        audio.muted = false;
        *m.audio.lock().unwrap() = audio;
        *m.recording.lock().unwrap() = want.recording.clone();
        *m.av_skew.lock().unwrap() = want.av_skew.clone();
        *m.session.lock().unwrap() = SessionStats {
            rendition: want.rendition,
            auto: want.auto,
            auto_reason: want.auto_reason.clone(),
            rendition_timeline: want.rendition_timeline.clone(),
            paused: want.paused,
            clock: want.clock,
            connection: want.connection.clone(),
            audio_bitrate_bps: a.bitrate_bps,
        };
        m.muted.store(a.muted, Ordering::Relaxed);
        *m.transport.lock().unwrap() = want.transport;

        let got = m.snapshot();
        let d = Duration::from_secs(1);
        assert_eq!(got.to_json(d), want.to_json(d));
        assert_eq!(got.audio.muted, a.muted);
        assert_eq!(got.video.last_decoded_us, v.last_decoded_us);
        assert_eq!(m.condition(), want.condition());
    }
}
