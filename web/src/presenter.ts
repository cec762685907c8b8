// Presentation on the audio clock, as the native viewer's client/src/video/presenter.rs:
// decoded pictures wait in a PictureQueue (picture_queue.ts has the rule) until their capture
// time plus the delay audio plays at, less the 20 ms a picture may lead its sound, then are
// drawn to the canvas. Without audio (no AudioContext running), pictures are shown as soon as
// they are decoded.
//
// Once drawn, the picture's timestamp row is read back from the canvas (pixel_clock.ts) and
// compared with the frame header: the proof that what the page shows is the right frame.

import { msOfCapture, readRgba } from "./pixel_clock.js";
import { PICTURE_LEAD_US, PictureQueue } from "./picture_queue.js";
import { Picture } from "./video.js";
import { Stats } from "./stats.js";

/** How many recent ready-to-show latencies the video's need is measured over (3 s at 30 fps). */
const VIDEO_WINDOW = 90;
/** Above the video's latency: the frame callback's period and the canvas draw. */
const PRESENT_MARGIN_US = 3_000;
/** After a (re)connection, pictures this soon after the first are not measured for the
 * video's need: they are the join's burst (the group of pictures from its keyframe, older
 * than live by design, PROTOCOL.md §3) and the decoder warming up, and would hold the audio
 * delay, and every picture with it, 200 ms late for the window's 3 s. */
const SETTLING_US = 500_000;

/** What the presenter needs from the audio clock. */
export interface AudioClock {
  /** The delay audio plays at now (server clock capture → heard), or undefined without audio. */
  delayUs(): number | undefined;
  /** Whether audio can still wait for late pictures (it is below its ceiling). */
  canWait(): boolean;
}

export class Presenter {
  private readonly queue = new PictureQueue<Picture>();
  private readonly ctx: CanvasRenderingContext2D;
  private readyLatencies: number[] = [];
  /** Until when pictures are not measured (page clock); set by the first picture. */
  private settlingUntilUs: number | undefined;
  /** Called after every picture drawn (the overlay refreshes from it). */
  onShown: (() => void) | undefined;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly stats: Stats,
    private readonly nowUs: () => number,
    private readonly serverNowUs: () => number | undefined,
    private readonly audio: AudioClock,
  ) {
    // Read back every picture: a CPU-backed canvas makes getImageData cheap.
    this.ctx = canvas.getContext("2d", { willReadFrequently: true, alpha: false })!;
    const tick = () => {
      this.tick();
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    // Hidden or headless pages may not get animation frames: a timer keeps pictures moving.
    setInterval(() => this.tick(), 10);
  }

  put(p: Picture): void {
    const dropped = this.queue.put(p);
    if (dropped) {
      dropped.frame.close();
      this.stats.video.frames_dropped_queue_full++;
    }
    const serverNow = this.serverNowUs();
    this.settlingUntilUs ??= p.decoded_us + SETTLING_US;
    if (serverNow !== undefined && p.decoded_us >= this.settlingUntilUs) {
      pushBounded(this.readyLatencies, serverNow - p.capture_us, VIDEO_WINDOW);
    }
  }

  /** The delay video needs from audio for 95% of its pictures to be ready in time. */
  videoNeedUs(): number | undefined {
    if (!this.readyLatencies.length) return undefined;
    const s = [...this.readyLatencies].sort((a, b) => a - b);
    return Math.max(0, s[Math.round((s.length - 1) * 0.95)]! + PRESENT_MARGIN_US - PICTURE_LEAD_US);
  }

  /** Drops every waiting picture and starts measuring afresh (a reconnection). */
  clear(): void {
    for (const p of this.queue.drain()) p.frame.close();
    this.readyLatencies = [];
    this.settlingUntilUs = undefined;
  }

  private tick(): void {
    if (!this.queue.length) return;
    const serverNow = this.serverNowUs();
    // No clock yet (it comes with the welcome, so hardly ever): the newest picture, at once.
    const due =
      serverNow === undefined
        ? this.queue.takeDue(Number.MAX_SAFE_INTEGER, undefined, false)
        : this.queue.takeDue(serverNow, this.audio.delayUs(), this.audio.canWait());
    const v = this.stats.video;
    for (const p of due.replaced) p.frame.close();
    for (const p of due.tooLate) p.frame.close();
    v.frames_not_presented += due.replaced.length;
    v.frames_too_late += due.tooLate.length;
    v.frames_shown_late += due.shownLate;
    if (due.picture) this.draw(due.picture);
  }

  private draw(p: Picture): void {
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
    if (serverNow !== undefined) v.latency_presented.record(serverNow - p.capture_us);
    this.readBack(p, w, h, now);
    this.onShown?.();
  }

  /** Reads the timestamp row and the flash square back from what the canvas shows. */
  private readBack(p: Picture, w: number, h: number, now: number): void {
    const row = this.ctx.getImageData(0, 0, w, 3);
    const ms = readRgba(row.data, w, 3);
    const pc = this.stats.video.pixel_clock;
    if (ms === undefined) pc.unreadable++;
    else {
      pc.read++;
      if (ms === msOfCapture(p.capture_us)) pc.matched++;
    }
    // The test source's flash: a white square at the bottom right on whole seconds of the
    // media clock (PROTOCOL.md §5). Its centre is about h/8 + 8 px in from the corner.
    if (p.capture_us % 1_000_000 < 40_000) {
      const c = this.ctx.getImageData(Math.floor(w - h / 8 - h / 45), Math.floor(h - h / 8 - h / 45), 1, 1).data;
      if (c[0]! > 200 && c[1]! > 200 && c[2]! > 200) {
        this.stats.avSkew.onFlash(Math.round(p.capture_us / 1_000_000), now);
      }
    }
  }
}

function pushBounded(a: number[], v: number, len: number): void {
  if (a.length === len) a.shift();
  a.push(v);
}
