//! Through Media over QUIC relays (issue 16): what each relay hop adds to capture-to-decoded
//! latency. One origin publishes into R1; R2 is clustered to R1 (it dials R1), so a viewer
//! on R2 is two hops from the origin. Three headless viewers watch the same rendition at
//! the same time, one directly, one through R1, one through R2: the same frames, the same
//! machine load, compared within each round. And a relay killed under a viewer: how long
//! the viewer is without pictures before it watches through the next relay.

use std::time::Duration;

use hdrhistogram::Histogram;
use streamsocket_tests::relay::{RelayCerts, RelayOptions, RelayProcess};
use streamsocket_tests::{num, run_viewer, ServerProcess, ViewerProcess};

/// The paths measured, by relay hops.
const PATHS: [&str; 3] = ["direct (0 hops)", "R1 (1 hop)", "R2 (2 hops)"];

pub fn hops(seconds: u64, rounds: u32, quality: &str) -> anyhow::Result<()> {
    let certs = RelayCerts::new()?;
    let r1 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()))?;
    let r2 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()).connect_to(&r1))?;
    let ca = certs.ca();
    let r1_url = r1.url("live");
    let server = ServerProcess::start(&[
        "--publish",
        r1_url.as_str(),
        "--publish-ca",
        ca.to_str().expect("a UTF-8 path"),
    ])?;
    server.wait_for_log_where("publishing", Duration::from_secs(30), |log| {
        log.contains("publishing to the relay")
    });
    let relay_ca = ca.to_string_lossy().into_owned();
    let server_ca = server.ca().to_string_lossy().into_owned();
    let direct = server.addr.to_string();
    let paths: [(String, String); 3] = [
        (direct, server_ca),
        (r1_url.to_string(), relay_ca.clone()),
        (r2.url("live").to_string(), relay_ca),
    ];
    println!(
        "capture to decoded, {quality} (--quality), {seconds} s per round, three viewers at once"
    );
    println!(
        "{:>5} {:<16} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "round", "path", "frames", "p50 ms", "p95 ms", "+p50 ms", "+p95 ms", "skipped", "late"
    );
    let mut added: Vec<[Histogram<u64>; 2]> = (0..2)
        .map(|_| {
            [
                Histogram::new(3).expect("a histogram"),
                Histogram::new(3).expect("a histogram"),
            ]
        })
        .collect();
    for round in 1..=rounds {
        let seconds_arg = seconds.to_string();
        let runs: Vec<_> = paths
            .iter()
            .map(|(target, ca)| {
                let (target, ca, seconds_arg, quality) = (
                    target.clone(),
                    ca.clone(),
                    seconds_arg.clone(),
                    quality.to_string(),
                );
                std::thread::spawn(move || {
                    run_viewer(
                        &target,
                        &[
                            "--headless",
                            "--ca",
                            &ca,
                            "--quality",
                            &quality,
                            "--duration",
                            &seconds_arg,
                        ],
                        &[],
                        Duration::from_secs(seconds + 60),
                    )
                })
            })
            .collect();
        let mut figures = Vec::new();
        for (i, run) in runs.into_iter().enumerate() {
            let run = run.join().expect("viewer thread")?;
            anyhow::ensure!(
                run.output.status.success(),
                "the viewer on {} failed:\n{}",
                PATHS[i],
                run.stderr()
            );
            let s = run.stats();
            figures.push((
                num(s, "/video/frames_decoded"),
                num(s, "/video/latency_ms/p50"),
                num(s, "/video/latency_ms/p95"),
                num(s, "/video/frames_skipped"),
                num(s, "/video/frames_late"),
            ));
        }
        let (_, base50, base95, _, _) = figures[0];
        for (i, (frames, p50, p95, skipped, late)) in figures.iter().enumerate() {
            let (d50, d95) = (p50 - base50, p95 - base95);
            if i > 0 {
                // Histograms of microseconds, shifted so that negative differences fit.
                let shift = |ms: f64| ((ms + 1_000.0) * 1000.0).max(0.0) as u64;
                added[i - 1][0].record(shift(d50))?;
                added[i - 1][1].record(shift(d95))?;
            }
            println!(
                "{:>5} {:<16} {:>8} {:>8.1} {:>8.1} {:>9} {:>9} {:>7} {:>7}",
                round,
                PATHS[i],
                frames,
                p50,
                p95,
                if i == 0 {
                    "-".into()
                } else {
                    format!("{d50:+.1}")
                },
                if i == 0 {
                    "-".into()
                } else {
                    format!("{d95:+.1}")
                },
                skipped,
                late
            );
        }
    }
    let unshift = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0 - 1_000.0;
    println!("over {rounds} rounds, median of each round's difference from the direct viewer:");
    for (i, [d50, d95]) in added.iter().enumerate() {
        println!(
            "  {:<16} p50 {:+.1} ms, p95 {:+.1} ms (per hop: p95 {:+.1} ms)",
            PATHS[i + 1],
            unshift(d50, 0.5),
            unshift(d95, 0.5),
            unshift(d95, 0.5) / (i + 1) as f64
        );
    }
    Ok(())
}

/// A relay killed under a viewer (issue 16's failover target): the viewer watches through R1
/// with R2 as its next URL; R1 is killed (SIGKILL: no goodbye, only silence) and the viewer's
/// longest gap between decoded frames is the time it was not watching. The origin publishes
/// into both relays; R1 comes back on the same port between rounds.
pub fn failover(rounds: u32, relay_timeout_ms: u64) -> anyhow::Result<()> {
    let certs = RelayCerts::new()?;
    let mut r1 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()))?;
    let r2 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()))?;
    let ca = certs.ca();
    let (url1, url2) = (r1.url("live"), r2.url("live"));
    let server = ServerProcess::start(&[
        "--publish",
        url1.as_str(),
        "--publish",
        url2.as_str(),
        "--publish-ca",
        ca.to_str().expect("a UTF-8 path"),
    ])?;
    let limit = Duration::from_secs(60);
    let publishing = |n: usize| {
        server.wait_for_log_where("publishing", limit, |log| {
            log.matches("publishing to the relay").count() >= n
        })
    };
    publishing(2);
    let ca = ca.to_string_lossy().into_owned();
    let timeout = relay_timeout_ms.to_string();
    let (first, second) = (url1.to_string(), url2.to_string());
    println!(
        "relay killed under a viewer (--relay-timeout {relay_timeout_ms}): longest gap between decoded frames"
    );
    println!("{:>5} {:>12} {:>6} {:>10}", "round", "freeze ms", "lost", "reconnects");
    let mut freezes = Histogram::<u64>::new(3)?;
    for round in 1..=rounds {
        let viewer = ViewerProcess::start(&[
            first.as_str(),
            second.as_str(),
            "--headless",
            "--ca",
            ca.as_str(),
            "--quality",
            "180p",
            "--relay-timeout",
            timeout.as_str(),
            "--duration",
            "5",
        ])?;
        viewer.wait_for_stderr("first frame decoded", limit);
        // Watching for a while before the kill (a bench, not a test: any moment will do).
        std::thread::sleep(Duration::from_millis(1500));
        r1.kill();
        let run = viewer.finish(limit)?;
        anyhow::ensure!(
            run.output.status.success(),
            "the viewer failed:\n{}",
            run.stderr()
        );
        let s = run.stats();
        let freeze = num(s, "/video/longest_freeze_ms");
        freezes.record((freeze * 1000.0) as u64)?;
        println!(
            "{:>5} {:>12.1} {:>6} {:>10}",
            round,
            freeze,
            num(s, "/connection/lost"),
            num(s, "/connection/reconnects")
        );
        // R1 back, and the origin publishing into it again, for the next round.
        r1.restart()?;
        publishing(2 + round as usize);
    }
    let q = |q: f64| freezes.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "freeze over {rounds} rounds: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        q(0.5),
        q(0.95),
        q(1.0)
    );
    Ok(())
}
