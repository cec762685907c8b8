// What the page measures, in the same shape as the native viewer's --stats-json
// (client/src/metrics/stats.rs; client/src/metrics/testdata/stats.json): the same field
// names and nesting, so scripts read either. Fields a browser cannot measure are present
// with 0 or null, each marked where it is filled below. Pure: no DOM.

/** A latency histogram in µs, reported in ms like the native one (an hdrhistogram there;
 * here the last 20 000 values, enough for minutes of frames, sorted when read). */
export class Latency {
  private values: number[] = [];
  private total = 0;
  private sum = 0;
  private max = 0;
  static readonly KEEP = 20_000;

  record(us: number): void {
    const v = Math.max(1, us);
    if (this.values.length === Latency.KEEP) this.values.shift();
    this.values.push(v);
    this.total++;
    this.sum += v;
    this.max = Math.max(this.max, v);
  }

  get count(): number {
    return this.total;
  }

  reset(): void {
    this.values = [];
    this.total = 0;
    this.sum = 0;
    this.max = 0;
  }

  /** The value at quantile q in µs, or undefined when empty. */
  quantileUs(q: number): number | undefined {
    if (this.values.length === 0) return undefined;
    const sorted = [...this.values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * q))];
  }

  percentileMs(q: number): number {
    return (this.quantileUs(q) ?? 0) / 1000;
  }

  /** As the native JSON: count, p50, p95, p99, max (null when empty), mean once there are values. */
  report(): LatencyReport {
    const ms = (us: number | undefined) => (us === undefined ? null : round(us / 1000, 2));
    const r: LatencyReport = {
      count: this.total,
      max: this.total ? ms(this.max) : null,
      p50: ms(this.quantileUs(0.5)),
      p95: ms(this.quantileUs(0.95)),
      p99: ms(this.quantileUs(0.99)),
    };
    if (this.total) r.mean = round(this.sum / this.total / 1000, 2);
    return r;
  }
}

export interface LatencyReport {
  count: number;
  max: number | null;
  mean?: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export function round(v: number, decimals: number): number {
  const k = 10 ** decimals;
  return Math.round(v * k) / k;
}

/** A/V skew on the test source's flash and click: shown minus heard, so positive = audio ahead. */
export class AvSkew {
  private flashes = new Map<number, number>();
  private clicks = new Map<number, number>();
  skewsUs: number[] = [];
  static readonly KEEP = 8;

  onFlash(second: number, shownUs: number): void {
    const heard = this.clicks.get(second);
    if (heard !== undefined) {
      this.clicks.delete(second);
      this.skewsUs.push(shownUs - heard);
    } else AvSkew.keep(this.flashes, second, shownUs);
  }

  onClick(second: number, heardUs: number): void {
    const shown = this.flashes.get(second);
    if (shown !== undefined) {
      this.flashes.delete(second);
      this.skewsUs.push(shown - heardUs);
    } else AvSkew.keep(this.clicks, second, heardUs);
  }

  private static keep(m: Map<number, number>, second: number, at: number): void {
    m.set(second, at);
    while (m.size > AvSkew.KEEP) m.delete(Math.min(...m.keys()));
  }

  percentileMs(q: number): number | null {
    if (!this.skewsUs.length) return null;
    const s = [...this.skewsUs].sort((a, b) => a - b);
    return round(s[Math.round((s.length - 1) * q)]! / 1000, 1);
  }

  report() {
    return {
      count: this.skewsUs.length,
      max: this.percentileMs(1),
      min: this.percentileMs(0),
      p5: this.percentileMs(0.05),
      p50: this.percentileMs(0.5),
      p95: this.percentileMs(0.95),
    };
  }
}

/** Every counter the page keeps; the modules write their own. */
export class Stats {
  readonly startedMs: number;
  video = {
    frames_received: 0,
    frames_decoded: 0,
    frames_skipped: 0,
    frames_late: 0,
    frames_dropped_decoder_busy: 0,
    frames_reset: 0,
    frames_malformed: 0,
    decode_errors: 0,
    frames_presented: 0,
    longest_freeze_us: 0,
    last_decoded_us: undefined as number | undefined,
    frames_by_size: new Map<string, number>(),
    rendition_switches: 0,
    switch_time: new Latency(),
    frames_not_presented: 0,
    frames_too_late: 0,
    frames_shown_late: 0,
    frames_dropped_queue_full: 0,
    keyframes: 0,
    keyframe_requests: 0,
    bytes: 0,
    width: 0,
    height: 0,
    first_frame_ms: null as number | null,
    live_ms: null as number | null,
    latency_decoded: new Latency(),
    /** Emptied by automatic quality once a second. */
    latency_last_second: new Latency(),
    latency_presented: new Latency(),
    stages: {
      encoder_queue: new Latency(),
      encoder_wait: new Latency(),
      encode: new Latency(),
      transport: new Latency(),
      reassembly: new Latency(),
      reorder: new Latency(),
      decode: new Latency(),
      present: new Latency(),
      outside_encoder: new Latency(),
    },
    pixel_clock: { matched: 0, read: 0, unreadable: 0 },
  };
  audio = {
    packets_received: 0,
    bytes: 0,
    packets_decoded: 0,
    packets_concealed: 0,
    packets_late: 0,
    packets_dropped_overflow: 0,
    packets_dropped_catch_up: 0,
    packets_stretched: 0,
    packets_malformed: 0,
    decode_errors: 0,
    target_delay_ms: 0,
    jitter_ms: 0,
    playout_delay: new Latency(),
    latency: new Latency(),
    output_underruns: 0,
    bitrate_bps: 0,
    muted: false,
  };
  broadcast = { paused: false, pauses: 0, resumes: 0, frames_during_pause: 0, resumed_on_keyframe: 0, resumed_without_keyframe: 0, awaiting_first_frame: false };
  avSkew = new AvSkew();
  connection = { lost: 0, reconnects: 0, reconnecting: false, reconnect_time: new Latency() };
  clock = { offset_us: null as number | null, rtt_us: null as number | null };
  rendition: number | null = null;
  auto = false;
  auto_reason: string | null = null;
  rendition_timeline: { at_ms: number; rendition: number; reason: string }[] = [];
  paused = false;

  constructor(nowMs: number) {
    this.startedMs = nowMs;
  }

  /** Accounts for the server's BroadcastPaused. */
  onBroadcastPaused(paused: boolean): void {
    const b = this.broadcast;
    if (paused && !b.paused) b.pauses++;
    if (!paused && b.paused) {
      b.resumes++;
      b.awaiting_first_frame = true;
    }
    b.paused = paused;
  }

  onFrameArrived(keyframe: boolean): void {
    const b = this.broadcast;
    if (b.paused) b.frames_during_pause++;
    else if (b.awaiting_first_frame) {
      b.awaiting_first_frame = false;
      if (keyframe) b.resumed_on_keyframe++;
      else b.resumed_without_keyframe++;
    }
  }

  /** The JSON object, field for field as `--stats-json` writes it. */
  snapshot(nowMs: number): StatsJson {
    const v = this.video;
    const a = this.audio;
    const due = a.packets_decoded + a.packets_concealed;
    const st = v.stages;
    return {
      audio: {
        bitrate_bps: a.bitrate_bps,
        bytes: a.bytes,
        concealed_percent: due ? round((100 * a.packets_concealed) / due, 1) : 0,
        decode_errors: a.decode_errors,
        // --dump-wav does not exist in a page.
        dump_errors: 0,
        jitter_ms: round(a.jitter_ms, 1),
        latency_ms: a.latency.report(),
        // The browser does not name its output device to pages.
        output_device: null,
        output_underruns: a.output_underruns,
        packets_concealed: a.packets_concealed,
        packets_decoded: a.packets_decoded,
        // No queue between the network and the decoder that could be full in a page.
        packets_dropped_busy: 0,
        packets_dropped_catch_up: a.packets_dropped_catch_up,
        packets_dropped_overflow: a.packets_dropped_overflow,
        packets_late: a.packets_late,
        packets_malformed: a.packets_malformed,
        packets_received: a.packets_received,
        // WebCodecs' AudioDecoder has no FEC decoding: nothing is rebuilt.
        packets_recovered_fec: 0,
        packets_stretched: a.packets_stretched,
        playout_delay_ms: a.playout_delay.report(),
        // The page re-anchors instead of nudging packet lengths (see audio.ts).
        playout_nudged_ms: 0,
        target_delay_ms: round(a.target_delay_ms, 1),
      },
      auto: this.auto,
      auto_reason: this.auto_reason,
      av_skew_ms: this.avSkew.report(),
      broadcast: {
        frames_during_pause: this.broadcast.frames_during_pause,
        paused: this.broadcast.paused,
        pauses: this.broadcast.pauses,
        resumed_on_keyframe: this.broadcast.resumed_on_keyframe,
        resumed_without_keyframe: this.broadcast.resumed_without_keyframe,
        resumes: this.broadcast.resumes,
      },
      clock: { offset_us: this.clock.offset_us, rtt_us: this.clock.rtt_us },
      connection: {
        lost: this.connection.lost,
        reconnect_ms: this.connection.reconnect_time.report(),
        reconnecting: this.connection.reconnecting,
        reconnects: this.connection.reconnects,
      },
      duration_s: round((nowMs - this.startedMs) / 1000, 3),
      paused: this.paused,
      // A page records nothing (--record is the native viewer's).
      recording: {
        audio_packets: 0,
        bytes: 0,
        dropped: 0,
        errors: 0,
        span_ms: 0,
        video_frames: 0,
        video_span_ms: 0,
        waiting_for_keyframe: 0,
      },
      rendition: this.rendition,
      rendition_timeline: this.rendition_timeline.map((e) => ({ ...e })),
      // WebTransport's getStats() is not in Chromium yet: the QUIC counters are not readable
      // by the page. null, as the native viewer writes before its connection ends.
      transport: null,
      video: {
        bytes: v.bytes,
        decode_errors: v.decode_errors,
        // --dump-y4m does not exist in a page.
        dump_errors: 0,
        first_frame_ms: v.first_frame_ms === null ? null : round(v.first_frame_ms, 2),
        frames_by_size: Object.fromEntries([...v.frames_by_size.entries()].sort()),
        frames_decoded: v.frames_decoded,
        frames_dropped_decoder_busy: v.frames_dropped_decoder_busy,
        frames_dropped_queue_full: v.frames_dropped_queue_full,
        frames_dumped: 0,
        frames_late: v.frames_late,
        frames_malformed: v.frames_malformed,
        frames_not_presented: v.frames_not_presented,
        frames_presented: v.frames_presented,
        frames_received: v.frames_received,
        frames_reset: v.frames_reset,
        frames_shown_late: v.frames_shown_late,
        frames_skipped: v.frames_skipped,
        frames_too_late: v.frames_too_late,
        height: v.height,
        keyframe_requests: v.keyframe_requests,
        keyframes: v.keyframes,
        latency_ms: v.latency_decoded.report(),
        latency_presented_ms: v.latency_presented.report(),
        live_ms: v.live_ms === null ? null : round(v.live_ms, 2),
        longest_freeze_ms: v.longest_freeze_us / 1000,
        pixel_clock: { ...v.pixel_clock },
        rendition_switches: v.rendition_switches,
        stages_ms: {
          decode: st.decode.report(),
          encode: st.encode.report(),
          encoder_queue: st.encoder_queue.report(),
          encoder_wait: st.encoder_wait.report(),
          outside_encoder: st.outside_encoder.report(),
          present: st.present.report(),
          reassembly: st.reassembly.report(),
          reorder: st.reorder.report(),
          transport: st.transport.report(),
        },
        switch_ms: v.switch_time.report(),
        width: v.width,
      },
    };
  }
}

export type StatsJson = {
  audio: Record<string, unknown> & { packets_decoded: number; packets_received: number };
  auto: boolean;
  auto_reason: string | null;
  av_skew_ms: ReturnType<AvSkew["report"]>;
  broadcast: Record<string, number | boolean>;
  clock: { offset_us: number | null; rtt_us: number | null };
  connection: Record<string, unknown>;
  duration_s: number;
  paused: boolean;
  recording: Record<string, number>;
  rendition: number | null;
  rendition_timeline: { at_ms: number; rendition: number; reason: string }[];
  transport: null;
  video: Record<string, unknown> & {
    frames_decoded: number;
    frames_presented: number;
    pixel_clock: { matched: number; read: number; unreadable: number };
  };
};
