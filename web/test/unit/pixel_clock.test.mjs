// The timestamp row reader against the layout of PROTOCOL.md §5 (proto/src/pixel_clock.rs).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as pc from "../build/pixel_clock.js";

function draw(ms, width) {
  const luma = new Uint8Array(width * pc.ROW_HEIGHT).fill(128);
  for (let y = 0; y < pc.ROW_HEIGHT; y++)
    for (let i = 0; i < pc.BLOCKS; i++) {
      const [s, e] = pc.blockSpan(width, i);
      for (let x = s; x < e; x++) luma[y * width + x] = pc.blockIsWhite(ms, i) ? pc.WHITE : pc.BLACK;
    }
  return luma;
}

/** Nearest-neighbour copy at another width, the band as much shorter (as a scaled rung). */
function scaled(luma, from, to) {
  const band = Math.floor((pc.ROW_HEIGHT * to) / from);
  const out = new Uint8Array(to * pc.ROW_HEIGHT).fill(128);
  for (let y = 0; y < band; y++)
    for (let x = 0; x < to; x++) out[y * to + x] = luma[Math.floor((y * from) / to) * from + Math.floor((x * from + from / 2) / to)];
  return out;
}

test("reads back what was drawn", () => {
  for (const ms of [0, 1, 33, 1_000_000, 0xffffffff, 0xdeadbeef])
    for (const width of [320, 426, 640, 852, 1280, 643]) assert.equal(pc.readLuma(draw(ms, width), width, width, pc.ROW_HEIGHT), ms);
});

test("every rung of a ladder reads the top's row", () => {
  for (const [source, rungs] of [[1280, [640, 320]], [640, [426, 320]], [1920, [960, 480]]])
    for (const ms of [7, 1_234_567, 0xdeadbeef]) {
      const top = draw(ms, source);
      for (const to of rungs) assert.equal(pc.readLuma(scaled(top, source, to), to, to, pc.ROW_HEIGHT), ms, `${source}->${to}`);
    }
});

test("the check matches the Rust one", () => {
  // b0 ^ rotl(b1,1) ^ rotl(b2,2) ^ rotl(b3,3) ^ 0xA5 over 0x12345678:
  // 0x12 ^ 0x68 ^ 0x59 ^ 0xc3 ^ 0xa5 = 0x45
  assert.equal(pc.check(0x12345678), 0x45);
});

test("damaged or absent codes are rejected", () => {
  const width = 640;
  const luma = draw(123_456, width);
  const [s, e] = pc.blockSpan(width, 5);
  for (let y = 0; y < pc.ROW_HEIGHT; y++) for (let x = s; x < e; x++) luma[y * width + x] ^= 0xff;
  assert.equal(pc.readLuma(luma, width, width, pc.ROW_HEIGHT), undefined);
  assert.equal(pc.readLuma(new Uint8Array(width * 16).fill(128), width, width, 16), undefined);
  assert.equal(pc.readLuma(new Uint8Array(10), 10, 10, 1), undefined);
});

test("reads RGBA as a canvas holds it (studio-range luma converted to full-range RGB)", () => {
  const width = 640;
  const ms = 987_654;
  const rgba = new Uint8ClampedArray(width * 3 * 4);
  for (let y = 0; y < 3; y++)
    for (let i = 0; i < pc.BLOCKS; i++) {
      const [s, e] = pc.blockSpan(width, i);
      const v = pc.blockIsWhite(ms, i) ? 255 : 0;
      for (let x = s; x < e; x++) rgba.set([v, v, v, 255], (y * width + x) * 4);
    }
  assert.equal(pc.readRgba(rgba, width, 3), ms);
});

test("capture times map to the row's milliseconds (low 32 bits)", () => {
  assert.equal(pc.msOfCapture(1_234_567), 1234);
  assert.equal(pc.msOfCapture((2 ** 32 + 5) * 1000 + 999), 5);
});
