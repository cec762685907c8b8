//! Conversion of any sound to the encoder's format: mono, 48 kHz, 20 ms chunks of i16.

use std::collections::VecDeque;

use anyhow::Context as _;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::encode::audio::{samples_per_frame, SAMPLE_RATE};

/// The resampler's output block: 10 ms, the shortest packet, so that a packet's samples are
/// ready as soon as they were captured whichever packet duration is used.
const BLOCK: usize = samples_per_frame(10);

/// Averages interleaved frames of `channels` samples into mono.
pub fn downmix(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    let channels = channels.max(1);
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() / channels as f32),
    );
}

/// Collects mono samples at any rate and hands them out as 48 kHz chunks of any length. Resampling (FFT-based, rubato) happens in fixed blocks, so
/// there are no discontinuities at the boundaries of whatever the input delivers.
pub struct To48k {
    resampler: Option<Fft<f32>>,
    input: Vec<f32>,
    output: VecDeque<f32>,
    rate_in: u32,
}

impl To48k {
    pub fn new(rate_in: u32) -> anyhow::Result<Self> {
        let resampler =
            streamsocket_sound::mono_resampler(rate_in, SAMPLE_RATE, BLOCK, FixedSync::Output)?;
        Ok(Self {
            resampler,
            input: Vec::new(),
            output: VecDeque::new(),
            rate_in,
        })
    }

    /// Input samples still needed before a chunk of `len` is ready (0 when it is).
    pub fn needed(&self, len: usize) -> usize {
        if self.output.len() >= len {
            return 0;
        }
        match &self.resampler {
            None => len - self.output.len(),
            Some(r) => r
                .input_frames_next()
                .saturating_sub(self.input.len())
                .max(1),
        }
    }

    /// Adds mono samples at the input rate.
    pub fn push(&mut self, mono: &[f32]) -> anyhow::Result<()> {
        let Some(resampler) = self.resampler.as_mut() else {
            self.output.extend(mono);
            return Ok(());
        };
        self.input.extend_from_slice(mono);
        let mut used = 0;
        while self.input.len() - used >= resampler.input_frames_next() {
            let n = resampler.input_frames_next();
            let block = InterleavedSlice::new(&self.input[used..used + n], 1, n)
                .context("resampler input")?;
            let out = resampler.process(&block, None).context("resampling")?;
            self.output.extend(out.take_data());
            used += n;
        }
        self.input.drain(..used);
        Ok(())
    }

    /// Output samples (48 kHz) ready or on their way: what is buffered here, as time.
    pub fn buffered_48k(&self) -> usize {
        let input = self.input.len() as u64 * SAMPLE_RATE as u64 / self.rate_in.max(1) as u64;
        self.output.len() + input as usize
    }

    /// Takes the next chunk (`pcm.len()` samples) as i16 if one is complete.
    pub fn pop_chunk(&mut self, pcm: &mut [i16]) -> bool {
        if self.output.len() < pcm.len() {
            return false;
        }
        let n = pcm.len();
        for (o, s) in pcm.iter_mut().zip(self.output.drain(..n)) {
            *o = (s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frequency of a mono signal by counting rising zero crossings.
    pub fn frequency(samples: &[i16], rate: u32) -> f32 {
        let crossings = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        crossings as f32 * rate as f32 / samples.len() as f32
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level_through_resampling() {
        for rate in [8_000u32, 22_050, 44_100, 48_000, 96_000] {
            let mut r = To48k::new(rate).unwrap();
            // One second of 1 kHz at half scale, pushed in odd-sized pieces.
            let tone: Vec<f32> = (0..rate)
                .map(|i| 0.5 * (i as f32 * 1000.0 * std::f32::consts::TAU / rate as f32).sin())
                .collect();
            for piece in tone.chunks(333) {
                r.push(piece).unwrap();
            }
            let mut out = Vec::new();
            let mut chunk = vec![0i16; samples_per_frame(20)];
            while r.pop_chunk(&mut chunk) {
                out.extend_from_slice(&chunk);
            }
            // Nearly all of the second comes out (the resampler keeps a block of delay).
            assert!(
                out.len() >= 40 * samples_per_frame(20),
                "{rate} Hz: {}",
                out.len()
            );
            let steady = &out[4 * samples_per_frame(20)..];
            let f = frequency(steady, SAMPLE_RATE);
            assert!((f - 1000.0).abs() < 10.0, "{rate} Hz: {f} Hz");
            let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap() as f32;
            let level = peak / i16::MAX as f32;
            assert!((level - 0.5).abs() < 0.05, "{rate} Hz: level {level}");
        }
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        let mut out = Vec::new();
        downmix(&[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], 2, &mut out);
        assert_eq!(out, [0.5, 0.5, 0.0]);
    }
}
