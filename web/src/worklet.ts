// The AudioWorklet processor: plays samples at the context frames the page scheduled them
// for. The page (audio.ts) decides when each packet plays (its capture time plus the playout
// delay, mapped to this context's frame count); this side only holds a 2-second ring indexed
// by absolute frame and copies out what is due, so scheduling stays on the main thread and
// the real-time thread does no allocation and no decisions. Frames nobody wrote play as
// silence (a lost packet; WebCodecs' Opus decoder has no concealment call to fill it).

// AudioWorkletGlobalScope, which TypeScript's DOM library does not describe.
declare const currentFrame: number;
declare const sampleRate: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor();
}
declare function registerProcessor(name: string, ctor: new () => AudioWorkletProcessor): void;

/** Messages from the page. */
type ToWorklet = { type: "samples"; frame: number; samples: Float32Array } | { type: "flush" };

/** Messages to the page: samples that came too late (frames) and those played. */
export type FromWorklet = { type: "report"; currentFrame: number; lateFrames: number; overflowFrames: number };

class PlayoutProcessor extends AudioWorkletProcessor {
  private readonly ring = new Float32Array(2 * sampleRate);
  private lateFrames = 0;
  private overflowFrames = 0;
  private lastReport = 0;

  constructor() {
    super();
    this.port.onmessage = (e: MessageEvent<ToWorklet>) => this.receive(e.data);
  }

  private receive(m: ToWorklet): void {
    if (m.type === "flush") {
      this.ring.fill(0);
      return;
    }
    const n = this.ring.length;
    for (let i = 0; i < m.samples.length; i++) {
      const frame = m.frame + i;
      if (frame < currentFrame) this.lateFrames++;
      else if (frame >= currentFrame + n) this.overflowFrames++;
      else this.ring[frame % n] = m.samples[i]!;
    }
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const out = outputs[0]?.[0];
    if (out) {
      const n = this.ring.length;
      for (let i = 0; i < out.length; i++) {
        const at = (currentFrame + i) % n;
        out[i] = this.ring[at]!;
        this.ring[at] = 0; // played: the ring slot is free for a frame 2 s later
      }
      // Copy the one channel to the others (a stereo output plays mono on both).
      for (let c = 1; c < outputs[0]!.length; c++) outputs[0]![c]!.set(out);
    }
    if (currentFrame - this.lastReport >= sampleRate / 20) {
      this.lastReport = currentFrame;
      const r: FromWorklet = {
        type: "report",
        currentFrame,
        lateFrames: this.lateFrames,
        overflowFrames: this.overflowFrames,
      };
      this.port.postMessage(r);
    }
    return true;
  }
}

registerProcessor("streamsocket-playout", PlayoutProcessor);
