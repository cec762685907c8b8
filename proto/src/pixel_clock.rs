//! A timestamp drawn into the picture as a row of black and white blocks, so that a viewer
//! can read back from the decoded pixels when a frame was captured, independently of the
//! frame header. Used by the test source and by tests and benchmarks.
//!
//! Layout: the top [`ROW_HEIGHT`]-pixel band of the picture is split into [`BLOCKS`] equal
//! blocks; block `i` is white when bit `39 - i` of the 40-bit code word is set. The code word
//! is the capture time in milliseconds (low 32 bits) followed by an 8-bit check.

/// Number of blocks in the row: 32 bits of milliseconds and 8 bits of check.
pub const BLOCKS: usize = 40;
/// Height of the band, in pixels.
pub const ROW_HEIGHT: usize = 16;
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

/// Width of one block for a picture `width` pixels wide (the last block takes the rest).
pub fn block_width(width: usize) -> usize {
    width / BLOCKS
}

/// Reads the time back from a luma plane. Returns `None` when the band does not hold a valid
/// code word (too small a picture, or pixels too damaged to pass the check).
pub fn read(luma: &[u8], stride: usize, width: usize, height: usize) -> Option<u32> {
    let bw = block_width(width);
    if bw < 2 || height < ROW_HEIGHT || luma.len() < stride * ROW_HEIGHT {
        return None;
    }
    let mut word = 0u64;
    for i in 0..BLOCKS {
        // Average the block's inner quarter, away from edges blurred by compression.
        let (x0, x1) = (i * bw + bw / 4, i * bw + bw - bw / 4);
        let (y0, y1) = (ROW_HEIGHT / 4, ROW_HEIGHT - ROW_HEIGHT / 4);
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
        let bw = block_width(width);
        for y in 0..ROW_HEIGHT {
            for x in 0..width {
                let i = (x / bw).min(BLOCKS - 1);
                luma[y * width + x] = if block_is_white(ms, i) { WHITE } else { BLACK };
            }
        }
        luma
    }

    #[test]
    fn reads_back_what_was_drawn() {
        for ms in [0, 1, 33, 1_000_000, u32::MAX, 0xDEAD_BEEF] {
            for width in [320, 640, 1280, 643] {
                assert_eq!(read(&draw(ms, width), width, width, ROW_HEIGHT), Some(ms));
            }
        }
    }

    #[test]
    fn damaged_or_absent_codes_are_rejected() {
        let width = 640;
        let mut luma = draw(123_456, width);
        // Flip one block: the check no longer matches.
        let bw = block_width(width);
        for y in 0..ROW_HEIGHT {
            for x in 0..bw {
                luma[y * width + 5 * bw + x] ^= 0xFF;
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
