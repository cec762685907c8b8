// src/worklet.ts
var PlayoutProcessor = class extends AudioWorkletProcessor {
  ring = new Float32Array(2 * sampleRate);
  lateFrames = 0;
  overflowFrames = 0;
  lastReport = 0;
  constructor() {
    super();
    this.port.onmessage = (e) => this.receive(e.data);
  }
  receive(m) {
    if (m.type === "flush") {
      this.ring.fill(0);
      return;
    }
    const n = this.ring.length;
    for (let i = 0; i < m.samples.length; i++) {
      const frame = m.frame + i;
      if (frame < currentFrame) this.lateFrames++;
      else if (frame >= currentFrame + n) this.overflowFrames++;
      else this.ring[frame % n] = m.samples[i];
    }
  }
  process(_inputs, outputs) {
    const out = outputs[0]?.[0];
    if (out) {
      const n = this.ring.length;
      for (let i = 0; i < out.length; i++) {
        const at = (currentFrame + i) % n;
        out[i] = this.ring[at];
        this.ring[at] = 0;
      }
      for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    }
    if (currentFrame - this.lastReport >= sampleRate / 20) {
      this.lastReport = currentFrame;
      const r = {
        type: "report",
        currentFrame,
        lateFrames: this.lateFrames,
        overflowFrames: this.overflowFrames
      };
      this.port.postMessage(r);
    }
    return true;
  }
};
registerProcessor("streamsocket-playout", PlayoutProcessor);
