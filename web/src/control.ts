// The page's decisions, without I/O: a port of the native viewer's ViewerControl
// (client/src/control/viewer_control.rs), reduced to what a page has (no --max-quality, no
// rendition names on a command line). Which rendition to ask for (at connect, on a key, by
// automatic quality, after a reconnection), pause, audio bitrate, clock pings, loss reports,
// keyframe requests, and when to reconnect. The connection module turns what happens into
// events, calls handle() with the time, and carries out the actions; it wakes the core at
// nextTimerUs().

import { AUTO_RENDITION, ControlMessage, ErrorCode, Rendition, Welcome } from "./codec.js";
import { AutoQuality, Observation } from "./auto_quality.js";
import { Backoff } from "./backoff.js";
import { ClockSync } from "./clock_sync.js";
import { Command } from "./keys.js";

/** Pings 0 to 4 go 50 ms apart (a first good clock estimate), then one a second. */
const FIRST_PINGS_EVERY_US = 50_000;
const FIRST_PINGS = 5;
const PINGS_EVERY_US = 1_000_000;
/** Pings whose pong may still count. */
const PINGS_KEPT = 16;
const AUTO_EVERY_US = 1_000_000;
/** The receiver report period (PROTOCOL.md: every 2 s, when at least 20 packets were due). */
const REPORT_EVERY_US = 2_000_000;
/** Rendition requests closer than this are coalesced: a flood of keys sends first and last. */
export const SELECT_SPACING_US = 100_000;
/** Keyframe requests for one rendition closer than this are one. */
export const KEYFRAME_SPACING_US = 50_000;

export type CoreCommand = Extract<
  Command,
  { kind: "quality" | "quality-up" | "quality-down" | "auto" | "audio-bitrate-up" | "audio-bitrate-down" | "toggle-pause" }
>;

export interface Readings {
  observation: Observation;
  audio_played: number;
  audio_lost: number;
}

export type Event =
  | { kind: "connected"; welcome: Welcome }
  | { kind: "command"; command: CoreCommand }
  | { kind: "server"; message: ControlMessage }
  | { kind: "keyframe-wanted"; rendition: number }
  | { kind: "sampled"; readings: Readings }
  | { kind: "lost"; reason: string }
  | { kind: "connect-failed"; error: string; retry: boolean }
  | { kind: "timer" };

/** What the decoder must know, in order with the frames. */
export type DecoderEvent =
  | { kind: "target"; rendition: number }
  | { kind: "resync" }
  | { kind: "switch-asked"; atUs: number }
  | { kind: "switch-abandoned" };

export type Note =
  | { kind: "choices"; auto: boolean; paused: boolean }
  | { kind: "rendition-confirmed"; rendition: number; reason: string }
  | { kind: "clock"; offsetUs?: number; minRttUs?: number }
  | { kind: "audio-bitrate"; bps: number }
  | { kind: "broadcast-paused"; paused: boolean }
  | { kind: "lost"; reason: string; sinceUs: number }
  | { kind: "attempt"; n: number }
  | { kind: "reconnected"; sinceUs: number }
  | { kind: "gave-up" };

export type Ended =
  | { kind: "server"; code: number; message: string }
  | { kind: "lost"; reason: string };

export type Action =
  | { kind: "send"; message: ControlMessage }
  | { kind: "connect"; rendition: number }
  | { kind: "decoder"; event: DecoderEvent }
  | { kind: "sample"; auto: boolean }
  | { kind: "note"; note: Note }
  | { kind: "end"; ended: Ended };

export interface ControlOptions {
  /** 0-based ladder position, or undefined for automatic. */
  position?: number;
  latencyTargetUs: number;
  random?: () => number;
}

type Link =
  | { state: "starting" }
  | { state: "up" }
  | { state: "down"; reason: string; sinceUs: number; attempt: number; retryAtUs?: number }
  | { state: "over" };

export class ViewerControl {
  private link: Link = { state: "starting" };
  private ladder: Rendition[] = [];
  /** The ladder position asked for last (or confirmed since). */
  private index: number;
  private confirmed: number | undefined;
  auto: boolean;
  private autoQuality: AutoQuality | undefined;
  private reason: string | undefined;
  paused = false;
  private audioBitrates: number[] = [];
  audioBitrate = 0;
  private clock = new ClockSync();
  private pings = { seq: 0, sentAt: new Map<number, number>(), nextUs: 0 };
  private autoNextUs: number | undefined;
  private reportNextUs: number | undefined;
  private loss: { played: number; lost: number } | undefined;
  private sampling = { auto: false, report: false };
  private lastSelectUs: number | undefined;
  private heldSelect: number | undefined;
  private lastKeyframeRequest: { rendition: number; atUs: number } | undefined;
  private readonly backoff: Backoff;

  constructor(private readonly opts: ControlOptions) {
    this.auto = opts.position === undefined;
    this.index = opts.position ?? 0;
    this.backoff = new Backoff(opts.random);
  }

  /** The estimate of the server clock of this connection. */
  get clockSync(): ClockSync {
    return this.clock;
  }

  get ladderNow(): readonly Rendition[] {
    return this.ladder;
  }

  /** The rendition byte a hello asks for, first or after a reconnection. */
  helloRendition(): number {
    if (this.auto) return AUTO_RENDITION;
    return this.idAt(this.index);
  }

  nextTimerUs(): number | undefined {
    switch (this.link.state) {
      case "up": {
        const held =
          this.heldSelect !== undefined && this.lastSelectUs !== undefined
            ? this.lastSelectUs + SELECT_SPACING_US
            : undefined;
        const times = [this.pings.nextUs, this.reportNextUs, this.auto ? this.autoNextUs : undefined, held];
        return Math.min(...times.filter((t): t is number => t !== undefined));
      }
      case "down":
        return this.link.retryAtUs;
      default:
        return undefined;
    }
  }

  handle(nowUs: number, event: Event): Action[] {
    const out: Action[] = [];
    if (this.link.state === "over") return out;
    switch (event.kind) {
      case "connected":
        this.connected(nowUs, event.welcome, out);
        break;
      case "command":
        this.command(nowUs, event.command, out);
        break;
      case "server":
        this.server(nowUs, event.message, out);
        break;
      case "keyframe-wanted":
        this.keyframeWanted(nowUs, event.rendition, out);
        break;
      case "sampled":
        this.sampled(nowUs, event.readings, out);
        break;
      case "lost":
        this.lost(nowUs, event.reason, out);
        break;
      case "connect-failed":
        this.connectFailed(nowUs, event.error, event.retry, out);
        break;
      case "timer":
        this.timer(nowUs, out);
        break;
    }
    return out;
  }

  private idAt(index: number): number {
    return this.ladder[index]?.id ?? index;
  }

  private positionOf(id: number): number | undefined {
    const i = this.ladder.findIndex((r) => r.id === id);
    return i < 0 ? undefined : i;
  }

  private choices(): Action {
    return { kind: "note", note: { kind: "choices", auto: this.auto, paused: this.paused } };
  }

  private restartAuto(nowUs: number): void {
    this.autoQuality = new AutoQuality(
      this.ladder.map((r) => r.bitrate_kbps),
      0,
      this.opts.latencyTargetUs,
    );
    this.autoNextUs = nowUs + AUTO_EVERY_US;
  }

  private connected(nowUs: number, w: Welcome, out: Action[]): void {
    const first = this.link.state === "starting";
    // A restarted server has another clock: measure the offset afresh.
    this.clock = new ClockSync();
    this.clock.setCoarse(w.server_time_us, nowUs);
    this.ladder = w.renditions;
    this.audioBitrates = w.audio_bitrates;
    this.audioBitrate = w.audio.bitrate_bps;
    this.confirmed = w.rendition;
    this.index = this.positionOf(w.rendition) ?? 0;
    this.pings = { seq: 0, sentAt: new Map(), nextUs: nowUs };
    this.reportNextUs = nowUs;
    this.loss = undefined;
    this.sampling = { auto: false, report: false };
    this.heldSelect = undefined;
    this.lastSelectUs = undefined;
    this.lastKeyframeRequest = undefined;
    let reason: string;
    if (first) {
      reason = this.opts.position === undefined ? "the server's first choice" : "?quality in the address";
      this.link = { state: "up" };
    } else {
      if (this.link.state === "down") {
        out.push({ kind: "note", note: { kind: "reconnected", sinceUs: this.link.sinceUs } });
      }
      this.link = { state: "up" };
      // The numbering may start over (a restarted server): the decoder waits for a keyframe
      // without counting the gap as loss.
      out.push({ kind: "decoder", event: { kind: "resync" } });
      reason = "reconnected";
    }
    out.push({ kind: "decoder", event: { kind: "target", rendition: w.rendition } });
    out.push({ kind: "note", note: { kind: "clock", offsetUs: this.clock.offsetUs() } });
    out.push({ kind: "note", note: { kind: "rendition-confirmed", rendition: w.rendition, reason } });
    out.push({ kind: "note", note: { kind: "audio-bitrate", bps: this.audioBitrate } });
    if (this.auto) this.restartAuto(nowUs);
    // A pause survives a reconnection: say it again.
    if (!first && this.paused) out.push({ kind: "send", message: { type: "SetPaused", paused: true } });
    out.push(this.choices());
  }

  private select(nowUs: number, index: number, out: Action[]): void {
    const r = this.ladder[index];
    if (!r) return;
    this.index = index;
    this.request(nowUs, r.id, out);
  }

  private request(nowUs: number, rendition: number, out: Action[]): void {
    if (this.link.state !== "up") return; // the next hello asks for it
    out.push({ kind: "decoder", event: { kind: "switch-asked", atUs: nowUs } });
    if (this.lastSelectUs !== undefined && nowUs < this.lastSelectUs + SELECT_SPACING_US) {
      this.heldSelect = rendition;
    } else {
      this.lastSelectUs = nowUs;
      this.heldSelect = undefined;
      out.push({ kind: "send", message: { type: "SelectRendition", rendition } });
    }
  }

  private command(nowUs: number, cmd: CoreCommand, out: Action[]): void {
    const up = this.link.state === "up";
    switch (cmd.kind) {
      case "quality":
        if (cmd.position >= this.ladder.length) return; // the server offers fewer
        this.manual(nowUs, cmd.position, out);
        break;
      case "quality-up":
        this.manual(nowUs, this.index > 0 ? this.index - 1 : undefined, out);
        break;
      case "quality-down":
        this.manual(nowUs, this.index + 1 < this.ladder.length ? this.index + 1 : undefined, out);
        break;
      case "auto":
        this.auto = true;
        this.reason = "automatic: starting from the top";
        this.restartAuto(nowUs);
        this.request(nowUs, AUTO_RENDITION, out);
        out.push(this.choices());
        break;
      case "audio-bitrate-up":
      case "audio-bitrate-down": {
        const at = this.audioBitrates.indexOf(this.audioBitrate);
        if (at < 0) return;
        const to = this.audioBitrates[cmd.kind === "audio-bitrate-up" ? at + 1 : at - 1];
        if (up && to !== undefined) out.push({ kind: "send", message: { type: "SetAudioBitrate", bitrate_bps: to } });
        break;
      }
      case "toggle-pause":
        this.paused = !this.paused;
        if (up) out.push({ kind: "send", message: { type: "SetPaused", paused: this.paused } });
        if (!this.paused) {
          // The server resumes on a keyframe, its numbering moved on meanwhile: the gap is
          // not a loss (nor trouble for automatic quality), as after the broadcaster's pause.
          out.push({ kind: "decoder", event: { kind: "resync" } });
          this.autoQuality?.restart();
        }
        out.push(this.choices());
        break;
    }
  }

  /** A rendition chosen by the viewer (undefined: nowhere to go, but automatic is off). */
  private manual(nowUs: number, to: number | undefined, out: Action[]): void {
    const wasAuto = this.auto;
    this.auto = false;
    this.autoNextUs = undefined;
    this.reason = "chosen by the viewer";
    // Leaving automatic quality pins what plays, even with nowhere to go.
    const i = to ?? (wasAuto ? this.index : undefined);
    if (i !== undefined && (wasAuto || i !== this.index || this.heldSelect !== undefined)) {
      this.select(nowUs, i, out);
    }
    out.push(this.choices());
  }

  private server(nowUs: number, msg: ControlMessage, out: Action[]): void {
    switch (msg.type) {
      case "Pong": {
        const sent = this.pings.sentAt.get(msg.seq);
        this.pings.sentAt.delete(msg.seq);
        if (sent !== undefined && sent === msg.client_time_us) {
          this.clock.add({
            client_send: msg.client_time_us,
            server_receive: msg.server_receive_us,
            server_send: msg.server_send_us,
            client_receive: nowUs,
          });
          out.push({
            kind: "note",
            note: { kind: "clock", offsetUs: this.clock.offsetUs(), minRttUs: this.clock.minRttUs() },
          });
        }
        break;
      }
      case "RenditionChanged": {
        out.push({ kind: "decoder", event: { kind: "target", rendition: msg.rendition } });
        this.confirmed = msg.rendition;
        if (this.heldSelect === undefined) {
          const i = this.positionOf(msg.rendition);
          if (i !== undefined) this.index = i;
        }
        out.push({
          kind: "note",
          note: { kind: "rendition-confirmed", rendition: msg.rendition, reason: this.reason ?? "the server's choice" },
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
          // Back to what plays.
          const i = this.confirmed !== undefined ? this.positionOf(this.confirmed) : undefined;
          if (i !== undefined) this.index = i;
          this.heldSelect = undefined;
          out.push({ kind: "decoder", event: { kind: "switch-abandoned" } });
        }
        break;
      case "Goodbye":
        this.link = { state: "over" };
        out.push({ kind: "end", ended: { kind: "server", code: msg.code, message: msg.message } });
        break;
      default:
        break; // nothing else is for the viewer; ignored as the native viewer does
    }
  }

  private keyframeWanted(nowUs: number, rendition: number, out: Action[]): void {
    if (this.link.state !== "up") return;
    const last = this.lastKeyframeRequest;
    if (last && last.rendition === rendition && nowUs < last.atUs + KEYFRAME_SPACING_US) return;
    this.lastKeyframeRequest = { rendition, atUs: nowUs };
    out.push({ kind: "send", message: { type: "KeyframeRequest", rendition } });
  }

  private timer(nowUs: number, out: Action[]): void {
    if (this.link.state === "down") {
      if (this.link.retryAtUs !== undefined && nowUs >= this.link.retryAtUs) {
        this.link.retryAtUs = undefined;
        this.link.attempt++;
        out.push({ kind: "note", note: { kind: "attempt", n: this.link.attempt } });
        out.push({ kind: "connect", rendition: this.helloRendition() });
      }
      return;
    }
    if (this.link.state !== "up") return;
    if (nowUs >= this.pings.nextUs) {
      const seq = this.pings.seq;
      this.pings.sentAt.set(seq, nowUs);
      for (const s of this.pings.sentAt.keys()) if (((seq - s) >>> 0) >= PINGS_KEPT) this.pings.sentAt.delete(s);
      this.pings.seq = (seq + 1) >>> 0;
      this.pings.nextUs = nowUs + (seq + 1 < FIRST_PINGS ? FIRST_PINGS_EVERY_US : PINGS_EVERY_US);
      out.push({ kind: "send", message: { type: "Ping", seq, client_time_us: nowUs } });
    }
    if (this.heldSelect !== undefined && this.lastSelectUs !== undefined && nowUs >= this.lastSelectUs + SELECT_SPACING_US) {
      const rendition = this.heldSelect;
      this.heldSelect = undefined;
      this.lastSelectUs = nowUs;
      out.push({ kind: "send", message: { type: "SelectRendition", rendition } });
    }
    const autoDue = this.auto && this.autoNextUs !== undefined && nowUs >= this.autoNextUs;
    const reportDue = this.reportNextUs !== undefined && nowUs >= this.reportNextUs;
    if (autoDue) this.autoNextUs = nowUs + AUTO_EVERY_US;
    if (reportDue) this.reportNextUs = nowUs + REPORT_EVERY_US;
    if (autoDue || reportDue) {
      this.sampling = { auto: autoDue, report: reportDue };
      out.push({ kind: "sample", auto: autoDue });
    }
  }

  private sampled(nowUs: number, r: Readings, out: Action[]): void {
    const { auto: autoDue, report: reportDue } = this.sampling;
    this.sampling = { auto: false, report: false };
    if (this.link.state !== "up") return;
    if (reportDue) {
      // Reports cover this connection's periods only.
      if (!this.loss) this.loss = { played: r.audio_played, lost: r.audio_lost };
      else {
        const dp = Math.max(0, r.audio_played - this.loss.played);
        const dl = Math.max(0, r.audio_lost - this.loss.lost);
        this.loss = { played: r.audio_played, lost: r.audio_lost };
        if (dp + dl >= 20) {
          out.push({
            kind: "send",
            message: { type: "ReceiverReport", audio_loss_permille: Math.floor((1000 * dl) / (dp + dl)) },
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
    this.select(nowUs, d.to, out);
  }

  private lost(nowUs: number, reason: string, out: Action[]): void {
    if (this.link.state !== "up") return;
    out.push({ kind: "note", note: { kind: "lost", reason, sinceUs: nowUs } });
    this.autoNextUs = undefined;
    this.reportNextUs = undefined;
    this.heldSelect = undefined;
    this.backoff.reset();
    this.link = {
      state: "down",
      reason,
      sinceUs: nowUs,
      attempt: 0,
      retryAtUs: nowUs + this.backoff.nextWaitMs() * 1000,
    };
  }

  private connectFailed(nowUs: number, error: string, retry: boolean, out: Action[]): void {
    if (this.link.state !== "down") return;
    if (retry) {
      this.link.retryAtUs = nowUs + this.backoff.nextWaitMs() * 1000;
      return;
    }
    const reason = `${this.link.reason}; reconnecting failed: ${error}`;
    this.link = { state: "over" };
    out.push({ kind: "note", note: { kind: "gave-up" } });
    out.push({ kind: "end", ended: { kind: "lost", reason } });
  }
}
