// Which decoded picture to show now, on the audio clock: the rule of the native viewer's
// PictureQueue::take_due (client/src/video/presenter.rs), pure so node tests it. A picture is
// due at its capture time plus the delay audio plays at, less the 20 ms a picture may lead its
// sound; of several due, the newest is shown (the others count as not presented); one more
// than 15 ms past its time is dropped (too late for the sound), unless audio cannot wait any
// longer, when it is shown and counted as late. Without audio, pictures are due at once.

/** How far ahead of its sound a picture may be shown (playout.rs PICTURE_LEAD_US). */
export const PICTURE_LEAD_US = 20_000;
/** How late after its time a picture may still be shown: audio may lead by 15 ms (ATSC IS-191). */
export const TOO_LATE_US = 15_000;
/** Pictures waiting at most; beyond it the oldest is dropped (counted). */
export const CAPACITY = 32;

export interface Timed {
  capture_us: number;
}

export interface Due<P> {
  picture?: P;
  /** Due pictures passed over for a newer due one. */
  replaced: P[];
  /** Pictures too late for the sound, dropped. */
  tooLate: P[];
  /** Pictures too late but shown (audio could not wait longer). */
  shownLate: number;
}

export class PictureQueue<P extends Timed> {
  private pictures: P[] = [];

  /** Adds a decoded picture (decoding is in order, so the queue stays in capture order);
   * returns the oldest, dropped, when the queue was full. */
  put(p: P): P | undefined {
    const dropped = this.pictures.length === CAPACITY ? this.pictures.shift() : undefined;
    this.pictures.push(p);
    return dropped;
  }

  get length(): number {
    return this.pictures.length;
  }

  /** Empties the queue, returning what it held. */
  drain(): P[] {
    const all = this.pictures;
    this.pictures = [];
    return all;
  }

  /** The picture due at `nowUs` (server clock) given the audio's playout delay (undefined:
   * no audio). `dropLate`: drop a picture too late for the sound (else show it, counted). */
  takeDue(nowUs: number, audioDelayUs: number | undefined, dropLate: boolean): Due<P> {
    const due: Due<P> = { replaced: [], tooLate: [], shownLate: 0 };
    const dueAfter = Math.max(0, (audioDelayUs ?? 0) - PICTURE_LEAD_US);
    while (this.pictures.length && this.pictures[0]!.capture_us + dueAfter <= nowUs) {
      const p = this.pictures.shift()!;
      if (due.picture) due.replaced.push(due.picture);
      due.picture = p;
    }
    if (due.picture && audioDelayUs !== undefined && nowUs > due.picture.capture_us + audioDelayUs + TOO_LATE_US) {
      if (dropLate) {
        due.tooLate.push(due.picture);
        due.picture = undefined;
      } else due.shownLate++;
    }
    return due;
  }
}
