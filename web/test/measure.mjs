// The web viewer's figures for `streamsocket-bench browser`: watches the stream for --seconds
// in one page per --audio-latency value (comma-separated, "interactive" and/or "lowest", one
// after the other), takes each one's window.streamsocket.stats() (the native --stats-json field
// names) and state(), then times --loads fresh page loads from navigation to the first
// picture shown. Writes one JSON object to --out:
// {"pages": [{"audio_latency": ..., "stats": ..., "state": ...}], "joins_ms": [...],
//  "join_timelines_ms": [{"script": ..., "session_json": ..., ...}, ...]}.
// Asserts nothing.
//
//   node web/test/measure.mjs --url https://127.0.0.1:PORT/ --certs DIR --seconds 20 --loads 20 \
//     [--audio-latency interactive,lowest] --out F

import { writeFileSync } from "node:fs";

import { args, launchChromium } from "./chromium.mjs";

const WAIT = { timeout: 30_000, polling: 20 };

async function main() {
  const a = args();
  if (!a.url || !a.certs || !a.out) throw new Error("usage: --url URL --certs DIR --out FILE [--seconds S] [--loads N]");
  const seconds = Number(a.seconds ?? 20);
  const loads = Number(a.loads ?? 0);
  const { browser, close } = await launchChromium([a.certs]);
  const variants = (a["audio-latency"] ?? "interactive").split(",");
  const result = { pages: [], joins_ms: [], join_timelines_ms: [] };
  try {
    // One page after another: two pages decoding at once beside the native viewer overload
    // 2 cores (measured: decode p95 71 ms instead of 17).
    for (const v of variants) {
      const page = await browser.newPage();
      await page.setViewport({ width: 900, height: 560 });
      await page.goto(`${a.url}?audio-latency=${encodeURIComponent(v)}`, { waitUntil: "load" });
      await page.waitForFunction(() => window.streamsocket?.state().first_picture_ms != null, WAIT);
      // Watch for --seconds from the first picture (the native viewer runs throughout).
      await new Promise((r) => setTimeout(r, seconds * 1000));
      result.pages.push({
        audio_latency: v,
        stats: await page.evaluate(() => window.streamsocket.stats()),
        state: await page.evaluate(() => window.streamsocket.state()),
      });
      await page.close();
    }
    // Joins: each a new page (new document, new connection), timed by the page itself from
    // its navigation start (performance.now() = 0) to its first picture drawn.
    for (let i = 0; i < loads; i++) {
      const p = await browser.newPage();
      await p.setViewport({ width: 900, height: 560 });
      await p.goto(a.url, { waitUntil: "load" });
      await p.waitForFunction(() => window.streamsocket?.state().first_picture_ms != null, WAIT);
      const state = await p.evaluate(() => window.streamsocket.state());
      result.joins_ms.push(state.first_picture_ms);
      result.join_timelines_ms.push(state.join_timeline_ms);
      await p.close();
    }
  } finally {
    await close();
  }
  writeFileSync(a.out, JSON.stringify(result));
}

main().catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
