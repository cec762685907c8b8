//! `streamsocket-bench ladder`: does the server encode every rung of its ladder at once in
//! real time? One light viewer per rung (no decoding: on a real network the viewers are other
//! machines) keeps every encoder running; each rung's frames are counted against what its
//! frame rate promises, with the encoder's own time per frame and the server's CPU.

use std::time::Duration;

use hdrhistogram::Histogram;
use streamsocket_proto::control::WishedRendition;
use streamsocket_tests::ServerProcess;

use crate::fanout::{light_viewer, Kind, LightRun, Seen};

fn quantiles_ms(values: &[u64]) -> anyhow::Result<[f64; 3]> {
    let mut h = Histogram::<u64>::new(3)?;
    for v in values {
        h.record((*v).max(1))?;
    }
    Ok([0.5, 0.95, 0.99].map(|q| h.value_at_quantile(q) as f64 / 1000.0))
}

/// Runs the server as shipped with `server_args`, watches each of its rungs with one light viewer for
/// `seconds`, and prints a table.
pub fn run(seconds: u64, server_args: &[String]) -> anyhow::Result<()> {
    let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    // As shipped: the ladder a user gets, unless the options choose another.
    let server = ServerProcess::start_as_shipped(&args)?;
    // The ladder is printed before the audio line.
    server.wait_for_stdout_line("audio:", Duration::from_secs(10));
    let rungs: Vec<String> = server
        .stdout()
        .into_iter()
        .filter(|l| l.starts_with("rendition "))
        .collect();
    anyhow::ensure!(!rungs.is_empty(), "the server printed no ladder");
    let light = LightRun::new(&server, 1, Kind::Native)?;
    let (dial, addr) = (light.dial.clone(), light.addr);
    let watch = Duration::from_secs(seconds);
    let seen: Vec<Seen> = light.runtime.block_on(async {
        let tasks: Vec<_> = (0..rungs.len())
            .map(|i| {
                let dial = dial.clone();
                tokio::spawn(light_viewer(
                    dial,
                    addr,
                    watch,
                    WishedRendition::Fixed(i as u8),
                ))
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap_or_default());
        }
        seen
    });
    let cpu = light.server_cpu_percent();
    let log = server.log();
    let source = log
        .lines()
        .rev()
        .find(|l| l.contains("video source:"))
        .and_then(|l| l.split("video source: ").nth(1))
        .unwrap_or("no slot skipped, no frame dropped for a busy encoder")
        .to_string();
    let lagged: u64 = log
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("frames_lagged="))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    drop(server);

    println!(
        "# Every rung encoded at once: one light viewer per rung for {seconds} s (server options: {server_args:?}, otherwise as shipped)"
    );
    println!();
    println!("| rung | size | frames received / expected | missing | capture to received p50 / p95 / p99 ms | encode p50 / p95 / p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (i, s) in seen.iter().enumerate() {
        let Some(r) = &s.rendition else {
            println!("| {} | viewer failed to join | | | | |", i + 1);
            continue;
        };
        let expected = seconds * r.fps as u64;
        let [l50, l95, l99] = quantiles_ms(&s.latency_us)?;
        let [e50, e95, e99] = quantiles_ms(&s.encode_us)?;
        println!(
            "| {} {} | {}x{} @ {} fps, {} kbit/s | {} / {} | {} | {l50:.1} / {l95:.1} / {l99:.1} | {e50:.1} / {e95:.1} / {e99:.1} |",
            r.id + 1,
            r.name,
            r.width,
            r.height,
            r.fps,
            r.bitrate_kbps,
            s.frames,
            expected,
            s.missing
        );
    }
    println!();
    println!(
        "- server CPU: {cpu:.0}% of one core (2 cores: 200%); video source: {source}; frames lagged in the hub: {lagged}"
    );
    Ok(())
}
