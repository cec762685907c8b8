//! The presenter: a minifb window showing the newest decoded picture.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minifb::{Key, KeyRepeat, Window, WindowOptions};

use crate::clock::ViewerClock;
use crate::stats::Stats;
use crate::video_decoder::LatestPicture;

/// Why the window loop returned.
#[derive(Debug, PartialEq, Eq)]
pub enum WindowExit {
    /// The person closed the window or pressed Q / Esc.
    Closed,
    /// `keep_going` said stop (duration over, or the session ended).
    Stopped,
}

pub struct Presenter {
    window: Window,
    pixels: Vec<u32>,
    width: usize,
    height: usize,
}

impl Presenter {
    pub fn open(title: &str, width: usize, height: usize) -> anyhow::Result<Self> {
        let window = Window::new(
            title,
            width,
            height,
            WindowOptions {
                resize: true,
                scale_mode: minifb::ScaleMode::AspectRatioStretch,
                ..WindowOptions::default()
            },
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open a window ({e}); is DISPLAY set? use --headless without a display"
            )
        })?;
        Ok(Self {
            window,
            pixels: vec![0; width * height],
            width,
            height,
        })
    }

    /// Shows pictures as they come until the window closes or `keep_going` returns false.
    pub fn run(
        &mut self,
        latest: &LatestPicture,
        clock: ViewerClock,
        stats: &Arc<Mutex<Stats>>,
        mut keep_going: impl FnMut() -> bool,
    ) -> WindowExit {
        // Poll often: a frame waits at most this long before it is shown.
        let poll = Duration::from_millis(2);
        let mut last_update = Instant::now();
        loop {
            if !self.window.is_open() {
                return WindowExit::Closed;
            }
            if !keep_going() {
                return WindowExit::Stopped;
            }
            let keys = self.window.get_keys_pressed(KeyRepeat::No);
            if keys.iter().any(|k| matches!(k, Key::Q | Key::Escape)) {
                return WindowExit::Closed;
            }
            if let Some(p) = latest.take() {
                self.pixels = p.pixels;
                self.width = p.width;
                self.height = p.height;
                if let Err(e) =
                    self.window
                        .update_with_buffer(&self.pixels, self.width, self.height)
                {
                    tracing::warn!("window update failed: {e}");
                }
                last_update = Instant::now();
                let shown_us = clock.now_us();
                let mut s = stats.lock().expect("not poisoned");
                s.video.frames_presented += 1;
                s.video
                    .stages
                    .present
                    .record_us(shown_us.saturating_sub(p.decoded_us));
                if let Some(off) = s.clock_offset_us {
                    let shown_server = (shown_us as i64 + off).max(0) as u64;
                    s.video
                        .latency_presented
                        .record_us(shown_server.saturating_sub(p.capture_us));
                }
            } else if last_update.elapsed() > Duration::from_millis(16) {
                // Keep handling window events while no picture comes.
                self.window.update();
                last_update = Instant::now();
            }
            std::thread::sleep(poll);
        }
    }
}
