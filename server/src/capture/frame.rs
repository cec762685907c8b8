//! Raw pictures between the source and the encoders.

/// One raw I420 (4:2:0 planar, 8-bit, video range, BT.601) picture with its capture time.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// Capture time on the media clock, microseconds.
    pub capture_us: u64,
}

impl RawFrame {
    /// Converts packed RGB into I420 with the `yuv` crate's SIMD paths.
    pub fn from_rgb(
        rgb: &[u8],
        width: usize,
        height: usize,
        capture_us: u64,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            width % 2 == 0 && height % 2 == 0,
            "I420 needs even dimensions, got {width}x{height}"
        );
        let mut y = vec![0u8; width * height];
        let mut u = vec![0u8; width * height / 4];
        let mut v = vec![0u8; width * height / 4];
        let mut planar = yuv::YuvPlanarImageMut {
            y_plane: yuv::BufferStoreMut::Borrowed(&mut y),
            y_stride: width as u32,
            u_plane: yuv::BufferStoreMut::Borrowed(&mut u),
            u_stride: (width / 2) as u32,
            v_plane: yuv::BufferStoreMut::Borrowed(&mut v),
            v_stride: (width / 2) as u32,
            width: width as u32,
            height: height as u32,
        };
        yuv::rgb_to_yuv420(
            &mut planar,
            rgb,
            (width * 3) as u32,
            yuv::YuvRange::Limited,
            yuv::YuvStandardMatrix::Bt601,
            yuv::YuvConversionMode::Balanced,
        )
        .map_err(|e| anyhow::anyhow!("colour conversion failed: {e}"))?;
        Ok(Self {
            width,
            height,
            y,
            u,
            v,
            capture_us,
        })
    }
}
