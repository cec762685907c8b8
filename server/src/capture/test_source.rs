//! The embedded test source: a moving picture and a tone, for machines without a camera or
//! microphone, and for tests and benchmarks that need to know what was sent.
//!
//! Video: scrolling colour bars, a bouncing box, the frame number and the capture clock in
//! large digits, and the capture time as a machine-readable row of blocks
//! ([`streamsocket_proto::pixel_clock`]). Once a second (on the frame captured exactly at a
//! whole second of the media clock) a white square flashes.
//!
//! Audio: a 440 Hz tone with a short 2 kHz click starting exactly at every whole second of the
//! media clock, the same instant as the flash, for A/V sync measurements.

use streamsocket_proto::pixel_clock;

/// Renders test-pattern frames as packed RGB.
pub struct VideoPattern {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    bars: Vec<u8>,
}

const BAR_COLOURS: [[u8; 3]; 8] = [
    [192, 192, 192],
    [192, 192, 0],
    [0, 192, 192],
    [0, 192, 0],
    [192, 0, 192],
    [192, 0, 0],
    [0, 0, 192],
    [32, 32, 32],
];

impl VideoPattern {
    pub fn new(width: usize, height: usize) -> Self {
        assert!(
            width >= 64 && height >= 64,
            "test pattern needs at least 64x64"
        );
        // One period of bars, twice over, so any scroll offset is a contiguous slice.
        let bar_w = width.div_ceil(BAR_COLOURS.len());
        let period = bar_w * BAR_COLOURS.len();
        let mut bars = Vec::with_capacity(period * 2 * 3);
        for x in 0..period * 2 {
            bars.extend_from_slice(&BAR_COLOURS[(x % period) / bar_w]);
        }
        Self {
            width,
            height,
            rgb: vec![0; width * height * 3],
            bars,
        }
    }

    /// Draws frame `index` captured at `capture_us`; `flash` marks the once-a-second flash.
    pub fn render(&mut self, index: u64, capture_us: u64, flash: bool) -> &[u8] {
        let (w, h) = (self.width, self.height);
        let row_bytes = w * 3;
        // Scrolling bars: each row is a slice of the precomputed band.
        let period = self.bars.len() / 6;
        let offset = (index as usize * 4) % period;
        let band = &self.bars[offset * 3..offset * 3 + row_bytes];
        for row in self.rgb.chunks_exact_mut(row_bytes) {
            row.copy_from_slice(band);
        }
        // Bouncing box.
        let size = h / 5;
        let (bx, by) = bounce(index, w - size, h - size);
        self.fill_rect(bx, by, size, size, [240, 120, 20]);
        // Text: frame number and clock.
        let secs = capture_us / 1_000_000;
        let text_scale = (h / 120).max(2);
        let line = 8 * text_scale + 4;
        let y0 = pixel_clock::ROW_HEIGHT + 8;
        self.fill_rect(
            8,
            y0 - 2,
            w.min(30 * 8 * text_scale) - 16,
            2 * line + 4,
            [0, 0, 0],
        );
        self.draw_text(12, y0, text_scale, &format!("FRAME {index}"));
        self.draw_text(
            12,
            y0 + line,
            text_scale,
            &format!(
                "{:02}:{:02}:{:02}.{:03}",
                secs / 3600,
                (secs / 60) % 60,
                secs % 60,
                (capture_us / 1000) % 1000
            ),
        );
        // Flash: a white square in the bottom-right corner.
        let flash_size = h / 4;
        let colour = if flash { [255, 255, 255] } else { [16, 16, 16] };
        self.fill_rect(
            w - flash_size - 8,
            h - flash_size - 8,
            flash_size,
            flash_size,
            colour,
        );
        // Machine-readable capture time along the top.
        let ms = (capture_us / 1000) as u32;
        for i in 0..pixel_clock::BLOCKS {
            let span = pixel_clock::block_span(w, i);
            let v = if pixel_clock::block_is_white(ms, i) {
                255
            } else {
                0
            };
            self.fill_rect(
                span.start,
                0,
                span.len(),
                pixel_clock::ROW_HEIGHT,
                [v, v, v],
            );
        }
        &self.rgb
    }

    fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        let x1 = (x + w).min(self.width);
        let y1 = (y + h).min(self.height);
        if x >= x1 {
            return;
        }
        for row in y..y1 {
            let start = (row * self.width + x) * 3;
            let end = (row * self.width + x1) * 3;
            for px in self.rgb[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&rgb);
            }
        }
    }

    fn draw_text(&mut self, x: usize, y: usize, scale: usize, text: &str) {
        use font8x8::legacy::BASIC_LEGACY;
        for (n, ch) in text.chars().enumerate() {
            let glyph = BASIC_LEGACY.get(ch as usize).copied().unwrap_or([0; 8]);
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits >> gx & 1 == 1 {
                        self.fill_rect(
                            x + (n * 8 + gx) * scale,
                            y + gy * scale,
                            scale,
                            scale,
                            [255, 255, 255],
                        );
                    }
                }
            }
        }
    }
}

fn bounce(index: u64, max_x: usize, max_y: usize) -> (usize, usize) {
    let tri = |t: u64, m: usize| {
        let m = m.max(1) as u64;
        let p = t % (2 * m);
        (if p < m { p } else { 2 * m - p }) as usize
    };
    (tri(index * 5, max_x), tri(index * 3, max_y))
}

/// Whether video frame `index` at `fps` is the one captured exactly on a whole second.
pub fn is_flash_frame(index: u64, fps: u32) -> bool {
    index % fps as u64 == 0
}

/// Generates the test tone with its once-a-second click.
pub struct AudioTone {
    sample_rate: u32,
}

/// Tone frequency and level (about -12 dBFS).
const TONE_HZ: f32 = 440.0;
const TONE_AMPLITUDE: f32 = 0.25;
/// The click: 5 ms of 2 kHz at -2 dBFS.
const CLICK_HZ: f32 = 2000.0;
const CLICK_AMPLITUDE: f32 = 0.8;
const CLICK_MS: u32 = 5;

impl AudioTone {
    pub fn new(sample_rate: u32) -> Self {
        Self { sample_rate }
    }

    /// Fills `out` (mono) with the samples starting at absolute sample `first_sample`.
    pub fn fill(&self, first_sample: u64, out: &mut [i16]) {
        let rate = self.sample_rate as u64;
        let click_len = rate * CLICK_MS as u64 / 1000;
        for (i, s) in out.iter_mut().enumerate() {
            let n = first_sample + i as u64;
            let t = (n % rate) as f32 / rate as f32;
            let mut v = (2.0 * std::f32::consts::PI * TONE_HZ * t).sin() * TONE_AMPLITUDE;
            if n % rate < click_len {
                v = (2.0 * std::f32::consts::PI * CLICK_HZ * t).sin() * CLICK_AMPLITUDE;
            }
            *s = (v * i16::MAX as f32) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_carries_a_readable_timestamp_after_colour_conversion() {
        let mut p = VideoPattern::new(640, 360);
        let rgb = p.render(42, 1_234_567_000, false).to_vec();
        // Luma of a grey pixel is the grey level mapped to video range; the reader thresholds
        // at the midpoint, so converting RGB grey to luma keeps the bits.
        let luma: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| (16 + (p[0] as u32 * 219 / 255)) as u8)
            .collect();
        assert_eq!(pixel_clock::read(&luma, 640, 640, 360), Some(1_234_567));
    }

    #[test]
    fn flash_and_click_fall_on_whole_seconds() {
        assert!(is_flash_frame(0, 30) && is_flash_frame(60, 30) && !is_flash_frame(31, 30));
        let tone = AudioTone::new(48_000);
        let mut buf = vec![0i16; 960];
        tone.fill(48_000, &mut buf);
        let peak_click = buf[..240].iter().map(|s| s.unsigned_abs()).max().unwrap();
        let peak_tone = buf[480..].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            peak_click > 2 * peak_tone,
            "click {peak_click} tone {peak_tone}"
        );
    }
}
