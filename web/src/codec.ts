// The wire format of docs/PROTOCOL.md sections 2-4, byte for byte as the `streamsocket-proto`
// crate writes it: control messages (length-prefixed, big-endian), the video frame header and
// the audio datagram header. Pure: no DOM, no I/O, so node's test runner checks it directly.

export const PROTOCOL_VERSION = 3;
/** Largest control message (type byte plus body) either side accepts. */
export const MAX_CONTROL_MESSAGE = 16 * 1024;
export const MAX_RENDITIONS = 16;
/** Longest client or rendition name, in bytes. */
export const MAX_NAME = 64;
export const MAX_TOKEN = 256;
/** Longest error or goodbye text, in bytes. */
export const MAX_REASON = 1024;
/** Rendition byte meaning "automatic" in Hello and SelectRendition. */
export const AUTO_RENDITION = 0xff;
export const VIDEO_CODEC_AV1 = 1;
export const AUDIO_CODEC_OPUS = 1;
export const FRAME_STREAM_TYPE = 0x56; // 'V'
export const FRAME_HEADER_LEN = 36;
export const MAX_FRAME_PAYLOAD = 4 * 1024 * 1024;
export const AUDIO_DATAGRAM_TYPE = 0x41; // 'A'
export const AUDIO_HEADER_LEN = 14;
export const MAX_AUDIO_PAYLOAD = 1275;

/** Close and error codes (PROTOCOL.md §1). Unknown codes stay numbers. */
export const ErrorCode = {
  NoError: 0,
  UnsupportedVersion: 1,
  MalformedMessage: 2,
  UnexpectedMessage: 3,
  UnknownRendition: 4,
  RateLimited: 5,
  ServerShuttingDown: 6,
  Internal: 7,
  Timeout: 8,
  TokenRequired: 9,
  TokenInvalid: 10,
  ServerFull: 11,
  AccessRevoked: 12,
} as const;

const CODE_NAMES: string[] = Object.keys(ErrorCode);

/** "TokenInvalid" for 10; "code 99" for a code this viewer does not know. */
export function errorName(code: number): string {
  return CODE_NAMES[code] ?? `code ${code}`;
}

/** Message type bytes. */
export const Tag = {
  Hello: 0x01,
  Welcome: 0x02,
  Error: 0x03,
  Ping: 0x04,
  Pong: 0x05,
  KeyframeRequest: 0x06,
  Goodbye: 0x07,
  SelectRendition: 0x08,
  RenditionChanged: 0x09,
  SetPaused: 0x0a,
  SetAudioBitrate: 0x0b,
  AudioBitrateChanged: 0x0c,
  BroadcastPaused: 0x0d,
  ReceiverReport: 0x0e,
} as const;

export interface Rendition {
  id: number;
  name: string;
  width: number;
  height: number;
  fps: number;
  bitrate_kbps: number;
}

export interface Welcome {
  version: number;
  /** u64, kept as bigint: only logged. */
  session_id: bigint;
  server_time_us: number;
  video_codec: number;
  renditions: Rendition[];
  rendition: number;
  audio: {
    codec: number;
    sample_rate: number;
    channels: number;
    frame_duration_us: number;
    bitrate_bps: number;
  };
  audio_bitrates: number[];
}

export interface Hello {
  version: number;
  /** A rendition id, or AUTO_RENDITION. */
  rendition: number;
  latency_target_ms: number;
  client_name: string;
  token: string;
}

/** Every control message, tagged by its name. Times are µs as numbers: a media clock in µs
 * stays below 2^53 for 285 years, and the viewer's clock is performance.now()-based. */
export type ControlMessage =
  | { type: "Hello"; hello: Hello }
  | { type: "Welcome"; welcome: Welcome }
  | { type: "Error"; code: number; message: string }
  | { type: "Ping"; seq: number; client_time_us: number }
  | {
      type: "Pong";
      seq: number;
      client_time_us: number;
      server_receive_us: number;
      server_send_us: number;
    }
  | { type: "KeyframeRequest"; rendition: number }
  | { type: "Goodbye"; code: number; message: string }
  | { type: "SelectRendition"; rendition: number }
  | { type: "RenditionChanged"; rendition: number; automatic: boolean }
  | { type: "SetPaused"; paused: boolean }
  | { type: "SetAudioBitrate"; bitrate_bps: number }
  | { type: "AudioBitrateChanged"; bitrate_bps: number }
  | { type: "BroadcastPaused"; paused: boolean }
  | { type: "ReceiverReport"; audio_loss_permille: number };

/** A message or header that does not decode: the protocol's MalformedMessage. */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DecodeError";
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Big-endian writer into a growing buffer. */
class Writer {
  private buf = new Uint8Array(64);
  private view = new DataView(this.buf.buffer);
  len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.len, v);
    this.len += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.len, v);
    this.len += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.len, v);
    this.len += 4;
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    // Times are whole µs; a fraction (from a float clock) is cut, not an exception.
    this.view.setBigUint64(this.len, typeof v === "bigint" ? v : BigInt(Math.max(0, Math.trunc(v))));
    this.len += 8;
  }
  /** A u16-length-prefixed UTF-8 string; too long for its field is the caller's error. */
  string(s: string, max: number, what: string): void {
    const bytes = utf8Encoder.encode(s);
    if (bytes.length > max) {
      throw new RangeError(`${what} is ${bytes.length} bytes, at most ${max}`);
    }
    this.u16(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Big-endian reader that fails with a DecodeError naming the field it could not read. */
class Reader {
  private pos = 0;
  private readonly view: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new DecodeError(`truncated ${what}: ${this.pos + n - this.buf.length} bytes missing`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }
  /** A u64 as a number (times, sequence numbers: exact below 2^53). */
  u64n(what: string): number {
    return Number(this.u64(what));
  }
  flag(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw new DecodeError(`${what} must be 0 or 1, not ${v}`);
    return v === 1;
  }
  string(max: number, what: string): string {
    const len = this.u16(what);
    if (len > max) throw new DecodeError(`${what} is ${len} bytes, at most ${max}`);
    this.need(len, what);
    const raw = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new DecodeError(`${what} is not UTF-8`);
    }
  }
  remaining(): number {
    return this.buf.length - this.pos;
  }
  rest(): Uint8Array {
    return this.buf.subarray(this.pos);
  }
  finish(): void {
    if (this.remaining() !== 0) {
      throw new DecodeError(`${this.remaining()} bytes left over after the message`);
    }
  }
}

/** Encodes one control message with its u32 length prefix. */
export function encodeControl(msg: ControlMessage): Uint8Array {
  const w = new Writer();
  w.u32(0); // length, patched below
  w.u8(Tag[msg.type]);
  switch (msg.type) {
    case "Hello":
      w.u16(msg.hello.version);
      w.u8(msg.hello.rendition);
      w.u16(msg.hello.latency_target_ms);
      w.string(msg.hello.client_name, MAX_NAME, "client name");
      w.string(msg.hello.token, MAX_TOKEN, "token");
      break;
    case "Welcome": {
      const v = msg.welcome;
      w.u16(v.version);
      w.u64(v.session_id);
      w.u64(v.server_time_us);
      w.u8(v.video_codec);
      w.u8(v.renditions.length);
      for (const r of v.renditions) {
        w.u8(r.id);
        w.string(r.name, MAX_NAME, "rendition name");
        w.u16(r.width);
        w.u16(r.height);
        w.u16(r.fps);
        w.u32(r.bitrate_kbps);
      }
      w.u8(v.rendition);
      w.u8(v.audio.codec);
      w.u32(v.audio.sample_rate);
      w.u8(v.audio.channels);
      w.u32(v.audio.frame_duration_us);
      w.u32(v.audio.bitrate_bps);
      w.u8(v.audio_bitrates.length);
      for (const b of v.audio_bitrates) w.u32(b);
      break;
    }
    case "Error":
    case "Goodbye":
      w.u16(msg.code);
      w.string(msg.message, MAX_REASON, "message");
      break;
    case "Ping":
      w.u32(msg.seq);
      w.u64(msg.client_time_us);
      break;
    case "Pong":
      w.u32(msg.seq);
      w.u64(msg.client_time_us);
      w.u64(msg.server_receive_us);
      w.u64(msg.server_send_us);
      break;
    case "KeyframeRequest":
    case "SelectRendition":
      w.u8(msg.rendition);
      break;
    case "RenditionChanged":
      w.u8(msg.rendition);
      w.u8(msg.automatic ? 1 : 0);
      break;
    case "SetPaused":
    case "BroadcastPaused":
      w.u8(msg.paused ? 1 : 0);
      break;
    case "SetAudioBitrate":
    case "AudioBitrateChanged":
      w.u32(msg.bitrate_bps);
      break;
    case "ReceiverReport":
      w.u16(msg.audio_loss_permille);
      break;
  }
  const out = w.bytes();
  new DataView(out.buffer).setUint32(0, out.length - 4);
  return out;
}

/** Decodes a message body: the type byte and what follows, without the length prefix. */
export function decodeControlBody(body: Uint8Array): ControlMessage {
  if (body.length > MAX_CONTROL_MESSAGE) {
    throw new DecodeError(`control message of ${body.length} bytes, at most ${MAX_CONTROL_MESSAGE}`);
  }
  const r = new Reader(body);
  const tag = r.u8("message type");
  let msg: ControlMessage;
  switch (tag) {
    case Tag.Hello: {
      const version = r.u16("hello version");
      if (version !== PROTOCOL_VERSION) {
        // Later versions may lay the rest out differently: stop here.
        throw new DecodeError(`unsupported protocol version ${version}`);
      }
      msg = {
        type: "Hello",
        hello: {
          version,
          rendition: r.u8("hello rendition"),
          latency_target_ms: r.u16("hello latency target"),
          client_name: r.string(MAX_NAME, "hello client name"),
          token: r.string(MAX_TOKEN, "hello token"),
        },
      };
      break;
    }
    case Tag.Welcome: {
      const version = r.u16("welcome version");
      const session_id = r.u64("welcome session id");
      const server_time_us = r.u64n("welcome server time");
      const video_codec = r.u8("video codec");
      const count = r.u8("rendition count");
      if (count === 0 || count > MAX_RENDITIONS) {
        throw new DecodeError(`rendition count must be 1 to ${MAX_RENDITIONS}, not ${count}`);
      }
      const renditions: Rendition[] = [];
      for (let i = 0; i < count; i++) {
        renditions.push({
          id: r.u8("rendition id"),
          name: r.string(MAX_NAME, "rendition name"),
          width: r.u16("rendition width"),
          height: r.u16("rendition height"),
          fps: r.u16("rendition fps"),
          bitrate_kbps: r.u32("rendition bitrate"),
        });
      }
      const rendition = r.u8("welcome rendition");
      if (!renditions.some((x) => x.id === rendition)) {
        throw new DecodeError("welcome rendition is not among the renditions listed");
      }
      const audio = {
        codec: r.u8("audio codec"),
        sample_rate: r.u32("audio sample rate"),
        channels: r.u8("audio channels"),
        frame_duration_us: r.u32("audio frame duration"),
        bitrate_bps: r.u32("audio bitrate"),
      };
      const rateCount = r.u8("audio bitrate count");
      if (rateCount > MAX_RENDITIONS) {
        throw new DecodeError(`audio bitrate count at most ${MAX_RENDITIONS}, not ${rateCount}`);
      }
      const audio_bitrates: number[] = [];
      for (let i = 0; i < rateCount; i++) audio_bitrates.push(r.u32("audio bitrate on offer"));
      msg = {
        type: "Welcome",
        welcome: {
          version,
          session_id,
          server_time_us,
          video_codec,
          renditions,
          rendition,
          audio,
          audio_bitrates,
        },
      };
      break;
    }
    case Tag.Error:
      msg = { type: "Error", code: r.u16("error code"), message: r.string(MAX_REASON, "error message") };
      break;
    case Tag.Goodbye:
      msg = {
        type: "Goodbye",
        code: r.u16("goodbye code"),
        message: r.string(MAX_REASON, "goodbye message"),
      };
      break;
    case Tag.Ping:
      msg = { type: "Ping", seq: r.u32("ping seq"), client_time_us: r.u64n("ping client time") };
      break;
    case Tag.Pong:
      msg = {
        type: "Pong",
        seq: r.u32("pong seq"),
        client_time_us: r.u64n("pong client time"),
        server_receive_us: r.u64n("pong server receive time"),
        server_send_us: r.u64n("pong server send time"),
      };
      break;
    case Tag.KeyframeRequest:
      msg = { type: "KeyframeRequest", rendition: r.u8("keyframe request rendition") };
      break;
    case Tag.SelectRendition:
      msg = { type: "SelectRendition", rendition: r.u8("selected rendition") };
      break;
    case Tag.RenditionChanged:
      msg = {
        type: "RenditionChanged",
        rendition: r.u8("changed rendition"),
        automatic: r.flag("automatic flag"),
      };
      break;
    case Tag.SetPaused:
      msg = { type: "SetPaused", paused: r.flag("paused flag") };
      break;
    case Tag.BroadcastPaused:
      msg = { type: "BroadcastPaused", paused: r.flag("broadcast paused flag") };
      break;
    case Tag.SetAudioBitrate:
      msg = { type: "SetAudioBitrate", bitrate_bps: r.u32("audio bitrate") };
      break;
    case Tag.AudioBitrateChanged:
      msg = { type: "AudioBitrateChanged", bitrate_bps: r.u32("audio bitrate") };
      break;
    case Tag.ReceiverReport: {
      const audio_loss_permille = r.u16("audio loss");
      if (audio_loss_permille > 1000) throw new DecodeError("audio loss over 1000 per thousand");
      msg = { type: "ReceiverReport", audio_loss_permille };
      break;
    }
    default:
      throw new DecodeError(`unknown message type 0x${tag.toString(16).padStart(2, "0")}`);
  }
  r.finish();
  return msg;
}

/** Reassembles control messages from the stream's chunks, which split or join messages
 * anywhere. The length is checked before a body is buffered, so a hostile prefix cannot make
 * the page hold 4 GB. */
export class ControlFramer {
  private pending = new Uint8Array(0);

  /** Adds a chunk and returns every message it completed (throws DecodeError on garbage). */
  push(chunk: Uint8Array): ControlMessage[] {
    const joined = new Uint8Array(this.pending.length + chunk.length);
    joined.set(this.pending);
    joined.set(chunk, this.pending.length);
    const out: ControlMessage[] = [];
    let pos = 0;
    while (joined.length - pos >= 4) {
      const len = new DataView(joined.buffer, pos, 4).getUint32(0);
      if (len === 0) throw new DecodeError("control message length is zero");
      if (len > MAX_CONTROL_MESSAGE) {
        throw new DecodeError(`control message of ${len} bytes, at most ${MAX_CONTROL_MESSAGE}`);
      }
      if (joined.length - pos - 4 < len) break;
      out.push(decodeControlBody(joined.subarray(pos + 4, pos + 4 + len)));
      pos += 4 + len;
    }
    this.pending = joined.slice(pos);
    return out;
  }

  /** Bytes of a message not yet complete. */
  get buffered(): number {
    return this.pending.length;
  }
}

export interface FrameHeader {
  /** Bytes of header on the wire (36, or more from a later version: skipped). */
  header_len: number;
  rendition: number;
  keyframe: boolean;
  seq: number;
  capture_us: number;
  payload_len: number;
  queue_us: number;
  encoder_wait_us: number;
  encode_us: number;
}

/** How many bytes must be read before the header's length is known. */
export const FRAME_HEADER_PREFIX = 2;

/** The header length from a frame stream's first two bytes. */
export function frameHeaderLen(prefix: Uint8Array): number {
  if (prefix.length < FRAME_HEADER_PREFIX) throw new DecodeError("truncated frame header");
  if (prefix[0] !== FRAME_STREAM_TYPE) {
    throw new DecodeError(`unknown stream type 0x${prefix[0]!.toString(16)}`);
  }
  const len = prefix[1]!;
  if (len < FRAME_HEADER_LEN) throw new DecodeError(`frame header of ${len} bytes, at least 36`);
  return len;
}

/** Decodes a complete frame header (at least as long as frameHeaderLen said). */
export function decodeFrameHeader(buf: Uint8Array): FrameHeader {
  const header_len = frameHeaderLen(buf);
  if (buf.length < header_len) throw new DecodeError("truncated frame header");
  const r = new Reader(buf.subarray(FRAME_HEADER_PREFIX, header_len));
  const rendition = r.u8("frame rendition");
  const flags = r.u8("frame flags");
  const h: FrameHeader = {
    header_len,
    rendition,
    // Other flag bits are reserved: ignored on receipt.
    keyframe: (flags & 1) !== 0,
    seq: r.u64n("frame seq"),
    capture_us: r.u64n("frame capture time"),
    payload_len: r.u32("frame payload length"),
    queue_us: r.u32("frame queue time"),
    encoder_wait_us: r.u32("frame encoder wait"),
    encode_us: r.u32("frame encode time"),
  };
  if (h.payload_len === 0) throw new DecodeError("frame payload length is zero");
  if (h.payload_len > MAX_FRAME_PAYLOAD) {
    throw new DecodeError(`frame payload of ${h.payload_len} bytes, at most ${MAX_FRAME_PAYLOAD}`);
  }
  return h;
}

/** Encodes a 36-byte frame header (for tests and for symmetry with the Rust crate). */
export function encodeFrameHeader(h: Omit<FrameHeader, "header_len">): Uint8Array {
  const w = new Writer();
  w.u8(FRAME_STREAM_TYPE);
  w.u8(FRAME_HEADER_LEN);
  w.u8(h.rendition);
  w.u8(h.keyframe ? 1 : 0);
  w.u64(h.seq);
  w.u64(h.capture_us);
  w.u32(h.payload_len);
  w.u32(h.queue_us);
  w.u32(h.encoder_wait_us);
  w.u32(h.encode_us);
  return w.bytes();
}

export interface AudioPacket {
  seq: number;
  capture_us: number;
  /** The Opus packet. */
  payload: Uint8Array;
}

/** Splits an audio datagram into its header and Opus packet. */
export function decodeAudioDatagram(d: Uint8Array): AudioPacket {
  const r = new Reader(d);
  const kind = r.u8("datagram type");
  if (kind !== AUDIO_DATAGRAM_TYPE) throw new DecodeError(`unknown datagram type 0x${kind.toString(16)}`);
  r.u8("audio flags"); // reserved
  const seq = r.u32("audio seq");
  const capture_us = r.u64n("audio capture time");
  const n = r.remaining();
  if (n === 0) throw new DecodeError("empty audio payload");
  if (n > MAX_AUDIO_PAYLOAD) throw new DecodeError(`audio payload of ${n} bytes, at most ${MAX_AUDIO_PAYLOAD}`);
  return { seq, capture_us, payload: r.rest() };
}

export function encodeAudioDatagram(p: AudioPacket): Uint8Array {
  const w = new Writer();
  w.u8(AUDIO_DATAGRAM_TYPE);
  w.u8(0);
  w.u32(p.seq);
  w.u64(p.capture_us);
  const head = w.bytes();
  const out = new Uint8Array(head.length + p.payload.length);
  out.set(head);
  out.set(p.payload, head.length);
  return out;
}

/** An Opus packet's duration in µs, from its TOC byte (RFC 6716 §3.1), or undefined if the
 * packet is malformed. The server's packets are 10 or 20 ms; the packet says which. */
export function opusPacketDurationUs(packet: Uint8Array): number | undefined {
  if (packet.length < 1) return undefined;
  const toc = packet[0]!;
  const config = toc >> 3;
  let frameUs: number;
  if (config < 12) frameUs = [10_000, 20_000, 40_000, 60_000][config & 3]!; // SILK
  else if (config < 16) frameUs = [10_000, 20_000][config & 1]!; // hybrid
  else frameUs = [2_500, 5_000, 10_000, 20_000][config & 3]!; // CELT
  let frames: number;
  switch (toc & 3) {
    case 0:
      frames = 1;
      break;
    case 1:
    case 2:
      frames = 2;
      break;
    default:
      if (packet.length < 2) return undefined;
      frames = packet[1]! & 0x3f;
      if (frames === 0) return undefined;
  }
  return frames * frameUs;
}
