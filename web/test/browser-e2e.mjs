// Drives the web viewer in headless Chromium (the system's /usr/bin/chromium, through
// puppeteer-core) against a running StreamSocket server, and prints what it saw as one JSON
// object on standard output. The Rust test tests/tests/browser.rs starts the servers, runs
// this, and asserts on the JSON; this script waits for conditions, it asserts nothing itself.
//
//   node web/test/browser-e2e.mjs --url https://127.0.0.1:PORT/ --certs DIR
//        [--token-url https://127.0.0.1:PORT2/?token=wrong] [--screenshot out.png]
//        [--dist web/dist]
//
// --dist serves the page's three files from a local build instead of the server's embedded
// copy: to try a change to the page without rebuilding the server (development only; the
// tests use what the server serves).
// --certs is the servers' certificate directories, comma-separated, the --url server's first:
// each server.pem gives the SubjectPublicKeyInfo hash Chromium is told to accept for the HTTPS
// pages (--ignore-certificate-errors-spki-list, so nothing else is trusted); the first ca.pem
// lets this script fetch /session.json itself for the foreign-origin page. Every wait is for a
// condition, with a timeout.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import https from "node:https";
import { join } from "node:path";

import { args, launchChromium } from "./chromium.mjs";

function fetchJson(url, ca) {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => {
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(new Error(`${url}: ${e.message}: ${body.slice(0, 200)}`));
          }
        });
      })
      .on("error", reject);
  });
}

const WAIT = { timeout: 30_000, polling: 50 };
const stats = (page) => page.evaluate(() => window.streamsocket.stats());
const state = (page) => page.evaluate(() => window.streamsocket.state());

/** The --dist directory, if given. */
let localDist;
const ASSET = { "/": "index.html", "/index.html": "index.html", "/viewer.js": "viewer.js", "/worklet.js": "worklet.js" };

/** Opens the page and waits until it is connected (or has said why not). */
async function open(browser, url, logs) {
  const page = await browser.newPage();
  if (localDist) {
    const origin = new URL(url).origin;
    await page.setRequestInterception(true);
    page.on("request", (req) => {
      const u = new URL(req.url());
      const file = u.origin === origin ? ASSET[u.pathname] : undefined;
      if (!file) return void req.continue();
      const type = file.endsWith(".js") ? "text/javascript" : "text/html";
      req.respond({ status: 200, contentType: type, body: readFileSync(join(localDist, file)) });
    });
  }
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.setViewport({ width: 900, height: 560 });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(
    () => window.streamsocket && ["connected", "refused", "ended", "unsupported"].includes(window.streamsocket.state().state),
    WAIT,
  );
  return page;
}

/** Waits until `n` more pictures were shown than now. */
async function waitShown(page, n) {
  const start = (await stats(page)).video.frames_presented;
  await page.waitForFunction((s) => window.streamsocket.stats().video.frames_presented >= s, WAIT, start + n);
}

async function playAndKeys(browser, url, result, logs) {
  const page = await open(browser, url, logs);
  result.page = await state(page);
  if (result.page.state !== "connected") return page;
  // Frames decode and show, and the pixel clock reads them back.
  await page.waitForFunction(() => window.streamsocket.stats().video.pixel_clock.read >= 60, WAIT);
  result.play = await stats(page);

  // '2' selects the second rendition: the server confirms it and pictures of its size show.
  const second = result.page.renditions[1];
  if (second) {
    await page.keyboard.press("2");
    await page.waitForFunction(
      (w) => {
        const s = window.streamsocket.stats();
        return s.rendition === 1 && s.video.width === w;
      },
      WAIT,
      second.width,
    );
    await waitShown(page, 30);
    result.switched = await stats(page);
  }

  // Space pauses: the server stops sending. Stopped means no frame for a whole second.
  await page.keyboard.press("Space");
  await page.waitForFunction(
    () => {
      const s = window.streamsocket.stats();
      const w = window.__quiet ?? (window.__quiet = { n: -1, since: 0 });
      if (s.video.frames_received !== w.n) {
        w.n = s.video.frames_received;
        w.since = performance.now();
      }
      return s.paused && performance.now() - w.since >= 1000;
    },
    WAIT,
  );
  result.paused = await stats(page);
  // Space again resumes (on a keyframe).
  await page.keyboard.press("Space");
  await page.waitForFunction(
    (n) => {
      const s = window.streamsocket.stats();
      return !s.paused && s.video.frames_presented >= n;
    },
    WAIT,
    result.paused.video.frames_presented + 30,
  );
  result.resumed = await stats(page);
  return page;
}

/** A browser without WebTransport (removed before the page's script runs) is told what is
 * missing and what to use instead. */
async function withoutWebTransport(browser, url, result, logs) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.evaluateOnNewDocument(() => {
    delete window.WebTransport;
  });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => window.streamsocket?.state().state === "unsupported", WAIT);
  result.unsupported = await state(page);
  await page.close();
}

/** A browser whose WebCodecs cannot decode AV1 (isConfigSupported answers no) is told so,
 * after its first connection, whose time the check overlaps. */
async function withoutAv1(browser, url, result, logs) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.evaluateOnNewDocument(() => {
    VideoDecoder.isConfigSupported = async (config) => ({ supported: false, config });
  });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => window.streamsocket?.state().state === "unsupported", WAIT);
  result.no_av1 = await state(page);
  await page.close();
}

async function wrongToken(browser, url, result, logs) {
  const page = await open(browser, url, logs);
  result.wrong_token = await state(page);
  await page.close();
}

/** A page from another origin (a plain HTTP server on loopback, a secure context) opens a
 * WebTransport session to the server with the server's own certificate hash: the server must
 * refuse it (HTTP 403), so `ready` rejects. */
async function otherOrigin(browser, url, ca, result, logs) {
  const target = new URL(url);
  const session = await fetchJson(new URL("/session.json", target).href, ca);
  const wtUrl = `https://${target.host}${session.webtransport_path}`;
  const html = `<!doctype html><title>elsewhere</title><script type="module">
    const hashes = ${JSON.stringify(session.certificate_hashes)}.map((h) => ({
      algorithm: h.algorithm,
      value: Uint8Array.from(atob(h.value), (c) => c.charCodeAt(0)),
    }));
    window.__result = null;
    try {
      const wt = new WebTransport(${JSON.stringify(wtUrl)}, { serverCertificateHashes: hashes });
      await wt.ready;
      window.__result = { connected: true };
      wt.close();
    } catch (e) {
      window.__result = { connected: false, error: String(e && (e.message || e)) };
    }
  </script>`;
  const server = createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  try {
    const origin = `http://127.0.0.1:${server.address().port}`;
    const page = await browser.newPage();
    page.on("console", (m) => logs.push(`other origin ${m.type()}: ${m.text()}`));
    await page.goto(`${origin}/`, { waitUntil: "load" });
    await page.waitForFunction(() => window.__result !== null && window.__result !== undefined, WAIT);
    result.other_origin = { origin, ...(await page.evaluate(() => window.__result)) };
    await page.close();
  } finally {
    server.close();
  }
}

async function screenshot(browser, url, path, result, logs) {
  const page = await open(browser, url, logs);
  result.page = await state(page);
  await page.waitForFunction(() => window.streamsocket.stats().video.frames_presented >= 90, WAIT);
  await page.keyboard.press("s");
  // The overlay shows figures once the latency histogram has some.
  await page.waitForFunction(() => {
    const o = document.getElementById("overlay");
    return !o.hidden && /p95 [1-9]/.test(o.textContent) && /fps/.test(o.textContent) && !/ 0\.0 fps/.test(o.textContent);
  }, WAIT);
  await page.screenshot({ path, type: "png" });
  result.screenshot = path;
  result.overlay = await page.evaluate(() => document.getElementById("overlay").textContent);
}

async function main() {
  const a = args();
  if (!a.url || !a.certs) throw new Error("usage: --url URL --certs DIR [--token-url URL] [--screenshot PNG]");
  const certDirs = a.certs.split(",");
  localDist = a.dist;
  const { browser, close } = await launchChromium(certDirs);
  const result = {};
  const logs = [];
  try {
    if (a.screenshot) {
      await screenshot(browser, a.url, a.screenshot, result, logs);
    } else {
      const page = await playAndKeys(browser, a.url, result, logs);
      await page.close();
      if (a["token-url"]) await wrongToken(browser, a["token-url"], result, logs);
      await withoutWebTransport(browser, a.url, result, logs);
      await withoutAv1(browser, a.url, result, logs);
      await otherOrigin(browser, a.url, readFileSync(join(certDirs[0], "ca.pem")), result, logs);
    }
  } catch (e) {
    result.error = String(e && (e.stack || e));
  } finally {
    result.console = logs.slice(-40);
    await close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && (e.stack || e)) }) + "\n");
  process.exit(1);
});
