//! Where decoded sound goes: the output trait, the headless sink, and `--dump-wav`'s tee.
//! The speakers (cpal) are one implementation, in `speakers`.

use std::sync::{Arc, Mutex};

use crate::metrics::AudioStats;

pub const SAMPLE_RATE: u32 = 48_000;

/// Where decoded samples go.
pub trait AudioOutput {
    fn play(&mut self, samples: &[i16]);

    /// How long the samples already handed over take to be heard.
    fn queued_us(&self) -> u64 {
        0
    }
}

/// Discards samples (headless).
pub struct NullOutput;

impl AudioOutput for NullOutput {
    fn play(&mut self, _samples: &[i16]) {}
}

/// Plays to another output and writes the same samples to a WAV file (`--dump-wav`): 48 kHz
/// mono 16-bit, exactly what was played, concealment and silence included.
pub struct WavTee {
    inner: Box<dyn AudioOutput>,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    stats: Arc<Mutex<AudioStats>>,
}

impl WavTee {
    pub fn create(
        path: &std::path::Path,
        inner: Box<dyn AudioOutput>,
        stats: Arc<Mutex<AudioStats>>,
    ) -> anyhow::Result<Self> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(Self {
            inner,
            writer: Some(writer),
            stats,
        })
    }
}

impl AudioOutput for WavTee {
    fn queued_us(&self) -> u64 {
        self.inner.queued_us()
    }

    fn play(&mut self, samples: &[i16]) {
        self.inner.play(samples);
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let mut i16_writer = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            i16_writer.write_sample(s);
        }
        if let Err(e) = i16_writer.flush() {
            tracing::error!("--dump-wav: {e}; no more samples are written");
            self.stats.lock().expect("not poisoned").dump_errors += 1;
            self.writer = None;
        }
    }
}

impl Drop for WavTee {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::error!("--dump-wav: finishing the file failed: {e}");
            }
        }
    }
}
