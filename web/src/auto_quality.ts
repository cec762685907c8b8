// Automatic quality (the A key, and the default), a port of the native viewer's
// client/src/control/auto_quality.rs with the same thresholds and reasons. Fed one
// Observation a second; pure.
//
// Down fast: frames reset at the server's deadline, skipped, dropped by a busy decoder, a
// queue building (latency or round trip well above their usual) or heavy loss move down at
// once, straight to the rung the measured throughput carries when the path is the limit. Up
// cautiously: after a clean spell, one rung at a time; a rung that failed soon after being
// tried waits twice as long before the next try.

export const FIRST_PROBE_WAIT_S = 5;
export const MAX_PROBE_WAIT_S = 60;
const PROBE_SETTLED_S = 20;
const QUEUE_GROWTH_US = 150_000;
const UP_BLOCKING_GROWTH_US = 60_000;
const HEAVY_LOSS = 0.1;
const BASELINE_WINDOW_S = 20;
const THROUGHPUT_HEADROOM = 0.85;
const SWITCH_GRACE_S = 2;

/** What the page saw; counters are totals since the start. */
export interface Observation {
  frames_reset: number;
  frames_skipped: number;
  frames_dropped_busy: number;
  video_bytes: number;
  audio_played: number;
  audio_concealed: number;
  /** Capture-to-decoded latency of the frames decoded in the last second. */
  latency_p50_us?: number;
  latency_p90_us?: number;
  /** Round trip now. The browser has no QUIC RTT to give: the last ping's is used. */
  rtt_us?: number;
}

export interface Decision {
  to: number;
  reason: string;
  throughput_kbps: number;
}

export class AutoQuality {
  private readonly top: number;
  private last: Observation | undefined;
  private latencyP50s: number[] = [];
  private rtts: number[] = [];
  private cleanSeconds = 0;
  private probeWaitS = FIRST_PROBE_WAIT_S;
  private probing: { rung: number; age: number } | undefined;
  private lossySeconds = 0;
  private graceS = 0;

  /** `ladderKbps`: bitrates highest first; `cap`: highest rung allowed; `targetUs`: the
   * latency target. */
  constructor(
    private readonly ladderKbps: number[],
    cap: number,
    private readonly targetUs: number,
  ) {
    this.top = Math.min(cap, Math.max(0, ladderKbps.length - 1));
  }

  /** Forgets the counters' last values (after a pause or reconnection). */
  restart(): void {
    this.last = undefined;
    this.cleanSeconds = 0;
  }

  tick(obs: Observation, index: number): Decision | undefined {
    const d = this.decide(obs, index);
    if (d) this.graceS = SWITCH_GRACE_S;
    return d;
  }

  private decide(obs: Observation, index: number): Decision | undefined {
    const inGrace = this.graceS > 0;
    this.graceS = Math.max(0, this.graceS - 1);
    const usualLatency = this.latencyP50s.length ? Math.min(...this.latencyP50s) : undefined;
    const minRtt = this.rtts.length ? Math.min(...this.rtts) : undefined;
    pushWindow(this.latencyP50s, obs.latency_p50_us);
    pushWindow(this.rtts, obs.rtt_us);
    const last = this.last;
    this.last = obs;
    if (!last) return undefined; // the first observation sets the baseline
    const delta = (now: number, before: number) => Math.max(0, now - before);
    const throughput_kbps = Math.floor((delta(obs.video_bytes, last.video_bytes) * 8) / 1000);

    const played = delta(obs.audio_played, last.audio_played);
    const concealed = delta(obs.audio_concealed, last.audio_concealed);
    const loss = played + concealed >= 10 ? concealed / (played + concealed) : 0;
    this.lossySeconds = loss >= HEAVY_LOSS ? this.lossySeconds + 1 : 0;

    const reset = delta(obs.frames_reset, last.frames_reset);
    const skipped = delta(obs.frames_skipped, last.frames_skipped);
    const busy = delta(obs.frames_dropped_busy, last.frames_dropped_busy);
    const latencyGrowth =
      obs.latency_p90_us !== undefined && usualLatency !== undefined && !inGrace
        ? { now: obs.latency_p90_us, usual: usualLatency, growth: Math.max(0, obs.latency_p90_us - usualLatency) }
        : undefined;
    const rttGrowth =
      obs.rtt_us !== undefined && minRtt !== undefined && !inGrace
        ? { now: obs.rtt_us, min: minRtt, growth: Math.max(0, obs.rtt_us - minRtt) }
        : undefined;
    const overTarget = obs.latency_p90_us !== undefined && !inGrace && obs.latency_p90_us > this.targetUs;
    const ms = (us: number) => Math.floor(us / 1000);

    let trouble: { reason: string; congestion: boolean } | undefined;
    if (reset >= 2) trouble = { reason: `${reset} frames missed their deadline`, congestion: true };
    else if (overTarget)
      trouble = {
        reason: `latency ${ms(obs.latency_p90_us!)} ms, over the ${ms(this.targetUs)} ms target`,
        congestion: true,
      };
    else if (latencyGrowth && latencyGrowth.growth > QUEUE_GROWTH_US)
      trouble = {
        reason: `latency ${ms(latencyGrowth.now)} ms, usually ${ms(latencyGrowth.usual)} ms`,
        congestion: true,
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
      // A rung that failed soon after it was tried waits longer for the next try.
      if (this.probing) {
        if (this.probing.rung === index) this.probeWaitS = Math.min(this.probeWaitS * 2, MAX_PROBE_WAIT_S);
        this.probing = undefined;
      }
      let to = index + 1;
      if (trouble.congestion) {
        // Straight to the rung the path carried, when that is lower still.
        const fits = Math.floor(throughput_kbps * THROUGHPUT_HEADROOM);
        while (to + 1 < this.ladderKbps.length && this.ladderKbps[to]! > fits) to++;
      }
      to = Math.max(Math.min(to, this.ladderKbps.length - 1), this.top);
      return to !== index ? { to, reason: trouble.reason, throughput_kbps } : undefined;
    }

    if (this.probing) {
      this.probing.age++;
      if (this.probing.age >= PROBE_SETTLED_S && this.probing.rung === index) {
        this.probing = undefined;
        this.probeWaitS = FIRST_PROBE_WAIT_S;
      }
    }
    if (index < this.top) return { to: this.top, reason: "0 s without trouble", throughput_kbps };
    // A queue that is starting to build blocks an up-step without causing a down-step.
    const settling =
      (latencyGrowth !== undefined && latencyGrowth.growth > UP_BLOCKING_GROWTH_US) ||
      (rttGrowth !== undefined && rttGrowth.growth > UP_BLOCKING_GROWTH_US) ||
      reset > 0 ||
      skipped > 0;
    if (settling) {
      this.cleanSeconds = 0;
      return undefined;
    }
    this.cleanSeconds++;
    if (this.cleanSeconds >= this.probeWaitS && index > this.top) {
      const seconds = this.cleanSeconds;
      this.cleanSeconds = 0;
      this.probing = { rung: index - 1, age: 0 };
      return { to: index - 1, reason: `${seconds} s without trouble`, throughput_kbps };
    }
    return undefined;
  }
}

function pushWindow(window: number[], value: number | undefined): void {
  if (value === undefined) return;
  window.push(value);
  if (window.length > BASELINE_WINDOW_S) window.shift();
}
