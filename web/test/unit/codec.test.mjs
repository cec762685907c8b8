// The wire format against PROTOCOL.md sections 2-4, byte for byte, and malformed input.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as c from "../build/codec.js";

const hex = (b) => Buffer.from(b).toString("hex");

test("hello is laid out as PROTOCOL.md says", () => {
  const bytes = c.encodeControl({
    type: "Hello",
    hello: { version: 3, rendition: 0xff, latency_target_ms: 300, client_name: "web", token: "t" },
  });
  // length 14 = type(1) + version(2) + rendition(1) + latency(2) + "web"(2+3) + "t"(2+1)
  assert.equal(hex(bytes), "0000000e" + "01" + "0003" + "ff" + "012c" + "0003776562" + "000174");
});

test("every message survives a round trip", () => {
  const welcome = {
    version: 3,
    session_id: 0x0102030405060708n,
    server_time_us: 123_456_789_012,
    video_codec: 1,
    renditions: [
      { id: 0, name: "360p", width: 640, height: 360, fps: 30, bitrate_kbps: 800 },
      { id: 1, name: "180p", width: 320, height: 180, fps: 15, bitrate_kbps: 240 },
    ],
    rendition: 1,
    audio: { codec: 1, sample_rate: 48000, channels: 1, frame_duration_us: 10000, bitrate_bps: 48000 },
    audio_bitrates: [24000, 48000, 96000],
  };
  const messages = [
    { type: "Hello", hello: { version: 3, rendition: 2, latency_target_ms: 0, client_name: "wéb", token: "" } },
    { type: "Welcome", welcome },
    { type: "Error", code: 10, message: "no" },
    { type: "Ping", seq: 0xffffffff, client_time_us: 2 ** 52 },
    { type: "Pong", seq: 7, client_time_us: 1, server_receive_us: 2, server_send_us: 3 },
    { type: "KeyframeRequest", rendition: 2 },
    { type: "Goodbye", code: 0, message: "bye" },
    { type: "SelectRendition", rendition: 0xff },
    { type: "RenditionChanged", rendition: 1, automatic: true },
    { type: "SetPaused", paused: true },
    { type: "SetAudioBitrate", bitrate_bps: 96000 },
    { type: "AudioBitrateChanged", bitrate_bps: 24000 },
    { type: "BroadcastPaused", paused: false },
    { type: "ReceiverReport", audio_loss_permille: 1000 },
  ];
  for (const m of messages) {
    const framer = new c.ControlFramer();
    assert.deepEqual(framer.push(c.encodeControl(m)), [m], m.type);
  }
});

test("the framer joins messages split anywhere and splits joined ones", () => {
  const a = c.encodeControl({ type: "Ping", seq: 1, client_time_us: 5 });
  const b = c.encodeControl({ type: "SetPaused", paused: false });
  const all = new Uint8Array([...a, ...b]);
  for (let cut = 0; cut <= all.length; cut++) {
    const f = new c.ControlFramer();
    const got = [...f.push(all.subarray(0, cut)), ...f.push(all.subarray(cut))];
    assert.equal(got.length, 2, `cut at ${cut}`);
    assert.equal(f.buffered, 0);
  }
});

test("malformed messages are refused", () => {
  const body = (...bytes) => new Uint8Array(bytes);
  const bad = [
    [body(0x7f, 1, 2), /unknown message type/],
    [body(), /truncated/],
    [body(0x0a, 2), /0 or 1/],
    [body(0x09, 1, 1, 0), /left over/],
    [body(0x0e, 0x03, 0xe9), /1000/],
    [body(0x04, 0, 0), /truncated/],
    [body(0x03, 0, 1, 0, 2, 0xff, 0xfe), /UTF-8/],
    [body(0x01, 0, 2), /version 2/],
  ];
  for (const [b, why] of bad) assert.throws(() => c.decodeControlBody(b), why);
  // A welcome naming a rendition it does not list, or with none.
  const w = c.encodeControl({
    type: "Welcome",
    welcome: {
      version: 3, session_id: 1n, server_time_us: 0, video_codec: 1,
      renditions: [{ id: 0, name: "a", width: 2, height: 2, fps: 1, bitrate_kbps: 1 }],
      rendition: 0,
      audio: { codec: 1, sample_rate: 48000, channels: 1, frame_duration_us: 10000, bitrate_bps: 1 },
      audio_bitrates: [],
    },
  });
  const noSuch = w.slice(4);
  noSuch[noSuch.length - 16] = 5; // the welcome's rendition byte, 15 bytes of audio after it
  assert.throws(() => c.decodeControlBody(noSuch), /not among/);
  // Lengths are checked before anything is buffered.
  assert.throws(() => new c.ControlFramer().push(new Uint8Array([0, 0, 0x40, 0x01])), /at most 16384/);
  assert.throws(() => new c.ControlFramer().push(new Uint8Array([0, 0, 0, 0])), /zero/);
  assert.deepEqual(new c.ControlFramer().push(new Uint8Array([0, 0, 0x40, 0x00])), []);
  // Strings over their limit are not written.
  assert.throws(() =>
    c.encodeControl({ type: "Hello", hello: { version: 3, rendition: 0, latency_target_ms: 0, client_name: "x".repeat(65), token: "" } }),
  );
});

test("frame header: 36 bytes, extra header bytes skipped, bad ones refused", () => {
  const h = { rendition: 2, keyframe: true, seq: 2 ** 40 + 1, capture_us: 1_234_567_890, payload_len: 999, queue_us: 1, encoder_wait_us: 2, encode_us: 3 };
  const bytes = c.encodeFrameHeader(h);
  assert.equal(bytes.length, 36);
  assert.equal(hex(bytes.subarray(0, 4)), "56240201");
  assert.deepEqual(c.decodeFrameHeader(bytes), { header_len: 36, ...h });
  // A later version's longer header: known fields read, the rest skipped.
  const longer = new Uint8Array(40);
  longer.set(bytes);
  longer[1] = 40;
  longer[3] = 0xff; // reserved flag bits are ignored
  assert.deepEqual(c.decodeFrameHeader(longer), { header_len: 40, ...h });
  assert.throws(() => c.decodeFrameHeader(longer.subarray(0, 38)), /truncated/);
  const wrongType = bytes.slice();
  wrongType[0] = 0x41;
  assert.throws(() => c.decodeFrameHeader(wrongType), /stream type/);
  const short = bytes.slice();
  short[1] = 35;
  assert.throws(() => c.decodeFrameHeader(short), /at least 36/);
  assert.throws(() => c.decodeFrameHeader(c.encodeFrameHeader({ ...h, payload_len: 0 })), /zero/);
  assert.throws(() => c.decodeFrameHeader(c.encodeFrameHeader({ ...h, payload_len: 4 * 1024 * 1024 + 1 })), /at most/);
});

test("audio datagram: 14-byte header then the Opus packet", () => {
  const payload = new Uint8Array([0x08, 1, 2, 3]);
  const d = c.encodeAudioDatagram({ seq: 0xfffffffe, capture_us: 20_000, payload });
  assert.equal(hex(d), "4100" + "fffffffe" + "0000000000004e20" + "08010203");
  const p = c.decodeAudioDatagram(d);
  assert.equal(p.seq, 0xfffffffe);
  assert.equal(p.capture_us, 20_000);
  assert.deepEqual([...p.payload], [...payload]);
  assert.throws(() => c.decodeAudioDatagram(d.subarray(0, 14)), /empty/);
  assert.throws(() => c.decodeAudioDatagram(d.subarray(0, 10)), /truncated/);
  const v = d.slice();
  v[0] = 0x56;
  assert.throws(() => c.decodeAudioDatagram(v), /datagram type/);
  assert.throws(() => c.decodeAudioDatagram(new Uint8Array(14 + 1276).fill(0x41, 0, 1)), /at most 1275/);
});

test("Opus packet durations come from the TOC byte", () => {
  assert.equal(c.opusPacketDurationUs(new Uint8Array([(31 << 3) | 0])), 20_000); // CELT FB 20 ms
  assert.equal(c.opusPacketDurationUs(new Uint8Array([(30 << 3) | 0])), 10_000); // CELT FB 10 ms
  assert.equal(c.opusPacketDurationUs(new Uint8Array([(1 << 3) | 1])), 40_000); // SILK 20 ms x2
  assert.equal(c.opusPacketDurationUs(new Uint8Array([(31 << 3) | 3, 3])), 60_000);
  assert.equal(c.opusPacketDurationUs(new Uint8Array([])), undefined);
});

test("close codes have names, unknown ones stay numbers", () => {
  assert.equal(c.errorName(10), "TokenInvalid");
  assert.equal(c.errorName(12), "AccessRevoked");
  assert.equal(c.errorName(99), "code 99");
});
