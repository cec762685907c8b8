//! Scaling source pictures to a rendition's size, plane by plane, with `fast_image_resize`'s
//! SIMD paths.

use std::borrow::Cow;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::capture::frame::RawFrame;

pub struct Scaler {
    width: usize,
    height: usize,
    resizer: Resizer,
    options: ResizeOptions,
}

impl Scaler {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            resizer: Resizer::new(),
            // Bilinear: a third of Lanczos's cost, and the encoder smooths the rest.
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        }
    }

    /// The frame at this scaler's size: the source itself when the size already matches
    /// (no copy), else a scaled copy.
    pub fn scale<'a>(&mut self, src: &'a RawFrame) -> anyhow::Result<Cow<'a, RawFrame>> {
        if src.width == self.width && src.height == self.height {
            return Ok(Cow::Borrowed(src));
        }
        let (w, h) = (self.width, self.height);
        let y = self.plane(&src.y, src.width, src.height, w, h)?;
        let u = self.plane(&src.u, src.width / 2, src.height / 2, w / 2, h / 2)?;
        let v = self.plane(&src.v, src.width / 2, src.height / 2, w / 2, h / 2)?;
        Ok(Cow::Owned(RawFrame {
            width: w,
            height: h,
            y,
            u,
            v,
            capture_us: src.capture_us,
        }))
    }

    fn plane(
        &mut self,
        src: &[u8],
        sw: usize,
        sh: usize,
        dw: usize,
        dh: usize,
    ) -> anyhow::Result<Vec<u8>> {
        let src = ImageRef::new(sw as u32, sh as u32, src, PixelType::U8)?;
        let mut dst = Image::new(dw as u32, dh as u32, PixelType::U8);
        self.resizer.resize(&src, &mut dst, &self.options)?;
        Ok(dst.into_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_a_frame_and_keeps_flat_colours() {
        let (w, h) = (64, 32);
        let src = RawFrame {
            width: w,
            height: h,
            y: vec![100; w * h],
            u: vec![50; w * h / 4],
            v: vec![200; w * h / 4],
            capture_us: 7,
        };
        let out = Scaler::new(32, 16).scale(&src).unwrap().into_owned();
        assert_eq!((out.width, out.height, out.capture_us), (32, 16, 7));
        assert_eq!(out.y.len(), 32 * 16);
        assert_eq!(out.u.len(), 16 * 8);
        assert!(out.y.iter().all(|&p| p == 100));
        assert!(out.u.iter().all(|&p| p == 50) && out.v.iter().all(|&p| p == 200));
        let mut same = Scaler::new(64, 32);
        assert!(
            matches!(same.scale(&src).unwrap(), Cow::Borrowed(_)),
            "same size: no copy"
        );
    }
}
