//! `--record FILE.webm`: what the viewer receives, saved as it arrives and without
//! re-encoding, as WebM (AV1 + Opus) that ffmpeg, browsers and the `dav1d` tool (after
//! `ffmpeg -i FILE.webm -c copy FILE.ivf`) play.
//!
//! The decoder thread hands over each frame it decodes (the rendition on screen) and the audio
//! thread each packet it plays; a thread of its own writes them, behind a bounded queue, so a
//! slow disk never stalls the picture. The recording starts at the first keyframe (its
//! sequence header describes the track); times are capture times from that keyframe, so audio
//! and video stay in sync in the file as they were captured.

pub mod av1;
pub mod webm;
pub mod y4m_dump;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::Context as _;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::RecordingStats;
use webm::{WebmWriter, AUDIO_TRACK, VIDEO_TRACK};

/// The server's Opus encoder runs in low-delay mode: 2.5 ms (120 samples) of lookahead.
pub const OPUS_PRE_SKIP: u16 = 120;
/// Items waiting for the writer: several seconds of video and audio.
const QUEUE: usize = 512;

enum Item {
    Video {
        payload: Bytes,
        keyframe: bool,
        capture_us: u64,
    },
    Audio {
        payload: Bytes,
        capture_us: u64,
    },
}

/// A handle to the recording; clones feed the same file.
#[derive(Clone)]
pub struct Recorder {
    tx: Sender<Item>,
    stats: Arc<Mutex<RecordingStats>>,
}

impl Recorder {
    /// Creates `path` now (a bad path fails at start) and starts the writer thread, which
    /// finishes the file when every handle is dropped.
    pub fn start(
        path: &Path,
        stats: Arc<Mutex<RecordingStats>>,
    ) -> anyhow::Result<(Self, thread::JoinHandle<()>)> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let writer_stats = stats.clone();
        let path = path.to_owned();
        let handle = thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_all(path, file, rx, writer_stats))?;
        Ok((Self { tx, stats }, handle))
    }

    pub fn video(&self, payload: &Bytes, keyframe: bool, capture_us: u64) {
        self.send(Item::Video {
            payload: payload.clone(),
            keyframe,
            capture_us,
        });
    }

    pub fn audio(&self, payload: &Bytes, capture_us: u64) {
        self.send(Item::Audio {
            payload: payload.clone(),
            capture_us,
        });
    }

    fn send(&self, item: Item) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(item) {
            self.stats.lock().expect("not poisoned").dropped += 1;
        }
    }
}

fn write_all(path: PathBuf, file: File, rx: Receiver<Item>, stats: Arc<Mutex<RecordingStats>>) {
    let mut file = Some(BufWriter::new(file));
    let mut writer: Option<WebmWriter<BufWriter<File>>> = None;
    let mut start_us = 0u64;
    let audio_shift_ms = webm::codec_delay_ms(OPUS_PRE_SKIP);
    let mut failed = false;
    for item in rx {
        if failed {
            continue;
        }
        let result = match item {
            Item::Video {
                payload,
                keyframe,
                capture_us,
            } => {
                if writer.is_none() {
                    if !keyframe {
                        stats.lock().expect("not poisoned").waiting_for_keyframe += 1;
                        continue;
                    }
                    match av1::av1c(&payload) {
                        Ok((record, seq)) => {
                            let tracks = webm::Tracks {
                                width: seq.max_width,
                                height: seq.max_height,
                                av1c: &record,
                                opus_pre_skip: OPUS_PRE_SKIP,
                                opus_channels: 1,
                            };
                            match WebmWriter::new(file.take().expect("once"), &tracks) {
                                Ok(w) => {
                                    tracing::info!(
                                        file = %path.display(),
                                        "recording {}x{} AV1 and Opus",
                                        seq.max_width,
                                        seq.max_height
                                    );
                                    writer = Some(w);
                                    start_us = capture_us;
                                }
                                Err(e) => {
                                    fail(&stats, &path, &e.into(), &mut failed);
                                    continue;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!("--record: keyframe not usable: {e}");
                            stats.lock().expect("not poisoned").errors += 1;
                            continue;
                        }
                    }
                }
                let w = writer.as_mut().expect("started above");
                let ms = (capture_us.saturating_sub(start_us) / 1000) as i64;
                {
                    let mut s = stats.lock().expect("not poisoned");
                    s.video_span_ms = ms as u64;
                    s.span_ms = s.span_ms.max(ms as u64);
                }
                match av1::for_matroska(&payload) {
                    Ok(data) => w
                        .block(VIDEO_TRACK, ms, keyframe, &data)
                        .map(|()| (true, data.len())),
                    Err(e) => {
                        tracing::debug!("--record: frame not stored: {e}");
                        stats.lock().expect("not poisoned").errors += 1;
                        continue;
                    }
                }
            }
            Item::Audio {
                payload,
                capture_us,
            } => {
                let Some(w) = writer.as_mut() else { continue };
                if capture_us < start_us {
                    continue;
                }
                let ms = ((capture_us - start_us) / 1000) as i64 + audio_shift_ms;
                {
                    let mut s = stats.lock().expect("not poisoned");
                    s.span_ms = s.span_ms.max(ms.max(0) as u64);
                }
                w.block(AUDIO_TRACK, ms, true, &payload)
                    .map(|()| (false, payload.len()))
            }
        };
        match result {
            Ok((video, bytes)) => {
                let mut s = stats.lock().expect("not poisoned");
                if video {
                    s.video_frames += 1;
                } else {
                    s.audio_packets += 1;
                }
                s.bytes += bytes as u64;
            }
            Err(e) => fail(&stats, &path, &e.into(), &mut failed),
        }
    }
    if let Some(w) = writer {
        // The last frame lasts one frame period (30 fps).
        match w.finish(33) {
            Ok(_) => tracing::info!(file = %path.display(), "recording finished"),
            Err(e) => fail(&stats, &path, &e.into(), &mut failed),
        }
    } else if !failed {
        tracing::warn!(file = %path.display(), "nothing recorded: no keyframe arrived");
    }
}

fn fail(stats: &Mutex<RecordingStats>, path: &Path, e: &anyhow::Error, failed: &mut bool) {
    tracing::error!(file = %path.display(), "recording stopped: {e:#}");
    stats.lock().expect("not poisoned").errors += 1;
    *failed = true;
}
