// Reads the test source's timestamp row (PROTOCOL.md §5; proto/src/pixel_clock.rs) back from
// the picture as shown, so a test can prove the canvas shows the frame its header names.
// Pure: works on plain pixel arrays.

export const BLOCKS = 40;
/** The band's height at the source's size. */
export const ROW_HEIGHT = 16;
/** Rows averaged: inside the band even where a lower rendition scales it to 4 rows. */
export const READ_ROWS: readonly [number, number] = [1, 3];
export const BLACK = 16;
export const WHITE = 235;
const THRESHOLD = (BLACK + WHITE) / 2;

function rotl8(v: number, n: number): number {
  return ((v << n) | (v >> (8 - n))) & 0xff;
}

/** The 8-bit check over the millisecond value's big-endian bytes. */
export function check(ms: number): number {
  const b0 = (ms >>> 24) & 0xff;
  const b1 = (ms >>> 16) & 0xff;
  const b2 = (ms >>> 8) & 0xff;
  const b3 = ms & 0xff;
  return (b0 ^ rotl8(b1, 1) ^ rotl8(b2, 2) ^ rotl8(b3, 3) ^ 0xa5) & 0xff;
}

/** Whether block i (0 = leftmost) is white for a capture time in ms. */
export function blockIsWhite(ms: number, i: number): boolean {
  // 40-bit word: 32 bits of ms then 8 of check, most significant first.
  return i < 32 ? ((ms >>> (31 - i)) & 1) === 1 : ((check(ms) >> (39 - i)) & 1) === 1;
}

/** Columns of block i in a picture `width` wide: [start, end). */
export function blockSpan(width: number, i: number): [number, number] {
  return [Math.floor((i * width) / BLOCKS), Math.floor(((i + 1) * width) / BLOCKS)];
}

/** The capture time's milliseconds as the row holds them: low 32 bits. */
export function msOfCapture(capture_us: number): number {
  return Number(BigInt(Math.floor(capture_us / 1000)) & 0xffffffffn);
}

/** Reads the time from luma samples `sample(x, y)`; undefined when the row does not hold a
 * valid code (too small a picture, damaged pixels, not the test source). */
export function readWith(sample: (x: number, y: number) => number, width: number, height: number): number | undefined {
  if (Math.floor(width / BLOCKS) < 2 || height < READ_ROWS[1]) return undefined;
  let ms = 0;
  let chk = 0;
  for (let i = 0; i < BLOCKS; i++) {
    const [start, end] = blockSpan(width, i);
    // The block's inner half, away from edges blurred by compression or scaling.
    const quarter = Math.floor((end - start) / 4);
    let sum = 0;
    let n = 0;
    for (let y = READ_ROWS[0]; y < READ_ROWS[1]; y++) {
      for (let x = start + quarter; x < end - quarter; x++) {
        sum += sample(x, y);
        n++;
      }
    }
    // Integer mean as the Rust reader takes it, then the same threshold.
    const white = Math.floor(sum / n) > Math.floor(THRESHOLD) ? 1 : 0;
    if (i < 32) ms = ((ms << 1) | white) >>> 0;
    else chk = (chk << 1) | white;
  }
  return chk === check(ms) ? ms : undefined;
}

/** Reads from a luma plane (one byte per pixel). */
export function readLuma(luma: Uint8Array, stride: number, width: number, height: number): number | undefined {
  return readWith((x, y) => luma[y * stride + x]!, width, height);
}

/** Reads from RGBA pixels (a canvas's ImageData): the studio-range luma (BT.601) the encoder
 * saw is recovered from the RGB the decoder's colour conversion produced. */
export function readRgba(rgba: Uint8ClampedArray | Uint8Array, width: number, height: number): number | undefined {
  return readWith(
    (x, y) => {
      const p = (y * width + x) * 4;
      return 16 + (65.481 * rgba[p]! + 128.553 * rgba[p + 1]! + 24.966 * rgba[p + 2]!) / 255;
    },
    width,
    height,
  );
}
