//! `/status`: the live status the broadcaster's preview window shows, as JSON (field names
//! in README.md, "Metrics"). Rates (fps, kbit/s) are over the last whole second, sampled by
//! [`sample_rates`].

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Observed;
use crate::session::ViewerKind;

/// Each rendition's encoded frames and bytes at the last sample, and the rates since the
/// one before.
#[derive(Debug, Default)]
pub struct Rates {
    at: Option<Instant>,
    last: Vec<(u64, u64)>,
    /// Frames per second and kbit/s of each rendition over the last second.
    shown: Vec<(f64, f64)>,
}

impl Rates {
    fn sample(&mut self, counts: Vec<(u64, u64)>, now: Instant) {
        if let Some(at) = self.at {
            let elapsed = now.duration_since(at).as_secs_f64().max(1e-3);
            self.shown = counts
                .iter()
                .zip(&self.last)
                .map(|(now, last)| {
                    (
                        now.0.saturating_sub(last.0) as f64 / elapsed,
                        now.1.saturating_sub(last.1) as f64 * 8.0 / 1000.0 / elapsed,
                    )
                })
                .collect();
        }
        self.last = counts;
        self.at = Some(now);
    }
}

/// Samples the encoders' counters every second, for `/status`'s rates. Runs until dropped.
pub async fn sample_rates(observed: std::sync::Arc<Observed>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let counts = observed
            .hub
            .renditions()
            .iter()
            .map(|r| {
                (
                    r.stats.frames_out.load(Ordering::Relaxed),
                    r.stats.bytes_out.load(Ordering::Relaxed),
                )
            })
            .collect();
        lock(&observed.rates).sample(counts, Instant::now());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_s: f64,
    /// The broadcaster paused the stream (Space in the preview).
    pub paused: bool,
    /// The broadcaster muted the sound (M in the preview).
    pub muted: bool,
    /// Peak level of the last audio packet, 0..1, and in dBFS (`null` for silence).
    pub audio_peak: f32,
    pub audio_peak_dbfs: Option<f64>,
    pub viewers: Viewers,
    pub renditions: Vec<RenditionStatus>,
    pub source: SourceStatus,
}

#[derive(Debug, Serialize)]
pub struct Viewers {
    /// Connected now, past their hello (what the preview shows).
    pub total: usize,
    pub native: i64,
    pub web: i64,
}

#[derive(Debug, Serialize)]
pub struct RenditionStatus {
    pub name: String,
    pub width: u16,
    pub height: u16,
    /// The rung's frame rate and bitrate as configured.
    pub fps: u16,
    pub bitrate_kbps: u32,
    /// Sessions receiving it now.
    pub viewers: usize,
    /// Its encoder runs (somebody watches it).
    pub encoding: bool,
    /// What the encoder produced over the last second.
    pub encoded_fps: f64,
    pub encoded_kbps: f64,
    pub frames_encoded: u64,
    pub keyframes: u64,
}

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub frames: u64,
    pub dropped_encoder_busy: u64,
    pub skipped_late: u64,
}

/// The status now.
pub fn status(o: &Observed) -> Status {
    let controls = o.hub.controls();
    let metrics = o.hub.metrics();
    let peak = controls.audio_peak();
    let rates = lock(&o.rates).shown.clone();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: (metrics.uptime_s() * 10.0).round() / 10.0,
        paused: controls.paused(),
        muted: controls.muted(),
        audio_peak: peak,
        audio_peak_dbfs: (peak > 0.0)
            .then(|| (20.0 * f64::from(peak).log10() * 10.0).round() / 10.0),
        viewers: Viewers {
            total: controls.viewers(),
            native: metrics.viewers(ViewerKind::Native).get(),
            web: metrics.viewers(ViewerKind::Web).get(),
        },
        renditions: o
            .hub
            .renditions()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (fps, kbps) = rates.get(i).copied().unwrap_or_default();
                let viewers = r.viewers();
                RenditionStatus {
                    name: r.info.name.clone(),
                    width: r.info.width,
                    height: r.info.height,
                    fps: r.info.fps,
                    bitrate_kbps: r.info.bitrate_kbps,
                    viewers,
                    encoding: viewers > 0,
                    encoded_fps: (fps * 10.0).round() / 10.0,
                    encoded_kbps: kbps.round(),
                    frames_encoded: load(&r.stats.frames_out),
                    keyframes: load(&r.stats.keyframes),
                }
            })
            .collect(),
        source: SourceStatus {
            frames: load(&o.source.frames),
            dropped_encoder_busy: load(&o.source.dropped_encoder_busy),
            skipped_late: load(&o.source.skipped_late),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_over_the_last_sample() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        r.sample(vec![(10, 1000)], t0);
        assert!(r.shown.is_empty());
        r.sample(vec![(40, 251_000)], t0 + Duration::from_secs(1));
        assert_eq!(r.shown, vec![(30.0, 2000.0)]);
    }
}
