//! A microphone through cpal as a live audio input: any sample format, rate and channel
//! count, downmixed and resampled to 48 kHz mono. The cpal stream lives on its own thread
//! (streams are not `Send`); its callback only copies samples into a bounded channel.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use cpal::traits::{DeviceTrait, StreamTrait};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use streamsocket_sound::Direction;

use super::resample::{downmix, To48k};
use super::{AudioInput, ChunkPacer};
use crate::capture::clock::MediaClock;

/// Without samples for this long the microphone counts as lost and the stream carries
/// silence (paced, so viewers keep playing) until it returns.
const LOST_AFTER: Duration = Duration::from_millis(200);
/// How long a device may take to deliver its first sound.
const START_WITHIN: Duration = Duration::from_secs(1);

/// Audio inputs that can capture, by name.
pub fn list() -> Vec<String> {
    streamsocket_sound::list(Direction::Input)
}

/// Whether a default microphone exists (for `--audio auto`).
pub fn any_present() -> bool {
    streamsocket_sound::find(Direction::Input, None).is_ok()
}

pub struct Microphone {
    description: String,
    samples: Receiver<Vec<f32>>,
    to48k: To48k,
    lost: bool,
    /// Whether any sound arrived yet (a device may take a while to start).
    started: bool,
    /// Paces the silence sent while the microphone delivers nothing.
    silence: ChunkPacer,
    stop: Arc<AtomicBool>,
    /// Sample blocks dropped because the encoder thread fell behind.
    pub dropped: Arc<AtomicU64>,
}

impl Microphone {
    /// Opens the named microphone (part of its name) or the default one.
    pub fn open(name: Option<&str>) -> anyhow::Result<Self> {
        let (tx, samples) = crossbeam_channel::bounded::<Vec<f32>>(64);
        let (opened_tx, opened_rx) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_dropped) = (stop.clone(), dropped.clone());
        let name = name.map(str::to_owned);
        thread::Builder::new()
            .name("microphone".into())
            .spawn(move || {
                let stream = match start_stream(name.as_deref(), tx, thread_dropped) {
                    Ok((stream, description, rate)) => {
                        let _ = opened_tx.send(Ok((description, rate)));
                        stream
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    thread::park_timeout(Duration::from_millis(200));
                }
                drop(stream);
            })?;
        let (description, rate) = opened_rx
            .recv()
            .map_err(|_| anyhow!("the microphone thread ended before opening the device"))??;
        let to48k = match To48k::new(rate) {
            Ok(r) => r,
            Err(e) => {
                // Let the stream thread close the device.
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        Ok(Self {
            description,
            samples,
            to48k,
            lost: false,
            started: false,
            silence: ChunkPacer::default(),
            stop,
            dropped,
        })
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start_stream(
    name: Option<&str>,
    tx: Sender<Vec<f32>>,
    dropped: Arc<AtomicU64>,
) -> anyhow::Result<(cpal::Stream, String, u32)> {
    let device = streamsocket_sound::find(Direction::Input, name)?;
    let device_name = device.name().unwrap_or_else(|_| "unnamed".into());
    let config = device
        .default_input_config()
        .with_context(|| format!("{device_name}: no usable input configuration"))?;
    let (rate, channels, format) = (
        config.sample_rate().0,
        config.channels() as usize,
        config.sample_format(),
    );
    let base_config = config.config();
    let build = |stream_config: &cpal::StreamConfig| {
        let (tx, dropped) = (tx.clone(), dropped.clone());
        let mut mono = Vec::new();
        streamsocket_sound::input_stream(&device, stream_config, format, move |data| {
            mono.clear();
            downmix(data, channels, &mut mono);
            if let Err(TrySendError::Full(_)) = tx.try_send(mono.clone()) {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Small device buffers where the device takes them: sound then arrives in small steady
    // blocks, not in bursts the viewers' jitter buffers would see as late packets. Some
    // devices (ALSA's PulseAudio plugin) refuse a fixed size: then the device's default.
    let mut attempts: Vec<cpal::StreamConfig> = Vec::new();
    if let cpal::SupportedBufferSize::Range { min, max } = config.buffer_size() {
        for ms in [10, 20] {
            let mut c = base_config.clone();
            c.buffer_size = cpal::BufferSize::Fixed((rate * ms / 1000).clamp(*min, *max));
            attempts.push(c);
        }
    }
    attempts.push(base_config);
    let mut last_error = None;
    let mut opened = None;
    for c in &attempts {
        match build(c) {
            Ok(stream) => {
                opened = Some((stream, c.buffer_size));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some((stream, buffer)) = opened else {
        return Err(match last_error {
            Some(cpal::BuildStreamError::StreamConfigNotSupported) => {
                anyhow!("{device_name}: sample format {format} is not supported")
            }
            Some(e) => anyhow!("cannot open {device_name}: {e}"),
            None => anyhow!("cannot open {device_name}"),
        });
    };
    let description =
        format!("{device_name} ({rate} Hz, {channels} channel(s), {format}, buffer {buffer:?})");
    stream
        .play()
        .with_context(|| format!("cannot start {device_name}"))?;
    Ok((stream, description, rate))
}

impl AudioInput for Microphone {
    fn describe(&self) -> String {
        format!("microphone {}", self.description)
    }

    fn counters(&self) -> Option<String> {
        let dropped = self.dropped.load(Ordering::Relaxed);
        let silent = self.silence.skipped.load(Ordering::Relaxed);
        Some(format!(
            "microphone: {dropped} sample blocks dropped (encoder busy), {silent} chunk slots skipped late{}",
            if self.lost { ", no sound now (sending silence)" } else { "" }
        ))
    }

    fn next_chunk(&mut self, clock: &MediaClock, pcm: &mut [i16]) -> anyhow::Result<u64> {
        loop {
            if self.to48k.pop_chunk(pcm) {
                // The newest sample arrived about now; this chunk started before it by its
                // own length and everything still buffered behind it.
                let behind = (self.to48k.buffered_48k() + pcm.len()) as u64 * 1_000_000
                    / crate::encode::audio::SAMPLE_RATE as u64;
                return Ok(clock.now_us().saturating_sub(behind));
            }
            let wait = match (self.lost, self.started) {
                (true, _) => Duration::ZERO,
                (false, false) => START_WITHIN,
                (false, true) => LOST_AFTER,
            };
            match self.samples.recv_timeout(wait) {
                Ok(block) => {
                    self.started = true;
                    if self.lost {
                        tracing::info!("microphone delivers again");
                        self.lost = false;
                        self.silence.reset();
                    }
                    self.to48k.push(&block)?;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.lost {
                        tracing::warn!(
                            "no sound from the microphone for {LOST_AFTER:?}: sending silence"
                        );
                        self.lost = true;
                    }
                    let (_, capture_us) = self.silence.wait(clock, pcm.len());
                    pcm.fill(0);
                    return Ok(capture_us);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the microphone thread stopped")
                }
            }
        }
    }
}
