//! `--preview`: the broadcaster's window. It shows the local picture as captured, with the
//! server's status drawn on it (viewers, renditions being encoded with fps and bitrate, the
//! audio level), and takes the broadcaster's keys: Space pauses and resumes the broadcast, M
//! mutes the microphone, Q (or closing the window) stops the server. Without a display the
//! server goes on without it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use minifb::{Key, KeyRepeat, Window, WindowOptions};

use crate::capture::frame::RawFrame;
use crate::fanout::hub::Hub;

pub const TITLE: &str = "StreamSocket server preview";

/// Fps and bitrate of each rendition over the last second.
struct Rates {
    at: Instant,
    last: Vec<(u64, u64)>,
    shown: Vec<(f64, f64)>,
}

impl Rates {
    fn new(hub: &Hub) -> Self {
        Self {
            at: Instant::now(),
            last: vec![(0, 0); hub.renditions().len()],
            shown: vec![(0.0, 0.0); hub.renditions().len()],
        }
    }

    fn update(&mut self, hub: &Hub) {
        let elapsed = self.at.elapsed().as_secs_f64();
        if elapsed < 1.0 {
            return;
        }
        for ((r, last), shown) in hub
            .renditions()
            .iter()
            .zip(&mut self.last)
            .zip(&mut self.shown)
        {
            let frames = r.stats.frames_out.load(Ordering::Relaxed);
            let bytes = r.stats.bytes_out.load(Ordering::Relaxed);
            *shown = (
                (frames - last.0) as f64 / elapsed,
                (bytes - last.1) as f64 * 8.0 / 1000.0 / elapsed,
            );
            *last = (frames, bytes);
        }
        self.at = Instant::now();
    }
}

/// The status lines drawn over the picture.
pub fn status_lines(hub: &Hub, rates: &[(f64, f64)]) -> Vec<String> {
    let c = hub.controls();
    let mut lines = vec![
        if c.paused() {
            "PAUSED - Space resumes".to_string()
        } else {
            "LIVE".to_string()
        },
        format!("viewers: {}", c.viewers()),
    ];
    for (r, (fps, kbps)) in hub.renditions().iter().zip(rates) {
        if r.viewers() > 0 {
            lines.push(format!(
                "{} {}x{}: {fps:.1} fps {kbps:.0} kbit/s, {} viewer(s)",
                r.info.name,
                r.info.width,
                r.info.height,
                r.viewers()
            ));
        }
    }
    lines.push(if c.muted() {
        "audio: MUTED - M unmutes".to_string()
    } else {
        let peak = c.audio_peak();
        if peak > 0.0 {
            format!("audio: peak {:.0} dBFS", 20.0 * peak.log10())
        } else {
            "audio: silence".to_string()
        }
    });
    lines.push("Space pause  M mute  Q quit".to_string());
    lines
}

/// Starts the preview window on its own thread. `quit` is called when the broadcaster asks to
/// stop the server (Q, Esc or closing the window).
pub fn spawn(
    frames: Receiver<Arc<RawFrame>>,
    hub: Arc<Hub>,
    quit: impl FnOnce() + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("preview".into())
        .spawn(move || {
            let mut window = match Window::new(
                TITLE,
                640,
                360,
                WindowOptions {
                    resize: true,
                    scale_mode: minifb::ScaleMode::AspectRatioStretch,
                    ..WindowOptions::default()
                },
            ) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(
                        "no preview window ({e}); is DISPLAY set? The server goes on without it"
                    );
                    return;
                }
            };
            tracing::info!("preview window open: Space pauses the broadcast, M mutes, Q quits");
            let (mut width, mut height) = (640usize, 360usize);
            let mut picture = vec![0u32; width * height];
            let mut shown = picture.clone();
            let mut rates = Rates::new(&hub);
            while window.is_open() {
                match frames.recv_timeout(Duration::from_millis(33)) {
                    Ok(frame) => {
                        if (frame.width, frame.height) != (width, height) {
                            (width, height) = (frame.width, frame.height);
                            picture = vec![0; width * height];
                        }
                        if let Err(e) = to_pixels(&frame, &mut picture) {
                            tracing::debug!("preview: {e}");
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    // The source ended (a file played with --no-loop): keep the last picture
                    // and the status, redrawn at the same pace.
                    Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(33)),
                }
                rates.update(&hub);
                shown.clone_from(&picture);
                let lines = status_lines(&hub, &rates.shown);
                streamsocket_overlay::draw_panel(&mut shown, width, height, &lines);
                if let Err(e) = window.update_with_buffer(&shown, width, height) {
                    tracing::warn!("preview window: {e}");
                }
                // Key state changes only when the window updates: read it once per update.
                for key in window.get_keys_pressed(KeyRepeat::No) {
                    let c = hub.controls();
                    match key {
                        Key::Space => c.set_paused(!c.paused()),
                        Key::M => c.set_muted(!c.muted()),
                        Key::Q | Key::Escape => {
                            tracing::info!("stop asked from the preview window");
                            quit();
                            return;
                        }
                        _ => {}
                    }
                }
            }
            tracing::info!("preview window closed: stopping the server");
            quit();
        })
        .expect("spawn preview thread")
}

/// I420 to 0RGB with the `yuv` crate.
fn to_pixels(frame: &RawFrame, out: &mut [u32]) -> anyhow::Result<()> {
    let image = yuv::YuvPlanarImage {
        y_plane: &frame.y,
        y_stride: frame.width as u32,
        u_plane: &frame.u,
        u_stride: frame.width.div_ceil(2) as u32,
        v_plane: &frame.v,
        v_stride: frame.width.div_ceil(2) as u32,
        width: frame.width as u32,
        height: frame.height as u32,
    };
    // 0RGB in a little-endian u32 is B, G, R, X in memory: BGRA.
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
    yuv::yuv420_to_bgra(
        &image,
        bytes,
        (frame.width * 4) as u32,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
    )
    .map_err(|e| anyhow::anyhow!("colour conversion: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_what_the_broadcaster_needs() {
        let hub = Hub::for_tests();
        let c = hub.controls();
        c.viewer_joined();
        c.set_audio_peak(0.25);
        let text = status_lines(&hub, &[(0.0, 0.0); 3]).join("\n");
        assert!(
            text.contains("LIVE") && text.contains("viewers: 1"),
            "{text}"
        );
        assert!(text.contains("peak -12 dBFS"), "{text}");
        c.set_paused(true);
        c.set_muted(true);
        let text = status_lines(&hub, &[(0.0, 0.0); 3]).join("\n");
        assert!(text.contains("PAUSED") && text.contains("MUTED"), "{text}");
    }
}
