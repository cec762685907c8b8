//! Real cameras through nokhwa (V4L2 on Linux): listing them with their modes, choosing the
//! mode closest to what was asked, and reading frames for [`super::camera`].

use anyhow::{bail, Context as _};
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, CameraInfo, FrameFormat, RequestedFormat,
    RequestedFormatType,
};
use nokhwa::Camera;

use super::camera::{CameraDevice, CameraFrame, Opener};
use super::convert::PixelFormat;
use super::PictureFormat;

/// The formats the capture path converts, in order of preference (raw before compressed).
const USABLE: [FrameFormat; 3] = [FrameFormat::YUYV, FrameFormat::NV12, FrameFormat::MJPEG];

fn backend() -> ApiBackend {
    ApiBackend::Video4Linux
}

/// `--camera`: an index (as `devices` lists them) or part of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSelector {
    Index(u32),
    Name(String),
}

impl std::str::FromStr for CameraSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty camera name".into());
        }
        Ok(match s.parse() {
            Ok(i) => Self::Index(i),
            Err(_) => Self::Name(s.to_string()),
        })
    }
}

/// A camera and the modes it offers that StreamSocket can use.
pub struct Listed {
    pub index: u32,
    pub name: String,
    pub modes: Vec<CameraFormat>,
}

fn index_of(info: &CameraInfo) -> Option<u32> {
    match info.index() {
        CameraIndex::Index(i) => Some(*i),
        CameraIndex::String(s) => s.trim_start_matches("/dev/video").parse().ok(),
    }
}

fn open_any(index: u32) -> anyhow::Result<Camera> {
    Camera::with_backend(
        CameraIndex::Index(index),
        RequestedFormat::with_formats(RequestedFormatType::None, &USABLE),
        backend(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every camera with its usable modes. Nodes that cannot capture (a webcam's metadata node)
/// are left out.
pub fn list() -> anyhow::Result<Vec<Listed>> {
    let infos = nokhwa::query(backend()).map_err(|e| anyhow::anyhow!("listing cameras: {e}"))?;
    let mut out = Vec::new();
    for info in infos {
        let Some(index) = index_of(&info) else {
            continue;
        };
        let Ok(mut cam) = open_any(index) else {
            continue;
        };
        let Ok(modes) = cam.compatible_camera_formats() else {
            continue;
        };
        let modes: Vec<_> = modes
            .into_iter()
            .filter(|m| USABLE.contains(&m.format()))
            .collect();
        if !modes.is_empty() {
            out.push(Listed {
                index,
                name: info.human_name(),
                modes,
            });
        }
    }
    Ok(out)
}

/// The mode closest to `wanted`: size first, then frame rate, then raw over MJPEG.
pub fn closest(modes: &[CameraFormat], wanted: PictureFormat) -> Option<CameraFormat> {
    modes.iter().copied().min_by_key(|m| {
        let size = (m.width() as i64 - wanted.width as i64).abs()
            + (m.height() as i64 - wanted.height as i64).abs();
        let fps = (m.frame_rate() as i64 - wanted.fps as i64).abs();
        let kind = USABLE.iter().position(|f| *f == m.format()).unwrap_or(9);
        (size, fps, kind)
    })
}

struct V4lCamera {
    camera: Camera,
    name: String,
    mode: CameraFormat,
}

impl CameraDevice for V4lCamera {
    fn describe(&self) -> String {
        format!(
            "{} ({}x{} @ {} fps {})",
            self.name,
            self.mode.width(),
            self.mode.height(),
            self.mode.frame_rate(),
            self.mode.format()
        )
    }

    fn format(&self) -> PictureFormat {
        PictureFormat {
            width: self.mode.width() as usize,
            height: self.mode.height() as usize,
            fps: self.mode.frame_rate().max(1),
        }
    }

    fn frame(&mut self) -> anyhow::Result<CameraFrame> {
        let buffer = self.camera.frame().map_err(|e| anyhow::anyhow!("{e}"))?;
        let format = match buffer.source_frame_format() {
            FrameFormat::YUYV => PixelFormat::Yuyv,
            FrameFormat::NV12 => PixelFormat::Nv12,
            FrameFormat::MJPEG => PixelFormat::Mjpeg,
            other => bail!("the camera delivered {other}, which StreamSocket does not convert"),
        };
        let res = buffer.resolution();
        Ok(CameraFrame {
            format,
            width: res.width() as usize,
            height: res.height() as usize,
            data: buffer.buffer().to_vec(),
        })
    }
}

/// Finds the camera `selector` names (the first when `None`).
fn find(selector: Option<&CameraSelector>) -> anyhow::Result<(u32, String)> {
    let infos = nokhwa::query(backend()).map_err(|e| anyhow::anyhow!("listing cameras: {e}"))?;
    let found = infos
        .iter()
        .filter_map(|i| Some((index_of(i)?, i.human_name())));
    let mut found: Vec<(u32, String)> = found.collect();
    found.sort();
    let names = || {
        found
            .iter()
            .map(|(i, n)| format!("{i}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match selector {
        None => found.first().cloned().context("no camera found"),
        Some(CameraSelector::Index(i)) => found
            .iter()
            .find(|(idx, _)| idx == i)
            .cloned()
            .with_context(|| match found.is_empty() {
                true => format!("no camera {i}: no camera found"),
                false => format!("no camera {i}; there are {}", names()),
            }),
        Some(CameraSelector::Name(n)) => {
            let lower = n.to_lowercase();
            found
                .iter()
                .find(|(_, name)| name.to_lowercase().contains(&lower))
                .cloned()
                .with_context(|| match found.is_empty() {
                    true => format!("no camera named {n:?}: no camera found"),
                    false => format!("no camera named {n:?}; there are {}", names()),
                })
        }
    }
}

/// Whether any camera is present (for `--video auto`).
pub fn any_present() -> bool {
    find(None).is_ok()
}

/// Opens the selected camera in the mode closest to `wanted`; the capture thread calls it
/// again after a loss.
pub fn opener(selector: Option<CameraSelector>, wanted: PictureFormat) -> Opener {
    Box::new(move || {
        let (index, name) = find(selector.as_ref())?;
        let mut camera =
            open_any(index).with_context(|| format!("opening camera {index} ({name})"))?;
        let modes = camera
            .compatible_camera_formats()
            .map_err(|e| anyhow::anyhow!("camera {index} ({name}): listing modes: {e}"))?;
        let modes: Vec<_> = modes
            .into_iter()
            .filter(|m| USABLE.contains(&m.format()))
            .collect();
        let mode = closest(&modes, wanted).with_context(|| {
            format!("camera {index} ({name}) offers no YUYV, NV12 or MJPEG mode")
        })?;
        camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(mode),
                &USABLE,
            ))
            .map_err(|e| anyhow::anyhow!("camera {index} ({name}): setting {mode}: {e}"))?;
        camera
            .open_stream()
            .map_err(|e| anyhow::anyhow!("camera {index} ({name}): starting capture: {e}"))?;
        let mode = camera.camera_format();
        Ok(Box::new(V4lCamera { camera, name, mode }) as Box<dyn CameraDevice>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_mode_prefers_size_then_rate_then_raw() {
        let m = |w, h, f, fps| CameraFormat::new_from(w, h, f, fps);
        let modes = [
            m(1920, 1080, FrameFormat::MJPEG, 30),
            m(1280, 720, FrameFormat::MJPEG, 30),
            m(1280, 720, FrameFormat::YUYV, 10),
            m(640, 360, FrameFormat::MJPEG, 30),
            m(640, 360, FrameFormat::YUYV, 30),
        ];
        let want = |width, height, fps| PictureFormat { width, height, fps };
        assert_eq!(closest(&modes, want(640, 360, 30)), Some(modes[4]));
        assert_eq!(closest(&modes, want(1280, 720, 30)), Some(modes[1]));
        assert_eq!(closest(&modes, want(1000, 600, 30)), Some(modes[1]));
        assert_eq!(closest(&[], want(640, 360, 30)), None);
    }

    #[test]
    fn selectors_parse() {
        assert_eq!("2".parse(), Ok(CameraSelector::Index(2)));
        assert_eq!(
            "Logitech".parse(),
            Ok(CameraSelector::Name("Logitech".into()))
        );
        assert!("".parse::<CameraSelector>().is_err());
    }
}
