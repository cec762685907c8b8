// One WebTransport session with the server: the protocol of PROTOCOL.md sections 2-4 over
// WebTransport's streams and datagrams. It fetches /session.json first (the certificate the
// page pins is short-lived and renewed by the server, so its hash is read before every
// attempt), sends Hello on the one bidirectional stream, waits for Welcome (or a refusal),
// then reads the control stream, one unidirectional stream per video frame, and audio
// datagrams, handing each to its handler. It decides nothing: control.ts does.

import {
  ControlFramer,
  ControlMessage,
  DecodeError,
  ErrorCode,
  FRAME_HEADER_PREFIX,
  FrameHeader,
  PROTOCOL_VERSION,
  Welcome,
  decodeFrameHeader,
  encodeControl,
  frameHeaderLen,
} from "./codec.js";
import { mark } from "./timeline.js";
import { describe, explain, worthRetrying } from "./refusals.js";

/** What GET /session.json says. */
export interface SessionInfo {
  protocol_version: number;
  webtransport_path: string;
  certificate_hashes: { algorithm: string; value: string }[];
}

export interface ConnectOptions {
  token: string;
  /** Rendition id, or 0xFF for automatic. */
  rendition: number;
  latencyTargetMs: number;
  clientName: string;
  /** The page clock in µs (performance.now based), for arrival times. */
  nowUs: () => number;
}

/** A frame's stream as received: header, payload, and when its first and last bytes came. */
export interface ReceivedFrame {
  header: FrameHeader;
  payload: Uint8Array;
  firstByteUs: number;
  lastByteUs: number;
}

export interface Handlers {
  message(msg: ControlMessage): void;
  frame(frame: ReceivedFrame): void;
  /** A frame stream was reset (its deadline passed) or broke off. */
  frameLost(reason: string): void;
  /** A frame stream that does not parse. */
  frameMalformed(reason: string): void;
  datagram(bytes: Uint8Array): void;
}

/** How a session ended. */
export type Closed =
  | { kind: "server"; code: number; reason: string }
  | { kind: "lost"; reason: string }
  | { kind: "local" };

/** Why connecting failed, in words, and whether trying again may help. */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
    /** The server's refusal, when it refused (a close code and its reason). */
    readonly refusal?: { code: number; reason: string },
  ) {
    super(message);
    this.name = "ConnectError";
  }
}

export function base64ToBytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The session info the server wrote into the page itself (no request before the first
 * connection), or a fetch of /session.json when it did not. */
export function pageSession(): Promise<SessionInfo> {
  const inline = document.getElementById("session")?.textContent;
  if (inline) {
    try {
      return Promise.resolve(checkedSession(JSON.parse(inline) as SessionInfo));
    } catch (e) {
      if (e instanceof ConnectError) return Promise.reject(e);
      // Not valid JSON: ask for it.
    }
  }
  return fetchSession();
}

function checkedSession(info: SessionInfo): SessionInfo {
  if (info.protocol_version !== PROTOCOL_VERSION) {
    throw new ConnectError(
      `the server speaks protocol version ${info.protocol_version}, this page ${PROTOCOL_VERSION}: reload the page`,
      false,
    );
  }
  return info;
}

export async function fetchSession(): Promise<SessionInfo> {
  let res: Response;
  try {
    res = await fetch("/session.json", { cache: "no-store" });
  } catch (e) {
    throw new ConnectError(`the server is not reachable (${errorText(e)})`, true);
  }
  if (!res.ok) throw new ConnectError(`the server answered /session.json with HTTP ${res.status}`, true);
  return checkedSession((await res.json()) as SessionInfo);
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

/** Reads a WebTransport session's end: a clean close carries the server's code and reason. */
async function closeOf(wt: WebTransport): Promise<Closed> {
  try {
    const info = await wt.closed;
    return { kind: "server", code: info.closeCode ?? 0, reason: info.reason ?? "" };
  } catch (e) {
    const we = e as { source?: string; streamErrorCode?: number | null };
    return { kind: "lost", reason: errorText(e) + (we.source ? ` (${we.source})` : "") };
  }
}

export class Connection {
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private ended = false;
  /** The fatal Error the server sent, once read: the session's end, whatever the close says. */
  private fatal?: { code: number; reason: string };
  /** Resolves once, when the session ends for any reason. */
  readonly closed: Promise<Closed>;

  private constructor(
    private readonly wt: WebTransport,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    closed: Promise<Closed>,
    readonly welcome: Welcome,
    /** Messages that came before the welcome (informational errors). */
    readonly early: ControlMessage[],
  ) {
    this.writer = writer;
    this.closed = closed.then((c) => {
      this.ended = true;
      return this.fatal ? { kind: "server", ...this.fatal } : c;
    });
  }

  /** Connects, says hello, and resolves with the welcomed connection; media handlers start
   * at once after it resolves (call start()). */
  static async open(opts: ConnectOptions, session?: Promise<SessionInfo>): Promise<Connection> {
    const info = await (session ?? fetchSession());
    mark("session_json");
    const query = opts.token ? `?token=${encodeURIComponent(opts.token)}` : "";
    const url = `https://${location.host}${info.webtransport_path}${query}`;
    const hashes = info.certificate_hashes.map((h) => ({
      algorithm: h.algorithm,
      value: base64ToBytes(h.value) as BufferSource,
    }));
    let wt: WebTransport;
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
      // An origin the server does not allow gets HTTP 403, which the page sees only as a
      // failed session, like an unreachable server; retrying helps the second only.
      throw new ConnectError(
        `the server refused this page's origin, or is not reachable: ${errorText(e)}`,
        true,
      );
    }
    try {
      return await Connection.welcome(wt, closed, opts);
    } catch (e) {
      // Whatever went wrong, this session is not used: let it go (the server may have closed
      // it already).
      try {
        wt.close({ closeCode: ErrorCode.NoError, reason: "viewer leaving" });
      } catch {
        // already closed
      }
      throw e;
    }
  }

  /** Says hello on a ready session and waits for the welcome or a refusal. */
  private static async welcome(wt: WebTransport, closed: Promise<Closed>, opts: ConnectOptions): Promise<Connection> {
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
        token: opts.token,
      },
    });
    try {
      await writer.write(hello);
    } catch (e) {
      throw await refusalOr(closed, `the server closed the control stream: ${errorText(e)}`);
    }
    const framer = new ControlFramer();
    const early: ControlMessage[] = [];
    let welcome: Welcome | undefined;
    while (!welcome) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw await refusalOr(closed, `the control stream broke: ${errorText(e)}`);
      }
      if (chunk.done) throw await refusalOr(closed, "the server ended the control stream");
      let msgs: ControlMessage[];
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
          // A refusal. The page closes the session itself, now that it holds the reason: a
          // close from the server could discard what the browser had not yet handed over.
          closeQuietly(wt, m.code, m.message);
          throw refusal(m.code, m.message);
        } else {
          early.push(m);
        }
      }
    }
    mark("welcome");
    const conn = new Connection(wt, writer, closed, welcome, early.filter((m) => m.type !== "Error"));
    conn.pendingReader = reader;
    conn.pendingFramer = framer;
    return conn;
  }

  private pendingReader?: ReadableStreamDefaultReader<Uint8Array>;
  private pendingFramer?: ControlFramer;

  /** Starts reading the control stream, frame streams and datagrams into `h`. */
  start(h: Handlers, nowUs: () => number): void {
    for (const m of this.early) h.message(m);
    void this.readControl(this.pendingReader!, this.pendingFramer!, h);
    void this.readFrames(h, nowUs);
    void this.readDatagrams(h);
  }

  send(msg: ControlMessage): void {
    if (this.ended) return;
    // Writes are queued by the stream in order; a failure means the session is going.
    this.writer.write(encodeControl(msg)).catch(() => {});
  }

  /** Leaves: code 0, "viewer leaving", as the native viewer. */
  close(code: number = ErrorCode.NoError, reason = "viewer leaving"): void {
    if (this.ended) return;
    try {
      this.wt.close({ closeCode: code, reason });
    } catch {
      // already closed
    }
  }

  private async readControl(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    framer: ControlFramer,
    h: Handlers,
  ): Promise<void> {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        return; // the session's end is read from `closed`
      }
      if (chunk.done) return;
      try {
        for (const m of framer.push(chunk.value)) {
          if (m.type === "Error" && isFatal(m.code)) this.fatal = { code: m.code, reason: m.message };
          h.message(m);
          if (this.fatal) {
            // The server closes after a fatal Error; the page closes first, so that the end
            // it reports is this one and not a connection lost under unread data.
            closeQuietly(this.wt, this.fatal.code, this.fatal.reason);
            return;
          }
        }
      } catch (e) {
        // A malformed message closes the connection (PROTOCOL.md §2).
        this.close(ErrorCode.MalformedMessage, errorText(e));
        return;
      }
    }
  }

  private async readFrames(h: Handlers, nowUs: () => number): Promise<void> {
    const streams = this.wt.incomingUnidirectionalStreams.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<ReadableStream<Uint8Array>>;
      try {
        next = await streams.read();
      } catch {
        return;
      }
      if (next.done) return;
      // Each frame on its own: a slow one never holds back the next.
      void readFrame(next.value, h, nowUs);
    }
  }

  private async readDatagrams(h: Handlers): Promise<void> {
    const datagrams = this.wt.datagrams.readable.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await datagrams.read();
      } catch {
        return;
      }
      if (next.done) return;
      h.datagram(next.value);
    }
  }
}

/** Whether an Error from the server ends the session (PROTOCOL.md §2): every code but
 * UnknownRendition, which is informational. */
export function isFatal(code: number): boolean {
  return code !== ErrorCode.UnknownRendition && code !== ErrorCode.NoError;
}

function closeQuietly(wt: WebTransport, code: number, reason: string): void {
  try {
    // WebTransport close reasons are at most 1024 bytes, as Error messages are.
    wt.close({ closeCode: code, reason });
  } catch {
    // already closed
  }
}

function refusal(code: number, reason: string): ConnectError {
  return new ConnectError(
    `the server refused the session: ${explain(code)}${reason ? ` (${reason})` : ""}`,
    worthRetrying(code),
    { code, reason: reason || describe(code) },
  );
}

/** The refusal the server closed with, if it did, else a failure that may pass. (A fatal
 * Error read on the control stream is a refusal already: see welcome.) */
async function refusalOr(closed: Promise<Closed>, fallback: string): Promise<ConnectError> {
  // A server's close follows its Error within a second; do not wait longer for it.
  const c = await Promise.race([
    closed,
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 1500)),
  ]);
  if (c?.kind === "server" && c.code !== ErrorCode.NoError) return refusal(c.code, c.reason);
  return new ConnectError(c?.kind === "lost" ? `${fallback} (${c.reason})` : fallback, true);
}

/** Reads one frame stream: header (skipping bytes a later version added), then payload. */
async function readFrame(stream: ReadableStream<Uint8Array>, h: Handlers, nowUs: () => number): Promise<void> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let have = 0;
  let header: FrameHeader | undefined;
  let payload: Uint8Array | undefined;
  let filled = 0;
  let firstByteUs = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (have === 0 && !header) firstByteUs = nowUs();
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
        if (filled + value.length > payload!.length) throw new DecodeError("bytes after the payload");
        payload!.set(value, filled);
        filled += value.length;
      }
    }
  } catch (e) {
    if (e instanceof DecodeError) {
      h.frameMalformed(e.message);
      reader.cancel().catch(() => {});
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
  h.frame({ header, payload: payload!, firstByteUs, lastByteUs: nowUs() });
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
