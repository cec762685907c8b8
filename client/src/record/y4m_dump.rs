//! `--dump-y4m`: every decoded picture written to a Y4M file, for measuring quality against
//! the source. A Y4M file has one picture size, so pictures of another size (after a
//! rendition switch) go to a sibling file named after their size: `out.y4m` for the first
//! size, `out-426x240.y4m` for the next. Each frame carries its capture time as a frame
//! parameter (`Xcapture_us=...`).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// One picture's planes, rows `stride` bytes apart (the decoder's layout).
pub struct Planes<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a [u8],
    pub y_stride: usize,
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub uv_stride: usize,
}

pub struct Y4mDump {
    path: PathBuf,
    fps: u32,
    files: HashMap<(usize, usize), y4m::Encoder<BufWriter<File>>>,
    first_size: Option<(usize, usize)>,
    packed: [Vec<u8>; 3],
    pub frames: u64,
}

impl Y4mDump {
    /// Checks that `path` can be created now, so a bad path fails at start, not mid-run.
    pub fn create(path: &Path, fps: u32) -> anyhow::Result<Self> {
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            fps: fps.max(1),
            files: HashMap::new(),
            first_size: None,
            packed: Default::default(),
            frames: 0,
        })
    }

    /// The file pictures of `size` go to.
    pub fn path_for(&self, size: (usize, usize)) -> PathBuf {
        if self.first_size.is_none_or(|first| first == size) {
            return self.path.clone();
        }
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dump".into());
        self.path
            .with_file_name(format!("{stem}-{}x{}.y4m", size.0, size.1))
    }

    pub fn write(&mut self, p: &Planes, capture_us: u64) -> anyhow::Result<()> {
        let size = (p.width, p.height);
        self.first_size.get_or_insert(size);
        if !self.files.contains_key(&size) {
            let path = self.path_for(size);
            let file =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let encoder = y4m::encode(p.width, p.height, y4m::Ratio::new(self.fps as usize, 1))
                .with_colorspace(y4m::Colorspace::C420)
                .write_header(BufWriter::new(file))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            tracing::info!(file = %path.display(), "dumping {}x{} pictures", p.width, p.height);
            self.files.insert(size, encoder);
        }
        let (cw, ch) = (p.width.div_ceil(2), p.height.div_ceil(2));
        pack(&mut self.packed[0], p.y, p.y_stride, p.width, p.height);
        pack(&mut self.packed[1], p.u, p.uv_stride, cw, ch);
        pack(&mut self.packed[2], p.v, p.uv_stride, cw, ch);
        let params = format!("Xcapture_us={capture_us}");
        let frame = y4m::Frame::new(
            [&self.packed[0], &self.packed[1], &self.packed[2]],
            Some(params.into_bytes()),
        );
        self.files
            .get_mut(&size)
            .expect("inserted above")
            .write_frame(&frame)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path_for(size).display()))?;
        self.frames += 1;
        Ok(())
    }
}

/// Copies `rows` rows of `width` bytes, `stride` apart, into `out` back to back.
fn pack(out: &mut Vec<u8>, plane: &[u8], stride: usize, width: usize, rows: usize) {
    out.clear();
    out.extend(plane.chunks(stride).take(rows).flat_map(|r| &r[..width]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_of_each_size_go_to_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.y4m");
        let mut dump = Y4mDump::create(&path, 30).unwrap();
        for (w, h, n) in [(8usize, 4usize, 2u8), (4, 2, 1)] {
            for i in 0..n {
                // Rows padded to a stride of w + 4, as a decoder would.
                let y = vec![i; (w + 4) * h];
                let c = vec![128u8; (w / 2 + 4) * h / 2];
                let planes = Planes {
                    width: w,
                    height: h,
                    y: &y,
                    y_stride: w + 4,
                    u: &c,
                    v: &c,
                    uv_stride: w / 2 + 4,
                };
                dump.write(&planes, 1000 + i as u64).unwrap();
            }
        }
        drop(dump);
        let mut d = y4m::decode(File::open(&path).unwrap()).unwrap();
        assert_eq!((d.get_width(), d.get_height()), (8, 4));
        let f = d.read_frame().unwrap();
        assert_eq!(f.get_y_plane(), &[0u8; 32][..]);
        assert_eq!(f.get_raw_params(), Some(&b"Xcapture_us=1000"[..]));
        assert_eq!(d.read_frame().unwrap().get_y_plane(), &[1u8; 32][..]);
        assert!(d.read_frame().is_err());
        let other = dir.path().join("out-4x2.y4m");
        let mut d = y4m::decode(File::open(other).unwrap()).unwrap();
        assert_eq!((d.get_width(), d.get_height()), (4, 2));
        assert!(d.read_frame().is_ok());
    }
}
