//! `streamsocket-bench browser`: the web viewer in headless Chromium against the native
//! viewer, in one run on one server: capture to decoded and to shown, pictures lost, and the
//! web page's join time (page load to first picture) over fresh page loads.
//!
//! Chromium runs through `web/test/measure.mjs` (puppeteer-core, the system's Chromium);
//! the page's `window.streamsocket.stats()` has the native `--stats-json` field names, so the
//! two are read the same way.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;
use streamsocket_tests::{run_with_limit, spawn_viewer, ServerProcess};

/// What one viewer measured, from its stats.
struct Measured {
    decoded_p50: f64,
    decoded_p95: f64,
    shown_p50: f64,
    shown_p95: f64,
    frames_decoded: f64,
    frames_shown: f64,
    frames_skipped: f64,
}

impl Measured {
    fn of(stats: &Value) -> Self {
        let n = |p: &str| stats.pointer(p).and_then(Value::as_f64).unwrap_or(f64::NAN);
        Self {
            decoded_p50: n("/video/latency_ms/p50"),
            decoded_p95: n("/video/latency_ms/p95"),
            shown_p50: n("/video/latency_presented_ms/p50"),
            shown_p95: n("/video/latency_presented_ms/p95"),
            frames_decoded: n("/video/frames_decoded"),
            frames_shown: n("/video/frames_presented"),
            frames_skipped: n("/video/frames_skipped"),
        }
    }
}

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

pub fn run(
    seconds: u64,
    loads: u32,
    audio_latencies: &[String],
    server_args: &[String],
) -> anyhow::Result<()> {
    if let Some(bad) = audio_latencies
        .iter()
        .find(|v| !["interactive", "lowest"].contains(&v.as_str()))
    {
        bail!("--audio-latency takes interactive and/or lowest, not {bad:?}");
    }
    let script = web_dir().join("test/measure.mjs");
    if !web_dir().join("node_modules/puppeteer-core").is_dir() {
        bail!("puppeteer-core is not installed: run `npm ci` in web/ (scripts/test.sh does)");
    }
    let extra: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&extra)?;
    let page = server.page_addr();
    println!(
        "# Browser: the web viewer in headless Chromium (one page per audio latency hint, {}, each for {seconds} s, one after the other) and the native headless viewer throughout, on one server (server options: {:?}); then {loads} fresh page loads",
        audio_latencies.join(", "),
        streamsocket_tests::server_options(&extra)
    );
    let duration = seconds.to_string();
    // The pages watch one after another; the native viewer watches throughout, with time for
    // each page's load.
    let native_seconds = (seconds + 3) * audio_latencies.len() as u64;
    let native = spawn_viewer(&server, &["--duration", &native_seconds.to_string()]);
    let out = tempfile::NamedTempFile::new()?;
    let mut node = Command::new("node");
    node.arg(&script)
        .args(["--url", &format!("https://127.0.0.1:{}/", page.port())])
        .args(["--certs", &server.certs.to_string_lossy()])
        .args(["--seconds", &duration])
        .args(["--loads", &loads.to_string()])
        .args(["--audio-latency", &audio_latencies.join(",")])
        .args(["--out", &out.path().to_string_lossy()]);
    let ran = run_with_limit(
        &mut node,
        Duration::from_secs(native_seconds + 60 + 20 * loads as u64),
    )?;
    let native = native
        .join()
        .map_err(|_| anyhow::anyhow!("the native viewer's thread"))?;
    if !ran.status.success() {
        bail!(
            "the browser measurement failed:\n{}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
    let web: Value = serde_json::from_str(&std::fs::read_to_string(out.path())?)
        .context("the browser measurement's JSON")?;
    let n = Measured::of(native.stats());
    let pages: Vec<(String, Measured, f64)> = web["pages"]
        .as_array()
        .context("the browser measurement has no pages")?
        .iter()
        .map(|p| {
            (
                format!(
                    "web, ?audio-latency={}",
                    p["audio_latency"].as_str().unwrap_or("?")
                ),
                Measured::of(&p["stats"]),
                p.pointer("/state/audio_output_latency_ms")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN),
            )
        })
        .collect();
    println!();
    println!("| viewer | capture to decoded p50 ms | p95 ms | capture to shown p50 ms | p95 ms | frames decoded | shown | skipped | sound ahead of the speaker ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let native_row = (
        "native (streamsocket-client --headless, no sound device)".to_string(),
        n,
        f64::NAN,
    );
    for (who, m, output) in std::iter::once(&native_row).chain(&pages) {
        println!(
            "| {who} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
            m.decoded_p50,
            m.decoded_p95,
            m.shown_p50,
            m.shown_p95,
            m.frames_decoded,
            m.frames_shown,
            m.frames_skipped,
            if output.is_nan() {
                "-".into()
            } else {
                format!("{output:.1}")
            }
        );
    }
    println!();
    let n = &native_row.1;
    for (who, w, _) in &pages {
        println!(
            "capture to shown, {who} − native: p50 {:+.1} ms, p95 {:+.1} ms",
            w.shown_p50 - n.shown_p50,
            w.shown_p95 - n.shown_p95
        );
    }
    let mut joins: Vec<f64> = web["joins_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    joins.sort_by(f64::total_cmp);
    if !joins.is_empty() {
        let at = |q: f64| joins[((joins.len() - 1) as f64 * q).round() as usize];
        println!(
            "web join, page load to first picture, {} loads: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            joins.len(),
            at(0.5),
            at(0.95),
            joins[joins.len() - 1]
        );
    }
    // Where the joins' time went: each step's median time from navigation start.
    let timelines = web["join_timelines_ms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let steps = [
        "html",
        "viewer_js",
        "script",
        "session_json",
        "transport_ready",
        "welcome",
        "features_checked",
        "first_frame",
        "first_decoded",
        "first_shown",
    ];
    let medians: Vec<String> = steps
        .iter()
        .filter_map(|step| {
            let mut at: Vec<f64> = timelines.iter().filter_map(|t| t[*step].as_f64()).collect();
            at.sort_by(f64::total_cmp);
            (!at.is_empty()).then(|| format!("{step} {:.0}", at[(at.len() - 1) / 2]))
        })
        .collect();
    if !medians.is_empty() {
        println!(
            "web join, median ms from navigation start at each step: {}",
            medians.join(", ")
        );
    }
    println!(
        "native first frame (from its start): {:.0} ms",
        native
            .stats()
            .pointer("/video/first_frame_ms")
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    );
    Ok(())
}
