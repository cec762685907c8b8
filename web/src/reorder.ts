// Putting video frames back in order and never decoding past a missing one: a port of the
// native viewer's client/src/video/reorder.rs (same rules, same counters; times in µs).
//
// Frames arrive on independent streams, in any order. An AV1 inter frame needs every frame
// since the last keyframe. When a frame is missing for longer than the gap timeout the viewer
// asks for a keyframe, and whichever comes first ends the wait: the missing frame (everything
// after it is decoded, late but not lost) or a newer keyframe (the frames in between are
// skipped and counted).

export interface Sequenced {
  seq: number;
  keyframe: boolean;
}

/** Frames kept while waiting; beyond this the oldest are dropped (too late to show). */
export const MAX_PENDING = 64;
/** The first keyframe request after a gap opened (PROTOCOL.md §3). */
export const GAP_TIMEOUT_US = 150_000;
/** While a gap lasts, the request is repeated this often (the server forces at most one
 * keyframe per 500 ms per rendition). */
export const REASK_KEYFRAME_US = 500_000;

export interface Ready<F> {
  /** Frames to decode, in order. */
  frames: F[];
  /** Ask the server for a keyframe: decoding is stuck until one arrives. */
  needKeyframe: boolean;
}

export class Reorder<F extends Sequenced> {
  private nextSeq: number | undefined;
  /** Pending frames by seq. A Map plus sorting on demand: it never holds more than 65. */
  private pending = new Map<number, F>();
  private waitingKeyframe = true;
  private gapSince: number | undefined;
  private askedKeyframe: number | undefined;
  /** Frames never decoded because a frame before them was lost. */
  skipped = 0;
  /** Frames that arrived after decoding had moved past them (or twice). */
  late = 0;
  /** Losses that made decoding ask for a keyframe. */
  keyframeWaits = 0;

  constructor(private readonly gapTimeoutUs = GAP_TIMEOUT_US) {}

  /** Takes a received frame and returns whatever became decodable. */
  push(frame: F, nowUs: number): Ready<F> {
    const seq = frame.seq;
    if ((this.nextSeq !== undefined && seq < this.nextSeq) || this.pending.has(seq)) {
      this.late++;
      return { frames: [], needKeyframe: false };
    }
    this.pending.set(seq, frame);
    // Drained first: the frame that just came may be the one everything waits for.
    const ready = this.drain(nowUs);
    if (this.pending.size > MAX_PENDING) {
      while (this.pending.size > MAX_PENDING) {
        const oldest = this.sortedSeqs()[0]!;
        this.pending.delete(oldest);
        // Counted once: from where decoding stood to the dropped frame.
        if (this.nextSeq !== undefined && oldest >= this.nextSeq) {
          this.skipped += oldest + 1 - this.nextSeq;
          this.nextSeq = oldest + 1;
        }
      }
      // What was dropped broke the chain: waiting for the gap is pointless now.
      if (!this.waitingKeyframe) this.loseGap();
      ready.needKeyframe ||= this.waitingKeyframe && this.nextSeq !== undefined;
    }
    return ready;
  }

  /** Called when gapDeadline() passes: asks for a keyframe (again every REASK while the gap
   * lasts). Frames after the gap are kept: the missing one may still come. */
  poll(nowUs: number): Ready<F> {
    const due = this.gapDeadline();
    if (due !== undefined && nowUs >= due) {
      if (this.askedKeyframe === undefined) this.keyframeWaits++;
      this.askedKeyframe = nowUs;
      return { frames: [], needKeyframe: true };
    }
    return { frames: [], needKeyframe: false };
  }

  /** The decoder failed: whatever follows depends on garbage. */
  decoderFailed(): Ready<F> {
    if (!this.waitingKeyframe) {
      this.waitingKeyframe = true;
      this.keyframeWaits++;
    }
    this.endGap();
    return { frames: [], needKeyframe: true };
  }

  /** When poll() should next be called, if a gap is open. */
  gapDeadline(): number | undefined {
    if (this.gapSince === undefined) return undefined;
    return this.askedKeyframe === undefined
      ? this.gapSince + this.gapTimeoutUs
      : this.askedKeyframe + REASK_KEYFRAME_US;
  }

  /** Frames held, waiting for a gap or a keyframe. */
  get pendingCount(): number {
    return this.pending.size;
  }

  private sortedSeqs(): number[] {
    return [...this.pending.keys()].sort((a, b) => a - b);
  }

  private loseGap(): void {
    if (this.askedKeyframe === undefined) this.keyframeWaits++;
    this.endGap();
    this.waitingKeyframe = true;
  }

  private endGap(): void {
    this.gapSince = undefined;
    this.askedKeyframe = undefined;
  }

  private drain(nowUs: number): Ready<F> {
    const frames: F[] = [];
    for (;;) {
      if (this.waitingKeyframe) {
        const keySeq = this.sortedSeqs().find((s) => this.pending.get(s)!.keyframe);
        if (keySeq === undefined) {
          // Nothing decodable until a keyframe. What is pending is kept: a keyframe is larger
          // than the frames after it, so it often completes after them.
          this.endGap();
          break;
        }
        const from = this.nextSeq ?? keySeq;
        this.skipped += Math.max(0, keySeq - from);
        for (const s of this.pending.keys()) if (s < keySeq) this.pending.delete(s);
        this.nextSeq = keySeq;
        this.waitingKeyframe = false;
      }
      const next = this.nextSeq!;
      const frame = this.pending.get(next);
      if (frame !== undefined) {
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
      // A gap. A newer keyframe already here makes waiting pointless: jump to it.
      if ([...this.pending.values()].some((f) => f.keyframe)) {
        this.loseGap();
        continue;
      }
      this.gapSince ??= nowUs;
      break;
    }
    return { frames, needKeyframe: this.waitingKeyframe && this.nextSeq !== undefined };
  }
}
