// Which frames to decode across renditions, pure: the native decoder's two reorder tracks
// (client/src/video/decoder.rs). One track for the rendition on screen, one for the rendition
// the server last confirmed; the picture moves to the new one at its first decodable frame (a
// keyframe), so it never stops, and frames of any other rendition (left over from an earlier
// switch) are ignored. Each track is a Reorder (never decoding past a gap).

import { Reorder, Sequenced } from "./reorder.js";

export interface Rendered extends Sequenced {
  rendition: number;
}

/** What to do after a frame, a poll or a decoder failure. */
export interface TrackResult<F> {
  /** Frames to decode now, in order. */
  decode: F[];
  /** Renditions to ask a keyframe of. */
  keyframes: number[];
  /** The picture moved to this rendition. */
  switchedTo?: number;
}

interface Track<F extends Rendered> {
  rendition: number;
  reorder: Reorder<F>;
  /** Its counters already added to the totals. */
  counted: { skipped: number; late: number };
}

export class Tracks<F extends Rendered> {
  private shown: Track<F> | undefined;
  private target: Track<F> | undefined;
  /** Totals over every track used: frames skipped past a loss, frames come too late. */
  skipped = 0;
  late = 0;

  /** The rendition on screen (or about to be, before its first frame). */
  get shownRendition(): number | undefined {
    return this.shown?.rendition;
  }

  /** The server confirmed `rendition`: switch to it at its first keyframe. */
  confirm(rendition: number): void {
    if (this.shown === undefined) this.shown = track(rendition);
    else if (rendition === this.shown.rendition) this.target = undefined;
    else if (this.target?.rendition !== rendition) this.target = track(rendition);
  }

  /** Start over at the next keyframe without counting the gap as loss. */
  resync(): void {
    if (this.shown) this.shown = track(this.shown.rendition);
    if (this.target) this.target = track(this.target.rendition);
  }

  /** No switch is coming (the server refused it). */
  abandonSwitch(): void {
    this.target = undefined;
  }

  push(frame: F, nowUs: number): TrackResult<F> {
    const t =
      this.shown?.rendition === frame.rendition
        ? this.shown
        : this.target?.rendition === frame.rendition
          ? this.target
          : undefined;
    if (!t) return { decode: [], keyframes: [] };
    const ready = t.reorder.push(frame, nowUs);
    const out: TrackResult<F> = { decode: [], keyframes: ready.needKeyframe ? [t.rendition] : [] };
    if (ready.frames.length && t === this.target) {
      this.shown = t;
      this.target = undefined;
      out.switchedTo = t.rendition;
    }
    if (t === this.shown) out.decode = ready.frames;
    this.count();
    return out;
  }

  /** The decoder failed (or fell behind) on the shown rendition: wait for a keyframe. */
  decoderFailed(): TrackResult<F> {
    if (!this.shown) return { decode: [], keyframes: [] };
    const ready = this.shown.reorder.decoderFailed();
    this.count();
    return { decode: [], keyframes: ready.needKeyframe ? [this.shown.rendition] : [] };
  }

  /** When poll() is next due: the earliest gap deadline of either track. */
  gapDeadline(): number | undefined {
    const due = [this.shown, this.target].map((t) => t?.reorder.gapDeadline()).filter((d): d is number => d !== undefined);
    return due.length ? Math.min(...due) : undefined;
  }

  /** Gaps past their timeout ask for keyframes. */
  poll(nowUs: number): TrackResult<F> {
    const keyframes: number[] = [];
    for (const t of [this.shown, this.target]) if (t?.reorder.poll(nowUs).needKeyframe) keyframes.push(t.rendition);
    return { decode: [], keyframes };
  }

  private count(): void {
    for (const t of [this.shown, this.target]) {
      if (!t) continue;
      this.skipped += t.reorder.skipped - t.counted.skipped;
      this.late += t.reorder.late - t.counted.late;
      t.counted = { skipped: t.reorder.skipped, late: t.reorder.late };
    }
  }
}

function track<F extends Rendered>(rendition: number): Track<F> {
  return { rendition, reorder: new Reorder<F>(), counted: { skipped: 0, late: 0 } };
}
