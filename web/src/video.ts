// Received frames → reorder tracks (tracks.ts) → WebCodecs VideoDecoder → the presenter, with
// the native viewer's rules (client/src/video/decoder.rs): never decode past a gap, ask for
// keyframes (the control core spaces the requests), switch renditions at the new one's first
// keyframe. This module is the browser's side: the decoder, and what it measures.

import { mark } from "./timeline.js";
import { ReceivedFrame } from "./connection.js";
import { DecoderEvent } from "./control.js";
import { TrackResult, Tracks } from "./tracks.js";
import { Stats } from "./stats.js";

/** A decoded picture waiting for its time. */
export interface Picture {
  frame: VideoFrame;
  capture_us: number;
  /** Page clock when it came out of the decoder. */
  decoded_us: number;
  rendition: number;
}

/** Frames waiting in WebCodecs beyond which the decoder is behind: new frames are dropped
 * (and decoding waits for a keyframe), as the native viewer's 32-frame queue does. */
const MAX_DECODE_QUEUE = 16;

/** The AV1 codec string for WebCodecs: Main profile (0), 8-bit, with the level of the largest
 * rendition (AV1 Annex A: 3.1 carries 1280x720 at 30 fps, 4.0 1920x1080 at 30). The level is
 * an upper bound the decoder checks, so naming a higher one is harmless. */
export function av1CodecString(width: number, height: number): string {
  const pixels = width * height;
  const level = pixels <= 147_456 ? "01" : pixels <= 665_856 ? "04" : pixels <= 1_065_024 ? "05" : pixels <= 2_359_296 ? "08" : "12";
  return `av01.0.${level}M.08`;
}

/** A frame as the tracks see it. */
type Queued = ReceivedFrame & { seq: number; keyframe: boolean; rendition: number };

export class VideoPipeline {
  private decoder: VideoDecoder | undefined;
  private readonly tracks = new Tracks<Queued>();
  /** When the last switch was asked for (page clock), for switch_ms. */
  private switchAskedUs: number | undefined;
  private gapTimer: ReturnType<typeof setTimeout> | undefined;
  /** Frames handed to the decoder, in decoding order (its outputs come in that order; their
   * timestamps are the capture times, matched within 1 ms as the browser may round them). */
  private inFlight: { capture_us: number; rendition: number; decodeStartUs: number; encoderOutUs: number }[] = [];
  private connectStartUs = 0;

  constructor(
    private readonly codec: string,
    private readonly stats: Stats,
    private readonly nowUs: () => number,
    /** The server clock now, if known (for latency). */
    private readonly serverNowUs: () => number | undefined,
    private readonly latencyTargetUs: number,
    private readonly output: (p: Picture) => void,
    private readonly wantKeyframe: (rendition: number) => void,
  ) {
    this.decoder = this.makeDecoder();
  }

  /** The first connection attempt started at `atUs` (page clock): first_frame_ms and live_ms
   * count from there, as the native viewer's count from the start of connecting. */
  connectingSince(atUs: number): void {
    this.connectStartUs = atUs;
  }

  private makeDecoder(): VideoDecoder {
    const d = new VideoDecoder({
      output: (f) => this.decoded(f),
      error: (e) => {
        // The decoder closed itself: start a new one at the next keyframe.
        console.warn("video decoder error:", e.message);
        this.stats.video.decode_errors++;
        this.decoder = undefined;
        this.inFlight = [];
        this.after(this.tracks.decoderFailed());
      },
    });
    d.configure({ codec: this.codec, optimizeForLatency: true });
    return d;
  }

  /** What the control core tells the decoder, in order with the frames. */
  event(e: DecoderEvent): void {
    switch (e.kind) {
      case "target":
        this.tracks.confirm(e.rendition);
        break;
      case "resync":
        this.tracks.resync();
        this.rearmGapTimer();
        break;
      case "switch-asked":
        this.switchAskedUs ??= e.atUs;
        break;
      case "switch-abandoned":
        this.tracks.abandonSwitch();
        this.switchAskedUs = undefined;
        break;
    }
  }

  /** A frame's stream completed. */
  push(f: ReceivedFrame): void {
    const v = this.stats.video;
    v.frames_received++;
    v.bytes += f.payload.length;
    this.stats.onFrameArrived(f.header.keyframe);
    const q: Queued = { ...f, seq: f.header.seq, keyframe: f.header.keyframe, rendition: f.header.rendition };
    this.after(this.tracks.push(q, this.nowUs()));
  }

  private after(r: TrackResult<Queued>): void {
    for (const rendition of r.keyframes) this.askKeyframe(rendition);
    if (r.switchedTo !== undefined) {
      // The new rendition's first decodable frame: the picture moves to it.
      this.stats.video.rendition_switches++;
      if (this.switchAskedUs !== undefined) {
        this.stats.video.switch_time.record(this.nowUs() - this.switchAskedUs);
        this.switchAskedUs = undefined;
      }
    }
    for (const f of r.decode) this.decode(f);
    this.stats.video.frames_skipped = this.tracks.skipped;
    this.stats.video.frames_late = this.tracks.late;
    this.rearmGapTimer();
  }

  private askKeyframe(rendition: number): void {
    this.stats.video.keyframe_requests++;
    this.wantKeyframe(rendition);
  }

  private decode(f: Queued): void {
    if (!this.decoder || this.decoder.state === "closed") this.decoder = this.makeDecoder();
    if (this.decoder.decodeQueueSize >= MAX_DECODE_QUEUE) {
      // Behind: what follows this frame depends on it, so decoding waits for a keyframe.
      this.stats.video.frames_dropped_decoder_busy++;
      this.after(this.tracks.decoderFailed());
      return;
    }
    if (f.keyframe) this.stats.video.keyframes++;
    const now = this.nowUs();
    const h = f.header;
    this.inFlight.push({
      capture_us: h.capture_us,
      rendition: h.rendition,
      decodeStartUs: now,
      encoderOutUs: h.capture_us + h.queue_us + h.encoder_wait_us + h.encode_us,
    });
    const st = this.stats.video.stages;
    st.encoder_queue.record(h.queue_us);
    st.encoder_wait.record(h.encoder_wait_us);
    st.encode.record(h.encode_us);
    st.reassembly.record(f.lastByteUs - f.firstByteUs);
    st.reorder.record(now - f.lastByteUs);
    const firstByteServer = this.toServer(f.firstByteUs);
    const encoderOut = h.capture_us + h.queue_us + h.encoder_wait_us + h.encode_us;
    if (firstByteServer !== undefined) st.transport.record(firstByteServer - encoderOut);
    try {
      this.decoder.decode(
        new EncodedVideoChunk({ type: f.keyframe ? "key" : "delta", timestamp: h.capture_us, data: f.payload }),
      );
    } catch (e) {
      console.warn("video decode failed:", e);
      this.stats.video.decode_errors++;
      this.after(this.tracks.decoderFailed());
    }
  }

  private toServer(pageUs: number): number | undefined {
    const serverNow = this.serverNowUs();
    return serverNow === undefined ? undefined : serverNow - (this.nowUs() - pageUs);
  }

  private decoded(frame: VideoFrame): void {
    // The frame this picture is: the oldest in the decoder within 1 ms of its timestamp (a
    // frame the decoder showed nothing for is passed over).
    const at = this.inFlight.findIndex((q) => Math.abs(q.capture_us - frame.timestamp) <= 1000);
    const meta = at < 0 ? undefined : this.inFlight.splice(0, at + 1)[at];
    const capture_us = meta?.capture_us ?? frame.timestamp;
    const now = this.nowUs();
    const v = this.stats.video;
    v.frames_decoded++;
    const size = `${frame.displayWidth}x${frame.displayHeight}`;
    v.frames_by_size.set(size, (v.frames_by_size.get(size) ?? 0) + 1);
    v.width = frame.displayWidth;
    v.height = frame.displayHeight;
    if (v.last_decoded_us !== undefined) v.longest_freeze_us = Math.max(v.longest_freeze_us, now - v.last_decoded_us);
    v.last_decoded_us = now;
    if (meta) v.stages.decode.record(now - meta.decodeStartUs);
    const serverNow = this.serverNowUs();
    if (serverNow !== undefined) {
      const latency = serverNow - capture_us;
      v.latency_decoded.record(latency);
      v.latency_last_second.record(latency);
      if (meta) v.stages.outside_encoder.record(serverNow - meta.encoderOutUs);
      if (v.live_ms === null && latency < this.latencyTargetUs) v.live_ms = (now - this.connectStartUs) / 1000;
    }
    if (v.first_frame_ms === null) v.first_frame_ms = (now - this.connectStartUs) / 1000;
    mark("first_decoded");
    this.output({ frame, capture_us, decoded_us: now, rendition: meta?.rendition ?? this.tracks.shownRendition ?? 0 });
  }

  private rearmGapTimer(): void {
    if (this.gapTimer !== undefined) clearTimeout(this.gapTimer);
    this.gapTimer = undefined;
    const due = this.tracks.gapDeadline();
    if (due === undefined) return;
    this.gapTimer = setTimeout(
      () => {
        this.gapTimer = undefined;
        this.after(this.tracks.poll(this.nowUs()));
      },
      Math.max(0, (due - this.nowUs()) / 1000),
    );
  }
}
