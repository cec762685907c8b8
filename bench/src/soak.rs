//! `streamsocket-bench soak`: viewers join and leave at random against one release server for
//! many minutes. Every interval it samples the server's memory (VmRSS), threads and open
//! file descriptors, and the latency of the viewers that ended in that interval, so growth
//! shows as a trend over the run. Each viewer is a real headless `streamsocket-client`.

use std::time::{Duration, Instant};

use streamsocket_tests::{num, proc_status, run_viewer, ServerProcess};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A seeded random sequence, so runs are repeatable.
struct Rng(rand_chacha::ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(rand::SeedableRng::seed_from_u64(seed))
    }

    fn below(&mut self, n: u64) -> u64 {
        rand::Rng::random_range(&mut self.0, 0..n.max(1))
    }
}

/// What the viewers that ended in one interval saw.
#[derive(Default)]
struct Interval {
    ended: u32,
    failed: u32,
    p95_ms: Vec<f64>,
}

pub fn run(minutes: u64, max_viewers: usize, sample_s: u64) -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let pid = server.pid();
    let addr = server.addr.to_string();
    let ca = server.ca().display().to_string();
    let (tx, rx) = std::sync::mpsc::channel::<(bool, Option<f64>)>();
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut rng = Rng::new(0x5eed_1234_abcd_0001);
    let mut running = 0usize;
    let mut next_sample = started + Duration::from_secs(sample_s);
    let mut interval = Interval::default();
    let (mut joined, mut ended_total, mut failed_total) = (0u64, 0u64, 0u64);

    println!("# Soak: {minutes} min, up to {max_viewers} viewers joining and leaving at random (each watches 3-30 s, a random rendition or automatic), one release server, 2 cores");
    println!();
    println!("| at s | viewers | joined so far | server RSS MiB | threads | open fds | viewers ended in interval (failed) | their latency p95 ms, median / worst |");
    println!("|---|---|---|---|---|---|---|---|");
    while Instant::now() < end {
        // Keep between half and all of the maximum watching; arrivals at random moments.
        while running < max_viewers && (running < max_viewers / 2 || rng.below(4) == 0) {
            let seconds = 3 + rng.below(28);
            let quality = match rng.below(4) {
                0 => None,
                n => Some(n.to_string()),
            };
            let (addr, ca, tx) = (addr.clone(), ca.clone(), tx.clone());
            std::thread::spawn(move || {
                let duration = seconds.to_string();
                let mut args = vec!["--headless", "--ca", &ca, "--duration", &duration];
                if let Some(q) = &quality {
                    args.extend(["--quality", q]);
                }
                let outcome = run_viewer(&addr, &args, &[], Duration::from_secs(seconds + 30));
                let report = match outcome {
                    Ok(run) if run.output.status.success() => (
                        true,
                        run.stats
                            .as_ref()
                            .map(|s| num(s, "/video/latency_ms/p95"))
                            .filter(|p| p.is_finite()),
                    ),
                    _ => (false, None),
                };
                let _ = tx.send(report);
            });
            running += 1;
            joined += 1;
        }
        while let Ok((ok, p95)) = rx.recv_timeout(Duration::from_millis(200)) {
            running -= 1;
            interval.ended += 1;
            ended_total += 1;
            if !ok {
                interval.failed += 1;
                failed_total += 1;
            }
            interval.p95_ms.extend(p95);
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(sample_s);
            let mut p95 = std::mem::take(&mut interval.p95_ms);
            p95.sort_by(f64::total_cmp);
            let latency = match (p95.get(p95.len() / 2), p95.last()) {
                (Some(m), Some(w)) => format!("{m:.0} / {w:.0}"),
                _ => "-".into(),
            };
            println!(
                "| {} | {running} | {joined} | {:.1} | {} | {} | {} ({}) | {latency} |",
                started.elapsed().as_secs(),
                proc_status(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
                proc_status(pid, "Threads:").unwrap_or(0),
                open_fds(pid),
                interval.ended,
                interval.failed,
            );
            interval = Interval::default();
        }
    }
    // Let the last viewers finish, then the server's state with nobody watching.
    while running > 0 {
        if let Ok((ok, _)) = rx.recv_timeout(Duration::from_secs(60)) {
            running -= 1;
            ended_total += 1;
            if !ok {
                failed_total += 1;
            }
        } else {
            break;
        }
    }
    let mut server = server;
    println!();
    println!(
        "{joined} viewers joined, {ended_total} ended, {failed_total} failed; server alive at the end: {}; with nobody watching: RSS {:.1} MiB, {} threads, {} open fds",
        server.is_running(),
        proc_status(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
        proc_status(pid, "Threads:").unwrap_or(0),
        open_fds(pid),
    );
    let log = server.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .collect();
    println!("server errors logged: {}", errors.len());
    for e in errors.iter().take(5) {
        println!("  {e}");
    }
    Ok(())
}
