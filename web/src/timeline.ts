// The page's join, step by step: the first time each step happened, in ms since the page's
// navigation started (performance.now()). state().join_timeline_ms shows it, so a slow join
// says where its time went (the benchmark prints the medians).

export type JoinStep =
  | "html" // the page's HTML received (navigation timing's responseEnd)
  | "viewer_js" // the script received (resource timing's responseEnd)
  | "script" // the viewer's script started
  | "session_json" // /session.json answered
  | "transport_ready" // the WebTransport session is up (QUIC and HTTP/3 handshakes, CONNECT)
  | "welcome" // the server's Welcome read
  | "features_checked" // AV1 decoding found (asked at "script", awaited after the welcome)
  | "first_frame" // the first frame's stream fully read
  | "first_decoded" // the first picture out of the decoder
  | "first_shown"; // the first picture drawn

const steps: Partial<Record<JoinStep, number>> = {};

/** Records `step` the first time it happens. */
export function mark(step: JoinStep): void {
  steps[step] ??= Math.round(performance.now() * 100) / 100;
}

/** The steps so far. */
export function timeline(): Partial<Record<JoinStep, number>> {
  const out = { ...steps };
  const round = (ms: number) => Math.round(ms * 100) / 100;
  const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming | undefined;
  if (nav?.responseEnd) out.html = round(nav.responseEnd);
  const js = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/viewer.js"));
  if (js) out.viewer_js = round((js as PerformanceResourceTiming).responseEnd);
  return out;
}
