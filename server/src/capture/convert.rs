//! Camera pixel formats to the encoders' I420, with the `yuv` crate's SIMD paths (and
//! zune-jpeg for MJPEG).

use anyhow::{bail, Context as _};

use crate::capture::frame::RawFrame;

/// The pixel formats the camera path accepts (what UVC webcams deliver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Planar Y, then interleaved U/V at quarter resolution.
    Nv12,
    /// A JPEG picture per frame.
    Mjpeg,
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Yuyv => "YUYV",
            Self::Nv12 => "NV12",
            Self::Mjpeg => "MJPEG",
        })
    }
}

fn planar(width: usize, height: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let chroma = width.div_ceil(2) * height.div_ceil(2);
    (vec![0; width * height], vec![0; chroma], vec![0; chroma])
}

/// Converts one camera frame to I420 stamped `capture_us`.
pub fn to_i420(
    format: PixelFormat,
    data: &[u8],
    width: usize,
    height: usize,
    capture_us: u64,
) -> anyhow::Result<RawFrame> {
    if width % 2 != 0 || height % 2 != 0 || width == 0 || height == 0 {
        bail!("{width}x{height}: I420 needs even, non-zero dimensions");
    }
    let (mut y, mut u, mut v) = planar(width, height);
    match format {
        PixelFormat::Yuyv => {
            let len = width * height * 2;
            // Devices may pad the buffer past the picture; less than a picture is an error.
            let Some(packed) = data.get(..len) else {
                bail!(
                    "YUYV frame of {} bytes, {width}x{height} needs {len}",
                    data.len()
                );
            };
            let image = yuv::YuvPackedImage {
                yuy: packed,
                yuy_stride: (width * 2) as u32,
                width: width as u32,
                height: height as u32,
            };
            let mut out = planar_image(&mut y, &mut u, &mut v, width, height);
            yuv::yuyv422_to_yuv420(&mut out, &image)
                .map_err(|e| anyhow::anyhow!("YUYV conversion: {e}"))?;
        }
        PixelFormat::Nv12 => {
            let luma = width * height;
            let len = luma + luma / 2;
            let Some(frame) = data.get(..len) else {
                bail!(
                    "NV12 frame of {} bytes, {width}x{height} needs {len}",
                    data.len()
                );
            };
            y.copy_from_slice(&frame[..luma]);
            // De-interleave the chroma plane: a copy, no arithmetic (the `yuv` crate has no
            // NV12-to-I420 path); the compiler vectorises it.
            for ((pair, cu), cv) in frame[luma..]
                .chunks_exact(2)
                .zip(u.iter_mut())
                .zip(v.iter_mut())
            {
                *cu = pair[0];
                *cv = pair[1];
            }
        }
        PixelFormat::Mjpeg => {
            let options = zune_jpeg::zune_core::options::DecoderOptions::default()
                .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::RGB);
            let mut decoder = zune_jpeg::JpegDecoder::new_with_options(data, options);
            let rgb = decoder.decode().context("MJPEG frame does not decode")?;
            let (w, h) = decoder.dimensions().context("MJPEG frame without a size")?;
            if (w, h) != (width, height) {
                bail!("MJPEG frame is {w}x{h}, the camera said {width}x{height}");
            }
            return RawFrame::from_rgb(&rgb, width, height, capture_us);
        }
    }
    Ok(RawFrame {
        width,
        height,
        y,
        u,
        v,
        capture_us,
    })
}

fn planar_image<'a>(
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
    width: usize,
    height: usize,
) -> yuv::YuvPlanarImageMut<'a, u8> {
    yuv::YuvPlanarImageMut {
        y_plane: yuv::BufferStoreMut::Borrowed(y),
        y_stride: width as u32,
        u_plane: yuv::BufferStoreMut::Borrowed(u),
        u_stride: width.div_ceil(2) as u32,
        v_plane: yuv::BufferStoreMut::Borrowed(v),
        v_stride: width.div_ceil(2) as u32,
        width: width as u32,
        height: height as u32,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A 4x2 picture: left half (Y 50, U 100, V 150), right half (Y 200, U 60, V 220).
    pub fn yuyv_4x2() -> Vec<u8> {
        let row = [50, 100, 50, 150, 200, 60, 200, 220];
        [row, row].concat()
    }

    #[test]
    fn yuyv_keeps_luma_and_chroma() {
        let f = to_i420(PixelFormat::Yuyv, &yuyv_4x2(), 4, 2, 7).unwrap();
        assert_eq!(f.y, [50, 50, 200, 200, 50, 50, 200, 200]);
        assert_eq!(f.u, [100, 60]);
        assert_eq!(f.v, [150, 220]);
        assert_eq!(f.capture_us, 7);
        // Padding past the picture is ignored; a short buffer is an error.
        let mut padded = yuyv_4x2();
        padded.extend([0; 16]);
        assert_eq!(to_i420(PixelFormat::Yuyv, &padded, 4, 2, 0).unwrap().y, f.y);
        assert!(to_i420(PixelFormat::Yuyv, &yuyv_4x2()[..10], 4, 2, 0).is_err());
    }

    #[test]
    fn nv12_is_deinterleaved() {
        let mut nv12 = vec![10, 20, 30, 40, 50, 60, 70, 80];
        nv12.extend([1, 2, 3, 4]); // U0 V0 U1 V1
        let f = to_i420(PixelFormat::Nv12, &nv12, 4, 2, 0).unwrap();
        assert_eq!(f.y, [10, 20, 30, 40, 50, 60, 70, 80]);
        assert_eq!((f.u.as_slice(), f.v.as_slice()), (&[1, 3][..], &[2, 4][..]));
        assert!(to_i420(PixelFormat::Nv12, &nv12[..9], 4, 2, 0).is_err());
    }

    #[test]
    fn mjpeg_decodes_to_the_right_colours() {
        // A 16x16 JPEG, left half pure red, right half pure blue.
        let f = to_i420(PixelFormat::Mjpeg, RED_BLUE_JPEG, 16, 16, 0).unwrap();
        // BT.601 limited range: red is Y 81 U 90 V 240, blue Y 41 U 240 V 110 (JPEG loses a
        // little).
        let near = |got: u8, want: u8| (got as i32 - want as i32).abs() <= 6;
        assert!(
            near(f.y[16 * 8 + 2], 81) && near(f.y[16 * 8 + 13], 41),
            "{:?}",
            &f.y[128..144]
        );
        assert!(near(f.u[8 * 4 + 1], 90) && near(f.v[8 * 4 + 1], 240));
        assert!(near(f.u[8 * 4 + 6], 240) && near(f.v[8 * 4 + 6], 110));
        let e = to_i420(PixelFormat::Mjpeg, &[0xff, 0xd8, 0, 1, 2], 16, 16, 0).unwrap_err();
        assert!(format!("{e:#}").contains("does not decode"), "{e:#}");
        assert!(to_i420(PixelFormat::Mjpeg, RED_BLUE_JPEG, 32, 16, 0).is_err());
    }

    pub const RED_BLUE_JPEG: &[u8] = include_bytes!("../../testdata/red_blue_16x16.jpg");
}
