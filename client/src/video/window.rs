//! The presenter: a minifb window showing the newest decoded picture, the keyboard, and the
//! stats and help overlays drawn on the picture.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minifb::{Window, WindowOptions};
use tokio::sync::mpsc::UnboundedSender;

use crate::audio::playout::AvSync;
use crate::control::clock::ServerClock;
use crate::control::commands::{self, Command, CoreCommand, LocalCommand, HELP};
use crate::metrics::{Condition, Metrics, Stats};
use crate::video::presenter::{self, PictureQueue};
use streamsocket_overlay::draw_panel;

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
    /// Every key pressed since the last look, from the window's event stream.
    presses: KeyPresses,
    /// The picture as decoded, kept to redraw overlays without a new frame.
    picture: Vec<u32>,
    /// What the window shows: the picture plus overlays.
    shown: Vec<u32>,
    width: usize,
    height: usize,
    show_stats: bool,
    show_help: bool,
    /// Rates for the overlay, over the last second: (start, frames shown, bytes received).
    rate_window: (Instant, u64, u64),
    rates: Rates,
    /// The banner as last checked (every [`BANNER_CHECK`]).
    banner: Option<Vec<String>>,
    /// The stats overlay's lines and when they were made: a snapshot reads every stage's
    /// counters, so it is taken at most every [`OVERLAY_REFRESH`], not for every picture.
    overlay: Option<(Instant, Vec<String>)>,
}

/// How often the window looks whether its banner must change.
const BANNER_CHECK: Duration = Duration::from_millis(100);
/// How often the stats overlay is refreshed while pictures come.
const OVERLAY_REFRESH: Duration = Duration::from_millis(250);

/// Key presses as the window's events report them. Polling the key state once per update
/// misses a key pressed and released between two updates (a quick tap, or `xdotool key`);
/// each press event is kept here until the loop takes it.
#[derive(Clone, Default)]
struct KeyPresses(Arc<Mutex<Vec<minifb::Key>>>);

impl KeyPresses {
    fn take(&self) -> Vec<minifb::Key> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

impl minifb::InputCallback for KeyPresses {
    fn add_char(&mut self, _uni_char: u32) {}

    fn set_key_state(&mut self, key: minifb::Key, down: bool) {
        if down {
            self.0.lock().expect("not poisoned").push(key);
        }
    }
}

/// Frame rate and video bitrate over the last second.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rates {
    pub fps: f64,
    pub kbps: f64,
}

/// What the window needs besides pictures.
pub struct WindowLinks<'a> {
    pub pictures: &'a PictureQueue,
    pub sync: &'a AvSync,
    /// The server's clock as estimated (its viewer clock for the overlays).
    pub clock: &'a ServerClock,
    /// Every stage's counters: the presenter writes its own, the overlays read a snapshot.
    pub metrics: &'a Metrics,
    /// Requests for the server (quality, audio bitrate, pause).
    pub commands: UnboundedSender<CoreCommand>,
    pub muted: Arc<AtomicBool>,
    pub server: &'a str,
}

impl Presenter {
    pub fn open(title: &str, width: usize, height: usize) -> anyhow::Result<Self> {
        let mut window = Window::new(
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
        let presses = KeyPresses::default();
        window.set_input_callback(Box::new(presses.clone()));
        Ok(Self {
            window,
            presses,
            picture: vec![0; width * height],
            shown: vec![0; width * height],
            width,
            height,
            show_stats: false,
            show_help: false,
            rate_window: (Instant::now(), 0, 0),
            rates: Rates::default(),
            banner: None,
            overlay: None,
        })
    }

    /// Shows pictures as they come until the window closes or `keep_going` returns false.
    pub fn run(
        &mut self,
        links: WindowLinks<'_>,
        mut keep_going: impl FnMut() -> bool,
    ) -> WindowExit {
        // Poll often: a frame waits at most this long past its time before it is shown.
        let poll = presenter::POLL;
        let mut last_update = Instant::now();
        let mut redraw = false;
        let mut banner_checked = Instant::now();
        loop {
            if !self.window.is_open() {
                return WindowExit::Closed;
            }
            if !keep_going() {
                return WindowExit::Stopped;
            }
            // A banner that appears, changes or goes (connection lost, reconnecting, no
            // picture) is drawn even when no new picture comes.
            if banner_checked.elapsed() >= BANNER_CHECK {
                banner_checked = Instant::now();
                let now = banner(&links.metrics.condition(), links.clock.viewer().now_us());
                if now != self.banner {
                    self.banner = now;
                    redraw = true;
                }
            }
            let counters = &links.metrics.presenter;
            let due =
                presenter::take_and_account(links.pictures, links.sync, links.clock, counters);
            let updated = if let Some(p) = due {
                let meta = presenter::ShownPicture::from(&p);
                self.picture = p.pixels;
                self.width = p.width;
                self.height = p.height;
                self.present(&links);
                // Measured once the window has the pixels, not when they were taken.
                presenter::shown(meta, links.clock, counters, &links.metrics.av_skew);
                true
            } else if redraw {
                self.present(&links);
                true
            } else if last_update.elapsed() > Duration::from_millis(16) {
                // Keep handling window events while no picture comes.
                self.window.update();
                true
            } else {
                false
            };
            redraw = false;
            if updated {
                last_update = Instant::now();
                // Key events arrive when the window updates: take every press since the last.
                for key in self.presses.take() {
                    match commands::for_key(key) {
                        Some(Command::Local(LocalCommand::Quit)) => return WindowExit::Closed,
                        Some(Command::Local(LocalCommand::ToggleStats)) => {
                            self.show_stats = !self.show_stats;
                            self.overlay = None;
                            redraw = true;
                        }
                        Some(Command::Local(LocalCommand::ToggleHelp)) => {
                            self.show_help = !self.show_help;
                            redraw = true;
                        }
                        Some(Command::Local(LocalCommand::ToggleMute)) => {
                            let muted = !links.muted.load(Ordering::Relaxed);
                            links.muted.store(muted, Ordering::Relaxed);
                            self.overlay = None;
                            redraw = true;
                        }
                        Some(Command::Core(cmd)) => {
                            tracing::info!("key {key:?}: {cmd:?}");
                            let _ = links.commands.send(cmd);
                        }
                        None => {}
                    }
                }
            }
            std::thread::sleep(poll);
        }
    }

    fn present(&mut self, links: &WindowLinks<'_>) {
        let overlay = if self.show_help {
            Some(help_lines())
        } else if self.show_stats {
            match &self.overlay {
                Some((made, lines)) if made.elapsed() < OVERLAY_REFRESH => Some(lines.clone()),
                _ => {
                    let s = links.metrics.snapshot();
                    let elapsed = self.rate_window.0.elapsed().as_secs_f64();
                    if elapsed >= 1.0 {
                        self.rates = Rates {
                            fps: (s.video.frames_presented - self.rate_window.1) as f64 / elapsed,
                            kbps: (s.video.bytes - self.rate_window.2) as f64 * 8.0
                                / 1000.0
                                / elapsed,
                        };
                        self.rate_window =
                            (Instant::now(), s.video.frames_presented, s.video.bytes);
                    }
                    let lines = stats_lines(&s, self.rates, links.server);
                    self.overlay = Some((Instant::now(), lines.clone()));
                    Some(lines)
                }
            }
        } else {
            self.banner.clone()
        };
        let buffer = match overlay {
            Some(lines) => {
                self.shown.clone_from(&self.picture);
                draw_panel(&mut self.shown, self.width, self.height, &lines);
                &self.shown
            }
            None => &self.picture,
        };
        if let Err(e) = self
            .window
            .update_with_buffer(buffer, self.width, self.height)
        {
            tracing::warn!("window update failed: {e}");
        }
    }
}

/// What the window must say over the picture, if anything: the connection is lost and the
/// viewer reconnects, the broadcaster paused, or pictures stopped coming.
pub fn banner(s: &Condition, now_us: u64) -> Option<Vec<String>> {
    if let Some(r) = &s.reconnecting {
        let seconds = now_us.saturating_sub(r.since_us) / 1_000_000;
        return Some(vec![
            "CONNECTION LOST".to_string(),
            r.reason.clone(),
            format!("reconnecting: attempt {} ({seconds} s)", r.attempt + 1),
        ]);
    }
    if s.broadcast_paused {
        return Some(vec!["PAUSED BY THE BROADCASTER".to_string()]);
    }
    let stalled_us = s.last_decoded_us.map_or(0, |t| now_us.saturating_sub(t));
    if stalled_us >= 1_000_000 && !s.paused {
        return Some(vec![format!(
            "NO PICTURE FOR {} S: WAITING FOR THE NETWORK",
            stalled_us / 1_000_000
        )]);
    }
    None
}

fn help_lines() -> Vec<String> {
    let mut lines = vec!["StreamSocket keys".to_string(), String::new()];
    lines.extend(HELP.iter().map(|(k, what)| format!("{k:<9} {what}")));
    lines
}

/// The stats overlay: rendition, size, frame rate, bitrate, latency, skips, audio loss.
pub fn stats_lines(s: &Stats, rates: Rates, server: &str) -> Vec<String> {
    let v = &s.video;
    let a = &s.audio;
    let loss = if a.packets_received + a.packets_concealed > 0 {
        100.0 * a.packets_concealed as f64 / (a.packets_decoded + a.packets_concealed).max(1) as f64
    } else {
        0.0
    };
    vec![
        server.to_string(),
        format!(
            "rendition {}{}{}",
            s.rendition.map_or("-".to_string(), |r| (r + 1).to_string()),
            if s.auto { " (auto)" } else { "" },
            if s.paused { " PAUSED" } else { "" }
        ),
        format!(
            "why: {}",
            s.auto_reason.as_deref().unwrap_or("the server's choice")
        ),
        format!("size {}x{} {:.1} fps", v.width, v.height, rates.fps),
        format!("video {:.0} kbit/s", rates.kbps),
        format!(
            "latency p50 {:.0} p95 {:.0} ms",
            v.latency_presented.percentile_ms(0.5),
            v.latency_presented.percentile_ms(0.95)
        ),
        format!("skipped {} late {}", v.frames_skipped, v.frames_late),
        format!(
            "audio {} kbit/s loss {loss:.1}%{}",
            a.bitrate_bps / 1000,
            if a.muted { " MUTED" } else { "" }
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Reconnecting;

    #[test]
    fn the_banner_says_what_is_wrong() {
        let mut s = Condition::default();
        assert_eq!(banner(&s, 0), None);
        s.last_decoded_us = Some(1_000_000);
        assert_eq!(banner(&s, 1_500_000), None);
        let stalled = banner(&s, 3_200_000).unwrap().join(" ");
        assert!(stalled.contains("NO PICTURE FOR 2 S"), "{stalled}");
        s.reconnecting = Some(Reconnecting {
            reason: "timed out".into(),
            attempt: 2,
            since_us: 1_000_000,
        });
        let lost = banner(&s, 5_000_000).unwrap().join(" ");
        assert!(
            lost.contains("CONNECTION LOST")
                && lost.contains("timed out")
                && lost.contains("attempt 3 (4 s)"),
            "{lost}"
        );
    }

    #[test]
    fn stats_overlay_names_what_the_issue_asks_for() {
        let s = Stats {
            rendition: Some(1),
            auto: true,
            ..Stats::default()
        };
        let text = stats_lines(
            &s,
            Rates {
                fps: 29.5,
                kbps: 800.0,
            },
            "localhost:4443",
        )
        .join("\n");
        for needle in [
            "rendition 2 (auto)",
            "29.5 fps",
            "800 kbit/s",
            "latency p50",
            "skipped",
            "audio",
            "loss",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
