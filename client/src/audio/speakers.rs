//! Speakers through cpal: decoded 48 kHz mono samples go into a lock-free ring buffer that the
//! device's callback drains, duplicated to every output channel. Any sample format the device
//! takes; a device that cannot run at 48 kHz gets the sound resampled (rubato) to its rate.

use anyhow::Context as _;
use cpal::traits::{DeviceTrait, StreamTrait};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use streamsocket_sound::Direction;

use crate::audio::output::{AudioOutput, SAMPLE_RATE};

/// Most audio queued for the device: 200 ms; beyond it the newest samples are dropped so
/// the output stays close to live.
const RING_MS: usize = 200;

/// Audio outputs that can play, by name.
pub fn list() -> Vec<String> {
    streamsocket_sound::list(Direction::Output)
}

pub struct Speakers {
    _stream: cpal::Stream,
    producer: HeapProd<f32>,
    name: String,
    /// 48 kHz to the device's rate, when it differs.
    resampler: Option<Fft<f32>>,
    pending: Vec<f32>,
    /// The device's sample rate.
    rate: u32,
    /// Samples dropped because the device was behind.
    pub dropped: u64,
}

impl Speakers {
    /// Opens the named output (part of its name), or the default one.
    pub fn open(name: Option<&str>) -> anyhow::Result<Self> {
        let device = streamsocket_sound::find(Direction::Output, name)?;
        let name = device.name().unwrap_or_else(|_| "unnamed device".into());
        // 48 kHz if the device offers it (float preferred), else its own default.
        let mut at_48k: Vec<_> = device
            .supported_output_configs()
            .with_context(|| format!("cannot query {name}"))?
            .filter(|c| {
                c.min_sample_rate().0 <= SAMPLE_RATE && c.max_sample_rate().0 >= SAMPLE_RATE
            })
            .collect();
        at_48k.sort_by_key(|c| c.sample_format() != cpal::SampleFormat::F32);
        let config = match at_48k.into_iter().next() {
            Some(range) => range.with_sample_rate(cpal::SampleRate(SAMPLE_RATE)),
            None => device
                .default_output_config()
                .with_context(|| format!("{name} has no usable output configuration"))?,
        };
        let (rate, channels, format) = (
            config.sample_rate().0,
            config.channels() as usize,
            config.sample_format(),
        );
        let stream_config = config.config();
        let ring = rate as usize * RING_MS / 1000;
        let (producer, consumer): (HeapProd<f32>, HeapCons<f32>) = HeapRb::<f32>::new(ring).split();
        let mut consumer = consumer;
        let mut mono = Vec::new();
        let stream =
            streamsocket_sound::output_stream(&device, &stream_config, format, move |data| {
                let frames = data.len() / channels;
                mono.resize(frames, 0.0);
                let got = consumer.pop_slice(&mut mono);
                mono[got..].fill(0.0);
                for (frame, s) in data.chunks_exact_mut(channels).zip(&mono) {
                    frame.fill(*s);
                }
            })
            .with_context(|| format!("cannot open {name}"))?;
        stream
            .play()
            .with_context(|| format!("cannot start {name}"))?;
        // 10 ms blocks: the shortest packet, so that none waits for the next.
        let resampler =
            streamsocket_sound::mono_resampler(SAMPLE_RATE, rate, 480, FixedSync::Input)
                .with_context(|| format!("for {name}"))?;
        tracing::info!("playing audio on {name} ({rate} Hz, {channels} channel(s), {format})");
        Ok(Self {
            _stream: stream,
            producer,
            name,
            resampler,
            pending: Vec::new(),
            rate,
            dropped: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn push(&mut self, samples: &[f32]) {
        if self.producer.vacant_len() < samples.len() {
            // The device is behind: drop rather than add delay.
            self.dropped += samples.len() as u64;
            return;
        }
        self.producer.push_slice(samples);
    }
}

impl AudioOutput for Speakers {
    fn queued_us(&self) -> u64 {
        // What waits in the ring; the device's own buffer is not visible through cpal.
        self.producer.occupied_len() as u64 * 1_000_000 / self.rate as u64
    }

    fn play(&mut self, samples: &[i16]) {
        let as_f32 = samples.iter().map(|&s| s as f32 / 32768.0);
        let Some(resampler) = self.resampler.as_mut() else {
            let block: Vec<f32> = as_f32.collect();
            self.push(&block);
            return;
        };
        self.pending.extend(as_f32);
        let mut out = Vec::new();
        let mut used = 0;
        while self.pending.len() - used >= resampler.input_frames_next() {
            let n = resampler.input_frames_next();
            let Ok(block) = InterleavedSlice::new(&self.pending[used..used + n], 1, n) else {
                break;
            };
            match resampler.process(&block, None) {
                Ok(o) => out.extend(o.take_data()),
                Err(e) => tracing::warn!("audio resampling failed: {e}"),
            }
            used += n;
        }
        self.pending.drain(..used);
        self.push(&out);
    }
}
