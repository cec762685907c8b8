//! A timestamp drawn into the picture as a row of black and white blocks, so that a viewer
//! can read back from the decoded pixels when a frame was captured, independently of the
//! frame header. Used by the test source and by tests and benchmarks.
//!
//! Layout: the top [`ROW_HEIGHT`]-pixel band of the picture (at the source's size; scaled
//! with the picture in lower renditions, so readers use [`READ_ROWS`]) is split into
//! [`BLOCKS`] blocks,
//! block `i` spanning columns `i * width / 40` to `(i + 1) * width / 40` (integer division:
//! the same in a scaled copy of the picture, so every rendition of the ladder carries a
//! readable row); block `i` is white when bit `39 - i` of the 40-bit code word is set. The
//! code word is the capture time in milliseconds (low 32 bits) followed by an 8-bit check.

/// Number of blocks in the row: 32 bits of milliseconds and 8 bits of check.
pub const BLOCKS: usize = 40;
/// Height of the band, in pixels.
pub const ROW_HEIGHT: usize = 16;
/// The rows a reader averages: inside the band even in a rendition a quarter of the source's
/// height (where the band is 4 rows), and off the picture's very first row.
pub const READ_ROWS: (usize, usize) = (1, 3);
/// Luma of a black and a white block (video range).
pub const BLACK: u8 = 16;
pub const WHITE: u8 = 235;

fn check(ms: u32) -> u8 {
    let b = ms.to_be_bytes();
    (b[0] ^ b[1].rotate_left(1) ^ b[2].rotate_left(2) ^ b[3].rotate_left(3)) ^ 0xA5
}

/// The 40-bit code word for a capture time in milliseconds, most significant bit first.
pub fn code_word(ms: u32) -> u64 {
    ((ms as u64) << 8) | check(ms) as u64
}

/// Whether block `i` (0 = leftmost) is white for the given time.
pub fn block_is_white(ms: u32, i: usize) -> bool {
    (code_word(ms) >> (BLOCKS - 1 - i)) & 1 == 1
}

/// The columns of block `i` in a picture `width` pixels wide: `start..end`.
pub fn block_span(width: usize, i: usize) -> std::ops::Range<usize> {
    i * width / BLOCKS..(i + 1) * width / BLOCKS
}

/// Reads the time back from a luma plane. Returns `None` when the band does not hold a valid
/// code word (too small a picture, or pixels too damaged to pass the check).
pub fn read(luma: &[u8], stride: usize, width: usize, height: usize) -> Option<u32> {
    if width / BLOCKS < 2 || height < ROW_HEIGHT || luma.len() < stride * (ROW_HEIGHT - 1) + width {
        return None;
    }
    let mut word = 0u64;
    for i in 0..BLOCKS {
        // Average the block's inner half, away from edges blurred by compression or scaling.
        let span = block_span(width, i);
        let quarter = span.len() / 4;
        let (x0, x1) = (span.start + quarter, span.end - quarter);
        let (y0, y1) = READ_ROWS;
        let mut sum = 0u32;
        let mut n = 0u32;
        for y in y0..y1 {
            for &p in &luma[y * stride + x0..y * stride + x1] {
                sum += p as u32;
                n += 1;
            }
        }
        let white = sum / n > (BLACK as u32 + WHITE as u32) / 2;
        word = (word << 1) | white as u64;
    }
    let ms = (word >> 8) as u32;
    (word as u8 == check(ms)).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(ms: u32, width: usize) -> Vec<u8> {
        let mut luma = vec![128u8; width * ROW_HEIGHT];
        for y in 0..ROW_HEIGHT {
            for i in 0..BLOCKS {
                for x in block_span(width, i) {
                    luma[y * width + x] = if block_is_white(ms, i) { WHITE } else { BLACK };
                }
            }
        }
        luma
    }

    /// A nearest-neighbour copy of a band `from` pixels wide at `to` pixels wide, and as
    /// much shorter (the picture below the band mid-grey), as a scaler makes a lower
    /// rendition.
    fn scaled(luma: &[u8], from: usize, to: usize) -> Vec<u8> {
        let band = ROW_HEIGHT * to / from;
        let mut out = vec![128u8; to * ROW_HEIGHT];
        for y in 0..band {
            for x in 0..to {
                out[y * to + x] = luma[(y * from / to) * from + (x * from + from / 2) / to];
            }
        }
        out
    }

    #[test]
    fn reads_back_what_was_drawn() {
        for ms in [0, 1, 33, 1_000_000, u32::MAX, 0xDEAD_BEEF] {
            for width in [320, 426, 640, 852, 1280, 643] {
                assert_eq!(read(&draw(ms, width), width, width, ROW_HEIGHT), Some(ms));
            }
        }
    }

    #[test]
    fn every_rung_of_a_ladder_reads_the_tops_row() {
        // Drawn at the source size, read from scaled copies: the default ladders' rungs.
        for (source, rungs) in [(1280, [640, 320]), (640, [426, 320]), (1920, [960, 480])] {
            for ms in [7, 1_234_567, 0xDEAD_BEEF] {
                let top = draw(ms, source);
                for to in rungs {
                    let copy = scaled(&top, source, to);
                    assert_eq!(
                        read(&copy, to, to, ROW_HEIGHT),
                        Some(ms),
                        "{source} -> {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn damaged_or_absent_codes_are_rejected() {
        let width = 640;
        let mut luma = draw(123_456, width);
        // Flip one block: the check no longer matches.
        for y in 0..ROW_HEIGHT {
            for x in block_span(width, 5) {
                luma[y * width + x] ^= 0xFF;
            }
        }
        assert_eq!(read(&luma, width, width, ROW_HEIGHT), None);
        assert_eq!(
            read(&vec![128; width * ROW_HEIGHT], width, width, ROW_HEIGHT),
            None
        );
        assert_eq!(read(&[0; 10], 10, 10, 1), None);
    }
}
