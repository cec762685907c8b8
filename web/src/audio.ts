// Sound: audio datagrams → WebCodecs AudioDecoder (Opus) → the AudioWorklet (worklet.ts),
// each packet placed by playout.ts at its capture time plus the playout delay. The audio clock
// is what pictures follow (presenter.ts). This module is the browser's side: the context, the
// decoder, the worklet, and reading the context's clock; playout.ts decides.
//
// The page clock is performance.now() in µs; the context's clock is mapped to it with
// getOutputTimestamp(), which says which context time is at the speaker now.

import { decodeAudioDatagram, opusPacketDurationUs } from "./codec.js";
import { Clocks, Playout, RATE } from "./playout.js";
import { FromWorklet } from "./worklet.js";
import { Stats } from "./stats.js";
import { AudioClock } from "./presenter.js";

const FRAMES_PER_US = RATE / 1e6;
/** Context time before its output timestamp is trusted: a context's first timestamps are not
 * steady (anchoring on them made the first packets late). */
const CONTEXT_SETTLING_S = 0.1;

/** The AudioContext's latency hint, chosen with the page's ?audio-latency=. */
export type AudioLatency = "interactive" | "lowest";

export class AudioPipeline implements AudioClock {
  private decoder: AudioDecoder;
  private readonly playout: Playout;
  /** Packets in the decoder, in decoding order: its outputs come in the same order, one per
   * packet. (Their timestamps cannot be matched exactly: Chromium recomputes them and is 1 µs
   * off at times.) */
  private inDecoder: { seq: number; capture_us: number }[] = [];
  /** Overflowing samples the worklet had reported at its last report. */
  private reportedOverflow = 0;

  private constructor(
    readonly ctx: AudioContext,
    private readonly node: AudioWorkletNode,
    private readonly gain: GainNode,
    private readonly stats: Stats,
    private readonly nowUs: () => number,
    private readonly serverNowUs: () => number | undefined,
    ceilingUs: number,
    private readonly videoNeedUs: () => number | undefined,
  ) {
    this.decoder = this.makeDecoder();
    this.playout = new Playout(stats.audio, ceilingUs, nowUs());
    node.port.onmessage = (e: MessageEvent<FromWorklet>) => this.report(e.data);
  }

  /** Sets up the context and the worklet; undefined (and video plays alone) if the browser
   * cannot: no audio must never stop video. */
  static async create(
    stats: Stats,
    nowUs: () => number,
    serverNowUs: () => number | undefined,
    ceilingUs: number,
    latency: AudioLatency,
    videoNeedUs: () => number | undefined,
  ): Promise<AudioPipeline | undefined> {
    if (typeof AudioContext === "undefined" || typeof AudioDecoder === "undefined") return undefined;
    try {
      const support = await AudioDecoder.isConfigSupported({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
      if (!support.supported) return undefined;
      // "interactive" is the browser's least latency without glitches on this device; 0
      // asks for the least it can do at all (headless Chromium: 11 ms ahead of the speaker
      // against 42), at the risk of crackles on a busy machine.
      const ctx = new AudioContext({ sampleRate: RATE, latencyHint: latency === "lowest" ? 0 : "interactive" });
      await ctx.audioWorklet.addModule("/worklet.js");
      const node = new AudioWorkletNode(ctx, "streamsocket-playout", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
      });
      const gain = new GainNode(ctx);
      node.connect(gain).connect(ctx.destination);
      return new AudioPipeline(ctx, node, gain, stats, nowUs, serverNowUs, ceilingUs, videoNeedUs);
    } catch (e) {
      console.warn("no sound:", e);
      return undefined;
    }
  }

  get running(): boolean {
    return this.ctx.state === "running";
  }

  /** Packets played and lost since the start (receiver reports, automatic quality). */
  get played(): number {
    return this.playout.played;
  }

  get lost(): number {
    return this.playout.lost;
  }

  setMuted(muted: boolean): void {
    this.gain.gain.value = muted ? 0 : 1;
    this.stats.audio.muted = muted;
  }

  /** Starts over (a reconnection: another server's clock and numbering). */
  reset(): void {
    this.playout.reset();
    this.inDecoder = [];
    this.node.port.postMessage({ type: "flush" });
  }

  private makeDecoder(): AudioDecoder {
    const d = new AudioDecoder({
      output: (data) => this.decoded(data),
      error: (e) => {
        console.warn("audio decoder error:", e.message);
        this.stats.audio.decode_errors++;
        this.inDecoder = [];
        this.decoder = this.makeDecoder();
      },
    });
    d.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
    return d;
  }

  /** The clocks now. */
  private clocks(): Clocks {
    const settled = this.running && this.ctx.currentTime >= CONTEXT_SETTLING_S;
    let outputFrame: number | undefined;
    if (settled) {
      const ts = this.ctx.getOutputTimestamp();
      if (ts.contextTime !== undefined && ts.performanceTime !== undefined) {
        outputFrame = ts.contextTime * RATE + (performance.now() - ts.performanceTime) * 1000 * FRAMES_PER_US;
      }
    }
    return {
      serverNowUs: this.serverNowUs(),
      outputFrame,
      processingFrame: Math.ceil(this.ctx.currentTime * RATE),
      outputLeadUs: this.outputLatencyUs() + (128 / RATE) * 1e6,
    };
  }

  /** How far the renderer runs ahead of the speaker (the output's latency); the playout adds
   * a render quantum to it. */
  outputLatencyUs(): number {
    return ((this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0)) * 1e6;
  }

  datagram(bytes: Uint8Array): void {
    const a = this.stats.audio;
    let p;
    try {
      p = decodeAudioDatagram(bytes);
    } catch {
      a.packets_malformed++;
      return;
    }
    a.packets_received++;
    a.bytes += p.payload.length;
    const serverNow = this.serverNowUs();
    if (serverNow !== undefined) a.latency.record(serverNow - p.capture_us);
    const decode = this.playout.arrive(p.seq, p.capture_us, opusPacketDurationUs(p.payload), this.nowUs(), serverNow);
    if (!decode) return;
    if (this.decoder.state === "closed") this.decoder = this.makeDecoder();
    this.inDecoder.push({ seq: p.seq, capture_us: p.capture_us });
    try {
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: p.capture_us, data: p.payload }));
    } catch {
      a.decode_errors++;
    }
  }

  private decoded(data: AudioData): void {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    const timestamp = data.timestamp;
    data.close();
    // The packet this output is for: the oldest in the decoder, unless the decoder lost some
    // (an error): then the one nearest its timestamp.
    let at = 0;
    if (Math.abs((this.inDecoder[0]?.capture_us ?? timestamp) - timestamp) > 1000) {
      at = this.inDecoder.findIndex((q) => Math.abs(q.capture_us - timestamp) <= 1000);
      if (at < 0) return;
    }
    const info = this.inDecoder.splice(0, at + 1)[at];
    if (!info) return;
    const c = this.clocks();
    const frame = this.playout.place(info.seq, info.capture_us, samples.length, c);
    if (frame === undefined) return;
    this.node.port.postMessage({ type: "samples", frame, samples }, [samples.buffer]);
    const now = this.nowUs();
    const heardPageUs = Playout.pageTimeOfFrame(frame, c, now);
    if (heardPageUs !== undefined && c.serverNowUs !== undefined) {
      this.stats.audio.playout_delay.record(c.serverNowUs + (heardPageUs - now) - info.capture_us);
      // The test source clicks on whole seconds of the media clock (PROTOCOL.md §5): when that
      // packet's first sample is heard, by the schedule (not detected in the sound).
      if (info.capture_us % 1_000_000 === 0) this.stats.avSkew.onClick(info.capture_us / 1_000_000, heardPageUs);
    }
  }

  delayUs(): number | undefined {
    return this.playout.delayUs(this.clocks());
  }

  canWait(): boolean {
    return this.playout.canWait(this.clocks());
  }

  /** Every 50 ms from the worklet: accounts what was played, and holds the delay at target. */
  private report(r: FromWorklet): void {
    // Samples beyond the ring's 2 s, in packets (late ones are counted before posting).
    const perPacket = this.playout.packetUs * FRAMES_PER_US;
    this.stats.audio.packets_dropped_overflow += Math.floor((r.overflowFrames - this.reportedOverflow) / perPacket);
    this.reportedOverflow = r.overflowFrames;
    const c = this.clocks();
    this.playout.account(c);
    this.playout.update(c, this.videoNeedUs());
  }
}
