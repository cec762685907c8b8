//! The camera as a live video input. A capture thread owns the device (V4L2 handles are not
//! `Send`), converts each frame to I420 and stamps it when it arrives; the input waits for the
//! next one. When frames stop (camera unplugged, driver stalled), viewers get a "no signal"
//! picture at the camera's rate instead of a frozen one, and the thread opens the camera
//! again, once a second, until it returns. (A driver that stalls inside a read without
//! returning an error also shows as "no signal", but cannot be reopened until the read
//! returns: nokhwa offers no read timeout.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TrySendError};

use super::convert::{self, PixelFormat};
use super::{NextFrame, PictureFormat, SourceStats, VideoInput, Wanted};
use crate::capture::clock::MediaClock;
use crate::capture::frame::RawFrame;

/// A frame as the device delivers it.
pub struct CameraFrame {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// What the capture path needs from a camera; tests implement it with synthetic frames.
pub trait CameraDevice {
    /// Human-readable name and negotiated mode, for the log.
    fn describe(&self) -> String;
    fn format(&self) -> PictureFormat;
    /// Blocks until the next frame. An error means the camera is gone or broken.
    fn frame(&mut self) -> anyhow::Result<CameraFrame>;
}

/// Opens the camera; called on the capture thread, again after each loss.
pub type Opener = Box<dyn FnMut() -> anyhow::Result<Box<dyn CameraDevice>> + Send>;

/// Frames missing this long mean "no signal".
pub const NO_SIGNAL_AFTER: Duration = Duration::from_millis(500);
/// Time between attempts to reopen a lost camera.
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Counters of the camera path.
#[derive(Debug, Default)]
pub struct CameraStats {
    pub frames: AtomicU64,
    /// Frames that could not be converted (corrupt MJPEG, short buffer).
    pub bad_frames: AtomicU64,
    /// Frames dropped because the encoders had not taken the previous one yet.
    pub dropped_busy: AtomicU64,
    pub losses: AtomicU64,
    pub no_signal_frames: AtomicU64,
}

pub struct CameraInput {
    description: String,
    format: PictureFormat,
    frames: Receiver<RawFrame>,
    no_signal: RawFrame,
    signal: bool,
    next_no_signal: Option<Instant>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<CameraStats>,
}

impl CameraInput {
    /// Starts the capture thread and waits for the first open: an error there (no such
    /// camera, busy, no usable format) is returned, not retried.
    pub fn start(mut opener: Opener, clock: MediaClock) -> anyhow::Result<Self> {
        let (tx, frames) = crossbeam_channel::bounded::<RawFrame>(2);
        let (opened_tx, opened_rx) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(CameraStats::default());
        let (thread_stop, thread_stats) = (stop.clone(), stats.clone());
        thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let mut device = match opener() {
                    Ok(d) => {
                        let _ = opened_tx.send(Ok((d.describe(), d.format())));
                        Some(d)
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    let Some(d) = device.as_mut() else {
                        thread::sleep(REOPEN_EVERY);
                        match opener() {
                            Ok(d) => {
                                tracing::info!("camera is back: {}", d.describe());
                                device = Some(d);
                            }
                            Err(e) => tracing::debug!("camera still gone: {e:#}"),
                        }
                        continue;
                    };
                    let frame = match d.frame() {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::warn!(
                                "camera lost ({e:#}); viewers see \"no signal\" until it returns"
                            );
                            thread_stats.losses.fetch_add(1, Ordering::Relaxed);
                            device = None;
                            continue;
                        }
                    };
                    let capture_us = clock.now_us();
                    let raw = match convert::to_i420(
                        frame.format,
                        &frame.data,
                        frame.width,
                        frame.height,
                        capture_us,
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!("camera frame dropped: {e:#}");
                            thread_stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    thread_stats.frames.fetch_add(1, Ordering::Relaxed);
                    match tx.try_send(raw) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            thread_stats.dropped_busy.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            })?;
        let (description, format) = opened_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the camera thread ended before opening the camera"))??;
        Ok(Self {
            description,
            format,
            frames,
            no_signal: no_signal_picture(format.width, format.height),
            signal: true,
            next_no_signal: None,
            stop,
            stats,
        })
    }

    fn frame_period(&self) -> Duration {
        Duration::from_micros(1_000_000 / self.format.fps.max(1) as u64)
    }
}

impl Drop for CameraInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl VideoInput for CameraInput {
    fn describe(&self) -> String {
        format!("camera {}", self.description)
    }

    fn format(&self) -> PictureFormat {
        self.format
    }

    fn counters(&self) -> Option<String> {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Some(format!(
            "camera: {} frames, {} unreadable, {} dropped (source busy), lost {} time(s), {} no-signal pictures",
            get(&s.frames),
            get(&s.bad_frames),
            get(&s.dropped_busy),
            get(&s.losses),
            get(&s.no_signal_frames)
        ))
    }

    fn next_frame(&mut self, clock: &MediaClock, wanted: Wanted, _: &SourceStats) -> NextFrame {
        // With a signal, wait for the camera up to NO_SIGNAL_AFTER; without one, keep
        // producing the "no signal" picture at the camera's rate while watching for its return.
        let wait = match self.next_no_signal {
            Some(at) if !self.signal => at.saturating_duration_since(Instant::now()),
            _ => NO_SIGNAL_AFTER,
        };
        match self.frames.recv_timeout(wait) {
            Ok(frame) => {
                if !self.signal {
                    tracing::info!("camera signal back");
                    self.signal = true;
                }
                Ok(wanted().then_some(frame))
            }
            Err(RecvTimeoutError::Timeout) => {
                if self.signal {
                    tracing::warn!(
                        "no frames from the camera for {NO_SIGNAL_AFTER:?}: sending \"no signal\""
                    );
                    self.signal = false;
                }
                self.next_no_signal = Some(Instant::now() + self.frame_period());
                self.stats.no_signal_frames.fetch_add(1, Ordering::Relaxed);
                Ok(wanted().then(|| RawFrame {
                    capture_us: clock.now_us(),
                    ..self.no_signal.clone()
                }))
            }
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the camera thread stopped")
            }
        }
    }
}

/// Dark grey with "NO SIGNAL" in large letters in the middle.
pub fn no_signal_picture(width: usize, height: usize) -> RawFrame {
    let mut y = vec![40u8; width * height];
    let text = "NO SIGNAL";
    let scale = (width / (text.len() * 8 + 4)).clamp(1, 8);
    let (text_w, text_h) = (text.len() * 8 * scale, 8 * scale);
    let (x0, y0) = (
        width.saturating_sub(text_w) / 2,
        height.saturating_sub(text_h) / 2,
    );
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[ch as usize];
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if bits >> gx & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    let row = y0 + gy * scale + dy;
                    let col = x0 + (i * 8 + gx) * scale;
                    if row < height && col + scale <= width {
                        y[row * width + col..row * width + col + scale].fill(220);
                    }
                }
            }
        }
    }
    let chroma = width.div_ceil(2) * height.div_ceil(2);
    RawFrame {
        width,
        height,
        y,
        u: vec![128; chroma],
        v: vec![128; chroma],
        capture_us: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A synthetic camera: YUYV frames whose luma is the frame number; it can be told to
    /// vanish (errors, and refuses to reopen) and to come back.
    struct FakeCamera {
        n: u8,
        present: Arc<AtomicBool>,
    }

    impl CameraDevice for FakeCamera {
        fn describe(&self) -> String {
            "fake 64x64 YUYV".into()
        }
        fn format(&self) -> PictureFormat {
            PictureFormat {
                width: 64,
                height: 64,
                fps: 50,
            }
        }
        fn frame(&mut self) -> anyhow::Result<CameraFrame> {
            thread::sleep(Duration::from_millis(20));
            anyhow::ensure!(self.present.load(Ordering::Relaxed), "No such device");
            self.n = self.n.wrapping_add(1);
            let mut data = Vec::with_capacity(64 * 64 * 2);
            for _ in 0..64 * 32 {
                data.extend([self.n, 128, self.n, 128]);
            }
            Ok(CameraFrame {
                format: PixelFormat::Yuyv,
                width: 64,
                height: 64,
                data,
            })
        }
    }

    fn fake(present: Arc<AtomicBool>, opens: Arc<Mutex<u32>>) -> Opener {
        Box::new(move || {
            anyhow::ensure!(present.load(Ordering::Relaxed), "no camera at index 0");
            *opens.lock().unwrap() += 1;
            Ok(Box::new(FakeCamera {
                n: 0,
                present: present.clone(),
            }) as Box<dyn CameraDevice>)
        })
    }

    fn is_no_signal(f: &RawFrame) -> bool {
        f.y[0] == 40 && f.y.contains(&220)
    }

    #[test]
    fn a_camera_that_vanishes_gives_no_signal_then_comes_back() {
        let clock = MediaClock::start();
        let present = Arc::new(AtomicBool::new(true));
        let opens = Arc::new(Mutex::new(0));
        let mut input = CameraInput::start(fake(present.clone(), opens.clone()), clock).unwrap();
        assert_eq!(input.format().width, 64);
        let stats = SourceStats::default();
        let next = |input: &mut CameraInput| {
            input
                .next_frame(&clock, &|| true, &stats)
                .unwrap()
                .expect("wanted")
        };
        // Live frames, in order, stamped on the clock.
        let a = next(&mut input);
        let b = next(&mut input);
        assert!(!is_no_signal(&a) && b.y[0] > a.y[0] && b.capture_us > a.capture_us);

        // Unplugged: after NO_SIGNAL_AFTER the input delivers the no-signal picture, at the
        // camera's rate, with fresh capture times.
        present.store(false, Ordering::Relaxed);
        let mut seen_no_signal = Vec::new();
        // Bounded: at 50 fps and 500 ms to "no signal", 3 no-signal frames come within ~40.
        for _ in 0..400 {
            if seen_no_signal.len() >= 3 {
                break;
            }
            let f = next(&mut input);
            if is_no_signal(&f) {
                seen_no_signal.push(f.capture_us);
            }
        }
        assert_eq!(
            seen_no_signal.len(),
            3,
            "no-signal pictures within 400 frames"
        );
        assert!(seen_no_signal.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(input.stats.losses.load(Ordering::Relaxed), 1);

        // Plugged back: the thread reopens it and live frames return.
        present.store(true, Ordering::Relaxed);
        let back = (0..400)
            .map(|_| next(&mut input))
            .find(|f| !is_no_signal(f))
            .expect("the camera came back within 400 frames");
        assert!(back.y[0] >= 1);
        assert_eq!(*opens.lock().unwrap(), 2);
        assert!(input.stats.no_signal_frames.load(Ordering::Relaxed) >= 3);
    }

    #[test]
    fn a_camera_that_cannot_be_opened_is_an_error_at_start() {
        let present = Arc::new(AtomicBool::new(false));
        let e = CameraInput::start(fake(present, Default::default()), MediaClock::start())
            .err()
            .unwrap();
        assert!(e.to_string().contains("no camera at index 0"), "{e}");
    }

    #[test]
    fn no_signal_picture_has_the_words() {
        let f = no_signal_picture(640, 360);
        assert_eq!((f.y.len(), f.u.len()), (640 * 360, 320 * 180));
        assert!(f.y.iter().filter(|&&p| p == 220).count() > 1000);
    }
}
