//! A Y4M file as a live video input: read a frame per frame period of the file's own rate,
//! looping at the end by default, so real content streams like a camera would.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context as _};

use super::{NextFrame, Pacer, PictureFormat, SourceEnded, SourceStats, VideoInput, Wanted};
use crate::capture::clock::MediaClock;
use crate::capture::frame::RawFrame;

/// A Y4M (YUV4MPEG2) file of 8-bit 4:2:0 pictures.
pub struct Y4mFile {
    path: PathBuf,
    decoder: y4m::Decoder<BufReader<File>>,
    width: usize,
    height: usize,
    /// Frame rate as num/den frames per second.
    rate: (u64, u64),
    looping: bool,
    pacer: Option<Pacer>,
    /// Slot index of the last frame handed out, to drop frames for slots the pacer skipped.
    last_slot: Option<u64>,
    /// Frames read since the file was (re)opened.
    frames_in_pass: u64,
}

impl Y4mFile {
    /// Opens `path` and checks its format; `looping` restarts it at the end.
    pub fn open(path: &Path, looping: bool) -> anyhow::Result<Self> {
        let decoder = open_decoder(path)?;
        let (width, height) = (decoder.get_width(), decoder.get_height());
        let rate = decoder.get_framerate();
        if rate.num == 0 || rate.den == 0 {
            bail!("{}: the header has no frame rate (F)", path.display());
        }
        let fps = rate.num as f64 / rate.den as f64;
        if !(1.0..=240.0).contains(&fps) || rate.num > 1_000_000 || rate.den > 1_000_000 {
            bail!(
                "{}: frame rate {}/{} is not supported (1 to 240 frames a second)",
                path.display(),
                rate.num,
                rate.den
            );
        }
        if width % 2 != 0 || height % 2 != 0 || width < 16 || height < 16 {
            bail!(
                "{}: {width}x{height} is not supported: width and height must be even and at least 16",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            decoder,
            width,
            height,
            rate: (rate.num as u64, rate.den as u64),
            looping,
            pacer: None,
            last_slot: None,
            frames_in_pass: 0,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The file's frame rate rounded to whole frames per second (at least 1).
    pub fn fps(&self) -> u32 {
        ((self.rate.0 as f64 / self.rate.1 as f64).round() as u32).max(1)
    }

    /// Reads the next picture, restarting the file at its end when looping.
    pub fn read_frame(&mut self, capture_us: u64) -> anyhow::Result<RawFrame> {
        loop {
            match self.decoder.read_frame() {
                Ok(f) => {
                    self.frames_in_pass += 1;
                    return Ok(RawFrame {
                        width: self.width,
                        height: self.height,
                        y: f.get_y_plane().to_vec(),
                        u: f.get_u_plane().to_vec(),
                        v: f.get_v_plane().to_vec(),
                        capture_us,
                    });
                }
                Err(y4m::Error::EOF) if self.frames_in_pass == 0 => {
                    bail!("{}: no frames", self.path.display())
                }
                Err(y4m::Error::EOF) if self.looping => {
                    tracing::debug!(file = %self.path.display(), "looping");
                    self.decoder = open_decoder(&self.path)?;
                    self.frames_in_pass = 0;
                }
                Err(y4m::Error::EOF) => {
                    return Err(SourceEnded(format!("{} ended", self.path.display())).into())
                }
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "{}: frame {}: {e}",
                        self.path.display(),
                        self.frames_in_pass + 1
                    ))
                }
            }
        }
    }
}

fn open_decoder(path: &Path) -> anyhow::Result<y4m::Decoder<BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let decoder = y4m::decode(BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}: not a Y4M file: {e}", path.display()))?;
    use y4m::Colorspace::*;
    match decoder.get_colorspace() {
        C420 | C420jpeg | C420paldv | C420mpeg2 => Ok(decoder),
        other => bail!(
            "{}: colour space {other:?} is not supported; StreamSocket reads 8-bit 4:2:0 \
             (convert with: ffmpeg -i in.y4m -pix_fmt yuv420p out.y4m)",
            path.display()
        ),
    }
}

impl VideoInput for Y4mFile {
    fn describe(&self) -> String {
        format!(
            "{} {}x{} @ {:.2} fps{}",
            self.path.display(),
            self.width,
            self.height,
            self.rate.0 as f64 / self.rate.1 as f64,
            if self.looping { ", looping" } else { "" }
        )
    }

    fn format(&self) -> PictureFormat {
        PictureFormat {
            width: self.width,
            height: self.height,
            fps: self.fps(),
        }
    }

    fn next_frame(&mut self, clock: &MediaClock, wanted: Wanted, stats: &SourceStats) -> NextFrame {
        let (num, den) = self.rate;
        let pacer = self
            .pacer
            .get_or_insert_with(|| Pacer::new(clock, num, den));
        let (slot, capture_us) = pacer.wait(clock, &stats.skipped_late);
        // The file plays in real time whether anyone watches or not, and skips what the
        // pacer skipped: it stays live like a camera instead of playing late.
        let behind = self
            .last_slot
            .map_or(0, |last| slot.saturating_sub(last + 1));
        self.last_slot = Some(slot);
        for _ in 0..behind {
            self.read_frame(capture_us)?;
        }
        let t0 = Instant::now();
        let frame = self.read_frame(capture_us)?;
        stats
            .render_us_total
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(wanted().then_some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_y4m(path: &Path, frames: u8, colorspace: y4m::Colorspace) {
        let file = File::create(path).unwrap();
        let mut enc = y4m::encode(32, 16, y4m::Ratio::new(25, 1))
            .with_colorspace(colorspace)
            .write_header(file)
            .unwrap();
        for i in 0..frames {
            let y = vec![i; 32 * 16];
            let uv = vec![128u8; 16 * 8];
            enc.write_frame(&y4m::Frame::new([&y, &uv, &uv], None))
                .unwrap();
        }
    }

    #[test]
    fn reads_frames_in_order_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.y4m");
        write_y4m(&path, 3, y4m::Colorspace::C420jpeg);
        let mut f = Y4mFile::open(&path, true).unwrap();
        assert_eq!((f.width(), f.height(), f.fps()), (32, 16, 25));
        let firsts: Vec<u8> = (0..7).map(|_| f.read_frame(0).unwrap().y[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn without_looping_the_end_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.y4m");
        write_y4m(&path, 1, y4m::Colorspace::C420);
        let mut f = Y4mFile::open(&path, false).unwrap();
        f.read_frame(0).unwrap();
        let e = f.read_frame(0).unwrap_err();
        assert!(e.downcast_ref::<SourceEnded>().is_some(), "{e:#}");
    }

    #[test]
    fn unsupported_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.y4m");
        write_y4m(&path, 0, y4m::Colorspace::C444);
        let e = Y4mFile::open(&path, true).err().unwrap().to_string();
        assert!(e.contains("not supported") && e.contains("yuv420p"), "{e}");
        std::fs::write(&path, b"not a y4m").unwrap();
        let e = Y4mFile::open(&path, true).err().unwrap().to_string();
        assert!(e.contains("not a Y4M file"), "{e}");
        let e = Y4mFile::open(&dir.path().join("missing.y4m"), true)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("cannot open"), "{e:#}");
    }
}
