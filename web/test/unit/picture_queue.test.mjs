// The native presenter's tests (client/src/video/presenter.rs), ported.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PictureQueue, CAPACITY } from "../build/picture_queue.js";

const picture = (capture_us) => ({ capture_us });

test("pictures wait for the audio clock", () => {
  const q = new PictureQueue();
  q.put(picture(1_000_000));
  q.put(picture(1_033_000));
  // Audio plays 100 ms behind capture: a picture is shown 20 ms before its sound.
  assert.equal(q.takeDue(1_079_999, 100_000, true).picture, undefined);
  assert.equal(q.takeDue(1_080_000, 100_000, true).picture.capture_us, 1_000_000);
  assert.equal(q.takeDue(1_100_000, 100_000, true).picture, undefined);
  assert.equal(q.takeDue(1_113_000, 100_000, true).picture.capture_us, 1_033_000);
});

test("without audio pictures are due at once", () => {
  const q = new PictureQueue();
  q.put(picture(5_000_000));
  assert.ok(q.takeDue(5_000_000, undefined, true).picture);
});

test("a newer due picture replaces older ones and a late one is dropped", () => {
  const q = new PictureQueue();
  for (let i = 0; i < 3; i++) q.put(picture(1_000_000 + i * 33_000));
  // At 1.170 s all three are due; the newest is 4 ms past its time: shown.
  let due = q.takeDue(1_170_000, 100_000, true);
  assert.equal(due.replaced.length, 2);
  assert.equal(due.picture.capture_us, 1_066_000);
  // One that is 20 ms past its time is dropped.
  q.put(picture(1_099_000));
  due = q.takeDue(1_219_000, 100_000, true);
  assert.equal(due.picture, undefined);
  assert.equal(due.tooLate.length, 1);
  // Unless audio cannot wait any longer: then it is shown, and counted.
  q.put(picture(1_132_000));
  due = q.takeDue(1_252_000, 100_000, false);
  assert.ok(due.picture);
  assert.deepEqual([due.tooLate.length, due.shownLate], [0, 1]);
});

test("the queue is bounded", () => {
  const q = new PictureQueue();
  let dropped = 0;
  for (let i = 0; i < CAPACITY + 4; i++) if (q.put(picture(i))) dropped++;
  assert.equal(dropped, 4);
  assert.equal(q.length, CAPACITY);
  assert.equal(q.drain().length, CAPACITY);
  assert.equal(q.length, 0);
});
