//! A WAV file as a live audio input: any rate, channel count and sample format, converted to
//! 48 kHz mono and played in real time, looping at the end by default.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::resample::{downmix, To48k};
use super::{AudioInput, ChunkPacer, SourceEnded};
use crate::capture::clock::MediaClock;

pub struct WavFile {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    spec: hound::WavSpec,
    to48k: To48k,
    looping: bool,
    chunks: ChunkPacer,
    frames_in_pass: u64,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
}

impl WavFile {
    pub fn open(path: &Path, looping: bool) -> anyhow::Result<Self> {
        let reader = open_reader(path)?;
        let spec = reader.spec();
        if spec.channels == 0 {
            bail!("{}: no channels", path.display());
        }
        let to48k = To48k::new(spec.sample_rate).with_context(|| format!("{}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            reader,
            spec,
            to48k,
            looping,
            chunks: ChunkPacer::default(),
            frames_in_pass: 0,
            interleaved: Vec::new(),
            mono: Vec::new(),
        })
    }

    /// Reads up to `frames` frames (all channels) as f32 into `self.interleaved`.
    fn read_frames(&mut self, frames: usize) -> anyhow::Result<usize> {
        let wanted = frames * self.spec.channels as usize;
        self.interleaved.clear();
        match self.spec.sample_format {
            hound::SampleFormat::Float => {
                for s in self.reader.samples::<f32>().take(wanted) {
                    self.interleaved.push(s.context("reading samples")?);
                }
            }
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (self.spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                for s in self.reader.samples::<i32>().take(wanted) {
                    self.interleaved
                        .push(s.context("reading samples")? as f32 * scale);
                }
            }
        }
        Ok(self.interleaved.len() / self.spec.channels as usize)
    }

    /// Feeds the resampler until a chunk is ready, restarting the file at its end.
    /// Reads until a chunk of `len` samples is ready.
    fn fill(&mut self, len: usize) -> anyhow::Result<()> {
        while self.to48k.needed(len) > 0 {
            let want = self.to48k.needed(len).max(256);
            let got = self
                .read_frames(want)
                .with_context(|| format!("{}", self.path.display()))?;
            if got == 0 {
                if self.frames_in_pass == 0 {
                    bail!("{}: no samples", self.path.display());
                }
                if !self.looping {
                    return Err(SourceEnded(format!("{} ended", self.path.display())).into());
                }
                self.reader = open_reader(&self.path)?;
                self.frames_in_pass = 0;
                continue;
            }
            self.frames_in_pass += got as u64;
            self.mono.clear();
            downmix(
                &self.interleaved,
                self.spec.channels as usize,
                &mut self.mono,
            );
            self.to48k.push(&self.mono)?;
        }
        Ok(())
    }
}

fn open_reader(path: &Path) -> anyhow::Result<hound::WavReader<BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    hound::WavReader::new(BufReader::new(file)).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a WAV file StreamSocket can read: {e}",
            path.display()
        )
    })
}

impl AudioInput for WavFile {
    fn describe(&self) -> String {
        format!(
            "{} ({} Hz, {} channel(s), {}-bit {}){}",
            self.path.display(),
            self.spec.sample_rate,
            self.spec.channels,
            self.spec.bits_per_sample,
            match self.spec.sample_format {
                hound::SampleFormat::Float => "float",
                hound::SampleFormat::Int => "integer",
            },
            if self.looping { ", looping" } else { "" }
        )
    }

    fn counters(&self) -> Option<String> {
        self.chunks.counters()
    }

    fn next_chunk(&mut self, clock: &MediaClock, pcm: &mut [i16]) -> anyhow::Result<u64> {
        let (_, start_us) = self.chunks.wait(clock, pcm.len());
        self.fill(pcm.len())?;
        let ready = self.to48k.pop_chunk(pcm);
        debug_assert!(ready, "fill(len) leaves a chunk ready");
        Ok(start_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::audio::samples_per_frame;

    #[test]
    fn reads_any_format_as_48k_mono_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        // A quarter second of full-scale-ish left, silent right: mono is half of it.
        for i in 0..11_025 {
            let v = (0.8
                * (i as f32 * 1000.0 * std::f32::consts::TAU / 44_100.0).sin()
                * i16::MAX as f32) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        let mut f = WavFile::open(&path, true).unwrap();
        assert!(f
            .describe()
            .contains("44100 Hz, 2 channel(s), 16-bit integer"));
        let mut pcm = vec![0i16; samples_per_frame(10)];
        let mut peak = 0u16;
        // 1 s of output from a 0.25 s file: it loops.
        for _ in 0..100 {
            f.fill(pcm.len()).unwrap();
            assert!(f.to48k.pop_chunk(&mut pcm));
            peak = peak.max(pcm.iter().map(|s| s.unsigned_abs()).max().unwrap());
        }
        let level = peak as f32 / i16::MAX as f32;
        assert!((level - 0.4).abs() < 0.05, "level {level}");
    }

    #[test]
    fn not_a_wav_file_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, b"RIFF garbage").unwrap();
        let e = WavFile::open(&path, true).err().unwrap().to_string();
        assert!(e.contains("not a WAV file"), "{e}");
    }
}
