// window.streamsocket.stats() has the native --stats-json shape: the same field names and
// nesting as client/src/metrics/testdata/stats.json (the file the native tests pin).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Stats, Latency } from "../build/stats.js";
import { AutoQuality } from "../build/auto_quality.js";
import { bannerLines, statsLines } from "../build/overlay.js";

const native = JSON.parse(readFileSync(new URL("../../../client/src/metrics/testdata/stats.json", import.meta.url)));

/** The key paths of an object, maps of sizes collapsed (their keys are data, not names). */
function paths(v, at = "") {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return [at];
  if (at.endsWith("frames_by_size")) return [at];
  return Object.keys(v).sort().flatMap((k) => paths(v[k], at ? `${at}.${k}` : k));
}

test("stats() has every field of --stats-json, nested the same, and no other", () => {
  const s = new Stats(0);
  // Latencies with values have a mean, as in the sample.
  const fill = (o) => {
    for (const v of Object.values(o)) if (v instanceof Latency) v.record(1000);
    else if (v && typeof v === "object" && !(v instanceof Map)) fill(v);
  };
  fill(s);
  s.avSkew.onFlash(1, 10);
  s.avSkew.onClick(1, 0);
  const mine = s.snapshot(1000);
  // The browser cannot read QUIC counters: transport is null, as native before its end.
  const nativeShape = paths({ ...native, transport: null });
  assert.deepEqual(paths(mine), nativeShape);
});

test("latency reports are in ms with two decimals, null while empty", () => {
  const l = new Latency();
  assert.deepEqual(l.report(), { count: 0, max: null, p50: null, p95: null, p99: null });
  l.record(12_345);
  assert.equal(l.report().p50, 12.35);
  assert.equal(l.report().mean, 12.35);
});

test("automatic quality steps down at once on missed deadlines and up after 5 clean seconds", () => {
  const a = new AutoQuality([1500, 1000, 500], 0, 300_000);
  const obs = { frames_reset: 0, frames_skipped: 0, frames_dropped_busy: 0, video_bytes: 0, audio_played: 0, audio_concealed: 0, latency_p50_us: 100_000, latency_p90_us: 110_000, rtt_us: 20_000 };
  let bytes = 0;
  const next = (extra = {}) => ({ ...obs, video_bytes: (bytes += 250_000), ...extra });
  assert.equal(a.tick(next(), 0), undefined, "the first sets the baseline");
  const down = a.tick(next({ frames_reset: 4 }), 0);
  assert.equal(down.to, 1);
  assert.equal(down.reason, "4 frames missed their deadline");
  let up;
  for (let i = 0; i < 10 && !up; i++) up = a.tick(next({ frames_reset: 4 }), 1);
  assert.equal(up.to, 0);
  assert.match(up.reason, /s without trouble/);
});

test("the overlay names what the issue asks for; the banner says what is wrong", () => {
  const snap = new Stats(0).snapshot(0);
  snap.rendition = 1;
  snap.auto = true;
  const text = statsLines(snap, { fps: 29.5, kbps: 800 }, "localhost:4443", ["360p", "240p"], 42, false).join("\n");
  for (const needle of ["rendition 2 240p (auto)", "29.5 fps", "800 kbit/s", "latency p50", "skipped", "dropped", "audio delay 42 ms", "A/V skew", "loss"])
    assert.ok(text.includes(needle), `${needle}: ${text}`);
  assert.equal(bannerLines({ broadcastPaused: false, paused: false, lastDecodedUs: 1_000_000 }, 1_500_000), undefined);
  assert.match(bannerLines({ broadcastPaused: false, paused: false, lastDecodedUs: 1_000_000 }, 3_200_000).join(" "), /NO PICTURE FOR 2 S/);
  assert.match(bannerLines({ reconnecting: { reason: "timed out", attempt: 2, sinceUs: 1e6 }, broadcastPaused: false, paused: false }, 5e6).join(" "), /CONNECTION LOST timed out reconnecting: attempt 3 \(4 s\)/);
  assert.deepEqual(bannerLines({ broadcastPaused: true, paused: false }, 0), ["PAUSED BY THE BROADCASTER"]);
});
