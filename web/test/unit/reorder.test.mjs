// The native viewer's reorder tests (client/src/video/reorder.rs), ported.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Reorder, MAX_PENDING, REASK_KEYFRAME_US } from "../build/reorder.js";

const F = (seq, keyframe = false) => ({ seq, keyframe });
const seqs = (r) => r.frames.map((f) => f.seq);

test("in-order frames pass straight through", () => {
  const r = new Reorder(100_000);
  assert.deepEqual(seqs(r.push(F(0, true), 0)), [0]);
  assert.deepEqual(seqs(r.push(F(1), 0)), [1]);
  assert.equal(r.skipped, 0);
});

test("out-of-order frames are reordered; nothing before the first keyframe", () => {
  const r = new Reorder(100_000);
  assert.deepEqual(seqs(r.push(F(5), 0)), []);
  assert.deepEqual(seqs(r.push(F(6, true), 0)), [6]);
  assert.deepEqual(seqs(r.push(F(8), 0)), []);
  assert.deepEqual(seqs(r.push(F(7), 0)), [7, 8]);
  assert.equal(r.skipped, 0);
});

test("a lost frame asks for a keyframe after the gap timeout, again every 500 ms, and skips to it", () => {
  const r = new Reorder(150_000);
  r.push(F(0, true), 0);
  r.push(F(1), 0);
  assert.deepEqual(seqs(r.push(F(3), 0)), []);
  assert.equal(r.poll(50_000).needKeyframe, false, "still waiting");
  assert.equal(r.gapDeadline(), 150_000);
  assert.equal(r.poll(150_000).needKeyframe, true);
  assert.equal(r.poll(160_000).needKeyframe, false, "asked once");
  assert.equal(r.gapDeadline(), 150_000 + REASK_KEYFRAME_US);
  assert.equal(r.poll(150_000 + REASK_KEYFRAME_US).needKeyframe, true, "asked again");
  r.push(F(4), 0);
  assert.deepEqual(seqs(r.push(F(5, true), 0)), [5]);
  assert.equal(r.skipped, 3, "2, 3, 4");
  assert.equal(r.keyframeWaits, 1);
  assert.equal(r.gapDeadline(), undefined);
});

test("a slow retransmission before the keyframe loses nothing", () => {
  const r = new Reorder(100_000);
  r.push(F(0, true), 0);
  r.push(F(2), 0);
  assert.equal(r.poll(100_000).needKeyframe, true);
  assert.deepEqual(seqs(r.push(F(1), 250_000)), [1, 2]);
  assert.equal(r.skipped, 0);
});

test("a keyframe completing after its successors is decoded with them", () => {
  const r = new Reorder(100_000);
  r.push(F(1), 0);
  r.push(F(2), 0);
  assert.deepEqual(seqs(r.push(F(0, true), 0)), [0, 1, 2]);
});

test("a newer keyframe ends the wait at once; the missing frame is then late", () => {
  const r = new Reorder(10_000_000);
  r.push(F(0, true), 0);
  r.push(F(2), 0);
  assert.deepEqual(seqs(r.push(F(3, true), 0)), [3]);
  assert.equal(r.skipped, 2);
  r.push(F(1), 0);
  assert.equal(r.late, 1);
});

test("decoder failure waits for a keyframe", () => {
  const r = new Reorder(100_000);
  r.push(F(0, true), 0);
  assert.equal(r.decoderFailed().needKeyframe, true);
  assert.deepEqual(seqs(r.push(F(1), 0)), []);
  assert.deepEqual(seqs(r.push(F(2, true), 0)), [2]);
  assert.equal(r.skipped, 1);
});

test("the awaited frame decodes even with the pending set full; pending is bounded", () => {
  const r = new Reorder(10_000_000);
  r.push(F(0, true), 0);
  const last = MAX_PENDING + 1;
  for (let s = 2; s <= last; s++) r.push(F(s), 0);
  assert.equal(r.pendingCount, MAX_PENDING);
  assert.deepEqual(seqs(r.push(F(1), 0)), Array.from({ length: last }, (_, i) => i + 1));
  const b = new Reorder(10_000_000);
  b.push(F(0, true), 0);
  for (let s = 2; s < 200; s++) b.push(F(s), 0);
  assert.ok(b.pendingCount <= MAX_PENDING);
});
