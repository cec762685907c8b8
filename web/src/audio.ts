// Sound: audio datagrams → WebCodecs AudioDecoder (Opus) → the AudioWorklet (worklet.ts),
// each packet scheduled at its capture time plus a playout delay. The audio clock is what
// pictures follow (presenter.ts). Modelled on the native client/src/audio/playout.rs, with
// these simplifications, each because a browser lacks what the native one uses or because the
// native refinement matters little here:
// - Scheduling is by anchor: one context frame is tied to one capture time, and every packet
//   plays at anchor + (its capture − the anchor's capture). Consecutive packets therefore
//   join sample-exactly, whatever the main thread's timing.
// - The delay aimed for follows the native rule: the 99th percentile of the packets' transit
//   (capture to arrival) over the last 3 s plus 5 ms, plus the output's own latency and a
//   render quantum, raised to the video's need, at most the latency target.
// - The native viewer nudges each packet by up to 1 ms with a crossfaded splice to follow the
//   target, and re-buffers only 40 ms over it. Here the delay is only corrected in whole
//   steps: 10 ms under the target re-anchors later (a stretch, a gap of silence), 20 ms over
//   it re-anchors earlier (a catch-up: the next packets overwrite what was scheduled, a jump). Between those it is left alone; the
//   band is narrower than the native 40 ms because nothing else brings the delay down (with
//   40 ms, a delay set while the first second's transits were high stayed 40 ms too long).
// - A lost packet plays as silence: WebCodecs' AudioDecoder offers neither Opus FEC nor PLC.
// The page clock is performance.now() in µs; the context's clock is mapped to it with
// getOutputTimestamp(), which says which context time is at the speaker now.

import { decodeAudioDatagram, opusPacketDurationUs } from "./codec.js";
import { FromWorklet } from "./worklet.js";
import { Stats } from "./stats.js";
import { AudioClock } from "./presenter.js";

const RATE = 48_000;
const FRAMES_PER_US = RATE / 1e6;
/** The delay aimed for before any transit is measured (playout.rs START_US). */
const START_US = 40_000;
/** The least delay: a packet plays only once all its samples were captured. */
const FLOOR_US = 10_000;
/** Above the slowest packets' transit: decoding and the main thread's wake-up jitter. */
const AUDIO_MARGIN_US = 5_000;
/** Delay this far under the target re-anchors later (stretch). */
const STRETCH_BELOW_US = 10_000;
/** Delay this far over the target re-anchors earlier (catch up). */
const CATCH_UP_ABOVE_US = 20_000;
/** After this long with nothing to play, the next packet re-buffers (an outage, a pause). */
const MAX_SILENCE_US = 100_000;
/** Transits measured over the last 3 s of 20 ms packets. */
const TRANSIT_WINDOW = 150;
/** Packets arriving this soon after the pipeline was made are not measured: they include the
 * backlog that queued in the page while the AudioContext was being created (up to 250 ms
 * measured), a local one-off, not the network's jitter, which would hold the delay high for
 * the window's 3 s. */
const SETTLING_US = 300_000;
/** Transits measured before the delay is corrected towards the target. */
const MIN_TRANSITS = 10;
/** Context time before the output timestamp is trusted. */
const CONTEXT_SETTLING_S = 0.1;

interface Pending {
  capture_us: number;
  /** Scheduled in time (else late, or never arrived). */
  scheduled: boolean;
}

export class AudioPipeline implements AudioClock {
  private readonly gain: GainNode;
  private readonly node: AudioWorkletNode;
  private decoder: AudioDecoder;
  private anchor: { frame: number; capture_us: number } | undefined;
  private targetUs = START_US;
  private transits: number[] = [];
  private packetUs = 10_000;
  private lastArrivalUs: number | undefined;
  /** Packets by seq not yet played, for the played / concealed accounting. */
  private pending = new Map<number, Pending>();
  private expectedSeq: number | undefined;
  /** Packets in the decoder, in decoding order: its outputs come in the same order, one per
   * packet. (Their timestamps cannot be matched exactly: Chromium recomputes them and is 1 µs
   * off at times.) */
  private inDecoder: { seq: number; capture_us: number }[] = [];
  /** Overflowing samples the worklet had reported at its last report. */
  private reportedOverflow = 0;
  private readonly createdUs: number;
  /** Packets played and lost, for the receiver report and automatic quality. */
  played = 0;
  lost = 0;

  private constructor(
    readonly ctx: AudioContext,
    node: AudioWorkletNode,
    gain: GainNode,
    private readonly stats: Stats,
    private readonly nowUs: () => number,
    private readonly serverNowUs: () => number | undefined,
    private readonly ceilingUs: number,
    private readonly videoNeedUs: () => number | undefined,
  ) {
    this.node = node;
    this.gain = gain;
    this.decoder = this.makeDecoder();
    this.createdUs = nowUs();
    node.port.onmessage = (e: MessageEvent<FromWorklet>) => this.report(e.data);
  }

  /** Sets up the context and the worklet; undefined (and video plays alone) if the browser
   * cannot: no audio must never stop video. */
  static async create(
    stats: Stats,
    nowUs: () => number,
    serverNowUs: () => number | undefined,
    ceilingUs: number,
    videoNeedUs: () => number | undefined,
  ): Promise<AudioPipeline | undefined> {
    if (typeof AudioContext === "undefined" || typeof AudioDecoder === "undefined") return undefined;
    try {
      const support = await AudioDecoder.isConfigSupported({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
      if (!support.supported) return undefined;
      const ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
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

  setMuted(muted: boolean): void {
    this.gain.gain.value = muted ? 0 : 1;
    this.stats.audio.muted = muted;
  }

  /** Starts over (a reconnection: another server's clock and numbering). */
  reset(): void {
    this.anchor = undefined;
    this.pending.clear();
    this.inDecoder = [];
    this.expectedSeq = undefined;
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
    const now = this.nowUs();
    const serverNow = this.serverNowUs();
    if (serverNow !== undefined) {
      const transit = serverNow - p.capture_us;
      a.latency.record(transit);
      if (now - this.createdUs >= SETTLING_US) {
        if (this.transits.length === TRANSIT_WINDOW) this.transits.shift();
        this.transits.push(transit);
      }
    }
    this.packetUs = opusPacketDurationUs(p.payload) ?? this.packetUs;
    if (now - this.createdUs < SETTLING_US && serverNow !== undefined && serverNow - p.capture_us > MAX_SILENCE_US) {
      // The backlog that queued while the context was created: too old to play, and not a
      // loss on the network (not reported as one).
      a.packets_dropped_catch_up++;
      return;
    }
    // A long silence (an outage, a pause): start over at the target.
    if (this.lastArrivalUs !== undefined && now - this.lastArrivalUs > MAX_SILENCE_US + this.targetUs) {
      this.anchor = undefined;
      this.expectedSeq = undefined;
      this.pending.clear();
    }
    this.lastArrivalUs = now;
    if (this.pending.has(p.seq)) return; // a duplicate
    this.pending.set(p.seq, { capture_us: p.capture_us, scheduled: false });
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
    const capture_us = info.capture_us;
    const entry = this.pending.get(info.seq);
    if (!entry) return;
    if (!this.anchor) {
      // Not earlier than this packet can still play: the first packets may be a backlog.
      const serverNow = this.serverNowUs() ?? capture_us;
      this.anchorAt(capture_us, Math.max(this.targetUs, serverNow - capture_us + this.outputLeadUs() + AUDIO_MARGIN_US));
    }
    if (!this.anchor) {
      // No clock yet (the context has not settled): not played, and not counted as lost.
      this.pending.delete(info.seq);
      return;
    }
    const frame = Math.round(this.anchor.frame + (capture_us - this.anchor.capture_us) * FRAMES_PER_US);
    // The processing position runs ahead of the speaker by the output's latency.
    const processing = Math.ceil(this.ctx.currentTime * RATE);
    if (frame + samples.length <= processing) {
      this.stats.audio.packets_late++;
      return;
    }
    entry.scheduled = true;
    this.node.port.postMessage({ type: "samples", frame, samples }, [samples.buffer]);
    const heardPageUs = this.pageTimeOfFrame(frame);
    if (heardPageUs !== undefined) {
      this.stats.audio.playout_delay.record(heardPageUs - this.nowUs() + (this.serverNowUs() ?? 0) - capture_us);
      // The test source clicks on whole seconds of the media clock (PROTOCOL.md §5): when that
      // packet's first sample is heard, by the schedule.
      if (capture_us % 1_000_000 === 0) this.stats.avSkew.onClick(capture_us / 1_000_000, heardPageUs);
    }
  }

  /** The context frame at the speaker now, from the output timestamp. */
  private outputFrameNow(): number | undefined {
    // A context's first output timestamps are not steady: its clock settles once it has
    // rendered a little (anchoring before that made the first packets late).
    if (!this.running || this.ctx.currentTime < CONTEXT_SETTLING_S) return undefined;
    const ts = this.ctx.getOutputTimestamp();
    if (ts.contextTime === undefined || ts.performanceTime === undefined) return undefined;
    return ts.contextTime * RATE + (performance.now() - ts.performanceTime) * 1000 * FRAMES_PER_US;
  }

  /** Page time (µs) at which a context frame reaches the speaker. */
  private pageTimeOfFrame(frame: number): number | undefined {
    const at = this.outputFrameNow();
    return at === undefined ? undefined : this.nowUs() + (frame - at) / FRAMES_PER_US;
  }

  /** Ties a capture time to the frame that plays it `delayUs` after capture. */
  private anchorAt(capture_us: number, delayUs: number): void {
    const at = this.outputFrameNow();
    const serverNow = this.serverNowUs();
    if (at === undefined || serverNow === undefined) return;
    this.anchor = { frame: at + (capture_us + delayUs - serverNow) * FRAMES_PER_US, capture_us };
  }

  /** The capture time heard now, by the anchor. */
  private heardCaptureNow(): number | undefined {
    const at = this.outputFrameNow();
    if (at === undefined || !this.anchor) return undefined;
    return this.anchor.capture_us + (at - this.anchor.frame) / FRAMES_PER_US;
  }

  delayUs(): number | undefined {
    const heard = this.heardCaptureNow();
    const serverNow = this.serverNowUs();
    if (heard === undefined || serverNow === undefined) return undefined;
    return serverNow - heard;
  }

  canWait(): boolean {
    const d = this.delayUs();
    return d === undefined || d + this.packetUs < this.ceilingUs;
  }

  /** Every 50 ms from the worklet: accounts what was played, and holds the delay at target. */
  private report(r: FromWorklet): void {
    const a = this.stats.audio;
    // Samples beyond the ring's 2 s, in packets (late ones are counted before posting).
    const perPacket = this.packetUs * FRAMES_PER_US;
    a.packets_dropped_overflow += Math.floor((r.overflowFrames - this.reportedOverflow) / perPacket);
    this.reportedOverflow = r.overflowFrames;
    this.account();
    this.updateTarget();
  }

  private account(): void {
    const heard = this.heardCaptureNow();
    if (heard === undefined || !this.pending.size) return;
    const a = this.stats.audio;
    if (this.expectedSeq === undefined) this.expectedSeq = Math.min(...this.pending.keys());
    for (;;) {
      const seq: number = this.expectedSeq;
      const p = this.pending.get(seq);
      if (p) {
        if (p.capture_us > heard) break;
        this.pending.delete(seq);
        if (p.scheduled) {
          a.packets_decoded++;
          this.played++;
        } else {
          a.packets_concealed++;
          this.lost++;
        }
      } else {
        // Missing: concealed once a later packet is due (it was due before it).
        const later = [...this.pending.entries()].find(([s, q]) => s > seq && q.capture_us <= heard);
        if (!later) break;
        a.packets_concealed++;
        this.lost++;
      }
      this.expectedSeq = (seq + 1) >>> 0;
    }
  }

  /** How far ahead of the speaker the worklet renders: the output's latency and one render
   * quantum. A packet must be in the ring before rendering reaches it, so this much of the
   * playout delay is the browser's own. */
  private outputLeadUs(): number {
    return ((this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0)) * 1e6 + (128 / RATE) * 1e6;
  }

  private updateTarget(): void {
    const sorted = [...this.transits].sort((x, y) => x - y);
    const a = this.stats.audio;
    const outputLead = this.outputLeadUs();
    let target = START_US;
    if (sorted.length) {
      const p99 = sorted[Math.round((sorted.length - 1) * 0.99)]!;
      const p50 = sorted[Math.round((sorted.length - 1) * 0.5)]!;
      a.jitter_ms = (p99 - p50) / 1000;
      target = p99 + AUDIO_MARGIN_US + outputLead;
    }
    target = Math.max(target, this.videoNeedUs() ?? 0);
    target = Math.min(Math.max(target, FLOOR_US), this.ceilingUs);
    this.targetUs = target;
    a.target_delay_ms = target / 1000;
    const delay = this.delayUs();
    // Corrections wait for a measured target (START_US is a guess, and the first anchor is
    // set where the first packet could still play).
    if (delay === undefined || !this.anchor || sorted.length < MIN_TRANSITS) return;
    if (delay < target - STRETCH_BELOW_US || delay > target + CATCH_UP_ABOVE_US) {
      const heard = this.heardCaptureNow()!;
      if (delay < target) a.packets_stretched++;
      else a.packets_dropped_catch_up += Math.max(1, Math.floor((delay - target) / this.packetUs));
      // Nothing already scheduled is withdrawn: later, what was scheduled plays out, then a
      // gap of silence (stretch); earlier, the next packets overwrite the ring where the old
      // ones were, so playout jumps ahead without a silence (catch-up).
      this.anchorAt(heard, target);
    }
  }
}
