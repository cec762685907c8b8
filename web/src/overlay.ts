// Text over the picture, as the native window draws it (client/src/video/window.rs): the
// stats overlay (S), the help (H), and the banner saying what is wrong (connection lost and
// reconnecting, paused by the broadcaster, no picture). A <pre> over the canvas, not pixels in
// it, so the canvas keeps exactly the decoded picture (the pixel clock reads it back).

import { HELP } from "./keys.js";
import { StatsJson } from "./stats.js";

export interface Rates {
  fps: number;
  kbps: number;
}

/** The stats overlay's lines: rendition and why, size, fps, bitrate, latency p50/p95
 * capture→shown, dropped and late frames, audio delay and loss, A/V skew. */
export function statsLines(
  s: StatsJson,
  rates: Rates,
  server: string,
  ladderNames: readonly string[],
  audioDelayMs: number | undefined,
  muted: boolean,
): string[] {
  const v = s.video as Record<string, any>;
  const a = s.audio as Record<string, any>;
  const rendition =
    s.rendition === null ? "-" : `${s.rendition + 1}${ladderNames[s.rendition] ? ` ${ladderNames[s.rendition]}` : ""}`;
  const lat = v.latency_presented_ms as { p50: number | null; p95: number | null };
  const skew = s.av_skew_ms.p50;
  return [
    server,
    `rendition ${rendition}${s.auto ? " (auto)" : ""}${s.paused ? " PAUSED" : ""}`,
    `why: ${s.auto_reason ?? "the server's choice"}`,
    `size ${v.width}x${v.height} ${rates.fps.toFixed(1)} fps`,
    `video ${rates.kbps.toFixed(0)} kbit/s`,
    `latency p50 ${(lat.p50 ?? 0).toFixed(0)} p95 ${(lat.p95 ?? 0).toFixed(0)} ms`,
    `skipped ${v.frames_skipped} late ${v.frames_late} dropped ${v.frames_too_late + v.frames_dropped_decoder_busy} reset ${v.frames_reset}`,
    `audio ${Math.floor(a.bitrate_bps / 1000)} kbit/s loss ${(a.concealed_percent as number).toFixed(1)}%${muted ? " MUTED" : ""}`,
    `audio delay ${audioDelayMs === undefined ? "-" : audioDelayMs.toFixed(0)} ms (target ${(a.target_delay_ms as number).toFixed(0)})`,
    `A/V skew ${skew === null ? "-" : `${skew.toFixed(0)} ms`}`,
  ];
}

export function helpLines(): string[] {
  return ["StreamSocket keys", "", ...HELP.map(([k, what]) => `${k.padEnd(9)} ${what}`)];
}

/** What must be said over the picture, if anything. */
export interface Condition {
  reconnecting?: { reason: string; attempt: number; sinceUs: number };
  broadcastPaused: boolean;
  paused: boolean;
  lastDecodedUs?: number;
}

export function bannerLines(c: Condition, nowUs: number): string[] | undefined {
  if (c.reconnecting) {
    const seconds = Math.floor(Math.max(0, nowUs - c.reconnecting.sinceUs) / 1e6);
    return [
      "CONNECTION LOST",
      c.reconnecting.reason,
      `reconnecting: attempt ${c.reconnecting.attempt + 1} (${seconds} s)`,
    ];
  }
  if (c.broadcastPaused) return ["PAUSED BY THE BROADCASTER"];
  const stalled = c.lastDecodedUs === undefined ? 0 : nowUs - c.lastDecodedUs;
  if (stalled >= 1e6 && !c.paused) {
    return [`NO PICTURE FOR ${Math.floor(stalled / 1e6)} S: WAITING FOR THE NETWORK`];
  }
  if (c.paused) return ["PAUSED (Space resumes)"];
  return undefined;
}
