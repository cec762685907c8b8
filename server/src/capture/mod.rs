//! Capture: where raw pictures and sound come from (the test pattern, files, a camera, a
//! microphone), the media clock that stamps them, and the threads that hand them to the
//! encoders.
//!
//! Every input sits behind one of two small traits, [`VideoInput`] and [`AudioInput`]: a
//! blocking call that returns the next picture or packet's worth of sound stamped on the
//! media clock.
//! Inputs with no clock of their own (the test pattern, files) pace themselves with
//! [`Pacer`]; devices are paced by the device. The threads here only distribute.

pub(crate) mod camera;
pub(crate) mod clock;
pub(crate) mod convert;
pub(crate) mod frame;
pub(crate) mod microphone;
pub(crate) mod resample;
pub(crate) mod test_input;
pub(crate) mod test_source;
pub(crate) mod v4l_camera;
pub(crate) mod wav_file;
pub(crate) mod y4m_file;

pub use clock::MediaClock;
pub use convert::{to_i420, PixelFormat};
pub use frame::RawFrame;
pub use microphone::list as list_microphones;
pub use test_source::{is_flash_frame, VideoPattern};
pub use v4l_camera::{list as list_cameras, CameraSelector};
pub use y4m_file::Y4mFile;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use crate::encode::audio::{AudioEncoder, AudioPacket};
use crate::fanout::hub::Taps;

/// Counters of the video source.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub frames: AtomicU64,
    /// Frames the encoder was too busy to take (its input queue was full).
    pub dropped_encoder_busy: AtomicU64,
    /// Capture slots skipped because the source thread itself ran late.
    pub skipped_late: AtomicU64,
    /// Time spent making pictures (rendering, reading, converting), microseconds.
    pub render_us_total: AtomicU64,
}

/// A file input reached its end and does not loop: the source stops without an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceEnded(pub String);

/// Logs why a source thread stopped: the end of a file is news, anything else an error.
fn log_stop(kind: &str, e: &anyhow::Error) {
    if e.downcast_ref::<SourceEnded>().is_some() {
        tracing::info!("{kind} source stopped: {e}");
    } else {
        tracing::error!("{kind} source stopped: {e:#}");
    }
}

/// Size and rate of the pictures an input delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureFormat {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
}

/// Whether anybody wants a picture now (asked once a picture is due).
pub type Wanted<'a> = &'a dyn Fn() -> bool;
/// The next picture, or `None` when nobody wanted it.
pub type NextFrame = anyhow::Result<Option<RawFrame>>;

/// A source of pictures.
pub trait VideoInput: Send {
    /// What it is, for logs and status: "test pattern 640x360 @ 30 fps".
    fn describe(&self) -> String;
    /// The size and rate of its pictures (the default ladder's top rung).
    fn format(&self) -> PictureFormat;
    /// Blocks until the next picture is due and returns it stamped with its capture time on
    /// `clock`. `wanted` says whether any encoder runs; an input asks it once the picture is
    /// due (an encoder started during the wait takes this picture, not the next one) and may
    /// then skip making it (returning `None`) but keeps time.
    fn next_frame(&mut self, clock: &MediaClock, wanted: Wanted, stats: &SourceStats) -> NextFrame;
    /// The input's own counters (device losses, bad or dropped frames), for the log.
    fn counters(&self) -> Option<String> {
        None
    }
}

/// A source of sound: 48 kHz mono, one packet's worth (10 or 20 ms) at a time.
pub trait AudioInput: Send {
    /// What it is, for logs and status: "test tone", "music.wav (44100 Hz stereo)".
    fn describe(&self) -> String;
    /// Blocks until the next `pcm.len()` samples at 48 kHz are complete, fills `pcm`
    /// and returns the capture time of its first sample on `clock`.
    fn next_chunk(&mut self, clock: &MediaClock, pcm: &mut [i16]) -> anyhow::Result<u64>;
    /// The input's own counters (dropped or skipped sound), for the log.
    fn counters(&self) -> Option<String> {
        None
    }
}

/// How often a source logs its counters when they changed.
const COUNTERS_EVERY: Duration = Duration::from_secs(10);

/// Logs an input's counters every [`COUNTERS_EVERY`] when they changed.
struct CounterLog {
    kind: &'static str,
    last: Option<String>,
    at: Instant,
}

impl CounterLog {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            last: None,
            at: Instant::now(),
        }
    }

    fn tick(&mut self, counters: impl FnOnce() -> Option<String>) {
        if self.at.elapsed() < COUNTERS_EVERY {
            return;
        }
        self.at = Instant::now();
        let now = counters();
        if now.is_some() && now != self.last {
            tracing::info!(
                "{} source: {}",
                self.kind,
                now.as_deref().unwrap_or_default()
            );
            self.last = now;
        }
    }
}

/// Which pictures to stream (`--video`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoChoice {
    /// The first camera when there is one, else the test pattern.
    Auto,
    Test,
    /// A camera: the first, or the one `--camera` names.
    Camera,
    /// A Y4M file, streamed in real time.
    File(PathBuf),
}

impl FromStr for VideoChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "test" => Ok(Self::Test),
            "camera" => Ok(Self::Camera),
            path if path.to_ascii_lowercase().ends_with(".y4m") => {
                Ok(Self::File(PathBuf::from(path)))
            }
            other => Err(format!(
                "expected auto, test, camera or a .y4m file, got {other:?}"
            )),
        }
    }
}

/// Which sound to stream (`--audio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioChoice {
    /// The default microphone when there is one, else the test tone.
    Auto,
    Test,
    Microphone,
    /// No sound at all.
    None,
    /// A WAV file, streamed in real time.
    File(PathBuf),
}

impl FromStr for AudioChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "test" => Ok(Self::Test),
            "mic" | "microphone" => Ok(Self::Microphone),
            "none" => Ok(Self::None),
            path if path.to_ascii_lowercase().ends_with(".wav") => {
                Ok(Self::File(PathBuf::from(path)))
            }
            other => Err(format!(
                "expected auto, test, mic, none or a .wav file, got {other:?}"
            )),
        }
    }
}

/// Opens the video input `choice` asks for. `wanted` is the size and rate asked on the command
/// line (the test pattern's, and the camera's closest match); files have their own. Returns
/// the input and why it was chosen, for the log.
pub fn open_video(
    choice: &VideoChoice,
    camera: Option<&v4l_camera::CameraSelector>,
    wanted: PictureFormat,
    looping: bool,
    clock: MediaClock,
) -> anyhow::Result<(Box<dyn VideoInput>, String)> {
    let test = || -> Box<dyn VideoInput> {
        Box::new(test_input::TestPattern::new(
            wanted.width,
            wanted.height,
            wanted.fps,
        ))
    };
    let open_camera = || -> anyhow::Result<Box<dyn VideoInput>> {
        let opener = v4l_camera::opener(camera.cloned(), wanted);
        Ok(Box::new(camera::CameraInput::start(opener, clock)?))
    };
    Ok(match choice {
        VideoChoice::Test => (test(), "asked for (--video test)".into()),
        VideoChoice::Camera => (open_camera()?, "asked for (--video camera)".into()),
        VideoChoice::Auto if camera.is_some() => (open_camera()?, "--camera given".into()),
        VideoChoice::Auto => {
            if v4l_camera::any_present() {
                match open_camera() {
                    Ok(c) => (c, "the first camera found".into()),
                    Err(e) => (test(), format!("the camera did not open: {e:#}")),
                }
            } else {
                (test(), "no camera found".into())
            }
        }
        VideoChoice::File(path) => (
            Box::new(y4m_file::Y4mFile::open(path, looping)?),
            "asked for (--video FILE)".into(),
        ),
    })
}

/// Opens the audio input `choice` asks for (`None`: no sound), and why it was chosen.
/// `microphone` names one (part of its name); the default input otherwise.
pub fn open_audio(
    choice: &AudioChoice,
    microphone: Option<&str>,
    looping: bool,
) -> anyhow::Result<(Option<Box<dyn AudioInput>>, String)> {
    let test = || -> Option<Box<dyn AudioInput>> { Some(Box::new(test_input::TestTone::new())) };
    let mic = || -> anyhow::Result<Option<Box<dyn AudioInput>>> {
        Ok(Some(Box::new(microphone::Microphone::open(microphone)?)))
    };
    Ok(match choice {
        AudioChoice::Test => (test(), "asked for (--audio test)".into()),
        AudioChoice::Microphone => (mic()?, "asked for (--audio mic)".into()),
        AudioChoice::Auto if microphone.is_some() => (mic()?, "--microphone given".into()),
        AudioChoice::Auto => {
            if microphone::any_present() {
                match mic() {
                    Ok(m) => (m, "the default microphone".into()),
                    Err(e) => (test(), format!("the microphone did not open: {e:#}")),
                }
            } else {
                (test(), "no microphone found".into())
            }
        }
        AudioChoice::None => (None, "asked for (--audio none)".into()),
        AudioChoice::File(path) => (
            Some(Box::new(wav_file::WavFile::open(path, looping)?)),
            "asked for (--audio FILE)".into(),
        ),
    })
}

/// Paces an input that has no clock of its own: one slot per frame period of the media
/// clock, each slot's capture time being its scheduled instant.
#[derive(Debug)]
pub struct Pacer {
    /// Frame period as a fraction of a second: `den / num` s (e.g. 1/30, 1001/30000).
    num: u64,
    den: u64,
    index: u64,
}

impl Pacer {
    /// Slots of `den / num` seconds, starting at the next one after now.
    pub fn new(clock: &MediaClock, num: u64, den: u64) -> Self {
        assert!(num > 0 && den > 0, "a frame period must be positive");
        let index = clock.now_us() * num / (den * 1_000_000) + 1;
        Self { num, den, index }
    }

    /// Capture time of slot `index`, microseconds.
    pub fn slot_us(&self, index: u64) -> u64 {
        index * self.den * 1_000_000 / self.num
    }

    /// Sleeps until the next slot and returns its index and capture time. When the thread
    /// woke more than a slot late (machine overloaded), the slots missed are skipped and
    /// counted in `skipped`, so the input stays live instead of falling behind.
    pub fn wait(&mut self, clock: &MediaClock, skipped: &AtomicU64) -> (u64, u64) {
        loop {
            let capture_us = self.slot_us(self.index);
            let late = sleep_until(clock.instant_at(capture_us));
            let period_us = self.slot_us(1).max(1);
            let late_slots = late.as_micros() as u64 / period_us;
            if late_slots >= 1 {
                skipped.fetch_add(late_slots, Ordering::Relaxed);
                self.index += late_slots;
                continue;
            }
            let slot = (self.index, capture_us);
            self.index += 1;
            return slot;
        }
    }
}

/// Paces an audio input that has no device clock: one chunk (a packet's worth) per period,
/// handed over when its last sample would have been captured, as a microphone would.
///
/// A thread that wakes late hands over the chunks it missed at once, each with its own
/// capture time, as a microphone's buffer would: the sound stays whole and each packet's
/// `capture_us` stays `seq × duration` apart from the others'. Only a thread more than
/// [`MAX_CATCH_UP`] behind skips to the present (counted): that sound is missing.
#[derive(Debug, Default)]
pub struct ChunkPacer {
    /// The next chunk's number; chunk `n` covers samples `n × len ..`.
    next: Option<u64>,
    /// Chunk slots skipped because the thread ran too late.
    pub skipped: AtomicU64,
}

/// How far behind a paced audio input catches up rather than skipping.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(500);

impl ChunkPacer {
    /// Waits until the next chunk of `len` samples is complete; returns the chunk's number
    /// (on the media clock: chunk `n` starts at `n × len` samples) and the capture time of
    /// its first sample.
    pub fn wait(&mut self, clock: &MediaClock, len: usize) -> (u64, u64) {
        let rate = crate::encode::audio::SAMPLE_RATE as u64;
        let len = len.max(1) as u64;
        let start_us = |n: u64| n * len * 1_000_000 / rate;
        // The first chunk is the one that starts next.
        let mut n = *self
            .next
            .get_or_insert_with(|| (clock.now_us() * rate / 1_000_000).div_ceil(len));
        loop {
            let late = sleep_until(clock.instant_at(start_us(n + 1)));
            if late <= MAX_CATCH_UP {
                break;
            }
            let behind = late.as_micros() as u64 * rate / 1_000_000 / len;
            self.skipped.fetch_add(behind, Ordering::Relaxed);
            n += behind;
        }
        self.next = Some(n + 1);
        (n, start_us(n))
    }

    /// Starts again from the clock's present (after a pause in pacing).
    pub fn reset(&mut self) {
        self.next = None;
    }

    /// For [`AudioInput::counters`].
    pub fn counters(&self) -> Option<String> {
        let skipped = self.skipped.load(Ordering::Relaxed);
        (skipped > 0).then(|| {
            format!(
                "{skipped} sound slots skipped (the thread ran more than {} ms late)",
                MAX_CATCH_UP.as_millis()
            )
        })
    }
}

/// Sleeps until `at`; returns how late we woke.
fn sleep_until(at: Instant) -> Duration {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
    Instant::now().saturating_duration_since(at)
}

/// Runs a video input on its own thread. Each picture goes, shared, to every running encoder
/// (`taps`); an encoder whose queue is full loses that picture, counted, rather than delaying
/// the others. With no encoder running the input is asked for nothing but time.
pub fn spawn_video(
    mut input: Box<dyn VideoInput>,
    clock: MediaClock,
    taps: Taps,
    mut preview: Option<crossbeam_channel::Sender<Arc<RawFrame>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("video-source".into())
        .spawn(move || {
            let mut log = CounterLog::new("video");
            while !stop.load(Ordering::Relaxed) {
                log.tick(
                    || {
                        let skipped = stats.skipped_late.load(Ordering::Relaxed);
                        let busy = stats.dropped_encoder_busy.load(Ordering::Relaxed);
                        let own = input.counters().map(|c| format!(", {c}")).unwrap_or_default();
                        (skipped + busy > 0 || !own.is_empty()).then(|| {
                            format!("{skipped} slots skipped late, {busy} frames dropped for busy encoders{own}")
                        })
                    },
                );
                let previewing = preview.is_some();
                let wanted = || previewing || !taps.lock().expect("not poisoned").is_empty();
                let frame = match input.next_frame(&clock, &wanted, &stats) {
                    Ok(Some(f)) => f,
                    Ok(None) => continue,
                    Err(e) => return log_stop("video", &e),
                };
                stats.frames.fetch_add(1, Ordering::Relaxed);
                let frame = Arc::new(frame);
                // The preview shows what it can; a closed preview stops asking.
                if let Some(Err(TrySendError::Disconnected(_))) =
                    preview.as_ref().map(|p| p.try_send(frame.clone()))
                {
                    preview = None;
                }
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
            }
        })
        .expect("spawn video source thread")
}

/// Runs an audio input through the Opus encoders (one per bitrate on offer) on its own
/// thread: one packet per frame (10 or 20 ms). While the broadcaster mutes the encoders get silence (the
/// stream goes on, so viewers' jitter buffers stay primed); the level of what is sent goes to
/// the status. `publish` gets the encoder's index and the packet.
pub fn spawn_audio(
    mut input: Box<dyn AudioInput>,
    clock: MediaClock,
    mut encoders: Vec<AudioEncoder>,
    stop: Arc<AtomicBool>,
    controls: Arc<crate::fanout::controls::Controls>,
    audio_loss: Arc<crate::fanout::audio_loss::AudioLossReports>,
    mut publish: impl FnMut(usize, AudioPacket) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("audio-source".into())
        .spawn(move || {
            let Some(frame_samples) = encoders.first().map(AudioEncoder::frame_samples) else {
                return;
            };
            let mut pcm = vec![0i16; frame_samples];
            let mut seq = 0u32;
            let mut log = CounterLog::new("audio");
            while !stop.load(Ordering::Relaxed) {
                log.tick(|| input.counters());
                let capture_us = match input.next_chunk(&clock, &mut pcm) {
                    Ok(t) => t,
                    Err(e) => return log_stop("audio", &e),
                };
                if controls.muted() {
                    pcm.fill(0);
                }
                let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
                controls.set_audio_peak(peak as f32 / 32768.0);
                let loss = audio_loss.expected_percent();
                for (i, encoder) in encoders.iter_mut().enumerate() {
                    let before = encoder.expected_loss_percent();
                    if before != loss && i == 0 {
                        tracing::info!("audio FEC now sized for {loss}% loss (was {before}%), from the viewers' reports");
                    }
                    if let Err(e) = encoder.set_expected_loss(loss) {
                        tracing::warn!("{e:#}");
                    }
                    match encoder.encode(&pcm, seq, capture_us) {
                        Ok(p) => publish(i, p),
                        Err(e) => {
                            tracing::error!("audio encoder stopped: {e:#}");
                            return;
                        }
                    }
                }
                seq = seq.wrapping_add(1);
            }
        })
        .expect("spawn audio source thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_explain_mistakes() {
        assert_eq!("test".parse::<VideoChoice>(), Ok(VideoChoice::Test));
        assert_eq!(
            "clip.Y4M".parse::<VideoChoice>(),
            Ok(VideoChoice::File("clip.Y4M".into()))
        );
        assert!("clip.mp4"
            .parse::<VideoChoice>()
            .unwrap_err()
            .contains(".y4m"));
        assert_eq!("mic".parse::<AudioChoice>(), Ok(AudioChoice::Microphone));
        assert_eq!("none".parse::<AudioChoice>(), Ok(AudioChoice::None));
        assert_eq!(
            "a.wav".parse::<AudioChoice>(),
            Ok(AudioChoice::File("a.wav".into()))
        );
        assert!("a.mp3".parse::<AudioChoice>().is_err());
    }

    #[test]
    fn a_late_audio_thread_gets_the_chunks_it_missed_each_with_its_own_capture_time() {
        let clock = MediaClock::default();
        let mut pacer = ChunkPacer::default();
        let (first, first_us) = pacer.wait(&clock, 480);
        // Three chunks' worth of oversleeping (10 ms each), well inside MAX_CATCH_UP.
        std::thread::sleep(Duration::from_millis(30));
        let chunks: Vec<_> = (0..3).map(|_| pacer.wait(&clock, 480)).collect();
        let expected: Vec<_> = (1..=3)
            .map(|i| (first + i, first_us + i * 10_000))
            .collect();
        assert_eq!(
            chunks, expected,
            "consecutive, each one packet duration after the last"
        );
        assert_eq!(pacer.skipped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn pacer_slots_follow_a_fractional_rate() {
        let clock = MediaClock::start();
        let p = Pacer::new(&clock, 30_000, 1001);
        assert_eq!(p.slot_us(30_000), 1001 * 1_000_000);
        assert_eq!(p.slot_us(1), 33_366);
    }
}
