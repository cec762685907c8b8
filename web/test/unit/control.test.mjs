// The page's control core with injected time: pings, reports, rendition requests, keyframe
// requests, reconnection (as the native ViewerControl's tests).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ViewerControl } from "../build/control.js";
import { ClockSync, offsetOf, rttOf } from "../build/clock_sync.js";
import { Backoff } from "../build/backoff.js";
import { worthRetrying } from "../build/refusals.js";
import { forKey } from "../build/keys.js";

const welcome = {
  version: 3, session_id: 1n, server_time_us: 5_000_000, video_codec: 1,
  renditions: [
    { id: 0, name: "360p", width: 640, height: 360, fps: 30, bitrate_kbps: 800 },
    { id: 1, name: "240p", width: 426, height: 240, fps: 30, bitrate_kbps: 400 },
    { id: 2, name: "180p", width: 320, height: 180, fps: 30, bitrate_kbps: 240 },
  ],
  rendition: 0,
  audio: { codec: 1, sample_rate: 48000, channels: 1, frame_duration_us: 10000, bitrate_bps: 48000 },
  audio_bitrates: [24000, 48000, 96000],
};
const sent = (actions) => actions.filter((a) => a.kind === "send").map((a) => a.message);
const connected = () => {
  const c = new ViewerControl({ latencyTargetUs: 300_000, random: () => 0.5 });
  c.handle(0, { kind: "connected", welcome });
  return c;
};

test("five pings 50 ms apart, then one a second", () => {
  const c = connected();
  const at = [];
  let now = 0;
  while (now <= 3_000_000) {
    for (const m of sent(c.handle(now, { kind: "timer" }))) if (m.type === "Ping") at.push(m.client_time_us);
    now = c.nextTimerUs();
  }
  assert.deepEqual(at.slice(0, 7), [0, 50_000, 100_000, 150_000, 200_000, 1_200_000, 2_200_000]);
});

test("the clock follows the smallest round trip of the last 16", () => {
  const s = new ClockSync();
  s.setCoarse(1000, 0);
  assert.equal(s.offsetUs(), 1000);
  s.add({ client_send: 0, server_receive: 1_090_000, server_send: 1_090_000, client_receive: 100_000 });
  s.add({ client_send: 200_000, server_receive: 1_201_000, server_send: 1_201_000, client_receive: 202_000 });
  assert.equal(s.offsetUs(), 1_000_000);
  assert.equal(s.minRttUs(), 2000);
  const e = { client_send: 5000, server_receive: 1_015_000, server_send: 1_016_000, client_receive: 26_000 };
  assert.equal(offsetOf(e), 1_000_000);
  assert.equal(rttOf(e), 20_000);
  for (let i = 0; i < 16; i++) s.add({ client_send: i, server_receive: 100 + i, server_send: 100 + i, client_receive: i + 10 });
  assert.equal(s.minRttUs(), 10, "old samples leave the window");
});

test("pongs are matched to their pings", () => {
  const c = connected();
  const [ping] = sent(c.handle(0, { kind: "timer" }));
  c.handle(2000, { kind: "server", message: { type: "Pong", seq: ping.seq, client_time_us: 0, server_receive_us: 9_001_000, server_send_us: 9_001_000 } });
  assert.equal(c.clockSync.offsetUs(), 9_000_000);
  // A pong for a ping never sent changes nothing.
  c.handle(3000, { kind: "server", message: { type: "Pong", seq: 99, client_time_us: 7, server_receive_us: 1, server_send_us: 1 } });
  assert.equal(c.clockSync.offsetUs(), 9_000_000);
});

test("receiver reports every 2 s with at least 20 packets due", () => {
  const c = connected();
  const reports = [];
  let played = 0;
  let lost = 0;
  let now = 0;
  while (now <= 6_500_000) {
    for (const a of c.handle(now, { kind: "timer" })) {
      if (a.kind === "sample") {
        const out = c.handle(now, { kind: "sampled", readings: { observation: { frames_reset: 0, frames_skipped: 0, frames_dropped_busy: 0, video_bytes: 0, audio_played: played, audio_concealed: lost }, audio_played: played, audio_lost: lost } });
        for (const m of sent(out)) if (m.type === "ReceiverReport") reports.push([now, m.audio_loss_permille]);
      }
    }
    now = c.nextTimerUs();
    played = Math.floor(now / 10_000) - Math.floor(now / 100_000);
    lost = Math.floor(now / 100_000);
  }
  assert.deepEqual(reports.map((r) => r[0]), [2_000_000, 4_000_000, 6_000_000]);
  for (const [, permille] of reports) assert.ok(permille >= 99 && permille <= 101, `${permille}`);
});

test("keys choose renditions by position; a flood sends the first and the last", () => {
  const c = connected();
  const first = sent(c.handle(1_000_000, { kind: "command", command: forKey("2") }));
  assert.deepEqual(first, [{ type: "SelectRendition", rendition: 1 }]);
  assert.deepEqual(sent(c.handle(1_010_000, { kind: "command", command: forKey("3") })), []);
  assert.deepEqual(sent(c.handle(1_020_000, { kind: "command", command: forKey("ArrowUp") })), []);
  assert.deepEqual(sent(c.handle(1_100_000, { kind: "timer" })).filter((m) => m.type === "SelectRendition"), [{ type: "SelectRendition", rendition: 1 }]);
  assert.deepEqual(sent(c.handle(1_300_000, { kind: "command", command: forKey("9") })), [], "no rendition 9");
  assert.deepEqual(sent(c.handle(1_400_000, { kind: "command", command: forKey("a") })), [{ type: "SelectRendition", rendition: 0xff }]);
  assert.equal(c.auto, true);
});

test("Space pauses and resumes; [ and ] step the audio bitrate", () => {
  const c = connected();
  assert.deepEqual(sent(c.handle(0, { kind: "command", command: forKey(" ") })), [{ type: "SetPaused", paused: true }]);
  const resume = c.handle(0, { kind: "command", command: forKey(" ") });
  assert.deepEqual(sent(resume), [{ type: "SetPaused", paused: false }]);
  assert.ok(resume.some((a) => a.kind === "decoder" && a.event.kind === "resync"), "the gap is not a loss");
  assert.deepEqual(sent(c.handle(0, { kind: "command", command: forKey("]") })), [{ type: "SetAudioBitrate", bitrate_bps: 96000 }]);
  c.handle(0, { kind: "server", message: { type: "AudioBitrateChanged", bitrate_bps: 96000 } });
  assert.deepEqual(sent(c.handle(0, { kind: "command", command: forKey("]") })), [], "at the top");
});

test("keyframe requests for one rendition closer than 50 ms are one", () => {
  const c = connected();
  assert.equal(sent(c.handle(0, { kind: "keyframe-wanted", rendition: 0 })).length, 1);
  assert.equal(sent(c.handle(10_000, { kind: "keyframe-wanted", rendition: 0 })).length, 0);
  assert.equal(sent(c.handle(10_000, { kind: "keyframe-wanted", rendition: 1 })).length, 1);
  assert.equal(sent(c.handle(60_000, { kind: "keyframe-wanted", rendition: 0 })).length, 1);
});

test("a lost connection reconnects with back-off, asking for what played; a refusal on principle gives up", () => {
  const c = connected();
  c.handle(100, { kind: "command", command: forKey("3") });
  const lost = c.handle(1_000_000, { kind: "lost", reason: "timed out" });
  assert.ok(lost.some((a) => a.kind === "note" && a.note.kind === "lost"));
  const retryAt = c.nextTimerUs();
  assert.equal(retryAt, 1_000_000 + 250_000, "250 ms (±20%, here the middle)");
  const attempt = c.handle(retryAt, { kind: "timer" });
  assert.deepEqual(attempt.find((a) => a.kind === "connect"), { kind: "connect", rendition: 2 });
  c.handle(retryAt + 1, { kind: "connect-failed", error: "unreachable", retry: true });
  assert.equal(c.nextTimerUs(), retryAt + 1 + 500_000, "doubled");
  c.handle(c.nextTimerUs(), { kind: "timer" });
  const ended = c.handle(3_000_000, { kind: "connect-failed", error: "TokenInvalid", retry: worthRetrying(10) });
  assert.ok(ended.some((a) => a.kind === "end"));
  assert.equal(c.nextTimerUs(), undefined);
});

test("back-off doubles to 5 s with ±20% spread", () => {
  let r = 0;
  const b = new Backoff(() => (r = (r + 0.37) % 1));
  const nominal = [250, 500, 1000, 2000, 4000, 5000, 5000];
  for (const n of nominal) {
    const w = b.nextWaitMs();
    assert.ok(w >= n * 0.8 && w <= n * 1.2, `${w} for ${n}`);
  }
  assert.equal(worthRetrying(6), true);
  assert.equal(worthRetrying(5), true);
  for (const code of [1, 9, 10, 11, 12]) assert.equal(worthRetrying(code), false, `${code}`);
});
