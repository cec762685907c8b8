// Audio playout with injected clocks: the page clock is t (µs), the server's is t + 5 s, the
// audio context's speaker frame is t × 48 000 / 1e6 and the renderer runs 20 ms ahead.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Playout, SETTLING_US, START_US, MIN_TRANSITS } from "../build/playout.js";

const OFFSET = 5_000_000;
const LEAD = 20_000;
const clocks = (t) => ({ serverNowUs: t + OFFSET, outputFrame: (t * 48) / 1000, processingFrame: Math.ceil(((t + LEAD) * 48) / 1000), outputLeadUs: LEAD });
const counters = () => ({ packets_decoded: 0, packets_concealed: 0, packets_late: 0, packets_stretched: 0, packets_dropped_catch_up: 0, target_delay_ms: 0, jitter_ms: 0 });

/** Packets every 20 ms from page time `from`, each arriving `transit(i)` after its capture
 * (server clock) and placed at once; returns the frames they were placed at. */
function run(p, n, { from, transit = () => 20_000, skip = () => false, first = 0 }) {
  const frames = [];
  for (let i = first; i < first + n; i++) {
    const capture = OFFSET + from + i * 20_000;
    const t = capture - OFFSET + transit(i);
    if (skip(i)) continue;
    if (p.arrive(i, capture, 20_000, t, t + OFFSET)) frames.push(p.place(i, capture, 960, clocks(t)));
    p.account(clocks(t));
    p.update(clocks(t), undefined);
  }
  return frames;
}

test("packets join sample-exactly and play at the target delay", () => {
  const n = counters();
  const p = new Playout(n, 300_000, 0);
  const frames = run(p, 50, { from: SETTLING_US });
  for (let i = 1; i < frames.length; i++) assert.equal(frames[i] - frames[i - 1], 960);
  // Target: p99 transit 20 ms + 5 ms + the 20 ms the renderer runs ahead.
  assert.equal(p.targetUs, 45_000);
  const d = p.delayUs(clocks(SETTLING_US + 49 * 20_000 + 20_000));
  assert.ok(Math.abs(d - 45_000) <= 10_000 + 1, `delay ${d}`);
  assert.equal(n.packets_late, 0);
  assert.equal(n.packets_concealed, 0);
});

test("the first packet anchors where it can still play; the guess is not corrected before measuring", () => {
  const n = counters();
  const p = new Playout(n, 300_000, 0);
  // A first packet 80 ms old (a backlog): START_US would already be past.
  const capture = OFFSET + 1_000_000;
  const t = 1_080_000;
  assert.ok(p.arrive(0, capture, 20_000, t, t + OFFSET));
  const frame = p.place(0, capture, 960, clocks(t));
  assert.ok(frame > clocks(t).processingFrame, "not late");
  assert.ok(p.delayUs(clocks(t)) > START_US);
  p.update(clocks(t), undefined);
  assert.equal(n.packets_dropped_catch_up + n.packets_stretched, 0, `fewer than ${MIN_TRANSITS} transits`);
});

test("a lost packet is concealed once a later one is due; late ones are counted", () => {
  const n = counters();
  const p = new Playout(n, 300_000, 0);
  run(p, 40, { from: SETTLING_US, skip: (i) => i === 20 });
  run(p, 5, { from: SETTLING_US, first: 40 });
  assert.equal(n.packets_concealed, 1);
  assert.equal(p.lost, 1);
  assert.ok(p.played >= 40);
  // A packet arriving after its time has passed is late, not played (100 ms after capture,
  // with the delay about 45 ms: not so long a silence that playout starts over).
  const capture = OFFSET + SETTLING_US + 46 * 20_000;
  const t = capture - OFFSET + 100_000;
  p.arrive(46, capture, 20_000, t - 1, t - 1 + OFFSET);
  assert.equal(p.place(46, capture, 960, clocks(t)), undefined);
  assert.equal(n.packets_late, 1);
});

test("the delay follows the target: catch-up over it, stretch under it", () => {
  const n = counters();
  const p = new Playout(n, 300_000, 0);
  // Slow transits first (the target rises to them), then fast ones for longer than the
  // window: the target falls and the delay is caught up.
  run(p, 50, { from: SETTLING_US, transit: () => 120_000 });
  assert.ok(p.targetUs >= 140_000, `${p.targetUs}`);
  run(p, 200, { from: SETTLING_US, first: 50, transit: () => 20_000 });
  assert.equal(p.targetUs, 45_000);
  assert.ok(n.packets_dropped_catch_up > 0);
  const t = SETTLING_US + 250 * 20_000;
  const d = p.delayUs(clocks(t));
  assert.ok(d <= 45_000 + 20_000 && d >= 45_000 - 10_000, `delay ${d}`);
});

test("after a silence longer than 100 ms plus the target, playout starts over", () => {
  const n = counters();
  const p = new Playout(n, 300_000, 0);
  run(p, 20, { from: SETTLING_US });
  const capture = OFFSET + SETTLING_US + 40 * 20_000;
  const t = capture - OFFSET + 20_000;
  assert.ok(p.arrive(40, capture, 20_000, t, t + OFFSET));
  assert.ok(p.place(40, capture, 960, clocks(t)) > clocks(t).processingFrame, "re-buffered, not late");
  assert.equal(n.packets_late, 0);
});

test("the settling backlog is dropped, not counted lost, and not measured", () => {
  const n = counters();
  const p = new Playout(n, 300_000, 0);
  assert.equal(p.arrive(0, OFFSET, 20_000, 150_000, 150_000 + OFFSET), false);
  assert.equal(n.packets_dropped_catch_up, 1);
  assert.equal(n.packets_concealed, 0);
});

test("audio at its ceiling cannot wait for pictures", () => {
  const n = counters();
  const p = new Playout(n, 60_000, 0);
  run(p, 30, { from: SETTLING_US, transit: () => 50_000 });
  assert.equal(p.targetUs, 60_000, "held at the ceiling");
  assert.equal(p.canWait(clocks(SETTLING_US + 30 * 20_000 + 50_000)), false);
});
