// src/codec.ts
var PROTOCOL_VERSION = 3;
var MAX_CONTROL_MESSAGE = 16 * 1024;
var MAX_RENDITIONS = 16;
var MAX_NAME = 64;
var MAX_TOKEN = 256;
var MAX_REASON = 1024;
var AUTO_RENDITION = 255;
var FRAME_STREAM_TYPE = 86;
var FRAME_HEADER_LEN = 36;
var MAX_FRAME_PAYLOAD = 4 * 1024 * 1024;
var AUDIO_DATAGRAM_TYPE = 65;
var MAX_AUDIO_PAYLOAD = 1275;
var ErrorCode = {
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
  AccessRevoked: 12
};
var CODE_NAMES = Object.keys(ErrorCode);
function errorName(code) {
  return CODE_NAMES[code] ?? `code ${code}`;
}
var Tag = {
  Hello: 1,
  Welcome: 2,
  Error: 3,
  Ping: 4,
  Pong: 5,
  KeyframeRequest: 6,
  Goodbye: 7,
  SelectRendition: 8,
  RenditionChanged: 9,
  SetPaused: 10,
  SetAudioBitrate: 11,
  AudioBitrateChanged: 12,
  BroadcastPaused: 13,
  ReceiverReport: 14
};
var DecodeError = class extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
};
var utf8Encoder = new TextEncoder();
var utf8Decoder = new TextDecoder("utf-8", { fatal: true });
var Writer = class {
  buf = new Uint8Array(64);
  view = new DataView(this.buf.buffer);
  len = 0;
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }
  u8(v) {
    this.reserve(1);
    this.view.setUint8(this.len, v);
    this.len += 1;
  }
  u16(v) {
    this.reserve(2);
    this.view.setUint16(this.len, v);
    this.len += 2;
  }
  u32(v) {
    this.reserve(4);
    this.view.setUint32(this.len, v);
    this.len += 4;
  }
  u64(v) {
    this.reserve(8);
    this.view.setBigUint64(this.len, typeof v === "bigint" ? v : BigInt(Math.max(0, Math.trunc(v))));
    this.len += 8;
  }
  /** A u16-length-prefixed UTF-8 string; too long for its field is the caller's error. */
  string(s, max, what) {
    const bytes = utf8Encoder.encode(s);
    if (bytes.length > max) {
      throw new RangeError(`${what} is ${bytes.length} bytes, at most ${max}`);
    }
    this.u16(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  bytes() {
    return this.buf.slice(0, this.len);
  }
};
var Reader = class {
  constructor(buf) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  buf;
  pos = 0;
  view;
  need(n, what) {
    if (this.pos + n > this.buf.length) {
      throw new DecodeError(`truncated ${what}: ${this.pos + n - this.buf.length} bytes missing`);
    }
  }
  u8(what) {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u16(what) {
    this.need(2, what);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what) {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  u64(what) {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }
  /** A u64 as a number (times, sequence numbers: exact below 2^53). */
  u64n(what) {
    return Number(this.u64(what));
  }
  flag(what) {
    const v = this.u8(what);
    if (v > 1) throw new DecodeError(`${what} must be 0 or 1, not ${v}`);
    return v === 1;
  }
  string(max, what) {
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
  remaining() {
    return this.buf.length - this.pos;
  }
  rest() {
    return this.buf.subarray(this.pos);
  }
  finish() {
    if (this.remaining() !== 0) {
      throw new DecodeError(`${this.remaining()} bytes left over after the message`);
    }
  }
};
function encodeControl(msg) {
  const w = new Writer();
  w.u32(0);
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
function decodeControlBody(body) {
  if (body.length > MAX_CONTROL_MESSAGE) {
    throw new DecodeError(`control message of ${body.length} bytes, at most ${MAX_CONTROL_MESSAGE}`);
  }
  const r = new Reader(body);
  const tag = r.u8("message type");
  let msg;
  switch (tag) {
    case Tag.Hello: {
      const version = r.u16("hello version");
      if (version !== PROTOCOL_VERSION) {
        throw new DecodeError(`unsupported protocol version ${version}`);
      }
      msg = {
        type: "Hello",
        hello: {
          version,
          rendition: r.u8("hello rendition"),
          latency_target_ms: r.u16("hello latency target"),
          client_name: r.string(MAX_NAME, "hello client name"),
          token: r.string(MAX_TOKEN, "hello token")
        }
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
      const renditions = [];
      for (let i = 0; i < count; i++) {
        renditions.push({
          id: r.u8("rendition id"),
          name: r.string(MAX_NAME, "rendition name"),
          width: r.u16("rendition width"),
          height: r.u16("rendition height"),
          fps: r.u16("rendition fps"),
          bitrate_kbps: r.u32("rendition bitrate")
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
        bitrate_bps: r.u32("audio bitrate")
      };
      const rateCount = r.u8("audio bitrate count");
      if (rateCount > MAX_RENDITIONS) {
        throw new DecodeError(`audio bitrate count at most ${MAX_RENDITIONS}, not ${rateCount}`);
      }
      const audio_bitrates = [];
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
          audio_bitrates
        }
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
        message: r.string(MAX_REASON, "goodbye message")
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
        server_send_us: r.u64n("pong server send time")
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
        automatic: r.flag("automatic flag")
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
      if (audio_loss_permille > 1e3) throw new DecodeError("audio loss over 1000 per thousand");
      msg = { type: "ReceiverReport", audio_loss_permille };
      break;
    }
    default:
      throw new DecodeError(`unknown message type 0x${tag.toString(16).padStart(2, "0")}`);
  }
  r.finish();
  return msg;
}
var ControlFramer = class {
  pending = new Uint8Array(0);
  /** Adds a chunk and returns every message it completed (throws DecodeError on garbage). */
  push(chunk) {
    const joined = new Uint8Array(this.pending.length + chunk.length);
    joined.set(this.pending);
    joined.set(chunk, this.pending.length);
    const out = [];
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
  get buffered() {
    return this.pending.length;
  }
};
var FRAME_HEADER_PREFIX = 2;
function frameHeaderLen(prefix) {
  if (prefix.length < FRAME_HEADER_PREFIX) throw new DecodeError("truncated frame header");
  if (prefix[0] !== FRAME_STREAM_TYPE) {
    throw new DecodeError(`unknown stream type 0x${prefix[0].toString(16)}`);
  }
  const len = prefix[1];
  if (len < FRAME_HEADER_LEN) throw new DecodeError(`frame header of ${len} bytes, at least 36`);
  return len;
}
function decodeFrameHeader(buf) {
  const header_len = frameHeaderLen(buf);
  if (buf.length < header_len) throw new DecodeError("truncated frame header");
  const r = new Reader(buf.subarray(FRAME_HEADER_PREFIX, header_len));
  const rendition = r.u8("frame rendition");
  const flags = r.u8("frame flags");
  const h = {
    header_len,
    rendition,
    // Other flag bits are reserved: ignored on receipt.
    keyframe: (flags & 1) !== 0,
    seq: r.u64n("frame seq"),
    capture_us: r.u64n("frame capture time"),
    payload_len: r.u32("frame payload length"),
    queue_us: r.u32("frame queue time"),
    encoder_wait_us: r.u32("frame encoder wait"),
    encode_us: r.u32("frame encode time")
  };
  if (h.payload_len === 0) throw new DecodeError("frame payload length is zero");
  if (h.payload_len > MAX_FRAME_PAYLOAD) {
    throw new DecodeError(`frame payload of ${h.payload_len} bytes, at most ${MAX_FRAME_PAYLOAD}`);
  }
  return h;
}
function decodeAudioDatagram(d) {
  const r = new Reader(d);
  const kind = r.u8("datagram type");
  if (kind !== AUDIO_DATAGRAM_TYPE) throw new DecodeError(`unknown datagram type 0x${kind.toString(16)}`);
  r.u8("audio flags");
  const seq = r.u32("audio seq");
  const capture_us = r.u64n("audio capture time");
  const n = r.remaining();
  if (n === 0) throw new DecodeError("empty audio payload");
  if (n > MAX_AUDIO_PAYLOAD) throw new DecodeError(`audio payload of ${n} bytes, at most ${MAX_AUDIO_PAYLOAD}`);
  return { seq, capture_us, payload: r.rest() };
}
function opusPacketDurationUs(packet) {
  if (packet.length < 1) return void 0;
  const toc = packet[0];
  const config = toc >> 3;
  let frameUs;
  if (config < 12) frameUs = [1e4, 2e4, 4e4, 6e4][config & 3];
  else if (config < 16) frameUs = [1e4, 2e4][config & 1];
  else frameUs = [2500, 5e3, 1e4, 2e4][config & 3];
  let frames;
  switch (toc & 3) {
    case 0:
      frames = 1;
      break;
    case 1:
    case 2:
      frames = 2;
      break;
    default:
      if (packet.length < 2) return void 0;
      frames = packet[1] & 63;
      if (frames === 0) return void 0;
  }
  return frames * frameUs;
}

// src/timeline.ts
var steps = {};
function mark(step) {
  steps[step] ??= Math.round(performance.now() * 100) / 100;
}
function timeline() {
  const out = { ...steps };
  const round2 = (ms) => Math.round(ms * 100) / 100;
  const nav = performance.getEntriesByType("navigation")[0];
  if (nav?.responseEnd) out.html = round2(nav.responseEnd);
  const js = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/viewer.js"));
  if (js) out.viewer_js = round2(js.responseEnd);
  return out;
}

// src/refusals.ts
function describe(code) {
  switch (code) {
    case ErrorCode.NoError:
      return "closed normally";
    case ErrorCode.UnsupportedVersion:
      return "the server speaks another protocol version: this page is older or newer than the server (reload it)";
    case ErrorCode.MalformedMessage:
      return "malformed message";
    case ErrorCode.UnexpectedMessage:
      return "unexpected message";
    case ErrorCode.UnknownRendition:
      return "unknown rendition";
    case ErrorCode.RateLimited:
      return "too many requests";
    case ErrorCode.ServerShuttingDown:
      return "server shutting down";
    case ErrorCode.Internal:
      return "internal server error";
    case ErrorCode.Timeout:
      return "timed out";
    case ErrorCode.TokenRequired:
      return "this server needs a token: add ?token=YOUR-TOKEN to the page's address";
    case ErrorCode.TokenInvalid:
      return "the server did not accept the token (check the ?token= in the page's address)";
    case ErrorCode.ServerFull:
      return "the server is full";
    case ErrorCode.AccessRevoked:
      return "your access was revoked (token withdrawn): ask the server's operator";
    default:
      return `unknown error code ${code}`;
  }
}
function explain(code) {
  return `${errorName(code)} (${code}): ${describe(code)}`;
}
function worthRetrying(code) {
  return code === ErrorCode.ServerShuttingDown || code === ErrorCode.RateLimited;
}

// src/connection.ts
var ConnectError = class extends Error {
  constructor(message, retry, refusal2) {
    super(message);
    this.retry = retry;
    this.refusal = refusal2;
    this.name = "ConnectError";
  }
  retry;
  refusal;
};
function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
function pageSession() {
  const inline = document.getElementById("session")?.textContent;
  if (inline) {
    try {
      return Promise.resolve(checkedSession(JSON.parse(inline)));
    } catch (e) {
      if (e instanceof ConnectError) return Promise.reject(e);
    }
  }
  return fetchSession();
}
function checkedSession(info) {
  if (info.protocol_version !== PROTOCOL_VERSION) {
    throw new ConnectError(
      `the server speaks protocol version ${info.protocol_version}, this page ${PROTOCOL_VERSION}: reload the page`,
      false
    );
  }
  return info;
}
async function fetchSession() {
  let res;
  try {
    res = await fetch("/session.json", { cache: "no-store" });
  } catch (e) {
    throw new ConnectError(`the server is not reachable (${errorText(e)})`, true);
  }
  if (!res.ok) throw new ConnectError(`the server answered /session.json with HTTP ${res.status}`, true);
  return checkedSession(await res.json());
}
function errorText(e) {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
async function closeOf(wt) {
  try {
    const info = await wt.closed;
    return { kind: "server", code: info.closeCode ?? 0, reason: info.reason ?? "" };
  } catch (e) {
    const we = e;
    return { kind: "lost", reason: errorText(e) + (we.source ? ` (${we.source})` : "") };
  }
}
var Connection = class _Connection {
  constructor(wt, writer, closed, welcome, early) {
    this.wt = wt;
    this.welcome = welcome;
    this.early = early;
    this.writer = writer;
    this.closed = closed.then((c) => {
      this.ended = true;
      return this.fatal ? { kind: "server", ...this.fatal } : c;
    });
  }
  wt;
  welcome;
  early;
  writer;
  ended = false;
  /** The fatal Error the server sent, once read: the session's end, whatever the close says. */
  fatal;
  /** Resolves once, when the session ends for any reason. */
  closed;
  /** Connects, says hello, and resolves with the welcomed connection; media handlers start
   * at once after it resolves (call start()). */
  static async open(opts, session) {
    const info = await (session ?? fetchSession());
    mark("session_json");
    const query = opts.token ? `?token=${encodeURIComponent(opts.token)}` : "";
    const url = `https://${location.host}${info.webtransport_path}${query}`;
    const hashes = info.certificate_hashes.map((h) => ({
      algorithm: h.algorithm,
      value: base64ToBytes(h.value)
    }));
    let wt;
    try {
      wt = new WebTransport(url, hashes.length ? { serverCertificateHashes: hashes } : {});
    } catch (e) {
      throw new ConnectError(`cannot open WebTransport to ${url}: ${errorText(e)}`, false);
    }
    const closed = closeOf(wt);
    try {
      await wt.ready;
      mark("transport_ready");
    } catch (e) {
      throw new ConnectError(
        `the server refused this page's origin, or is not reachable: ${errorText(e)}`,
        true
      );
    }
    try {
      return await _Connection.welcome(wt, closed, opts);
    } catch (e) {
      try {
        wt.close({ closeCode: ErrorCode.NoError, reason: "viewer leaving" });
      } catch {
      }
      throw e;
    }
  }
  /** Says hello on a ready session and waits for the welcome or a refusal. */
  static async welcome(wt, closed, opts) {
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    const hello = encodeControl({
      type: "Hello",
      hello: {
        version: PROTOCOL_VERSION,
        rendition: opts.rendition,
        latency_target_ms: opts.latencyTargetMs,
        client_name: opts.clientName,
        token: opts.token
      }
    });
    try {
      await writer.write(hello);
    } catch (e) {
      throw await refusalOr(closed, `the server closed the control stream: ${errorText(e)}`);
    }
    const framer = new ControlFramer();
    const early = [];
    let welcome;
    while (!welcome) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw await refusalOr(closed, `the control stream broke: ${errorText(e)}`);
      }
      if (chunk.done) throw await refusalOr(closed, "the server ended the control stream");
      let msgs;
      try {
        msgs = framer.push(chunk.value);
      } catch (e) {
        wt.close({ closeCode: ErrorCode.MalformedMessage, reason: errorText(e) });
        throw new ConnectError(`the server sent a malformed message: ${errorText(e)}`, false);
      }
      for (const m of msgs) {
        if (welcome) early.push(m);
        else if (m.type === "Welcome") welcome = m.welcome;
        else if (m.type === "Error" && isFatal(m.code)) {
          closeQuietly(wt, m.code, m.message);
          throw refusal(m.code, m.message);
        } else {
          early.push(m);
        }
      }
    }
    mark("welcome");
    const conn = new _Connection(wt, writer, closed, welcome, early.filter((m) => m.type !== "Error"));
    conn.pendingReader = reader;
    conn.pendingFramer = framer;
    return conn;
  }
  pendingReader;
  pendingFramer;
  /** Starts reading the control stream, frame streams and datagrams into `h`. */
  start(h, nowUs2) {
    for (const m of this.early) h.message(m);
    void this.readControl(this.pendingReader, this.pendingFramer, h);
    void this.readFrames(h, nowUs2);
    void this.readDatagrams(h);
  }
  send(msg) {
    if (this.ended) return;
    this.writer.write(encodeControl(msg)).catch(() => {
    });
  }
  /** Leaves: code 0, "viewer leaving", as the native viewer. */
  close(code = ErrorCode.NoError, reason = "viewer leaving") {
    if (this.ended) return;
    try {
      this.wt.close({ closeCode: code, reason });
    } catch {
    }
  }
  async readControl(reader, framer, h) {
    for (; ; ) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        return;
      }
      if (chunk.done) return;
      try {
        for (const m of framer.push(chunk.value)) {
          if (m.type === "Error" && isFatal(m.code)) this.fatal = { code: m.code, reason: m.message };
          h.message(m);
          if (this.fatal) {
            closeQuietly(this.wt, this.fatal.code, this.fatal.reason);
            return;
          }
        }
      } catch (e) {
        this.close(ErrorCode.MalformedMessage, errorText(e));
        return;
      }
    }
  }
  async readFrames(h, nowUs2) {
    const streams = this.wt.incomingUnidirectionalStreams.getReader();
    for (; ; ) {
      let next;
      try {
        next = await streams.read();
      } catch {
        return;
      }
      if (next.done) return;
      void readFrame(next.value, h, nowUs2);
    }
  }
  async readDatagrams(h) {
    const datagrams = this.wt.datagrams.readable.getReader();
    for (; ; ) {
      let next;
      try {
        next = await datagrams.read();
      } catch {
        return;
      }
      if (next.done) return;
      h.datagram(next.value);
    }
  }
};
function isFatal(code) {
  return code !== ErrorCode.UnknownRendition && code !== ErrorCode.NoError;
}
function closeQuietly(wt, code, reason) {
  try {
    wt.close({ closeCode: code, reason });
  } catch {
  }
}
function refusal(code, reason) {
  return new ConnectError(
    `the server refused the session: ${explain(code)}${reason ? ` (${reason})` : ""}`,
    worthRetrying(code),
    { code, reason: reason || describe(code) }
  );
}
async function refusalOr(closed, fallback) {
  const c = await Promise.race([
    closed,
    new Promise((r) => setTimeout(() => r(void 0), 1500))
  ]);
  if (c?.kind === "server" && c.code !== ErrorCode.NoError) return refusal(c.code, c.reason);
  return new ConnectError(c?.kind === "lost" ? `${fallback} (${c.reason})` : fallback, true);
}
async function readFrame(stream, h, nowUs2) {
  const reader = stream.getReader();
  const chunks = [];
  let have = 0;
  let header;
  let payload;
  let filled = 0;
  let firstByteUs = 0;
  try {
    for (; ; ) {
      const { value, done } = await reader.read();
      if (done) break;
      if (have === 0 && !header) firstByteUs = nowUs2();
      if (!header) {
        chunks.push(value);
        have += value.length;
        if (have < FRAME_HEADER_PREFIX) continue;
        const joined = concat(chunks, have);
        const len = frameHeaderLen(joined);
        if (have < len) {
          chunks.length = 0;
          chunks.push(joined);
          continue;
        }
        header = decodeFrameHeader(joined);
        payload = new Uint8Array(header.payload_len);
        const rest = joined.subarray(len);
        if (rest.length > payload.length) throw new DecodeError("bytes after the payload");
        payload.set(rest);
        filled = rest.length;
      } else {
        if (filled + value.length > payload.length) throw new DecodeError("bytes after the payload");
        payload.set(value, filled);
        filled += value.length;
      }
    }
  } catch (e) {
    if (e instanceof DecodeError) {
      h.frameMalformed(e.message);
      reader.cancel().catch(() => {
      });
    } else {
      h.frameLost(errorText(e));
    }
    return;
  }
  if (!header || filled < header.payload_len) {
    h.frameMalformed(header ? "frame stream ended before its payload" : "frame stream ended before its header");
    return;
  }
  mark("first_frame");
  h.frame({ header, payload, firstByteUs, lastByteUs: nowUs2() });
}
function concat(chunks, total) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// src/auto_quality.ts
var FIRST_PROBE_WAIT_S = 5;
var MAX_PROBE_WAIT_S = 60;
var PROBE_SETTLED_S = 20;
var QUEUE_GROWTH_US = 15e4;
var UP_BLOCKING_GROWTH_US = 6e4;
var HEAVY_LOSS = 0.1;
var BASELINE_WINDOW_S = 20;
var THROUGHPUT_HEADROOM = 0.85;
var SWITCH_GRACE_S = 2;
var AutoQuality = class {
  /** `ladderKbps`: bitrates highest first; `cap`: highest rung allowed; `targetUs`: the
   * latency target. */
  constructor(ladderKbps, cap, targetUs) {
    this.ladderKbps = ladderKbps;
    this.targetUs = targetUs;
    this.top = Math.min(cap, Math.max(0, ladderKbps.length - 1));
  }
  ladderKbps;
  targetUs;
  top;
  last;
  latencyP50s = [];
  rtts = [];
  cleanSeconds = 0;
  probeWaitS = FIRST_PROBE_WAIT_S;
  probing;
  lossySeconds = 0;
  graceS = 0;
  /** Forgets the counters' last values (after a pause or reconnection). */
  restart() {
    this.last = void 0;
    this.cleanSeconds = 0;
  }
  tick(obs, index) {
    const d = this.decide(obs, index);
    if (d) this.graceS = SWITCH_GRACE_S;
    return d;
  }
  decide(obs, index) {
    const inGrace = this.graceS > 0;
    this.graceS = Math.max(0, this.graceS - 1);
    const usualLatency = this.latencyP50s.length ? Math.min(...this.latencyP50s) : void 0;
    const minRtt = this.rtts.length ? Math.min(...this.rtts) : void 0;
    pushWindow(this.latencyP50s, obs.latency_p50_us);
    pushWindow(this.rtts, obs.rtt_us);
    const last = this.last;
    this.last = obs;
    if (!last) return void 0;
    const delta = (now, before) => Math.max(0, now - before);
    const throughput_kbps = Math.floor(delta(obs.video_bytes, last.video_bytes) * 8 / 1e3);
    const played = delta(obs.audio_played, last.audio_played);
    const concealed = delta(obs.audio_concealed, last.audio_concealed);
    const loss = played + concealed >= 10 ? concealed / (played + concealed) : 0;
    this.lossySeconds = loss >= HEAVY_LOSS ? this.lossySeconds + 1 : 0;
    const reset = delta(obs.frames_reset, last.frames_reset);
    const skipped = delta(obs.frames_skipped, last.frames_skipped);
    const busy = delta(obs.frames_dropped_busy, last.frames_dropped_busy);
    const latencyGrowth = obs.latency_p90_us !== void 0 && usualLatency !== void 0 && !inGrace ? { now: obs.latency_p90_us, usual: usualLatency, growth: Math.max(0, obs.latency_p90_us - usualLatency) } : void 0;
    const rttGrowth = obs.rtt_us !== void 0 && minRtt !== void 0 && !inGrace ? { now: obs.rtt_us, min: minRtt, growth: Math.max(0, obs.rtt_us - minRtt) } : void 0;
    const overTarget = obs.latency_p90_us !== void 0 && !inGrace && obs.latency_p90_us > this.targetUs;
    const ms = (us) => Math.floor(us / 1e3);
    let trouble;
    if (reset >= 2) trouble = { reason: `${reset} frames missed their deadline`, congestion: true };
    else if (overTarget)
      trouble = {
        reason: `latency ${ms(obs.latency_p90_us)} ms, over the ${ms(this.targetUs)} ms target`,
        congestion: true
      };
    else if (latencyGrowth && latencyGrowth.growth > QUEUE_GROWTH_US)
      trouble = {
        reason: `latency ${ms(latencyGrowth.now)} ms, usually ${ms(latencyGrowth.usual)} ms`,
        congestion: true
      };
    else if (rttGrowth && rttGrowth.growth > QUEUE_GROWTH_US)
      trouble = { reason: `round trip ${ms(rttGrowth.now)} ms, at least ${ms(rttGrowth.min)} ms`, congestion: true };
    else if (skipped > 2) trouble = { reason: `${skipped} frames skipped`, congestion: false };
    else if (busy > 2) trouble = { reason: `decoder behind (${busy} frames dropped)`, congestion: false };
    else if (this.lossySeconds >= 2)
      trouble = { reason: `${(loss * 100).toFixed(0)}% packet loss`, congestion: false };
    if (trouble) {
      this.cleanSeconds = 0;
      this.lossySeconds = 0;
      if (this.probing) {
        if (this.probing.rung === index) this.probeWaitS = Math.min(this.probeWaitS * 2, MAX_PROBE_WAIT_S);
        this.probing = void 0;
      }
      let to = index + 1;
      if (trouble.congestion) {
        const fits = Math.floor(throughput_kbps * THROUGHPUT_HEADROOM);
        while (to + 1 < this.ladderKbps.length && this.ladderKbps[to] > fits) to++;
      }
      to = Math.max(Math.min(to, this.ladderKbps.length - 1), this.top);
      return to !== index ? { to, reason: trouble.reason, throughput_kbps } : void 0;
    }
    if (this.probing) {
      this.probing.age++;
      if (this.probing.age >= PROBE_SETTLED_S && this.probing.rung === index) {
        this.probing = void 0;
        this.probeWaitS = FIRST_PROBE_WAIT_S;
      }
    }
    if (index < this.top) return { to: this.top, reason: "0 s without trouble", throughput_kbps };
    const settling = latencyGrowth !== void 0 && latencyGrowth.growth > UP_BLOCKING_GROWTH_US || rttGrowth !== void 0 && rttGrowth.growth > UP_BLOCKING_GROWTH_US || reset > 0 || skipped > 0;
    if (settling) {
      this.cleanSeconds = 0;
      return void 0;
    }
    this.cleanSeconds++;
    if (this.cleanSeconds >= this.probeWaitS && index > this.top) {
      const seconds = this.cleanSeconds;
      this.cleanSeconds = 0;
      this.probing = { rung: index - 1, age: 0 };
      return { to: index - 1, reason: `${seconds} s without trouble`, throughput_kbps };
    }
    return void 0;
  }
};
function pushWindow(window2, value) {
  if (value === void 0) return;
  window2.push(value);
  if (window2.length > BASELINE_WINDOW_S) window2.shift();
}

// src/backoff.ts
var FIRST_MS = 250;
var MAX_MS = 5e3;
var Backoff = class {
  constructor(random = Math.random) {
    this.random = random;
  }
  random;
  nextMs = FIRST_MS;
  /** Starts over (a new outage). */
  reset() {
    this.nextMs = FIRST_MS;
  }
  nextWaitMs() {
    const wait = this.nextMs * (0.8 + 0.4 * this.random());
    this.nextMs = Math.min(this.nextMs * 2, MAX_MS);
    return wait;
  }
};

// src/clock_sync.ts
function offsetOf(e) {
  return Math.trunc((e.server_receive - e.client_send + (e.server_send - e.client_receive)) / 2);
}
function rttOf(e) {
  return Math.max(0, e.client_receive - e.client_send - Math.max(0, e.server_send - e.server_receive));
}
var WINDOW = 16;
var ClockSync = class {
  samples = [];
  coarse;
  /** A first estimate from the welcome's timestamp (error up to one round trip). */
  setCoarse(serverTimeUs, clientReceiveUs) {
    this.coarse = serverTimeUs - clientReceiveUs;
  }
  /** The round trip of the latest exchange (the page's stand-in for QUIC's smoothed RTT,
   * which WebTransport does not expose). */
  lastRttUs;
  add(e) {
    this.lastRttUs = rttOf(e);
    if (this.samples.length === WINDOW) this.samples.shift();
    this.samples.push({ offset: offsetOf(e), rtt: rttOf(e) });
  }
  /** server clock − page clock in µs, if known. */
  offsetUs() {
    let best;
    for (const s of this.samples) if (best === void 0 || s.rtt < best.rtt) best = s;
    return best?.offset ?? this.coarse;
  }
  minRttUs() {
    return this.samples.length ? Math.min(...this.samples.map((s) => s.rtt)) : void 0;
  }
  get sampleCount() {
    return this.samples.length;
  }
  /** A page clock reading on the server's clock. */
  toServer(clientUs) {
    const o = this.offsetUs();
    return o === void 0 ? void 0 : Math.max(0, clientUs + o);
  }
};

// src/control.ts
var FIRST_PINGS_EVERY_US = 5e4;
var FIRST_PINGS = 5;
var PINGS_EVERY_US = 1e6;
var PINGS_KEPT = 16;
var AUTO_EVERY_US = 1e6;
var REPORT_EVERY_US = 2e6;
var SELECT_SPACING_US = 1e5;
var KEYFRAME_SPACING_US = 5e4;
var ViewerControl = class {
  constructor(opts) {
    this.opts = opts;
    this.auto = opts.position === void 0;
    this.index = opts.position ?? 0;
    this.backoff = new Backoff(opts.random);
  }
  opts;
  link = { state: "starting" };
  ladder = [];
  /** The ladder position asked for last (or confirmed since). */
  index;
  confirmed;
  auto;
  autoQuality;
  reason;
  paused = false;
  audioBitrates = [];
  audioBitrate = 0;
  clock = new ClockSync();
  pings = { seq: 0, sentAt: /* @__PURE__ */ new Map(), nextUs: 0 };
  autoNextUs;
  reportNextUs;
  loss;
  sampling = { auto: false, report: false };
  lastSelectUs;
  heldSelect;
  lastKeyframeRequest;
  backoff;
  /** The estimate of the server clock of this connection. */
  get clockSync() {
    return this.clock;
  }
  get ladderNow() {
    return this.ladder;
  }
  /** The rendition byte a hello asks for, first or after a reconnection. */
  helloRendition() {
    if (this.auto) return AUTO_RENDITION;
    return this.idAt(this.index);
  }
  nextTimerUs() {
    switch (this.link.state) {
      case "up": {
        const held = this.heldSelect !== void 0 && this.lastSelectUs !== void 0 ? this.lastSelectUs + SELECT_SPACING_US : void 0;
        const times = [this.pings.nextUs, this.reportNextUs, this.auto ? this.autoNextUs : void 0, held];
        return Math.min(...times.filter((t) => t !== void 0));
      }
      case "down":
        return this.link.retryAtUs;
      default:
        return void 0;
    }
  }
  handle(nowUs2, event) {
    const out = [];
    if (this.link.state === "over") return out;
    switch (event.kind) {
      case "connected":
        this.connected(nowUs2, event.welcome, out);
        break;
      case "command":
        this.command(nowUs2, event.command, out);
        break;
      case "server":
        this.server(nowUs2, event.message, out);
        break;
      case "keyframe-wanted":
        this.keyframeWanted(nowUs2, event.rendition, out);
        break;
      case "sampled":
        this.sampled(nowUs2, event.readings, out);
        break;
      case "lost":
        this.lost(nowUs2, event.reason, out);
        break;
      case "connect-failed":
        this.connectFailed(nowUs2, event.error, event.retry, out);
        break;
      case "timer":
        this.timer(nowUs2, out);
        break;
    }
    return out;
  }
  idAt(index) {
    return this.ladder[index]?.id ?? index;
  }
  positionOf(id) {
    const i = this.ladder.findIndex((r) => r.id === id);
    return i < 0 ? void 0 : i;
  }
  choices() {
    return { kind: "note", note: { kind: "choices", auto: this.auto, paused: this.paused } };
  }
  restartAuto(nowUs2) {
    this.autoQuality = new AutoQuality(
      this.ladder.map((r) => r.bitrate_kbps),
      0,
      this.opts.latencyTargetUs
    );
    this.autoNextUs = nowUs2 + AUTO_EVERY_US;
  }
  connected(nowUs2, w, out) {
    const first = this.link.state === "starting";
    this.clock = new ClockSync();
    this.clock.setCoarse(w.server_time_us, nowUs2);
    this.ladder = w.renditions;
    this.audioBitrates = w.audio_bitrates;
    this.audioBitrate = w.audio.bitrate_bps;
    this.confirmed = w.rendition;
    this.index = this.positionOf(w.rendition) ?? 0;
    this.pings = { seq: 0, sentAt: /* @__PURE__ */ new Map(), nextUs: nowUs2 };
    this.reportNextUs = nowUs2;
    this.loss = void 0;
    this.sampling = { auto: false, report: false };
    this.heldSelect = void 0;
    this.lastSelectUs = void 0;
    this.lastKeyframeRequest = void 0;
    let reason;
    if (first) {
      reason = this.opts.position === void 0 ? "the server's first choice" : "?quality in the address";
      this.link = { state: "up" };
    } else {
      if (this.link.state === "down") {
        out.push({ kind: "note", note: { kind: "reconnected", sinceUs: this.link.sinceUs } });
      }
      this.link = { state: "up" };
      out.push({ kind: "decoder", event: { kind: "resync" } });
      reason = "reconnected";
    }
    out.push({ kind: "decoder", event: { kind: "target", rendition: w.rendition } });
    out.push({ kind: "note", note: { kind: "clock", offsetUs: this.clock.offsetUs() } });
    out.push({ kind: "note", note: { kind: "rendition-confirmed", rendition: w.rendition, reason } });
    out.push({ kind: "note", note: { kind: "audio-bitrate", bps: this.audioBitrate } });
    if (this.auto) this.restartAuto(nowUs2);
    if (!first && this.paused) out.push({ kind: "send", message: { type: "SetPaused", paused: true } });
    out.push(this.choices());
  }
  select(nowUs2, index, out) {
    const r = this.ladder[index];
    if (!r) return;
    this.index = index;
    this.request(nowUs2, r.id, out);
  }
  request(nowUs2, rendition, out) {
    if (this.link.state !== "up") return;
    out.push({ kind: "decoder", event: { kind: "switch-asked", atUs: nowUs2 } });
    if (this.lastSelectUs !== void 0 && nowUs2 < this.lastSelectUs + SELECT_SPACING_US) {
      this.heldSelect = rendition;
    } else {
      this.lastSelectUs = nowUs2;
      this.heldSelect = void 0;
      out.push({ kind: "send", message: { type: "SelectRendition", rendition } });
    }
  }
  command(nowUs2, cmd, out) {
    const up = this.link.state === "up";
    switch (cmd.kind) {
      case "quality":
        if (cmd.position >= this.ladder.length) return;
        this.manual(nowUs2, cmd.position, out);
        break;
      case "quality-up":
        this.manual(nowUs2, this.index > 0 ? this.index - 1 : void 0, out);
        break;
      case "quality-down":
        this.manual(nowUs2, this.index + 1 < this.ladder.length ? this.index + 1 : void 0, out);
        break;
      case "auto":
        this.auto = true;
        this.reason = "automatic: starting from the top";
        this.restartAuto(nowUs2);
        this.request(nowUs2, AUTO_RENDITION, out);
        out.push(this.choices());
        break;
      case "audio-bitrate-up":
      case "audio-bitrate-down": {
        const at = this.audioBitrates.indexOf(this.audioBitrate);
        if (at < 0) return;
        const to = this.audioBitrates[cmd.kind === "audio-bitrate-up" ? at + 1 : at - 1];
        if (up && to !== void 0) out.push({ kind: "send", message: { type: "SetAudioBitrate", bitrate_bps: to } });
        break;
      }
      case "toggle-pause":
        this.paused = !this.paused;
        if (up) out.push({ kind: "send", message: { type: "SetPaused", paused: this.paused } });
        if (!this.paused) {
          out.push({ kind: "decoder", event: { kind: "resync" } });
          this.autoQuality?.restart();
        }
        out.push(this.choices());
        break;
    }
  }
  /** A rendition chosen by the viewer (undefined: nowhere to go, but automatic is off). */
  manual(nowUs2, to, out) {
    const wasAuto = this.auto;
    this.auto = false;
    this.autoNextUs = void 0;
    this.reason = "chosen by the viewer";
    const i = to ?? (wasAuto ? this.index : void 0);
    if (i !== void 0 && (wasAuto || i !== this.index || this.heldSelect !== void 0)) {
      this.select(nowUs2, i, out);
    }
    out.push(this.choices());
  }
  server(nowUs2, msg, out) {
    switch (msg.type) {
      case "Pong": {
        const sent = this.pings.sentAt.get(msg.seq);
        this.pings.sentAt.delete(msg.seq);
        if (sent !== void 0 && sent === msg.client_time_us) {
          this.clock.add({
            client_send: msg.client_time_us,
            server_receive: msg.server_receive_us,
            server_send: msg.server_send_us,
            client_receive: nowUs2
          });
          out.push({
            kind: "note",
            note: { kind: "clock", offsetUs: this.clock.offsetUs(), minRttUs: this.clock.minRttUs() }
          });
        }
        break;
      }
      case "RenditionChanged": {
        out.push({ kind: "decoder", event: { kind: "target", rendition: msg.rendition } });
        this.confirmed = msg.rendition;
        if (this.heldSelect === void 0) {
          const i = this.positionOf(msg.rendition);
          if (i !== void 0) this.index = i;
        }
        out.push({
          kind: "note",
          note: { kind: "rendition-confirmed", rendition: msg.rendition, reason: this.reason ?? "the server's choice" }
        });
        break;
      }
      case "BroadcastPaused":
        if (msg.paused) out.push({ kind: "decoder", event: { kind: "resync" } });
        this.autoQuality?.restart();
        out.push({ kind: "note", note: { kind: "broadcast-paused", paused: msg.paused } });
        break;
      case "AudioBitrateChanged":
        this.audioBitrate = msg.bitrate_bps;
        out.push({ kind: "note", note: { kind: "audio-bitrate", bps: msg.bitrate_bps } });
        break;
      case "Error":
        if (msg.code === ErrorCode.UnknownRendition) {
          const i = this.confirmed !== void 0 ? this.positionOf(this.confirmed) : void 0;
          if (i !== void 0) this.index = i;
          this.heldSelect = void 0;
          out.push({ kind: "decoder", event: { kind: "switch-abandoned" } });
        }
        break;
      case "Goodbye":
        this.link = { state: "over" };
        out.push({ kind: "end", ended: { kind: "server", code: msg.code, message: msg.message } });
        break;
      default:
        break;
    }
  }
  keyframeWanted(nowUs2, rendition, out) {
    if (this.link.state !== "up") return;
    const last = this.lastKeyframeRequest;
    if (last && last.rendition === rendition && nowUs2 < last.atUs + KEYFRAME_SPACING_US) return;
    this.lastKeyframeRequest = { rendition, atUs: nowUs2 };
    out.push({ kind: "send", message: { type: "KeyframeRequest", rendition } });
  }
  timer(nowUs2, out) {
    if (this.link.state === "down") {
      if (this.link.retryAtUs !== void 0 && nowUs2 >= this.link.retryAtUs) {
        this.link.retryAtUs = void 0;
        this.link.attempt++;
        out.push({ kind: "note", note: { kind: "attempt", n: this.link.attempt } });
        out.push({ kind: "connect", rendition: this.helloRendition() });
      }
      return;
    }
    if (this.link.state !== "up") return;
    if (nowUs2 >= this.pings.nextUs) {
      const seq = this.pings.seq;
      this.pings.sentAt.set(seq, nowUs2);
      for (const s of this.pings.sentAt.keys()) if (seq - s >>> 0 >= PINGS_KEPT) this.pings.sentAt.delete(s);
      this.pings.seq = seq + 1 >>> 0;
      this.pings.nextUs = nowUs2 + (seq + 1 < FIRST_PINGS ? FIRST_PINGS_EVERY_US : PINGS_EVERY_US);
      out.push({ kind: "send", message: { type: "Ping", seq, client_time_us: nowUs2 } });
    }
    if (this.heldSelect !== void 0 && this.lastSelectUs !== void 0 && nowUs2 >= this.lastSelectUs + SELECT_SPACING_US) {
      const rendition = this.heldSelect;
      this.heldSelect = void 0;
      this.lastSelectUs = nowUs2;
      out.push({ kind: "send", message: { type: "SelectRendition", rendition } });
    }
    const autoDue = this.auto && this.autoNextUs !== void 0 && nowUs2 >= this.autoNextUs;
    const reportDue = this.reportNextUs !== void 0 && nowUs2 >= this.reportNextUs;
    if (autoDue) this.autoNextUs = nowUs2 + AUTO_EVERY_US;
    if (reportDue) this.reportNextUs = nowUs2 + REPORT_EVERY_US;
    if (autoDue || reportDue) {
      this.sampling = { auto: autoDue, report: reportDue };
      out.push({ kind: "sample", auto: autoDue });
    }
  }
  sampled(nowUs2, r, out) {
    const { auto: autoDue, report: reportDue } = this.sampling;
    this.sampling = { auto: false, report: false };
    if (this.link.state !== "up") return;
    if (reportDue) {
      if (!this.loss) this.loss = { played: r.audio_played, lost: r.audio_lost };
      else {
        const dp = Math.max(0, r.audio_played - this.loss.played);
        const dl = Math.max(0, r.audio_lost - this.loss.lost);
        this.loss = { played: r.audio_played, lost: r.audio_lost };
        if (dp + dl >= 20) {
          out.push({
            kind: "send",
            message: { type: "ReceiverReport", audio_loss_permille: Math.floor(1e3 * dl / (dp + dl)) }
          });
        }
      }
    }
    if (!(autoDue && this.auto)) return;
    const d = this.autoQuality?.tick(r.observation, this.index);
    if (!d) return;
    const to = this.ladder[d.to];
    if (!to) return;
    this.reason = `${d.to > this.index ? "down" : "up"} to ${to.name}: ${d.reason}`;
    this.select(nowUs2, d.to, out);
  }
  lost(nowUs2, reason, out) {
    if (this.link.state !== "up") return;
    out.push({ kind: "note", note: { kind: "lost", reason, sinceUs: nowUs2 } });
    this.autoNextUs = void 0;
    this.reportNextUs = void 0;
    this.heldSelect = void 0;
    this.backoff.reset();
    this.link = {
      state: "down",
      reason,
      sinceUs: nowUs2,
      attempt: 0,
      retryAtUs: nowUs2 + this.backoff.nextWaitMs() * 1e3
    };
  }
  connectFailed(nowUs2, error, retry, out) {
    if (this.link.state !== "down") return;
    if (retry) {
      this.link.retryAtUs = nowUs2 + this.backoff.nextWaitMs() * 1e3;
      return;
    }
    const reason = `${this.link.reason}; reconnecting failed: ${error}`;
    this.link = { state: "over" };
    out.push({ kind: "note", note: { kind: "gave-up" } });
    out.push({ kind: "end", ended: { kind: "lost", reason } });
  }
};

// src/keys.ts
var HELP = [
  ["1-9", "rendition 1-9 of the ladder"],
  ["Up / +", "higher quality"],
  ["Down / -", "lower quality"],
  ["A", "automatic quality"],
  ["[ / ]", "audio bitrate down / up"],
  ["M", "mute / unmute"],
  ["Space", "pause / resume"],
  ["S", "stats overlay"],
  ["H / F1", "this help"]
];
function forKey(key, code = "") {
  if (/^[1-9]$/.test(key)) return { kind: "quality", position: Number(key) - 1 };
  switch (key) {
    case "ArrowUp":
    case "+":
    case "=":
      return { kind: "quality-up" };
    case "ArrowDown":
    case "-":
      return { kind: "quality-down" };
    case "a":
    case "A":
      return { kind: "auto" };
    case "[":
      return { kind: "audio-bitrate-down" };
    case "]":
      return { kind: "audio-bitrate-up" };
    case "m":
    case "M":
      return { kind: "toggle-mute" };
    case " ":
      return { kind: "toggle-pause" };
    case "s":
    case "S":
      return { kind: "toggle-stats" };
    case "h":
    case "H":
    case "F1":
      return { kind: "toggle-help" };
  }
  if (code === "NumpadAdd") return { kind: "quality-up" };
  if (code === "NumpadSubtract") return { kind: "quality-down" };
  return void 0;
}

// src/playout.ts
var RATE = 48e3;
var FRAMES_PER_US = RATE / 1e6;
var START_US = 4e4;
var FLOOR_US = 1e4;
var AUDIO_MARGIN_US = 5e3;
var STRETCH_BELOW_US = 1e4;
var CATCH_UP_ABOVE_US = 2e4;
var MAX_SILENCE_US = 1e5;
var TRANSIT_WINDOW = 150;
var SETTLING_US = 3e5;
var MIN_TRANSITS = 10;
var Playout = class {
  constructor(counters, ceilingUs, startedUs) {
    this.counters = counters;
    this.ceilingUs = ceilingUs;
    this.startedUs = startedUs;
  }
  counters;
  ceilingUs;
  startedUs;
  anchor;
  targetUs = START_US;
  packetUs = 1e4;
  transits = [];
  lastArrivalUs;
  /** Packets by seq not yet played, for the played / concealed accounting. */
  pending = /* @__PURE__ */ new Map();
  expectedSeq;
  /** Packets played and lost since the start, for receiver reports and automatic quality. */
  played = 0;
  lost = 0;
  /** Starts over (a reconnection: another server's clock and numbering). */
  reset() {
    this.anchor = void 0;
    this.pending.clear();
    this.expectedSeq = void 0;
    this.lastArrivalUs = void 0;
  }
  /** A packet arrived (page clock `nowUs`): whether to decode it. */
  arrive(seq, capture_us, durationUs, nowUs2, serverNowUs) {
    this.packetUs = durationUs ?? this.packetUs;
    const settling = nowUs2 - this.startedUs < SETTLING_US;
    if (serverNowUs !== void 0) {
      const transit = serverNowUs - capture_us;
      if (settling && transit > MAX_SILENCE_US) {
        this.counters.packets_dropped_catch_up++;
        return false;
      }
      if (!settling) {
        if (this.transits.length === TRANSIT_WINDOW) this.transits.shift();
        this.transits.push(transit);
      }
    }
    if (this.lastArrivalUs !== void 0 && nowUs2 - this.lastArrivalUs > MAX_SILENCE_US + this.targetUs) {
      this.reset();
    }
    this.lastArrivalUs = nowUs2;
    if (this.pending.has(seq)) return false;
    this.pending.set(seq, { capture_us, scheduled: false });
    return true;
  }
  /** Where a decoded packet of `length` samples goes in the context's frames, or undefined
   * when it does not play (too late, no clock yet, or forgotten by a reset). */
  place(seq, capture_us, length, c) {
    const entry = this.pending.get(seq);
    if (!entry) return void 0;
    if (!this.anchor && c.serverNowUs !== void 0 && c.outputFrame !== void 0) {
      const delay = Math.max(this.targetUs, c.serverNowUs - capture_us + c.outputLeadUs + AUDIO_MARGIN_US);
      this.anchorAt(capture_us, delay, c);
    }
    if (!this.anchor) {
      this.pending.delete(seq);
      return void 0;
    }
    const frame = Math.round(this.anchor.frame + (capture_us - this.anchor.capture_us) * FRAMES_PER_US);
    if (frame + length <= c.processingFrame) {
      this.counters.packets_late++;
      return void 0;
    }
    entry.scheduled = true;
    return frame;
  }
  /** Ties a capture time to the frame that plays it `delayUs` after capture. */
  anchorAt(capture_us, delayUs, c) {
    if (c.outputFrame === void 0 || c.serverNowUs === void 0) return;
    this.anchor = { frame: c.outputFrame + (capture_us + delayUs - c.serverNowUs) * FRAMES_PER_US, capture_us };
  }
  /** The capture time at the speaker now, by the anchor. */
  heardCaptureUs(c) {
    if (c.outputFrame === void 0 || !this.anchor) return void 0;
    return this.anchor.capture_us + (c.outputFrame - this.anchor.frame) / FRAMES_PER_US;
  }
  /** The delay audio plays at now: capture to heard. */
  delayUs(c) {
    const heard = this.heardCaptureUs(c);
    return heard === void 0 || c.serverNowUs === void 0 ? void 0 : c.serverNowUs - heard;
  }
  /** Whether audio can still wait for late pictures (it is below its ceiling). */
  canWait(c) {
    const d = this.delayUs(c);
    return d === void 0 || d + this.packetUs < this.ceilingUs;
  }
  /** The page time (µs) at which a context frame reaches the speaker, given the page time of
   * the clocks' reading. */
  static pageTimeOfFrame(frame, c, nowUs2) {
    return c.outputFrame === void 0 ? void 0 : nowUs2 + (frame - c.outputFrame) / FRAMES_PER_US;
  }
  /** Accounts for what reached the speaker: played if it was scheduled in time, concealed
   * (lost) if it was not, or never came while a later one did. */
  account(c) {
    const heard = this.heardCaptureUs(c);
    if (heard === void 0 || !this.pending.size) return;
    const n = this.counters;
    if (this.expectedSeq === void 0) this.expectedSeq = Math.min(...this.pending.keys());
    for (; ; ) {
      const seq = this.expectedSeq;
      const p = this.pending.get(seq);
      if (p) {
        if (p.capture_us > heard) break;
        this.pending.delete(seq);
        if (p.scheduled) {
          n.packets_decoded++;
          this.played++;
        } else {
          n.packets_concealed++;
          this.lost++;
        }
      } else {
        let later = false;
        for (const [s, q] of this.pending) if (s > seq && q.capture_us <= heard) later = true;
        if (!later) break;
        n.packets_concealed++;
        this.lost++;
      }
      this.expectedSeq = seq + 1 >>> 0;
    }
  }
  /** Recomputes the target and corrects the delay when it strayed out of the band. */
  update(c, videoNeedUs) {
    const sorted = [...this.transits].sort((x, y) => x - y);
    const n = this.counters;
    let target = START_US;
    if (sorted.length) {
      const p99 = sorted[Math.round((sorted.length - 1) * 0.99)];
      const p50 = sorted[Math.round((sorted.length - 1) * 0.5)];
      n.jitter_ms = (p99 - p50) / 1e3;
      target = p99 + AUDIO_MARGIN_US + c.outputLeadUs;
    }
    target = Math.max(target, videoNeedUs ?? 0);
    target = Math.min(Math.max(target, FLOOR_US), this.ceilingUs);
    this.targetUs = target;
    n.target_delay_ms = target / 1e3;
    const delay = this.delayUs(c);
    if (delay === void 0 || sorted.length < MIN_TRANSITS) return;
    if (delay < target - STRETCH_BELOW_US || delay > target + CATCH_UP_ABOVE_US) {
      if (delay < target) n.packets_stretched++;
      else n.packets_dropped_catch_up += Math.max(1, Math.floor((delay - target) / this.packetUs));
      this.anchorAt(this.heardCaptureUs(c), target, c);
    }
  }
};

// src/audio.ts
var FRAMES_PER_US2 = RATE / 1e6;
var CONTEXT_SETTLING_S = 0.1;
var AudioPipeline = class _AudioPipeline {
  constructor(ctx, node, gain, stats, nowUs2, serverNowUs, ceilingUs, videoNeedUs) {
    this.ctx = ctx;
    this.node = node;
    this.gain = gain;
    this.stats = stats;
    this.nowUs = nowUs2;
    this.serverNowUs = serverNowUs;
    this.videoNeedUs = videoNeedUs;
    this.decoder = this.makeDecoder();
    this.playout = new Playout(stats.audio, ceilingUs, nowUs2());
    node.port.onmessage = (e) => this.report(e.data);
  }
  ctx;
  node;
  gain;
  stats;
  nowUs;
  serverNowUs;
  videoNeedUs;
  decoder;
  playout;
  /** Packets in the decoder, in decoding order: its outputs come in the same order, one per
   * packet. (Their timestamps cannot be matched exactly: Chromium recomputes them and is 1 µs
   * off at times.) */
  inDecoder = [];
  /** Overflowing samples the worklet had reported at its last report. */
  reportedOverflow = 0;
  /** Sets up the context and the worklet; undefined (and video plays alone) if the browser
   * cannot: no audio must never stop video. */
  static async create(stats, nowUs2, serverNowUs, ceilingUs, latency, videoNeedUs) {
    if (typeof AudioContext === "undefined" || typeof AudioDecoder === "undefined") return void 0;
    try {
      const support = await AudioDecoder.isConfigSupported({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
      if (!support.supported) return void 0;
      const ctx = new AudioContext({ sampleRate: RATE, latencyHint: latency === "lowest" ? 0 : "interactive" });
      await ctx.audioWorklet.addModule("/worklet.js");
      const node = new AudioWorkletNode(ctx, "streamsocket-playout", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1]
      });
      const gain = new GainNode(ctx);
      node.connect(gain).connect(ctx.destination);
      return new _AudioPipeline(ctx, node, gain, stats, nowUs2, serverNowUs, ceilingUs, videoNeedUs);
    } catch (e) {
      console.warn("no sound:", e);
      return void 0;
    }
  }
  get running() {
    return this.ctx.state === "running";
  }
  /** Packets played and lost since the start (receiver reports, automatic quality). */
  get played() {
    return this.playout.played;
  }
  get lost() {
    return this.playout.lost;
  }
  setMuted(muted) {
    this.gain.gain.value = muted ? 0 : 1;
    this.stats.audio.muted = muted;
  }
  /** Starts over (a reconnection: another server's clock and numbering). */
  reset() {
    this.playout.reset();
    this.inDecoder = [];
    this.node.port.postMessage({ type: "flush" });
  }
  makeDecoder() {
    const d = new AudioDecoder({
      output: (data) => this.decoded(data),
      error: (e) => {
        console.warn("audio decoder error:", e.message);
        this.stats.audio.decode_errors++;
        this.inDecoder = [];
        this.decoder = this.makeDecoder();
      }
    });
    d.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
    return d;
  }
  /** The clocks now. */
  clocks() {
    const settled = this.running && this.ctx.currentTime >= CONTEXT_SETTLING_S;
    let outputFrame;
    if (settled) {
      const ts = this.ctx.getOutputTimestamp();
      if (ts.contextTime !== void 0 && ts.performanceTime !== void 0) {
        outputFrame = ts.contextTime * RATE + (performance.now() - ts.performanceTime) * 1e3 * FRAMES_PER_US2;
      }
    }
    return {
      serverNowUs: this.serverNowUs(),
      outputFrame,
      processingFrame: Math.ceil(this.ctx.currentTime * RATE),
      outputLeadUs: this.outputLatencyUs() + 128 / RATE * 1e6
    };
  }
  /** How far the renderer runs ahead of the speaker (the output's latency); the playout adds
   * a render quantum to it. */
  outputLatencyUs() {
    return ((this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0)) * 1e6;
  }
  datagram(bytes) {
    const a = this.stats.audio;
    let p;
    try {
      p = decodeAudioDatagram(bytes);
    } catch {
      a.packets_malformed++;
      return;
    }
    a.packets_received++;
    a.bytes += p.payload.length;
    const serverNow = this.serverNowUs();
    if (serverNow !== void 0) a.latency.record(serverNow - p.capture_us);
    const decode = this.playout.arrive(p.seq, p.capture_us, opusPacketDurationUs(p.payload), this.nowUs(), serverNow);
    if (!decode) return;
    if (this.decoder.state === "closed") this.decoder = this.makeDecoder();
    this.inDecoder.push({ seq: p.seq, capture_us: p.capture_us });
    try {
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: p.capture_us, data: p.payload }));
    } catch {
      a.decode_errors++;
    }
  }
  decoded(data) {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    const timestamp = data.timestamp;
    data.close();
    let at = 0;
    if (Math.abs((this.inDecoder[0]?.capture_us ?? timestamp) - timestamp) > 1e3) {
      at = this.inDecoder.findIndex((q) => Math.abs(q.capture_us - timestamp) <= 1e3);
      if (at < 0) return;
    }
    const info = this.inDecoder.splice(0, at + 1)[at];
    if (!info) return;
    const c = this.clocks();
    const frame = this.playout.place(info.seq, info.capture_us, samples.length, c);
    if (frame === void 0) return;
    this.node.port.postMessage({ type: "samples", frame, samples }, [samples.buffer]);
    const now = this.nowUs();
    const heardPageUs = Playout.pageTimeOfFrame(frame, c, now);
    if (heardPageUs !== void 0 && c.serverNowUs !== void 0) {
      this.stats.audio.playout_delay.record(c.serverNowUs + (heardPageUs - now) - info.capture_us);
      if (info.capture_us % 1e6 === 0) this.stats.avSkew.onClick(info.capture_us / 1e6, heardPageUs);
    }
  }
  delayUs() {
    return this.playout.delayUs(this.clocks());
  }
  canWait() {
    return this.playout.canWait(this.clocks());
  }
  /** Every 50 ms from the worklet: accounts what was played, and holds the delay at target. */
  report(r) {
    const perPacket = this.playout.packetUs * FRAMES_PER_US2;
    this.stats.audio.packets_dropped_overflow += Math.floor((r.overflowFrames - this.reportedOverflow) / perPacket);
    this.reportedOverflow = r.overflowFrames;
    const c = this.clocks();
    this.playout.account(c);
    this.playout.update(c, this.videoNeedUs());
  }
};

// src/pixel_clock.ts
var BLOCKS = 40;
var READ_ROWS = [1, 3];
var BLACK = 16;
var WHITE = 235;
var THRESHOLD = (BLACK + WHITE) / 2;
function rotl8(v, n) {
  return (v << n | v >> 8 - n) & 255;
}
function check(ms) {
  const b0 = ms >>> 24 & 255;
  const b1 = ms >>> 16 & 255;
  const b2 = ms >>> 8 & 255;
  const b3 = ms & 255;
  return (b0 ^ rotl8(b1, 1) ^ rotl8(b2, 2) ^ rotl8(b3, 3) ^ 165) & 255;
}
function blockSpan(width, i) {
  return [Math.floor(i * width / BLOCKS), Math.floor((i + 1) * width / BLOCKS)];
}
function msOfCapture(capture_us) {
  return Number(BigInt(Math.floor(capture_us / 1e3)) & 0xffffffffn);
}
function readWith(sample, width, height) {
  if (Math.floor(width / BLOCKS) < 2 || height < READ_ROWS[1]) return void 0;
  let ms = 0;
  let chk = 0;
  for (let i = 0; i < BLOCKS; i++) {
    const [start, end] = blockSpan(width, i);
    const quarter = Math.floor((end - start) / 4);
    let sum = 0;
    let n = 0;
    for (let y = READ_ROWS[0]; y < READ_ROWS[1]; y++) {
      for (let x = start + quarter; x < end - quarter; x++) {
        sum += sample(x, y);
        n++;
      }
    }
    const white = Math.floor(sum / n) > Math.floor(THRESHOLD) ? 1 : 0;
    if (i < 32) ms = (ms << 1 | white) >>> 0;
    else chk = chk << 1 | white;
  }
  return chk === check(ms) ? ms : void 0;
}
function readRgba(rgba, width, height) {
  return readWith(
    (x, y) => {
      const p = (y * width + x) * 4;
      return 16 + (65.481 * rgba[p] + 128.553 * rgba[p + 1] + 24.966 * rgba[p + 2]) / 255;
    },
    width,
    height
  );
}

// src/picture_queue.ts
var PICTURE_LEAD_US = 2e4;
var TOO_LATE_US = 15e3;
var CAPACITY = 32;
var PictureQueue = class {
  pictures = [];
  /** Adds a decoded picture (decoding is in order, so the queue stays in capture order);
   * returns the oldest, dropped, when the queue was full. */
  put(p) {
    const dropped = this.pictures.length === CAPACITY ? this.pictures.shift() : void 0;
    this.pictures.push(p);
    return dropped;
  }
  get length() {
    return this.pictures.length;
  }
  /** Empties the queue, returning what it held. */
  drain() {
    const all = this.pictures;
    this.pictures = [];
    return all;
  }
  /** The picture due at `nowUs` (server clock) given the audio's playout delay (undefined:
   * no audio). `dropLate`: drop a picture too late for the sound (else show it, counted). */
  takeDue(nowUs2, audioDelayUs, dropLate) {
    const due = { replaced: [], tooLate: [], shownLate: 0 };
    const dueAfter = Math.max(0, (audioDelayUs ?? 0) - PICTURE_LEAD_US);
    while (this.pictures.length && this.pictures[0].capture_us + dueAfter <= nowUs2) {
      const p = this.pictures.shift();
      if (due.picture) due.replaced.push(due.picture);
      due.picture = p;
    }
    if (due.picture && audioDelayUs !== void 0 && nowUs2 > due.picture.capture_us + audioDelayUs + TOO_LATE_US) {
      if (dropLate) {
        due.tooLate.push(due.picture);
        due.picture = void 0;
      } else due.shownLate++;
    }
    return due;
  }
};

// src/presenter.ts
var VIDEO_WINDOW = 90;
var PRESENT_MARGIN_US = 3e3;
var SETTLING_US2 = 5e5;
var Presenter = class {
  constructor(canvas2, stats, nowUs2, serverNowUs, audio) {
    this.canvas = canvas2;
    this.stats = stats;
    this.nowUs = nowUs2;
    this.serverNowUs = serverNowUs;
    this.audio = audio;
    this.ctx = canvas2.getContext("2d", { willReadFrequently: true, alpha: false });
    const tick = () => {
      this.tick();
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    setInterval(() => this.tick(), 10);
  }
  canvas;
  stats;
  nowUs;
  serverNowUs;
  audio;
  queue = new PictureQueue();
  ctx;
  readyLatencies = [];
  /** Until when pictures are not measured (page clock); set by the first picture. */
  settlingUntilUs;
  /** Called after every picture drawn (the overlay refreshes from it). */
  onShown;
  put(p) {
    const dropped = this.queue.put(p);
    if (dropped) {
      dropped.frame.close();
      this.stats.video.frames_dropped_queue_full++;
    }
    const serverNow = this.serverNowUs();
    this.settlingUntilUs ??= p.decoded_us + SETTLING_US2;
    if (serverNow !== void 0 && p.decoded_us >= this.settlingUntilUs) {
      pushBounded(this.readyLatencies, serverNow - p.capture_us, VIDEO_WINDOW);
    }
  }
  /** The delay video needs from audio for 95% of its pictures to be ready in time. */
  videoNeedUs() {
    if (!this.readyLatencies.length) return void 0;
    const s = [...this.readyLatencies].sort((a, b) => a - b);
    return Math.max(0, s[Math.round((s.length - 1) * 0.95)] + PRESENT_MARGIN_US - PICTURE_LEAD_US);
  }
  /** Drops every waiting picture and starts measuring afresh (a reconnection). */
  clear() {
    for (const p of this.queue.drain()) p.frame.close();
    this.readyLatencies = [];
    this.settlingUntilUs = void 0;
  }
  tick() {
    if (!this.queue.length) return;
    const serverNow = this.serverNowUs();
    const due = serverNow === void 0 ? this.queue.takeDue(Number.MAX_SAFE_INTEGER, void 0, false) : this.queue.takeDue(serverNow, this.audio.delayUs(), this.audio.canWait());
    const v = this.stats.video;
    for (const p of due.replaced) p.frame.close();
    for (const p of due.tooLate) p.frame.close();
    v.frames_not_presented += due.replaced.length;
    v.frames_too_late += due.tooLate.length;
    v.frames_shown_late += due.shownLate;
    if (due.picture) this.draw(due.picture);
  }
  draw(p) {
    const f = p.frame;
    const w = f.displayWidth;
    const h = f.displayHeight;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.drawImage(f, 0, 0, w, h);
    f.close();
    const now = this.nowUs();
    const v = this.stats.video;
    v.frames_presented++;
    v.stages.present.record(now - p.decoded_us);
    const serverNow = this.serverNowUs();
    if (serverNow !== void 0) v.latency_presented.record(serverNow - p.capture_us);
    this.readBack(p, w, h, now);
    this.onShown?.();
  }
  /** Reads the timestamp row and the flash square back from what the canvas shows. */
  readBack(p, w, h, now) {
    const row = this.ctx.getImageData(0, 0, w, 3);
    const ms = readRgba(row.data, w, 3);
    const pc = this.stats.video.pixel_clock;
    if (ms === void 0) pc.unreadable++;
    else {
      pc.read++;
      if (ms === msOfCapture(p.capture_us)) pc.matched++;
    }
    if (p.capture_us % 1e6 < 4e4) {
      const c = this.ctx.getImageData(Math.floor(w - h / 8 - h / 45), Math.floor(h - h / 8 - h / 45), 1, 1).data;
      if (c[0] > 200 && c[1] > 200 && c[2] > 200) {
        this.stats.avSkew.onFlash(Math.round(p.capture_us / 1e6), now);
      }
    }
  }
};
function pushBounded(a, v, len) {
  if (a.length === len) a.shift();
  a.push(v);
}

// src/stats.ts
var Latency = class _Latency {
  values = [];
  total = 0;
  sum = 0;
  max = 0;
  static KEEP = 2e4;
  record(us) {
    const v = Math.max(1, us);
    if (this.values.length === _Latency.KEEP) this.values.shift();
    this.values.push(v);
    this.total++;
    this.sum += v;
    this.max = Math.max(this.max, v);
  }
  get count() {
    return this.total;
  }
  reset() {
    this.values = [];
    this.total = 0;
    this.sum = 0;
    this.max = 0;
  }
  /** The value at quantile q in µs, or undefined when empty. */
  quantileUs(q) {
    if (this.values.length === 0) return void 0;
    const sorted = [...this.values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * q))];
  }
  percentileMs(q) {
    return (this.quantileUs(q) ?? 0) / 1e3;
  }
  /** As the native JSON: count, p50, p95, p99, max (null when empty), mean once there are values. */
  report() {
    const ms = (us) => us === void 0 ? null : round(us / 1e3, 2);
    const r = {
      count: this.total,
      max: this.total ? ms(this.max) : null,
      p50: ms(this.quantileUs(0.5)),
      p95: ms(this.quantileUs(0.95)),
      p99: ms(this.quantileUs(0.99))
    };
    if (this.total) r.mean = round(this.sum / this.total / 1e3, 2);
    return r;
  }
};
function round(v, decimals) {
  const k = 10 ** decimals;
  return Math.round(v * k) / k;
}
var AvSkew = class _AvSkew {
  flashes = /* @__PURE__ */ new Map();
  clicks = /* @__PURE__ */ new Map();
  skewsUs = [];
  static KEEP = 8;
  onFlash(second, shownUs) {
    const heard = this.clicks.get(second);
    if (heard !== void 0) {
      this.clicks.delete(second);
      this.skewsUs.push(shownUs - heard);
    } else _AvSkew.keep(this.flashes, second, shownUs);
  }
  onClick(second, heardUs) {
    const shown = this.flashes.get(second);
    if (shown !== void 0) {
      this.flashes.delete(second);
      this.skewsUs.push(shown - heardUs);
    } else _AvSkew.keep(this.clicks, second, heardUs);
  }
  static keep(m, second, at) {
    m.set(second, at);
    while (m.size > _AvSkew.KEEP) m.delete(Math.min(...m.keys()));
  }
  percentileMs(q) {
    if (!this.skewsUs.length) return null;
    const s = [...this.skewsUs].sort((a, b) => a - b);
    return round(s[Math.round((s.length - 1) * q)] / 1e3, 1);
  }
  report() {
    return {
      count: this.skewsUs.length,
      max: this.percentileMs(1),
      min: this.percentileMs(0),
      p5: this.percentileMs(0.05),
      p50: this.percentileMs(0.5),
      p95: this.percentileMs(0.95)
    };
  }
};
var Stats = class {
  startedMs;
  video = {
    frames_received: 0,
    frames_decoded: 0,
    frames_skipped: 0,
    frames_late: 0,
    frames_dropped_decoder_busy: 0,
    frames_reset: 0,
    frames_malformed: 0,
    decode_errors: 0,
    frames_presented: 0,
    longest_freeze_us: 0,
    last_decoded_us: void 0,
    frames_by_size: /* @__PURE__ */ new Map(),
    rendition_switches: 0,
    switch_time: new Latency(),
    frames_not_presented: 0,
    frames_too_late: 0,
    frames_shown_late: 0,
    frames_dropped_queue_full: 0,
    keyframes: 0,
    keyframe_requests: 0,
    bytes: 0,
    width: 0,
    height: 0,
    first_frame_ms: null,
    live_ms: null,
    latency_decoded: new Latency(),
    /** Emptied by automatic quality once a second. */
    latency_last_second: new Latency(),
    latency_presented: new Latency(),
    stages: {
      encoder_queue: new Latency(),
      encoder_wait: new Latency(),
      encode: new Latency(),
      transport: new Latency(),
      reassembly: new Latency(),
      reorder: new Latency(),
      decode: new Latency(),
      present: new Latency(),
      outside_encoder: new Latency()
    },
    pixel_clock: { matched: 0, read: 0, unreadable: 0 }
  };
  audio = {
    packets_received: 0,
    bytes: 0,
    packets_decoded: 0,
    packets_concealed: 0,
    packets_late: 0,
    packets_dropped_overflow: 0,
    packets_dropped_catch_up: 0,
    packets_stretched: 0,
    packets_malformed: 0,
    decode_errors: 0,
    target_delay_ms: 0,
    jitter_ms: 0,
    playout_delay: new Latency(),
    latency: new Latency(),
    output_underruns: 0,
    bitrate_bps: 0,
    muted: false
  };
  broadcast = { paused: false, pauses: 0, resumes: 0, frames_during_pause: 0, resumed_on_keyframe: 0, resumed_without_keyframe: 0, awaiting_first_frame: false };
  avSkew = new AvSkew();
  connection = { lost: 0, reconnects: 0, reconnecting: false, reconnect_time: new Latency() };
  clock = { offset_us: null, rtt_us: null };
  rendition = null;
  auto = false;
  auto_reason = null;
  rendition_timeline = [];
  paused = false;
  constructor(nowMs) {
    this.startedMs = nowMs;
  }
  /** Accounts for the server's BroadcastPaused. */
  onBroadcastPaused(paused) {
    const b = this.broadcast;
    if (paused && !b.paused) b.pauses++;
    if (!paused && b.paused) {
      b.resumes++;
      b.awaiting_first_frame = true;
    }
    b.paused = paused;
  }
  onFrameArrived(keyframe) {
    const b = this.broadcast;
    if (b.paused) b.frames_during_pause++;
    else if (b.awaiting_first_frame) {
      b.awaiting_first_frame = false;
      if (keyframe) b.resumed_on_keyframe++;
      else b.resumed_without_keyframe++;
    }
  }
  /** The JSON object, field for field as `--stats-json` writes it. */
  snapshot(nowMs) {
    const v = this.video;
    const a = this.audio;
    const due = a.packets_decoded + a.packets_concealed;
    const st = v.stages;
    return {
      audio: {
        bitrate_bps: a.bitrate_bps,
        bytes: a.bytes,
        concealed_percent: due ? round(100 * a.packets_concealed / due, 1) : 0,
        decode_errors: a.decode_errors,
        // --dump-wav does not exist in a page.
        dump_errors: 0,
        jitter_ms: round(a.jitter_ms, 1),
        latency_ms: a.latency.report(),
        // The browser does not name its output device to pages.
        output_device: null,
        output_underruns: a.output_underruns,
        packets_concealed: a.packets_concealed,
        packets_decoded: a.packets_decoded,
        // No queue between the network and the decoder that could be full in a page.
        packets_dropped_busy: 0,
        packets_dropped_catch_up: a.packets_dropped_catch_up,
        packets_dropped_overflow: a.packets_dropped_overflow,
        packets_late: a.packets_late,
        packets_malformed: a.packets_malformed,
        packets_received: a.packets_received,
        // WebCodecs' AudioDecoder has no FEC decoding: nothing is rebuilt.
        packets_recovered_fec: 0,
        packets_stretched: a.packets_stretched,
        playout_delay_ms: a.playout_delay.report(),
        // The page re-anchors instead of nudging packet lengths (see audio.ts).
        playout_nudged_ms: 0,
        target_delay_ms: round(a.target_delay_ms, 1)
      },
      auto: this.auto,
      auto_reason: this.auto_reason,
      av_skew_ms: this.avSkew.report(),
      broadcast: {
        frames_during_pause: this.broadcast.frames_during_pause,
        paused: this.broadcast.paused,
        pauses: this.broadcast.pauses,
        resumed_on_keyframe: this.broadcast.resumed_on_keyframe,
        resumed_without_keyframe: this.broadcast.resumed_without_keyframe,
        resumes: this.broadcast.resumes
      },
      clock: { offset_us: this.clock.offset_us, rtt_us: this.clock.rtt_us },
      connection: {
        lost: this.connection.lost,
        reconnect_ms: this.connection.reconnect_time.report(),
        reconnecting: this.connection.reconnecting,
        reconnects: this.connection.reconnects
      },
      duration_s: round((nowMs - this.startedMs) / 1e3, 3),
      paused: this.paused,
      // A page records nothing (--record is the native viewer's).
      recording: {
        audio_packets: 0,
        bytes: 0,
        dropped: 0,
        errors: 0,
        span_ms: 0,
        video_frames: 0,
        video_span_ms: 0,
        waiting_for_keyframe: 0
      },
      rendition: this.rendition,
      rendition_timeline: this.rendition_timeline.map((e) => ({ ...e })),
      // WebTransport's getStats() is not in Chromium yet: the QUIC counters are not readable
      // by the page. null, as the native viewer writes before its connection ends.
      transport: null,
      video: {
        bytes: v.bytes,
        decode_errors: v.decode_errors,
        // --dump-y4m does not exist in a page.
        dump_errors: 0,
        first_frame_ms: v.first_frame_ms === null ? null : round(v.first_frame_ms, 2),
        frames_by_size: Object.fromEntries([...v.frames_by_size.entries()].sort()),
        frames_decoded: v.frames_decoded,
        frames_dropped_decoder_busy: v.frames_dropped_decoder_busy,
        frames_dropped_queue_full: v.frames_dropped_queue_full,
        frames_dumped: 0,
        frames_late: v.frames_late,
        frames_malformed: v.frames_malformed,
        frames_not_presented: v.frames_not_presented,
        frames_presented: v.frames_presented,
        frames_received: v.frames_received,
        frames_reset: v.frames_reset,
        frames_shown_late: v.frames_shown_late,
        frames_skipped: v.frames_skipped,
        frames_too_late: v.frames_too_late,
        height: v.height,
        keyframe_requests: v.keyframe_requests,
        keyframes: v.keyframes,
        latency_ms: v.latency_decoded.report(),
        latency_presented_ms: v.latency_presented.report(),
        live_ms: v.live_ms === null ? null : round(v.live_ms, 2),
        longest_freeze_ms: v.longest_freeze_us / 1e3,
        pixel_clock: { ...v.pixel_clock },
        rendition_switches: v.rendition_switches,
        stages_ms: {
          decode: st.decode.report(),
          encode: st.encode.report(),
          encoder_queue: st.encoder_queue.report(),
          encoder_wait: st.encoder_wait.report(),
          outside_encoder: st.outside_encoder.report(),
          present: st.present.report(),
          reassembly: st.reassembly.report(),
          reorder: st.reorder.report(),
          transport: st.transport.report()
        },
        switch_ms: v.switch_time.report(),
        width: v.width
      }
    };
  }
};

// src/reorder.ts
var MAX_PENDING = 64;
var GAP_TIMEOUT_US = 15e4;
var REASK_KEYFRAME_US = 5e5;
var Reorder = class {
  constructor(gapTimeoutUs = GAP_TIMEOUT_US) {
    this.gapTimeoutUs = gapTimeoutUs;
  }
  gapTimeoutUs;
  nextSeq;
  /** Pending frames by seq. A Map plus sorting on demand: it never holds more than 65. */
  pending = /* @__PURE__ */ new Map();
  waitingKeyframe = true;
  gapSince;
  askedKeyframe;
  /** Frames never decoded because a frame before them was lost. */
  skipped = 0;
  /** Frames that arrived after decoding had moved past them (or twice). */
  late = 0;
  /** Losses that made decoding ask for a keyframe. */
  keyframeWaits = 0;
  /** Takes a received frame and returns whatever became decodable. */
  push(frame, nowUs2) {
    const seq = frame.seq;
    if (this.nextSeq !== void 0 && seq < this.nextSeq || this.pending.has(seq)) {
      this.late++;
      return { frames: [], needKeyframe: false };
    }
    this.pending.set(seq, frame);
    const ready = this.drain(nowUs2);
    if (this.pending.size > MAX_PENDING) {
      while (this.pending.size > MAX_PENDING) {
        const oldest = this.sortedSeqs()[0];
        this.pending.delete(oldest);
        if (this.nextSeq !== void 0 && oldest >= this.nextSeq) {
          this.skipped += oldest + 1 - this.nextSeq;
          this.nextSeq = oldest + 1;
        }
      }
      if (!this.waitingKeyframe) this.loseGap();
      ready.needKeyframe ||= this.waitingKeyframe && this.nextSeq !== void 0;
    }
    return ready;
  }
  /** Called when gapDeadline() passes: asks for a keyframe (again every REASK while the gap
   * lasts). Frames after the gap are kept: the missing one may still come. */
  poll(nowUs2) {
    const due = this.gapDeadline();
    if (due !== void 0 && nowUs2 >= due) {
      if (this.askedKeyframe === void 0) this.keyframeWaits++;
      this.askedKeyframe = nowUs2;
      return { frames: [], needKeyframe: true };
    }
    return { frames: [], needKeyframe: false };
  }
  /** The decoder failed: whatever follows depends on garbage. */
  decoderFailed() {
    if (!this.waitingKeyframe) {
      this.waitingKeyframe = true;
      this.keyframeWaits++;
    }
    this.endGap();
    return { frames: [], needKeyframe: true };
  }
  /** When poll() should next be called, if a gap is open. */
  gapDeadline() {
    if (this.gapSince === void 0) return void 0;
    return this.askedKeyframe === void 0 ? this.gapSince + this.gapTimeoutUs : this.askedKeyframe + REASK_KEYFRAME_US;
  }
  /** Frames held, waiting for a gap or a keyframe. */
  get pendingCount() {
    return this.pending.size;
  }
  sortedSeqs() {
    return [...this.pending.keys()].sort((a, b) => a - b);
  }
  loseGap() {
    if (this.askedKeyframe === void 0) this.keyframeWaits++;
    this.endGap();
    this.waitingKeyframe = true;
  }
  endGap() {
    this.gapSince = void 0;
    this.askedKeyframe = void 0;
  }
  drain(nowUs2) {
    const frames = [];
    for (; ; ) {
      if (this.waitingKeyframe) {
        const keySeq = this.sortedSeqs().find((s) => this.pending.get(s).keyframe);
        if (keySeq === void 0) {
          this.endGap();
          break;
        }
        const from = this.nextSeq ?? keySeq;
        this.skipped += Math.max(0, keySeq - from);
        for (const s of this.pending.keys()) if (s < keySeq) this.pending.delete(s);
        this.nextSeq = keySeq;
        this.waitingKeyframe = false;
      }
      const next = this.nextSeq;
      const frame = this.pending.get(next);
      if (frame !== void 0) {
        this.pending.delete(next);
        frames.push(frame);
        this.nextSeq = next + 1;
        this.endGap();
        continue;
      }
      if (this.pending.size === 0) {
        this.endGap();
        break;
      }
      if ([...this.pending.values()].some((f) => f.keyframe)) {
        this.loseGap();
        continue;
      }
      this.gapSince ??= nowUs2;
      break;
    }
    return { frames, needKeyframe: this.waitingKeyframe && this.nextSeq !== void 0 };
  }
};

// src/tracks.ts
var Tracks = class {
  shown;
  target;
  /** Totals over every track used: frames skipped past a loss, frames come too late. */
  skipped = 0;
  late = 0;
  /** The rendition on screen (or about to be, before its first frame). */
  get shownRendition() {
    return this.shown?.rendition;
  }
  /** The server confirmed `rendition`: switch to it at its first keyframe. */
  confirm(rendition) {
    if (this.shown === void 0) this.shown = track(rendition);
    else if (rendition === this.shown.rendition) this.target = void 0;
    else if (this.target?.rendition !== rendition) this.target = track(rendition);
  }
  /** Start over at the next keyframe without counting the gap as loss. */
  resync() {
    if (this.shown) this.shown = track(this.shown.rendition);
    if (this.target) this.target = track(this.target.rendition);
  }
  /** No switch is coming (the server refused it). */
  abandonSwitch() {
    this.target = void 0;
  }
  push(frame, nowUs2) {
    const t = this.shown?.rendition === frame.rendition ? this.shown : this.target?.rendition === frame.rendition ? this.target : void 0;
    if (!t) return { decode: [], keyframes: [] };
    const ready = t.reorder.push(frame, nowUs2);
    const out = { decode: [], keyframes: ready.needKeyframe ? [t.rendition] : [] };
    if (ready.frames.length && t === this.target) {
      this.shown = t;
      this.target = void 0;
      out.switchedTo = t.rendition;
    }
    if (t === this.shown) out.decode = ready.frames;
    this.count();
    return out;
  }
  /** The decoder failed (or fell behind) on the shown rendition: wait for a keyframe. */
  decoderFailed() {
    if (!this.shown) return { decode: [], keyframes: [] };
    const ready = this.shown.reorder.decoderFailed();
    this.count();
    return { decode: [], keyframes: ready.needKeyframe ? [this.shown.rendition] : [] };
  }
  /** When poll() is next due: the earliest gap deadline of either track. */
  gapDeadline() {
    const due = [this.shown, this.target].map((t) => t?.reorder.gapDeadline()).filter((d) => d !== void 0);
    return due.length ? Math.min(...due) : void 0;
  }
  /** Gaps past their timeout ask for keyframes. */
  poll(nowUs2) {
    const keyframes = [];
    for (const t of [this.shown, this.target]) if (t?.reorder.poll(nowUs2).needKeyframe) keyframes.push(t.rendition);
    return { decode: [], keyframes };
  }
  count() {
    for (const t of [this.shown, this.target]) {
      if (!t) continue;
      this.skipped += t.reorder.skipped - t.counted.skipped;
      this.late += t.reorder.late - t.counted.late;
      t.counted = { skipped: t.reorder.skipped, late: t.reorder.late };
    }
  }
};
function track(rendition) {
  return { rendition, reorder: new Reorder(), counted: { skipped: 0, late: 0 } };
}

// src/video.ts
var MAX_DECODE_QUEUE = 16;
function av1CodecString(width, height) {
  const pixels = width * height;
  const level = pixels <= 147456 ? "01" : pixels <= 665856 ? "04" : pixels <= 1065024 ? "05" : pixels <= 2359296 ? "08" : "12";
  return `av01.0.${level}M.08`;
}
var VideoPipeline = class {
  constructor(codec, stats, nowUs2, serverNowUs, latencyTargetUs, output, wantKeyframe) {
    this.codec = codec;
    this.stats = stats;
    this.nowUs = nowUs2;
    this.serverNowUs = serverNowUs;
    this.latencyTargetUs = latencyTargetUs;
    this.output = output;
    this.wantKeyframe = wantKeyframe;
    this.decoder = this.makeDecoder();
  }
  codec;
  stats;
  nowUs;
  serverNowUs;
  latencyTargetUs;
  output;
  wantKeyframe;
  decoder;
  tracks = new Tracks();
  /** When the last switch was asked for (page clock), for switch_ms. */
  switchAskedUs;
  gapTimer;
  /** Frames handed to the decoder, in decoding order (its outputs come in that order; their
   * timestamps are the capture times, matched within 1 ms as the browser may round them). */
  inFlight = [];
  connectStartUs = 0;
  /** The first connection attempt started at `atUs` (page clock): first_frame_ms and live_ms
   * count from there, as the native viewer's count from the start of connecting. */
  connectingSince(atUs) {
    this.connectStartUs = atUs;
  }
  makeDecoder() {
    const d = new VideoDecoder({
      output: (f) => this.decoded(f),
      error: (e) => {
        console.warn("video decoder error:", e.message);
        this.stats.video.decode_errors++;
        this.decoder = void 0;
        this.inFlight = [];
        this.after(this.tracks.decoderFailed());
      }
    });
    d.configure({ codec: this.codec, optimizeForLatency: true });
    return d;
  }
  /** What the control core tells the decoder, in order with the frames. */
  event(e) {
    switch (e.kind) {
      case "target":
        this.tracks.confirm(e.rendition);
        break;
      case "resync":
        this.tracks.resync();
        this.rearmGapTimer();
        break;
      case "switch-asked":
        this.switchAskedUs ??= e.atUs;
        break;
      case "switch-abandoned":
        this.tracks.abandonSwitch();
        this.switchAskedUs = void 0;
        break;
    }
  }
  /** A frame's stream completed. */
  push(f) {
    const v = this.stats.video;
    v.frames_received++;
    v.bytes += f.payload.length;
    this.stats.onFrameArrived(f.header.keyframe);
    const q = { ...f, seq: f.header.seq, keyframe: f.header.keyframe, rendition: f.header.rendition };
    this.after(this.tracks.push(q, this.nowUs()));
  }
  after(r) {
    for (const rendition of r.keyframes) this.askKeyframe(rendition);
    if (r.switchedTo !== void 0) {
      this.stats.video.rendition_switches++;
      if (this.switchAskedUs !== void 0) {
        this.stats.video.switch_time.record(this.nowUs() - this.switchAskedUs);
        this.switchAskedUs = void 0;
      }
    }
    for (const f of r.decode) this.decode(f);
    this.stats.video.frames_skipped = this.tracks.skipped;
    this.stats.video.frames_late = this.tracks.late;
    this.rearmGapTimer();
  }
  askKeyframe(rendition) {
    this.stats.video.keyframe_requests++;
    this.wantKeyframe(rendition);
  }
  decode(f) {
    if (!this.decoder || this.decoder.state === "closed") this.decoder = this.makeDecoder();
    if (this.decoder.decodeQueueSize >= MAX_DECODE_QUEUE) {
      this.stats.video.frames_dropped_decoder_busy++;
      this.after(this.tracks.decoderFailed());
      return;
    }
    if (f.keyframe) this.stats.video.keyframes++;
    const now = this.nowUs();
    const h = f.header;
    this.inFlight.push({
      capture_us: h.capture_us,
      rendition: h.rendition,
      decodeStartUs: now,
      encoderOutUs: h.capture_us + h.queue_us + h.encoder_wait_us + h.encode_us
    });
    const st = this.stats.video.stages;
    st.encoder_queue.record(h.queue_us);
    st.encoder_wait.record(h.encoder_wait_us);
    st.encode.record(h.encode_us);
    st.reassembly.record(f.lastByteUs - f.firstByteUs);
    st.reorder.record(now - f.lastByteUs);
    const firstByteServer = this.toServer(f.firstByteUs);
    const encoderOut = h.capture_us + h.queue_us + h.encoder_wait_us + h.encode_us;
    if (firstByteServer !== void 0) st.transport.record(firstByteServer - encoderOut);
    try {
      this.decoder.decode(
        new EncodedVideoChunk({ type: f.keyframe ? "key" : "delta", timestamp: h.capture_us, data: f.payload })
      );
    } catch (e) {
      console.warn("video decode failed:", e);
      this.stats.video.decode_errors++;
      this.after(this.tracks.decoderFailed());
    }
  }
  toServer(pageUs) {
    const serverNow = this.serverNowUs();
    return serverNow === void 0 ? void 0 : serverNow - (this.nowUs() - pageUs);
  }
  decoded(frame) {
    const at = this.inFlight.findIndex((q) => Math.abs(q.capture_us - frame.timestamp) <= 1e3);
    const meta = at < 0 ? void 0 : this.inFlight.splice(0, at + 1)[at];
    const capture_us = meta?.capture_us ?? frame.timestamp;
    const now = this.nowUs();
    const v = this.stats.video;
    v.frames_decoded++;
    const size = `${frame.displayWidth}x${frame.displayHeight}`;
    v.frames_by_size.set(size, (v.frames_by_size.get(size) ?? 0) + 1);
    v.width = frame.displayWidth;
    v.height = frame.displayHeight;
    if (v.last_decoded_us !== void 0) v.longest_freeze_us = Math.max(v.longest_freeze_us, now - v.last_decoded_us);
    v.last_decoded_us = now;
    if (meta) v.stages.decode.record(now - meta.decodeStartUs);
    const serverNow = this.serverNowUs();
    if (serverNow !== void 0) {
      const latency = serverNow - capture_us;
      v.latency_decoded.record(latency);
      v.latency_last_second.record(latency);
      if (meta) v.stages.outside_encoder.record(serverNow - meta.encoderOutUs);
      if (v.live_ms === null && latency < this.latencyTargetUs) v.live_ms = (now - this.connectStartUs) / 1e3;
    }
    if (v.first_frame_ms === null) v.first_frame_ms = (now - this.connectStartUs) / 1e3;
    mark("first_decoded");
    this.output({ frame, capture_us, decoded_us: now, rendition: meta?.rendition ?? this.tracks.shownRendition ?? 0 });
  }
  rearmGapTimer() {
    if (this.gapTimer !== void 0) clearTimeout(this.gapTimer);
    this.gapTimer = void 0;
    const due = this.tracks.gapDeadline();
    if (due === void 0) return;
    this.gapTimer = setTimeout(
      () => {
        this.gapTimer = void 0;
        this.after(this.tracks.poll(this.nowUs()));
      },
      Math.max(0, (due - this.nowUs()) / 1e3)
    );
  }
};

// src/overlay.ts
function statsLines(s, rates, server, ladderNames, audioDelayMs, muted) {
  const v = s.video;
  const a = s.audio;
  const rendition = s.rendition === null ? "-" : `${s.rendition + 1}${ladderNames[s.rendition] ? ` ${ladderNames[s.rendition]}` : ""}`;
  const lat = v.latency_presented_ms;
  const skew = s.av_skew_ms.p50;
  return [
    server,
    `rendition ${rendition}${s.auto ? " (auto)" : ""}${s.paused ? " PAUSED" : ""}`,
    `why: ${s.auto_reason ?? "the server's choice"}`,
    `size ${v.width}x${v.height} ${rates.fps.toFixed(1)} fps`,
    `video ${rates.kbps.toFixed(0)} kbit/s`,
    `latency p50 ${(lat.p50 ?? 0).toFixed(0)} p95 ${(lat.p95 ?? 0).toFixed(0)} ms`,
    `skipped ${v.frames_skipped} late ${v.frames_late} dropped ${v.frames_too_late + v.frames_dropped_decoder_busy} reset ${v.frames_reset}`,
    `audio ${Math.floor(a.bitrate_bps / 1e3)} kbit/s loss ${a.concealed_percent.toFixed(1)}%${muted ? " MUTED" : ""}`,
    `audio delay ${audioDelayMs === void 0 ? "-" : audioDelayMs.toFixed(0)} ms (target ${a.target_delay_ms.toFixed(0)})`,
    `A/V skew ${skew === null ? "-" : `${skew.toFixed(0)} ms`}`
  ];
}
function helpLines() {
  return ["StreamSocket keys", "", ...HELP.map(([k, what]) => `${k.padEnd(9)} ${what}`)];
}
function bannerLines(c, nowUs2) {
  if (c.reconnecting) {
    const seconds = Math.floor(Math.max(0, nowUs2 - c.reconnecting.sinceUs) / 1e6);
    return [
      "CONNECTION LOST",
      c.reconnecting.reason,
      `reconnecting: attempt ${c.reconnecting.attempt + 1} (${seconds} s)`
    ];
  }
  if (c.broadcastPaused) return ["PAUSED BY THE BROADCASTER"];
  const stalled = c.lastDecodedUs === void 0 ? 0 : nowUs2 - c.lastDecodedUs;
  if (stalled >= 1e6 && !c.paused) {
    return [`NO PICTURE FOR ${Math.floor(stalled / 1e6)} S: WAITING FOR THE NETWORK`];
  }
  if (c.paused) return ["PAUSED (Space resumes)"];
  return void 0;
}

// src/viewer.ts
var DEFAULT_LATENCY_MS = 300;
var OVERLAY_REFRESH_MS = 250;
var $ = (id) => document.getElementById(id);
var canvas = $("picture");
var overlay = $("overlay");
var banner = $("banner");
var messageBox = $("message");
var statusLine = $("status");
var nowUs = () => Math.floor(performance.now() * 1e3);
var page = {
  state: "starting",
  close_code: null,
  close_name: null,
  close_reason: null,
  message: null,
  renditions: [],
  first_picture_ms: null,
  audio_output_latency_ms: null,
  join_timeline_ms: {},
  audio_latency: "interactive"
};
function setState(state, status) {
  page.state = state;
  statusLine.textContent = status;
}
function showMessage(text) {
  page.message = text;
  messageBox.textContent = text;
  messageBox.hidden = false;
}
function closeInfo(code, reason) {
  page.close_code = code;
  page.close_name = explain(code).split(" (")[0] ?? null;
  page.close_reason = reason;
}
function clientName() {
  const brands = navigator.userAgentData?.brands;
  const brand = brands?.find((b) => !/not.a.brand/i.test(b.brand));
  const m = /(Firefox|Edg|OPR|Chrome|Chromium|Safari)\/(\d+)/.exec(navigator.userAgent);
  const name = brand ? `${brand.brand} ${brand.version}` : m ? `${m[1]} ${m[2]}` : "browser";
  return `web ${name}`.slice(0, MAX_NAME);
}
function missingApis() {
  const missing = [];
  if (typeof WebTransport === "undefined") missing.push("WebTransport");
  if (typeof VideoDecoder === "undefined") missing.push("WebCodecs (VideoDecoder)");
  return missing;
}
async function missingAv1() {
  if (typeof VideoDecoder === "undefined") return [];
  try {
    const s = await VideoDecoder.isConfigSupported({ codec: "av01.0.04M.08" });
    return s.supported ? [] : ["AV1 decoding in WebCodecs"];
  } catch {
    return ["AV1 decoding in WebCodecs"];
  }
}
function unsupported(missing) {
  setState("unsupported", "This browser cannot play the stream.");
  showMessage(
    `This browser lacks ${missing.join(" and ")}, which StreamSocket's web viewer needs.

Use a current Chromium-based browser (Chrome, Edge, Chromium), or the native viewer: streamsocket-client ${location.host}`
  );
}
mark("script");
var firstSession = pageSession();
firstSession.catch(() => {
});
var av1Check = missingAv1();
async function main() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") ?? "";
  const latencyMs = Math.min(65535, Math.max(0, Number(params.get("latency") ?? 0) || 0));
  const qualityParam = Number(params.get("quality"));
  const position = Number.isInteger(qualityParam) && qualityParam >= 1 ? qualityParam - 1 : void 0;
  const latencyTargetUs = (latencyMs || DEFAULT_LATENCY_MS) * 1e3;
  page.audio_latency = params.get("audio-latency") === "lowest" ? "lowest" : "interactive";
  const stats = new Stats(performance.now());
  let audio;
  const api = {
    stats: () => stats.snapshot(performance.now()),
    state: () => ({
      ...page,
      renditions: [...page.renditions],
      join_timeline_ms: timeline(),
      audio_output_latency_ms: audio?.running ? Math.round(audio.outputLatencyUs() / 10) / 100 : null
    })
  };
  window.streamsocket = api;
  const missing = missingApis();
  if (missing.length) {
    unsupported(missing);
    return;
  }
  if (new TextEncoder().encode(token).length > MAX_TOKEN) {
    setState("refused", "The token is too long.");
    showMessage(`The ?token= in the address is longer than ${MAX_TOKEN} bytes: check it.`);
    return;
  }
  const control = new ViewerControl({ position, latencyTargetUs });
  const serverNowUs = () => control.clockSync.toServer(nowUs());
  const presenter = new Presenter(canvas, stats, nowUs, serverNowUs, {
    delayUs: () => audio?.running ? audio.delayUs() : void 0,
    canWait: () => audio?.canWait() ?? true
  });
  presenter.onShown = () => {
    if (page.first_picture_ms !== null) return;
    mark("first_shown");
    page.first_picture_ms = Math.round(performance.now() * 100) / 100;
    void startAudio();
  };
  const startAudio = async () => {
    const a = await AudioPipeline.create(
      stats,
      nowUs,
      serverNowUs,
      latencyTargetUs,
      page.audio_latency,
      () => presenter.videoNeedUs()
    );
    audio = a;
    if (!a) return;
    a.setMuted(muted);
    if (a.ctx.state !== "running") {
      const hint = document.createElement("div");
      hint.id = "sound-hint";
      hint.textContent = "click or press a key for sound";
      hint.style.cssText = "position:absolute;bottom:12px;left:50%;transform:translateX(-50%);padding:4px 12px;background:#333;border-radius:4px";
      $("stage").appendChild(hint);
      const resume = () => {
        void a.ctx.resume().then(() => hint.remove());
      };
      addEventListener("pointerdown", resume, { once: true });
      addEventListener("keydown", resume, { once: true });
    }
  };
  let conn;
  let video;
  let ladderNames = [];
  let reconnecting;
  let timer;
  let muted = false;
  let showStats = false;
  let showHelp = false;
  let ended = false;
  const hello = () => ({
    token,
    latencyTargetMs: latencyMs,
    clientName: clientName(),
    nowUs
  });
  const run = (actions) => {
    for (const a of actions) carryOut(a);
    armTimer();
  };
  const handle = (e) => run(control.handle(nowUs(), e));
  function armTimer() {
    if (timer !== void 0) clearTimeout(timer);
    const at = control.nextTimerUs();
    if (at === void 0) return;
    timer = setTimeout(() => handle({ kind: "timer" }), Math.max(0, (at - nowUs()) / 1e3));
  }
  function carryOut(a) {
    switch (a.kind) {
      case "send":
        conn?.send(a.message);
        break;
      case "connect":
        void attempt(a.rendition, false);
        break;
      case "decoder":
        video?.event(a.event);
        break;
      case "sample": {
        const v = stats.video;
        const last = v.latency_last_second;
        const readings = {
          observation: {
            frames_reset: v.frames_reset,
            frames_skipped: v.frames_skipped,
            frames_dropped_busy: v.frames_dropped_decoder_busy,
            video_bytes: v.bytes,
            audio_played: audio?.played ?? 0,
            audio_concealed: audio?.lost ?? 0,
            latency_p50_us: last.quantileUs(0.5),
            latency_p90_us: last.quantileUs(0.9),
            rtt_us: control.clockSync.lastRttUs
          },
          audio_played: audio?.played ?? 0,
          audio_lost: audio?.lost ?? 0
        };
        if (a.auto) last.reset();
        handle({ kind: "sampled", readings });
        break;
      }
      case "note":
        note(a.note);
        break;
      case "end":
        end(a.ended.kind === "server" ? { kind: "server", code: a.ended.code, reason: a.ended.message } : a.ended);
        break;
    }
  }
  function note(n) {
    switch (n.kind) {
      case "choices":
        stats.auto = n.auto;
        stats.paused = n.paused;
        break;
      case "rendition-confirmed":
        stats.rendition = n.rendition;
        stats.auto_reason = n.reason;
        stats.rendition_timeline.push({
          at_ms: Math.floor(performance.now() - stats.startedMs),
          rendition: n.rendition,
          reason: n.reason
        });
        break;
      case "clock":
        stats.clock.offset_us = n.offsetUs ?? null;
        stats.clock.rtt_us = n.minRttUs ?? null;
        break;
      case "audio-bitrate":
        stats.audio.bitrate_bps = n.bps;
        break;
      case "broadcast-paused":
        stats.onBroadcastPaused(n.paused);
        break;
      case "lost":
        stats.connection.lost++;
        stats.connection.reconnecting = true;
        reconnecting = { reason: n.reason, attempt: 0, sinceUs: n.sinceUs };
        setState("reconnecting", `Connection lost (${n.reason}); reconnecting…`);
        break;
      case "attempt":
        if (reconnecting) reconnecting.attempt = n.n - 1;
        setState("reconnecting", `Reconnecting: attempt ${n.n}…`);
        break;
      case "reconnected":
        stats.connection.reconnecting = false;
        stats.connection.reconnects++;
        stats.connection.reconnect_time.record(nowUs() - n.sinceUs);
        reconnecting = void 0;
        break;
      case "gave-up":
        stats.connection.reconnecting = false;
        reconnecting = void 0;
        break;
    }
  }
  function end(c) {
    ended = true;
    if (timer !== void 0) clearTimeout(timer);
    conn?.close();
    if (c.kind === "server") {
      closeInfo(c.code, c.reason);
      const graceful = c.code === ErrorCode.NoError || c.code === ErrorCode.ServerShuttingDown;
      setState(graceful ? "ended" : "refused", `The server ended the session: ${describe(c.code)}`);
      showMessage(
        `The server ended the session: ${explain(c.code)}${c.reason ? `
(${c.reason})` : ""}

Reload the page to watch again.`
      );
    } else if (c.kind === "lost") {
      setState("ended", `Connection lost: ${c.reason}`);
      showMessage(`Connection lost: ${c.reason}

Reload the page to try again.`);
    }
  }
  async function attempt(rendition, first) {
    const startedUs = nowUs();
    if (first) setState("connecting", `Connecting to ${location.host}…`);
    let c;
    try {
      c = await Connection.open({ ...hello(), rendition }, first ? firstSession : void 0);
    } catch (e) {
      const err = e instanceof ConnectError ? e : new ConnectError(errorText(e), true);
      if (err.refusal) closeInfo(err.refusal.code, err.refusal.reason);
      if (first) {
        setState("refused", err.refusal ? `Refused: ${describe(err.refusal.code)}` : "Cannot connect.");
        showMessage(err.message);
      } else {
        handle({ kind: "connect-failed", error: err.message, retry: err.retry });
      }
      return;
    }
    if (first) {
      const lacking = await av1Check;
      mark("features_checked");
      if (lacking.length) {
        ended = true;
        c.close();
        unsupported(lacking);
        return;
      }
    }
    conn = c;
    ladderNames = c.welcome.renditions.map((r) => r.name);
    page.renditions = c.welcome.renditions.map(({ id, name, width, height }) => ({ id, name, width, height }));
    if (!video) {
      const top = c.welcome.renditions[0];
      const codec = av1CodecString(top.width, top.height);
      video = new VideoPipeline(
        codec,
        stats,
        nowUs,
        serverNowUs,
        latencyTargetUs,
        (p) => presenter.put(p),
        (r) => handle({ kind: "keyframe-wanted", rendition: r })
      );
      video.connectingSince(startedUs);
    } else {
      presenter.clear();
      audio?.reset();
    }
    page.close_code = null;
    page.close_name = null;
    page.close_reason = null;
    setState("connected", `Watching ${location.host} (session ${c.welcome.session_id})`);
    handle({ kind: "connected", welcome: c.welcome });
    c.start(
      {
        message: (m) => handle({ kind: "server", message: m }),
        frame: (f) => video.push(f),
        frameLost: () => stats.video.frames_reset++,
        frameMalformed: (why) => {
          stats.video.frames_malformed++;
          console.warn("malformed frame stream:", why);
        },
        datagram: (d) => audio?.datagram(d)
      },
      nowUs
    );
    void c.closed.then((closed) => {
      if (conn !== c || ended) return;
      conn = void 0;
      if (closed.kind === "lost") handle({ kind: "lost", reason: closed.reason });
      else if (closed.kind === "server") {
        if (worthRetrying(closed.code) && closed.code !== ErrorCode.ServerShuttingDown) {
          handle({ kind: "lost", reason: `${describe(closed.code)} (${closed.reason})` });
        } else end(closed);
      }
    });
  }
  addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    const cmd = forKey(e.key, e.code);
    if (!cmd) return;
    e.preventDefault();
    switch (cmd.kind) {
      case "toggle-stats":
        showStats = !showStats;
        break;
      case "toggle-help":
        showHelp = !showHelp;
        break;
      case "toggle-mute":
        muted = !muted;
        audio?.setMuted(muted);
        stats.audio.muted = muted;
        break;
      default:
        handle({ kind: "command", command: cmd });
    }
    redraw();
  });
  let rateWindow = { atMs: performance.now(), frames: 0, bytes: 0 };
  let rates = { fps: 0, kbps: 0 };
  function redraw() {
    const snap = stats.snapshot(performance.now());
    const elapsed = (performance.now() - rateWindow.atMs) / 1e3;
    if (elapsed >= 1) {
      const v = stats.video;
      rates = {
        fps: (v.frames_presented - rateWindow.frames) / elapsed,
        kbps: (v.bytes - rateWindow.bytes) * 8 / 1e3 / elapsed
      };
      rateWindow = { atMs: performance.now(), frames: v.frames_presented, bytes: v.bytes };
    }
    const lines = showHelp ? helpLines() : showStats ? statsLines(snap, rates, location.host, ladderNames, audio?.running ? (audio.delayUs() ?? 0) / 1e3 : void 0, muted) : void 0;
    overlay.hidden = !lines;
    if (lines) overlay.textContent = lines.join("\n");
    const b = ended ? void 0 : bannerLines(
      {
        reconnecting,
        broadcastPaused: stats.broadcast.paused,
        paused: stats.paused,
        lastDecodedUs: stats.video.last_decoded_us
      },
      nowUs()
    );
    banner.hidden = !b;
    if (b) banner.textContent = b.join("\n");
  }
  setInterval(redraw, OVERLAY_REFRESH_MS);
  addEventListener("pagehide", () => conn?.close());
  await attempt(position === void 0 ? AUTO_RENDITION : position, true);
}
main().catch((e) => {
  setState("ended", "The viewer failed.");
  showMessage(`The viewer failed: ${errorText(e)}`);
  console.error(e);
});
