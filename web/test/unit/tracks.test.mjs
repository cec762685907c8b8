// Rendition switching across reorder tracks, as the native decoder does it: the picture moves
// at the new rendition's first decodable frame and never stops.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tracks } from "../build/tracks.js";

const F = (rendition, seq, keyframe = false) => ({ rendition, seq, keyframe });
const seqs = (r) => r.decode.map((f) => `${f.rendition}:${f.seq}`);

test("the old rendition plays until the new one's first keyframe", () => {
  const t = new Tracks();
  t.confirm(0);
  assert.deepEqual(seqs(t.push(F(0, 10, true), 0)), ["0:10"]);
  t.confirm(1); // the server confirmed the switch
  assert.deepEqual(seqs(t.push(F(0, 11), 0)), ["0:11"], "the old one still plays");
  assert.deepEqual(seqs(t.push(F(1, 50), 0)), [], "nothing of the new one before its keyframe");
  const sw = t.push(F(1, 51, true), 0);
  assert.equal(sw.switchedTo, 1);
  assert.deepEqual(seqs(sw), ["1:51"]);
  assert.deepEqual(seqs(t.push(F(0, 12), 0)), [], "the old one is left");
  assert.deepEqual(seqs(t.push(F(1, 52), 0)), ["1:52"]);
  assert.equal(t.shownRendition, 1);
});

test("a later confirmation supersedes an earlier one; an abandoned switch keeps the picture", () => {
  const t = new Tracks();
  t.confirm(0);
  t.push(F(0, 1, true), 0);
  t.confirm(1);
  t.confirm(2);
  assert.deepEqual(seqs(t.push(F(1, 5, true), 0)), [], "1 is no longer wanted");
  t.abandonSwitch();
  assert.deepEqual(seqs(t.push(F(2, 9, true), 0)), []);
  assert.deepEqual(seqs(t.push(F(0, 2), 0)), ["0:2"]);
});

test("gaps ask for a keyframe of their own rendition; resync does not count the gap", () => {
  const t = new Tracks();
  t.confirm(0);
  t.push(F(0, 0, true), 0);
  t.push(F(0, 2), 0);
  assert.equal(t.gapDeadline(), 150_000);
  assert.deepEqual(t.poll(150_000).keyframes, [0]);
  assert.deepEqual(t.decoderFailed().keyframes, [0]);
  t.resync();
  assert.deepEqual(seqs(t.push(F(0, 90, true), 0)), ["0:90"]);
  assert.equal(t.skipped, 0, "the resync's gap is not a loss");
  t.push(F(0, 92), 0);
  assert.deepEqual(seqs(t.push(F(0, 93, true), 0)), ["0:93"]);
  assert.equal(t.skipped, 2, "91 missing, 92 undecodable");
});
