// Playout timing, pure (no DOM; node tests it with injected clocks): when each audio packet
// plays, how much delay to aim for, what was played and what was lost. audio.ts feeds it the
// packets and the clocks, and carries out what it decides. Modelled on the native viewer's
// client/src/audio/playout.rs, simplified where a page lacks what the native one uses:
// - Scheduling is by anchor: one context frame is tied to one capture time, and every packet
//   plays at anchor + (its capture − the anchor's capture), so consecutive packets join
//   sample-exactly whatever the main thread's timing.
// - The delay aimed for follows the native rule: the 99th percentile of the packets' transit
//   (capture to arrival) over the last 3 s plus 5 ms, plus the output's own latency (the
//   browser renders ahead of the speaker), raised to the video's need, at most the latency
//   target.
// - The native viewer nudges each packet by up to 1 ms with a crossfaded splice to follow the
//   target, and re-buffers only 40 ms over it. Here the delay is corrected in whole steps:
//   10 ms under the target re-anchors later (a stretch, a gap of silence), 20 ms over it
//   re-anchors earlier (a catch-up: the next packets overwrite what was scheduled, a jump).
//   The band is narrower than the native 40 ms because nothing else brings the delay down.
// - A lost packet plays as silence: WebCodecs' AudioDecoder offers neither Opus FEC nor PLC.

export const RATE = 48_000;
const FRAMES_PER_US = RATE / 1e6;
/** The delay aimed for before any transit is measured (playout.rs START_US). */
export const START_US = 40_000;
/** The least delay: a packet plays only once all its samples were captured. */
export const FLOOR_US = 10_000;
/** Above the slowest packets' transit: decoding and the main thread's wake-up jitter. */
export const AUDIO_MARGIN_US = 5_000;
/** Delay this far under the target re-anchors later (stretch). */
export const STRETCH_BELOW_US = 10_000;
/** Delay this far over the target re-anchors earlier (catch up). */
export const CATCH_UP_ABOVE_US = 20_000;
/** After this long with nothing to play, the next packet re-buffers (an outage, a pause). */
export const MAX_SILENCE_US = 100_000;
/** Transits measured over the last 3 s of 20 ms packets. */
const TRANSIT_WINDOW = 150;
/** Packets arriving this soon after playout started are not measured: they include the
 * backlog that queued in the page while the AudioContext was being created (up to 250 ms
 * measured), a local one-off, not the network's jitter, which would hold the delay high for
 * the window's 3 s. Those already too old to play are dropped, not counted as lost. */
export const SETTLING_US = 300_000;
/** Transits measured before the delay is corrected towards the target. */
export const MIN_TRANSITS = 10;

/** The clocks at one instant: the server's (estimated), and the audio context's frame at the
 * speaker and at the renderer (which runs ahead of the speaker by the output's latency). */
export interface Clocks {
  serverNowUs: number | undefined;
  /** Undefined until the context's clock can be trusted. */
  outputFrame: number | undefined;
  processingFrame: number;
  /** How far the renderer runs ahead of the speaker, µs. */
  outputLeadUs: number;
}

/** The audio counters of the stats this module writes (a part of Stats.audio). */
export interface PlayoutCounters {
  packets_decoded: number;
  packets_concealed: number;
  packets_late: number;
  packets_stretched: number;
  packets_dropped_catch_up: number;
  target_delay_ms: number;
  jitter_ms: number;
}

interface Pending {
  capture_us: number;
  /** Scheduled in time (else late, or never decoded). */
  scheduled: boolean;
}

export class Playout {
  private anchor: { frame: number; capture_us: number } | undefined;
  targetUs = START_US;
  packetUs = 10_000;
  private transits: number[] = [];
  private lastArrivalUs: number | undefined;
  /** Packets by seq not yet played, for the played / concealed accounting. */
  private pending = new Map<number, Pending>();
  private expectedSeq: number | undefined;
  /** Packets played and lost since the start, for receiver reports and automatic quality. */
  played = 0;
  lost = 0;

  constructor(
    private readonly counters: PlayoutCounters,
    private readonly ceilingUs: number,
    private readonly startedUs: number,
  ) {}

  /** Starts over (a reconnection: another server's clock and numbering). */
  reset(): void {
    this.anchor = undefined;
    this.pending.clear();
    this.expectedSeq = undefined;
    this.lastArrivalUs = undefined;
  }

  /** A packet arrived (page clock `nowUs`): whether to decode it. */
  arrive(seq: number, capture_us: number, durationUs: number | undefined, nowUs: number, serverNowUs: number | undefined): boolean {
    this.packetUs = durationUs ?? this.packetUs;
    const settling = nowUs - this.startedUs < SETTLING_US;
    if (serverNowUs !== undefined) {
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
    // A long silence (an outage, a pause): start over at the target.
    if (this.lastArrivalUs !== undefined && nowUs - this.lastArrivalUs > MAX_SILENCE_US + this.targetUs) {
      this.reset();
    }
    this.lastArrivalUs = nowUs;
    if (this.pending.has(seq)) return false; // a duplicate
    this.pending.set(seq, { capture_us, scheduled: false });
    return true;
  }

  /** Where a decoded packet of `length` samples goes in the context's frames, or undefined
   * when it does not play (too late, no clock yet, or forgotten by a reset). */
  place(seq: number, capture_us: number, length: number, c: Clocks): number | undefined {
    const entry = this.pending.get(seq);
    if (!entry) return undefined;
    if (!this.anchor && c.serverNowUs !== undefined && c.outputFrame !== undefined) {
      // Not earlier than this packet can still play: the first packets may be a backlog.
      const delay = Math.max(this.targetUs, c.serverNowUs - capture_us + c.outputLeadUs + AUDIO_MARGIN_US);
      this.anchorAt(capture_us, delay, c);
    }
    if (!this.anchor) {
      // No clock yet: not played, and not counted as lost.
      this.pending.delete(seq);
      return undefined;
    }
    const frame = Math.round(this.anchor.frame + (capture_us - this.anchor.capture_us) * FRAMES_PER_US);
    if (frame + length <= c.processingFrame) {
      this.counters.packets_late++;
      return undefined;
    }
    entry.scheduled = true;
    return frame;
  }

  /** Ties a capture time to the frame that plays it `delayUs` after capture. */
  private anchorAt(capture_us: number, delayUs: number, c: Clocks): void {
    if (c.outputFrame === undefined || c.serverNowUs === undefined) return;
    this.anchor = { frame: c.outputFrame + (capture_us + delayUs - c.serverNowUs) * FRAMES_PER_US, capture_us };
  }

  /** The capture time at the speaker now, by the anchor. */
  heardCaptureUs(c: Clocks): number | undefined {
    if (c.outputFrame === undefined || !this.anchor) return undefined;
    return this.anchor.capture_us + (c.outputFrame - this.anchor.frame) / FRAMES_PER_US;
  }

  /** The delay audio plays at now: capture to heard. */
  delayUs(c: Clocks): number | undefined {
    const heard = this.heardCaptureUs(c);
    return heard === undefined || c.serverNowUs === undefined ? undefined : c.serverNowUs - heard;
  }

  /** Whether audio can still wait for late pictures (it is below its ceiling). */
  canWait(c: Clocks): boolean {
    const d = this.delayUs(c);
    return d === undefined || d + this.packetUs < this.ceilingUs;
  }

  /** The page time (µs) at which a context frame reaches the speaker, given the page time of
   * the clocks' reading. */
  static pageTimeOfFrame(frame: number, c: Clocks, nowUs: number): number | undefined {
    return c.outputFrame === undefined ? undefined : nowUs + (frame - c.outputFrame) / FRAMES_PER_US;
  }

  /** Accounts for what reached the speaker: played if it was scheduled in time, concealed
   * (lost) if it was not, or never came while a later one did. */
  account(c: Clocks): void {
    const heard = this.heardCaptureUs(c);
    if (heard === undefined || !this.pending.size) return;
    const n = this.counters;
    if (this.expectedSeq === undefined) this.expectedSeq = Math.min(...this.pending.keys());
    for (;;) {
      const seq: number = this.expectedSeq;
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
        // Missing: lost once a later packet is due (it was due before it).
        let later = false;
        for (const [s, q] of this.pending) if (s > seq && q.capture_us <= heard) later = true;
        if (!later) break;
        n.packets_concealed++;
        this.lost++;
      }
      this.expectedSeq = (seq + 1) >>> 0;
    }
  }

  /** Recomputes the target and corrects the delay when it strayed out of the band. */
  update(c: Clocks, videoNeedUs: number | undefined): void {
    const sorted = [...this.transits].sort((x, y) => x - y);
    const n = this.counters;
    let target = START_US;
    if (sorted.length) {
      const p99 = sorted[Math.round((sorted.length - 1) * 0.99)]!;
      const p50 = sorted[Math.round((sorted.length - 1) * 0.5)]!;
      n.jitter_ms = (p99 - p50) / 1000;
      target = p99 + AUDIO_MARGIN_US + c.outputLeadUs;
    }
    target = Math.max(target, videoNeedUs ?? 0);
    target = Math.min(Math.max(target, FLOOR_US), this.ceilingUs);
    this.targetUs = target;
    n.target_delay_ms = target / 1000;
    const delay = this.delayUs(c);
    // Corrections wait for a measured target (START_US is a guess, and the first anchor is
    // set where the first packet could still play).
    if (delay === undefined || sorted.length < MIN_TRANSITS) return;
    if (delay < target - STRETCH_BELOW_US || delay > target + CATCH_UP_ABOVE_US) {
      if (delay < target) n.packets_stretched++;
      else n.packets_dropped_catch_up += Math.max(1, Math.floor((delay - target) / this.packetUs));
      // Nothing already scheduled is withdrawn: later, what was scheduled plays out, then a
      // gap of silence; earlier, the next packets overwrite the ring where the old ones were.
      this.anchorAt(this.heardCaptureUs(c)!, target, c);
    }
  }
}
