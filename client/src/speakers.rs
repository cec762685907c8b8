//! Speakers through cpal: decoded 48 kHz mono samples go into a lock-free ring buffer that the
//! device's callback drains, duplicated to every output channel.

use anyhow::{anyhow, Context as _};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::audio::{AudioOutput, SAMPLE_RATE};

/// Most audio queued for the device: 200 ms; beyond it the newest samples are dropped so
/// the output stays close to live.
const RING_SAMPLES: usize = SAMPLE_RATE as usize / 5;

pub struct Speakers {
    _stream: cpal::Stream,
    producer: HeapProd<f32>,
    name: String,
}

impl Speakers {
    /// Opens the default output device at 48 kHz.
    pub fn open() -> anyhow::Result<Self> {
        let host = cpal::default_host();
        let device = host
            .default_output_device()
            .ok_or_else(|| anyhow!("no audio output device"))?;
        let name = device.name().unwrap_or_else(|_| "unnamed device".into());
        let range = device
            .supported_output_configs()
            .with_context(|| format!("cannot query {name}"))?
            .filter(|c| c.sample_format() == cpal::SampleFormat::F32)
            .find(|c| c.min_sample_rate().0 <= SAMPLE_RATE && c.max_sample_rate().0 >= SAMPLE_RATE)
            .ok_or_else(|| anyhow!("{name} cannot play 48 kHz float samples"))?;
        let config = range
            .with_sample_rate(cpal::SampleRate(SAMPLE_RATE))
            .config();
        let channels = config.channels as usize;
        let (producer, mut consumer): (HeapProd<f32>, HeapCons<f32>) =
            HeapRb::<f32>::new(RING_SAMPLES).split();
        let mut mono = Vec::new();
        let stream = device
            .build_output_stream(
                &config,
                move |data: &mut [f32], _| {
                    let frames = data.len() / channels;
                    mono.resize(frames, 0.0);
                    let got = consumer.pop_slice(&mut mono);
                    mono[got..].fill(0.0);
                    for (frame, s) in data.chunks_exact_mut(channels).zip(&mono) {
                        frame.fill(*s);
                    }
                },
                |e| tracing::warn!("audio output error: {e}"),
                None,
            )
            .with_context(|| format!("cannot open {name}"))?;
        stream
            .play()
            .with_context(|| format!("cannot start {name}"))?;
        tracing::info!("playing audio on {name}");
        Ok(Self {
            _stream: stream,
            producer,
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AudioOutput for Speakers {
    fn play(&mut self, samples: &[i16]) {
        if self.producer.vacant_len() < samples.len() {
            return; // the device is behind: drop rather than add delay
        }
        for s in samples {
            let _ = self.producer.try_push(*s as f32 / 32768.0);
        }
    }
}
