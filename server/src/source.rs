//! Source threads: they produce raw media on the capture clock's schedule.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::TrySendError;

use crate::audio_encoder::{AudioEncoder, AudioPacket, SAMPLES_PER_FRAME, SAMPLE_RATE};
use crate::clock::MediaClock;
use crate::frame::RawFrame;
use crate::hub::Taps;
use crate::test_source::{is_flash_frame, AudioTone, VideoPattern};

/// Counters of the video source.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub frames: AtomicU64,
    /// Frames the encoder was too busy to take (its input queue was full).
    pub dropped_encoder_busy: AtomicU64,
    /// Capture slots skipped because this thread itself ran late.
    pub skipped_late: AtomicU64,
    pub render_us_total: AtomicU64,
}

/// Sleeps until `at`; returns how late we woke.
fn sleep_until(at: Instant) -> std::time::Duration {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
    Instant::now().saturating_duration_since(at)
}

/// Runs the test-pattern video source: one frame per 1/fps of the media clock, each frame's
/// capture time being its scheduled instant. Each frame goes, shared, to every running
/// encoder (`taps`); an encoder whose queue is full loses that frame, counted, rather than
/// delaying the others. With no encoder running, nothing is rendered.
pub fn spawn_test_video(
    width: usize,
    height: usize,
    fps: u32,
    clock: MediaClock,
    taps: Taps,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("video-source".into())
        .spawn(move || {
            let mut pattern = VideoPattern::new(width, height);
            let frame_us = |i: u64| i * 1_000_000 / fps as u64;
            // Start on the next whole frame slot of the clock.
            let mut index = clock.now_us() * fps as u64 / 1_000_000 + 1;
            while !stop.load(Ordering::Relaxed) {
                let capture_us = frame_us(index);
                let late = sleep_until(clock.instant_at(capture_us));
                let frame_len = frame_us(1);
                if late.as_micros() as u64 > frame_len {
                    // We fell more than a frame behind (machine overloaded): skip to now.
                    let skip = late.as_micros() as u64 / frame_len.max(1);
                    stats.skipped_late.fetch_add(skip, Ordering::Relaxed);
                    index += skip;
                    continue;
                }
                if taps.lock().expect("not poisoned").is_empty() {
                    index += 1;
                    continue;
                }
                let t0 = Instant::now();
                let rgb = pattern.render(index, capture_us, is_flash_frame(index, fps));
                let frame = match RawFrame::from_rgb(rgb, width, height, capture_us) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!("video source stopped: {e:#}");
                        return;
                    }
                };
                stats
                    .render_us_total
                    .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                stats.frames.fetch_add(1, Ordering::Relaxed);
                let frame = Arc::new(frame);
                for (_, tap) in taps.lock().expect("not poisoned").iter() {
                    match tap.try_send(frame.clone()) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            stats.dropped_encoder_busy.fetch_add(1, Ordering::Relaxed);
                        }
                        // The encoder stopped on an error; its tap goes with its last viewer.
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
                index += 1;
            }
        })
        .expect("spawn video source thread")
}

/// Runs the test tone through the Opus encoders (one per bitrate on offer): one packet per
/// 20 ms of the media clock. `publish` gets the encoder's index and the packet.
pub fn spawn_test_audio(
    clock: MediaClock,
    mut encoders: Vec<AudioEncoder>,
    stop: Arc<AtomicBool>,
    mut publish: impl FnMut(usize, AudioPacket) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("audio-source".into())
        .spawn(move || {
            let tone = AudioTone::new(SAMPLE_RATE);
            let mut pcm = vec![0i16; SAMPLES_PER_FRAME];
            let packet_us = |n: u64| n * SAMPLES_PER_FRAME as u64 * 1_000_000 / SAMPLE_RATE as u64;
            let mut n = clock.now_us() / packet_us(1) + 1;
            while !stop.load(Ordering::Relaxed) {
                let capture_us = packet_us(n);
                // A packet's capture time is its first sample; it is complete 20 ms later,
                // which is when a microphone would hand it over.
                sleep_until(clock.instant_at(packet_us(n + 1)));
                tone.fill(n * SAMPLES_PER_FRAME as u64, &mut pcm);
                for (i, encoder) in encoders.iter_mut().enumerate() {
                    match encoder.encode(&pcm, n as u32, capture_us) {
                        Ok(p) => publish(i, p),
                        Err(e) => {
                            tracing::error!("audio source stopped: {e:#}");
                            return;
                        }
                    }
                }
                n += 1;
            }
        })
        .expect("spawn audio source thread")
}
