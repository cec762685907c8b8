//! The broadcaster's controls, shared by the preview window, the sources and every session:
//! pause the whole stream, mute the microphone, and what the status shows.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use tokio::sync::watch;

pub struct Controls {
    paused: watch::Sender<bool>,
    muted: AtomicBool,
    /// Peak level of the last 20 ms of sound (0..1), as f32 bits.
    audio_peak: AtomicU32,
    /// Viewers connected (past their hello).
    viewers: AtomicUsize,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            paused: watch::channel(false).0,
            muted: AtomicBool::new(false),
            audio_peak: AtomicU32::new(0),
            viewers: AtomicUsize::new(0),
        }
    }
}

impl Controls {
    /// Pauses or resumes the stream for everybody; sessions hear of it through
    /// [`Controls::watch_paused`].
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
        tracing::info!("broadcast {}", if paused { "paused" } else { "resumed" });
    }

    pub fn paused(&self) -> bool {
        *self.paused.borrow()
    }

    pub fn watch_paused(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
        tracing::info!("microphone {}", if muted { "muted" } else { "unmuted" });
    }

    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    pub fn set_audio_peak(&self, peak: f32) {
        self.audio_peak.store(peak.to_bits(), Ordering::Relaxed);
    }

    pub fn audio_peak(&self) -> f32 {
        f32::from_bits(self.audio_peak.load(Ordering::Relaxed))
    }

    pub fn viewer_joined(&self) {
        self.viewers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn viewer_left(&self) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }
}
