//! The quality ladder: the renditions a server offers, from the command line or a config file.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;
use streamsocket_proto::control::Rendition;

/// One rung as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RenditionSpec {
    pub name: String,
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub bitrate_kbps: u32,
}

/// The server's offer: video renditions (highest first) and audio bitrates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ladder {
    #[serde(rename = "rendition")]
    pub renditions: Vec<RenditionSpec>,
    /// Opus bitrates on offer, in kbit/s.
    #[serde(default = "default_audio_bitrates")]
    pub audio_bitrates_kbps: Vec<u32>,
}

pub fn default_audio_bitrates() -> Vec<u32> {
    vec![24, 48, 96]
}

/// Default audio bitrate a viewer gets, kbit/s (the middle rung when it exists).
pub const DEFAULT_AUDIO_KBPS: u32 = 48;

impl Ladder {
    /// The top rung's bitrate for a picture size when none is given: 800 kbit/s at 640x360,
    /// growing with the pixel count to the power 0.66 (the usual rule that bits per pixel fall
    /// as pictures grow): 2000 at 1280x720, 3400 at 1920x1080. In steps of 50.
    pub fn default_bitrate_kbps(width: usize, height: usize) -> u32 {
        let ratio = (width * height) as f64 / (640.0 * 360.0);
        let kbps = 800.0 * ratio.powf(0.66);
        ((kbps / 50.0).round() as u32 * 50).max(50)
    }

    /// The default ladder for a source of `width`x`height` at `fps`: the source size at
    /// `bitrate_kbps`, then two thirds and half of it at lower bitrates; from 1280x720 up
    /// (`is_hd`), half and a quarter of it. Sized to what a 2-core machine encodes in real time all at
    /// once (docs/BENCHMARKS.md, "The ladder, every rung encoded at once": with a 1280x720
    /// top, a two-thirds second rung does not hold 30 fps, halving does).
    pub fn default_for(width: usize, height: usize, fps: u32, bitrate_kbps: u32) -> Self {
        let even = |v: usize| (v / 2) * 2;
        let mut renditions = vec![RenditionSpec {
            name: format!("{height}p"),
            width,
            height,
            fps,
            bitrate_kbps,
        }];
        let steps = if crate::encode::video::is_hd(width, height) {
            [(1, 2, 35), (1, 4, 12)]
        } else {
            [(2, 3, 50), (1, 2, 30)]
        };
        for (num, den, share) in steps {
            let (w, h) = (even(width * num / den), even(height * num / den));
            if w >= 64 && h >= 64 {
                renditions.push(RenditionSpec {
                    name: format!("{h}p"),
                    width: w,
                    height: h,
                    fps,
                    bitrate_kbps: (bitrate_kbps * share / 100).max(50),
                });
            }
        }
        Ladder {
            renditions,
            audio_bitrates_kbps: default_audio_bitrates(),
        }
    }

    /// Parses `name:WxH@fps:kbps,...`, e.g. `360p:640x360@30:800,180p:320x180@30:250`.
    pub fn parse_renditions(text: &str) -> anyhow::Result<Vec<RenditionSpec>> {
        text.split(',')
            .map(|rung| {
                let rung = rung.trim();
                let parse = || -> Option<RenditionSpec> {
                    let mut parts = rung.split(':');
                    let name = parts.next()?.to_string();
                    let (size, fps) = parts.next()?.split_once('@')?;
                    let (w, h) = size.split_once('x')?;
                    let kbps = parts.next()?;
                    if parts.next().is_some() {
                        return None;
                    }
                    Some(RenditionSpec {
                        name,
                        width: w.parse().ok()?,
                        height: h.parse().ok()?,
                        fps: fps.parse().ok()?,
                        bitrate_kbps: kbps.parse().ok()?,
                    })
                };
                parse().with_context(|| format!("bad rendition {rung:?}: expected name:WIDTHxHEIGHT@FPS:KBPS, e.g. 360p:640x360@30:800"))
            })
            .collect()
    }

    /// Reads a TOML config file (see docs/ and `--help`).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let ladder: Ladder = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid ladder", path.display()))?;
        Ok(ladder)
    }

    /// Checks the ladder against what the pipeline supports; the first rung is the source size.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.renditions.is_empty()
            || self.renditions.len() > streamsocket_proto::control::MAX_RENDITIONS
        {
            bail!(
                "a ladder has 1 to 16 renditions, this one has {}",
                self.renditions.len()
            );
        }
        let top = &self.renditions[0];
        for r in &self.renditions {
            if r.width % 2 != 0
                || r.height % 2 != 0
                || r.width < 64
                || r.height < 64
                || r.width > 4096
                || r.height > 2304
            {
                bail!(
                    "rendition {}: {}x{} must be even, 64x64 to 4096x2304",
                    r.name,
                    r.width,
                    r.height
                );
            }
            if r.width > top.width || r.height > top.height {
                bail!(
                    "rendition {} is larger than the first (source) rendition {}",
                    r.name,
                    top.name
                );
            }
            if r.fps == 0 || r.fps > top.fps || top.fps % r.fps != 0 {
                bail!(
                    "rendition {}: fps {} must divide the source's {} fps",
                    r.name,
                    r.fps,
                    top.fps
                );
            }
            if r.bitrate_kbps < 10 {
                bail!(
                    "rendition {}: bitrate {} kbit/s is too low",
                    r.name,
                    r.bitrate_kbps
                );
            }
            if r.name.is_empty() || r.name.len() > streamsocket_proto::control::MAX_NAME {
                bail!("rendition names are 1 to 64 bytes");
            }
        }
        if self.audio_bitrates_kbps.is_empty()
            || self
                .audio_bitrates_kbps
                .iter()
                .any(|b| !(6..=510).contains(b))
        {
            bail!("audio bitrates must be 6 to 510 kbit/s, at least one");
        }
        Ok(())
    }

    /// The renditions as the protocol lists them (ids in ladder order).
    pub fn wire(&self) -> Vec<Rendition> {
        self.renditions
            .iter()
            .enumerate()
            .map(|(i, r)| Rendition {
                id: i as u8,
                name: r.name.clone(),
                width: r.width as u16,
                height: r.height as u16,
                fps: r.fps as u16,
                bitrate_kbps: r.bitrate_kbps,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bitrates_grow_with_the_picture() {
        assert_eq!(Ladder::default_bitrate_kbps(640, 360), 800);
        assert_eq!(Ladder::default_bitrate_kbps(1280, 720), 2000);
        assert_eq!(Ladder::default_bitrate_kbps(1920, 1080), 3400);
        assert_eq!(Ladder::default_bitrate_kbps(2, 2), 50);
    }

    #[test]
    fn default_ladder_has_three_even_rungs() {
        let l = Ladder::default_for(640, 360, 30, 800);
        let sizes: Vec<_> = l
            .renditions
            .iter()
            .map(|r| (r.width, r.height, r.bitrate_kbps))
            .collect();
        assert_eq!(
            sizes,
            vec![(640, 360, 800), (426, 240, 400), (320, 180, 240)]
        );
        l.validate().unwrap();
        // From 1280x720 up each rung halves the one above.
        let l = Ladder::default_for(1280, 720, 30, 2000);
        let sizes: Vec<_> = l
            .renditions
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height, r.bitrate_kbps))
            .collect();
        assert_eq!(
            sizes,
            vec![
                ("720p", 1280, 720, 2000),
                ("360p", 640, 360, 700),
                ("180p", 320, 180, 240)
            ]
        );
        l.validate().unwrap();
    }

    #[test]
    fn command_line_ladder_parses_and_bad_ones_explain() {
        let r = Ladder::parse_renditions("hd:640x360@30:800, low:320x180@15:200").unwrap();
        assert_eq!(r[1].fps, 15);
        assert_eq!(r[1].name, "low");
        let err = Ladder::parse_renditions("hd:640x360:800")
            .unwrap_err()
            .to_string();
        assert!(err.contains("name:WIDTHxHEIGHT@FPS:KBPS"), "{err}");
        let bigger = Ladder {
            renditions: Ladder::parse_renditions("a:320x180@30:200,b:640x360@30:800").unwrap(),
            audio_bitrates_kbps: vec![48],
        };
        assert!(bigger.validate().is_err());
        let odd_fps = Ladder {
            renditions: Ladder::parse_renditions("a:640x360@30:800,b:320x180@20:200").unwrap(),
            audio_bitrates_kbps: vec![48],
        };
        assert!(odd_fps.validate().is_err());
    }

    #[test]
    fn config_file_is_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ladder.toml");
        std::fs::write(
            &path,
            "audio_bitrates_kbps = [32, 64]\n\n[[rendition]]\nname = \"360p\"\nwidth = 640\nheight = 360\nfps = 30\nbitrate_kbps = 800\n",
        )
        .unwrap();
        let l = Ladder::from_file(&path).unwrap();
        assert_eq!(l.renditions.len(), 1);
        assert_eq!(l.audio_bitrates_kbps, vec![32, 64]);
        l.validate().unwrap();
    }
}
