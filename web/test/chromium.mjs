// Headless Chromium for the web viewer's tests and benchmarks: the system's /usr/bin/chromium
// (or $CHROMIUM) through puppeteer-core, with a fresh profile, no background traffic, sound
// allowed without a gesture, and only the given servers' certificates accepted for the HTTPS
// pages (--ignore-certificate-errors-spki-list, so nothing else is trusted). WebTransport
// needs QUIC, so QUIC stays on.

import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** `--name value` pairs from the command line. */
export function args() {
  const out = {};
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (!a[i].startsWith("--")) throw new Error(`unexpected argument ${a[i]}`);
    out[a[i].slice(2)] = a[i + 1];
    i++;
  }
  return out;
}

export async function loadPuppeteer() {
  try {
    return (await import("puppeteer-core")).default;
  } catch {
    console.error("puppeteer-core is not installed: run `npm ci` in web/ (scripts/test.sh does)");
    process.exit(3);
  }
}

/** base64 of SHA-256 of the certificate's SubjectPublicKeyInfo (DER). */
export function spkiHash(pemPath) {
  const cert = new X509Certificate(readFileSync(pemPath));
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

/**
 * Starts Chromium accepting the certificates of the servers whose certificate directories
 * are `certDirs`. Returns the browser and a function that closes it and removes its profile.
 */
export async function launchChromium(certDirs) {
  const puppeteer = await loadPuppeteer();
  const profile = mkdtempSync(join(tmpdir(), "streamsocket-chromium-"));
  const flags = [
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    // No page may be throttled as a background tab (the tests open several).
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    `--user-data-dir=${profile}`,
    `--ignore-certificate-errors-spki-list=${certDirs.map((d) => spkiHash(join(d, "server.pem"))).join(",")}`,
  ];
  if (process.getuid?.() === 0) flags.push("--no-sandbox");
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: flags,
  });
  const close = async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { browser, close };
}
