// The page's entry point: checks the browser can play the stream, then wires the stages
// (connection → control core, video → presenter, audio) and the page (keys, overlays,
// messages), and exposes window.streamsocket for scripts and tests.
//
// Address parameters: ?token=... (the server's access token), ?latency=MS (the end-to-end
// delay aimed for; 0 or absent = the server's default, 300 ms), ?quality=N (start at
// rendition N, 1 = highest; default automatic).

import { AUTO_RENDITION, ControlMessage, ErrorCode, MAX_NAME, MAX_TOKEN } from "./codec.js";
import { Connection, ConnectError, Closed, errorText, pageSession } from "./connection.js";
import { Action, CoreCommand, Note, ViewerControl } from "./control.js";
import { forKey } from "./keys.js";
import { AudioLatency, AudioPipeline } from "./audio.js";
import { Presenter } from "./presenter.js";
import { Stats } from "./stats.js";
import { JoinStep, mark, timeline } from "./timeline.js";
import { VideoPipeline, av1CodecString } from "./video.js";
import { bannerLines, helpLines, statsLines } from "./overlay.js";
import { describe, explain, worthRetrying } from "./refusals.js";

/** The server's default latency target when the hello says 0 (PROTOCOL.md §2). */
const DEFAULT_LATENCY_MS = 300;
/** How often the overlay and banner are redrawn. */
const OVERLAY_REFRESH_MS = 250;

/** What window.streamsocket.state() returns. */
export interface PageState {
  state: "starting" | "connecting" | "connected" | "reconnecting" | "refused" | "ended" | "unsupported";
  /** The last close or refusal code (PROTOCOL.md §1), and its name and words. */
  close_code: number | null;
  close_name: string | null;
  close_reason: string | null;
  /** What the page says to the person (the refusal explained, or what is missing). */
  message: string | null;
  /** The server's ladder as the welcome listed it (position 0 = highest). */
  renditions: { id: number; name: string; width: number; height: number }[];
  /** When the first picture was drawn, ms after the page's navigation started (the join
   * time a person sees; stats().video.first_frame_ms counts from the first attempt). */
  first_picture_ms: number | null;
  /** How far the sound the page renders is ahead of the speaker, ms (the AudioContext's
   * baseLatency + outputLatency): pictures wait this long for their sound. Null without sound. */
  audio_output_latency_ms: number | null;
  /** The join's steps, ms after navigation start (timeline.ts). */
  join_timeline_ms: Partial<Record<JoinStep, number>>;
  /** The AudioContext's latency hint: "interactive" (the default) or "lowest" (?audio-latency=lowest). */
  audio_latency: AudioLatency;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const canvas = $<HTMLCanvasElement>("picture");
const overlay = $<HTMLPreElement>("overlay");
const banner = $<HTMLPreElement>("banner");
const messageBox = $<HTMLDivElement>("message");
const statusLine = $<HTMLDivElement>("status");

// Whole microseconds: the wire carries integers (a ping's client_time_us is a u64).
const nowUs = () => Math.floor(performance.now() * 1000);
const page: PageState = {
  state: "starting",
  close_code: null,
  close_name: null,
  close_reason: null,
  message: null,
  renditions: [],
  first_picture_ms: null,
  audio_output_latency_ms: null,
  join_timeline_ms: {},
  audio_latency: "interactive",
};

function setState(state: PageState["state"], status: string): void {
  page.state = state;
  statusLine.textContent = status;
}

function showMessage(text: string): void {
  page.message = text;
  messageBox.textContent = text;
  messageBox.hidden = false;
}

function closeInfo(code: number, reason: string): void {
  page.close_code = code;
  page.close_name = explain(code).split(" (")[0] ?? null;
  page.close_reason = reason;
}

/** "web Chromium 156": the client name in the hello (≤ 64 bytes). */
function clientName(): string {
  const brands = (navigator as Navigator & { userAgentData?: { brands: { brand: string; version: string }[] } })
    .userAgentData?.brands;
  const brand = brands?.find((b) => !/not.a.brand/i.test(b.brand));
  const m = /(Firefox|Edg|OPR|Chrome|Chromium|Safari)\/(\d+)/.exec(navigator.userAgent);
  const name = brand ? `${brand.brand} ${brand.version}` : m ? `${m[1]} ${m[2]}` : "browser";
  return `web ${name}`.slice(0, MAX_NAME);
}

/** What this browser lacks to play the stream that can be told at once, in words. */
function missingApis(): string[] {
  const missing: string[] = [];
  if (typeof WebTransport === "undefined") missing.push("WebTransport");
  if (typeof VideoDecoder === "undefined") missing.push("WebCodecs (VideoDecoder)");
  return missing;
}

/** Whether WebCodecs decodes AV1: asked as the script starts and awaited once the first
 * connection is up, so the answer (14 ms headless) does not delay the join. */
async function missingAv1(): Promise<string[]> {
  if (typeof VideoDecoder === "undefined") return [];
  try {
    const s = await VideoDecoder.isConfigSupported({ codec: "av01.0.04M.08" });
    return s.supported ? [] : ["AV1 decoding in WebCodecs"];
  } catch {
    return ["AV1 decoding in WebCodecs"];
  }
}

/** Says what the browser lacks, for good. */
function unsupported(missing: string[]): void {
  setState("unsupported", "This browser cannot play the stream.");
  showMessage(
    `This browser lacks ${missing.join(" and ")}, which StreamSocket's web viewer needs.\n\n` +
      "Use a current Chromium-based browser (Chrome, Edge, Chromium), or the native viewer: " +
      `streamsocket-client ${location.host}`,
  );
}

/** The first attempt's session info: written into the page by the server (else asked for as
 * soon as the script runs). Later attempts fetch /session.json: the certificate changes. */
mark("script");
const firstSession = pageSession();
firstSession.catch(() => {}); // the attempt reports it
const av1Check = missingAv1();

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") ?? "";
  const latencyMs = Math.min(65535, Math.max(0, Number(params.get("latency") ?? 0) || 0));
  const qualityParam = Number(params.get("quality"));
  const position = Number.isInteger(qualityParam) && qualityParam >= 1 ? qualityParam - 1 : undefined;
  const latencyTargetUs = (latencyMs || DEFAULT_LATENCY_MS) * 1000;
  page.audio_latency = params.get("audio-latency") === "lowest" ? "lowest" : "interactive";
  const stats = new Stats(performance.now());
  let audio: AudioPipeline | undefined;
  const api = {
    stats: () => stats.snapshot(performance.now()),
    state: (): PageState => ({
      ...page,
      renditions: [...page.renditions],
      join_timeline_ms: timeline(),
      audio_output_latency_ms: audio?.running ? Math.round(audio.outputLatencyUs() / 10) / 100 : null,
    }),
  };
  (window as unknown as { streamsocket: typeof api }).streamsocket = api;

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
    delayUs: () => (audio?.running ? audio.delayUs() : undefined),
    canWait: () => audio?.canWait() ?? true,
  });
  presenter.onShown = () => {
    if (page.first_picture_ms !== null) return;
    mark("first_shown");
    page.first_picture_ms = Math.round(performance.now() * 100) / 100;
    void startAudio();
  };
  // Sound is set up once the first picture is shown, not before connecting: creating the
  // AudioContext holds the page's main thread for 100-200 ms in Chromium (measured headless:
  // /session.json took 150-250 ms instead of 25), which delayed the first picture as much.
  // Datagrams before it is ready are not played; pictures never wait for sound.
  const startAudio = async () => {
    const a = await AudioPipeline.create(stats, nowUs, serverNowUs, latencyTargetUs, page.audio_latency, () =>
      presenter.videoNeedUs(),
    );
    audio = a;
    if (!a) return;
    a.setMuted(muted);
    if (a.ctx.state !== "running") {
      // Browsers start sound only after a gesture; pictures play meanwhile.
      const hint = document.createElement("div");
      hint.id = "sound-hint";
      hint.textContent = "click or press a key for sound";
      hint.style.cssText =
        "position:absolute;bottom:12px;left:50%;transform:translateX(-50%);padding:4px 12px;background:#333;border-radius:4px";
      $("stage").appendChild(hint);
      const resume = () => {
        void a.ctx.resume().then(() => hint.remove());
      };
      addEventListener("pointerdown", resume, { once: true });
      addEventListener("keydown", resume, { once: true });
    }
  };

  let conn: Connection | undefined;
  let video: VideoPipeline | undefined;
  let ladderNames: string[] = [];
  let reconnecting: { reason: string; attempt: number; sinceUs: number } | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let muted = false;
  let showStats = false;
  let showHelp = false;
  let ended = false;

  const hello = () => ({
    token,
    latencyTargetMs: latencyMs,
    clientName: clientName(),
    nowUs,
  });

  const run = (actions: Action[]) => {
    for (const a of actions) carryOut(a);
    armTimer();
  };
  const handle = (e: Parameters<ViewerControl["handle"]>[1]) => run(control.handle(nowUs(), e));

  function armTimer(): void {
    if (timer !== undefined) clearTimeout(timer);
    const at = control.nextTimerUs();
    if (at === undefined) return;
    timer = setTimeout(() => handle({ kind: "timer" }), Math.max(0, (at - nowUs()) / 1000));
  }

  function carryOut(a: Action): void {
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
            rtt_us: control.clockSync.lastRttUs,
          },
          audio_played: audio?.played ?? 0,
          audio_lost: audio?.lost ?? 0,
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

  function note(n: Note): void {
    switch (n.kind) {
      case "choices":
        stats.auto = n.auto;
        stats.paused = n.paused;
        break;
      case "rendition-confirmed":
        stats.rendition = n.rendition;
        stats.auto_reason = n.reason;
        stats.rendition_timeline.push({
          at_ms: Math.floor((performance.now() - stats.startedMs)),
          rendition: n.rendition,
          reason: n.reason,
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
        reconnecting = undefined;
        break;
      case "gave-up":
        stats.connection.reconnecting = false;
        reconnecting = undefined;
        break;
    }
  }

  /** The session is over for good: say why. */
  function end(c: Closed): void {
    ended = true;
    if (timer !== undefined) clearTimeout(timer);
    conn?.close();
    if (c.kind === "server") {
      closeInfo(c.code, c.reason);
      const graceful = c.code === ErrorCode.NoError || c.code === ErrorCode.ServerShuttingDown;
      setState(graceful ? "ended" : "refused", `The server ended the session: ${describe(c.code)}`);
      showMessage(
        `The server ended the session: ${explain(c.code)}${c.reason ? `\n(${c.reason})` : ""}\n\nReload the page to watch again.`,
      );
    } else if (c.kind === "lost") {
      setState("ended", `Connection lost: ${c.reason}`);
      showMessage(`Connection lost: ${c.reason}\n\nReload the page to try again.`);
    }
  }

  /** One connection attempt: the first (a failure ends the page, as the native viewer exits)
   * or a reconnection (a failure goes back to the control core, which retries or gives up). */
  async function attempt(rendition: number, first: boolean): Promise<void> {
    const startedUs = nowUs();
    if (first) setState("connecting", `Connecting to ${location.host}…`);
    let c: Connection;
    try {
      c = await Connection.open({ ...hello(), rendition }, first ? firstSession : undefined);
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
      const top = c.welcome.renditions[0]!;
      const codec = av1CodecString(top.width, top.height);
      video = new VideoPipeline(
        codec,
        stats,
        nowUs,
        serverNowUs,
        latencyTargetUs,
        (p) => presenter.put(p),
        (r) => handle({ kind: "keyframe-wanted", rendition: r }),
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
        message: (m: ControlMessage) => handle({ kind: "server", message: m }),
        frame: (f) => video!.push(f),
        frameLost: () => stats.video.frames_reset++,
        frameMalformed: (why) => {
          stats.video.frames_malformed++;
          console.warn("malformed frame stream:", why);
        },
        datagram: (d) => audio?.datagram(d),
      },
      nowUs,
    );
    void c.closed.then((closed) => {
      if (conn !== c || ended) return;
      conn = undefined;
      if (closed.kind === "lost") handle({ kind: "lost", reason: closed.reason });
      else if (closed.kind === "server") {
        // As the native viewer: a close the server chose ends the session; only a refusal
        // that may pass (shutting down, rate limit) is worth another try.
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
        handle({ kind: "command", command: cmd as CoreCommand });
    }
    redraw();
  });

  // Frame rate and bitrate over the last second, for the overlay.
  let rateWindow = { atMs: performance.now(), frames: 0, bytes: 0 };
  let rates = { fps: 0, kbps: 0 };
  function redraw(): void {
    const snap = stats.snapshot(performance.now());
    const elapsed = (performance.now() - rateWindow.atMs) / 1000;
    if (elapsed >= 1) {
      const v = stats.video;
      rates = {
        fps: (v.frames_presented - rateWindow.frames) / elapsed,
        kbps: ((v.bytes - rateWindow.bytes) * 8) / 1000 / elapsed,
      };
      rateWindow = { atMs: performance.now(), frames: v.frames_presented, bytes: v.bytes };
    }
    const lines = showHelp
      ? helpLines()
      : showStats
        ? statsLines(snap, rates, location.host, ladderNames, audio?.running ? (audio.delayUs() ?? 0) / 1000 : undefined, muted)
        : undefined;
    overlay.hidden = !lines;
    if (lines) overlay.textContent = lines.join("\n");
    const b = ended
      ? undefined
      : bannerLines(
          {
            reconnecting,
            broadcastPaused: stats.broadcast.paused,
            paused: stats.paused,
            lastDecodedUs: stats.video.last_decoded_us,
          },
          nowUs(),
        );
    banner.hidden = !b;
    if (b) banner.textContent = b.join("\n");
  }
  setInterval(redraw, OVERLAY_REFRESH_MS);
  addEventListener("pagehide", () => conn?.close());

  await attempt(position === undefined ? AUTO_RENDITION : position, true);
}

main().catch((e) => {
  setState("ended", "The viewer failed.");
  showMessage(`The viewer failed: ${errorText(e)}`);
  console.error(e);
});
