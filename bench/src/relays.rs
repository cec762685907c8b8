//! Through Media over QUIC relays (issue 16): what each relay hop adds to capture-to-decoded
//! latency. One origin publishes into R1; R2 is clustered to R1 (it dials R1), so a viewer
//! on R2 is two hops from the origin. Three headless viewers watch the same rendition at
//! the same time, one directly, one through R1, one through R2: the same frames, the same
//! machine load, compared within each round. And a relay killed under a viewer: how long
//! the viewer is without pictures before it watches through the next relay.

use std::time::Duration;

use hdrhistogram::Histogram;
use streamsocket_tests::relay::{
    start_publishing, wait_publishing, RelayCerts, RelayOptions, RelayProcess,
};
use streamsocket_tests::{num, run_viewer, ServerProcess, ViewerProcess};

/// The paths measured, by relay hops.
const PATHS: [&str; 3] = ["direct (0 hops)", "R1 (1 hop)", "R2 (2 hops)"];

pub fn hops(seconds: u64, rounds: u32, quality: &str) -> anyhow::Result<()> {
    let certs = RelayCerts::new()?;
    let r1 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()))?;
    let r2 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()).connect_to(&r1))?;
    let ca = certs.ca();
    let r1_url = r1.url("live");
    let relay_ca = ca.to_string_lossy().into_owned();
    // A fresh origin each round: the three viewers then join as the rendition's encoder
    // starts (its first keyframe), not in the middle of a group, whose frames since its
    // keyframe a relay viewer would decode at once to catch up (a join transient, not
    // what a hop costs).
    // Each round's broadcast has a name of its own: a relay may still announce the last
    // round's for a moment after its origin stopped.
    let start_origin = |broadcast: &str| -> anyhow::Result<ServerProcess> {
        let server = start_publishing(&[r1_url.as_str()], &ca, &["--broadcast", broadcast])?;
        wait_publishing(&server, 1, Duration::from_secs(30));
        Ok(server)
    };
    println!(
        "capture to decoded, {quality} (--quality), {seconds} s per round, three viewers at once"
    );
    println!(
        "{:>5} {:<16} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "round", "path", "frames", "p50 ms", "p95 ms", "+p50 ms", "+p95 ms", "skipped", "late"
    );
    // Each round's difference from the direct viewer: [hops - 1][p50, p95].
    let mut added: [[Vec<f64>; 2]; 2] = Default::default();
    for round in 1..=rounds {
        let broadcast = format!("round{round}.hang");
        let server = start_origin(&broadcast)?;
        let paths: [(String, String); 3] = [
            (
                server.addr.to_string(),
                server.ca().to_string_lossy().into_owned(),
            ),
            (r1_url.to_string(), relay_ca.clone()),
            (r2.url("live").to_string(), relay_ca.clone()),
        ];
        let seconds_arg = seconds.to_string();
        let runs: Vec<_> = paths
            .iter()
            .map(|(target, ca)| {
                let (target, ca, seconds_arg, quality, broadcast) = (
                    target.clone(),
                    ca.clone(),
                    seconds_arg.clone(),
                    quality.to_string(),
                    broadcast.clone(),
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
                            "--broadcast",
                            &broadcast,
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
                added[i - 1][0].push(d50);
                added[i - 1][1].push(d95);
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
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!("over {rounds} rounds, median of each round's difference from the direct viewer:");
    for (i, [d50, d95]) in added.iter().enumerate() {
        println!(
            "  {:<16} p50 {:+.1} ms, p95 {:+.1} ms (per hop: p50 {:+.1} ms, p95 {:+.1} ms)",
            PATHS[i + 1],
            median(d50),
            median(d95),
            median(d50) / (i + 1) as f64,
            median(d95) / (i + 1) as f64
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
    let server = start_publishing(&[url1.as_str(), url2.as_str()], &ca, &[])?;
    let limit = Duration::from_secs(60);
    let publishing = |n: usize| wait_publishing(&server, n, limit);
    publishing(2);
    let ca = ca.to_string_lossy().into_owned();
    let timeout = relay_timeout_ms.to_string();
    let (first, second) = (url1.to_string(), url2.to_string());
    println!(
        "relay killed under a viewer (--relay-timeout {relay_timeout_ms}): longest gap between decoded frames"
    );
    println!(
        "{:>5} {:>12} {:>6} {:>10}",
        "round", "freeze ms", "lost", "reconnects"
    );
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

/// What one light subscriber saw.
#[derive(Default)]
struct Seen {
    connected: bool,
    frames: u64,
    /// Capture to received, on the catalog's (wall) clock.
    latency_us: Vec<u64>,
}

/// A light subscriber through a relay: a real moq-lite session (the viewer's own connect:
/// announcement, catalog, clock) that subscribes to one rendition's track and reads every
/// frame of it without decoding, for `watch`.
async fn light_subscriber(
    opts: streamsocket_client::RelayOptions,
    rendition: u8,
    watch: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let wish = streamsocket_proto::control::WishedRendition::Fixed(rendition);
    let Ok(session) = streamsocket_client::relay::connect(&opts, 0, wish).await else {
        return seen;
    };
    let Some(track) = session.listing.video_tracks.get(usize::from(rendition)) else {
        return seen;
    };
    let Ok(track) = session.broadcast.track(track) else {
        return seen;
    };
    let Ok(subscriber) = track.subscribe(None).await else {
        return seen;
    };
    seen.connected = true;
    let mut groups = subscriber.ordered();
    let until = tokio::time::Instant::now() + watch;
    let read = async {
        while let Ok(Some(mut group)) = groups.next_group().await {
            while let Ok(Some(frame)) = group.read_frame().await {
                seen.frames += 1;
                if let (Ok((pts, _)), Some(now)) = (
                    streamsocket_moq::media::decode_frame(frame.payload),
                    session.clock.now_us(),
                ) {
                    seen.latency_us.push(now.saturating_sub(pts).max(1));
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(until, read).await;
    session.link.conn.close(0u32.into(), b"done");
    seen
}

/// Light subscribers, `counts[i]` of them on `relays[i]`, all at once for `seconds`.
fn light_crowd(
    runtime: &tokio::runtime::Runtime,
    relays: &[&RelayProcess],
    counts: &[usize],
    ca: &std::path::Path,
    seconds: u64,
) -> Vec<Seen> {
    let watch = Duration::from_secs(seconds);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for (relay, &n) in relays.iter().zip(counts) {
            let opts = streamsocket_client::RelayOptions {
                urls: vec![relay.url("live").to_string()],
                broadcast: "streamsocket.hang".into(),
                token: None,
                trust: streamsocket_client::Trust::Ca(ca.to_path_buf()),
                timeout: Duration::from_secs(5),
            };
            for _ in 0..n {
                let opts = opts.clone();
                // The ladder's first rendition, as the `fanout` benchmark's viewers watch.
                tasks.push(tokio::spawn(light_subscriber(opts, 0, watch)));
            }
        }
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap_or_default());
        }
        seen
    })
}

/// Frames (min, median) and latency (p50, p95 ms) over a crowd.
fn crowd_figures(seen: &[Seen]) -> anyhow::Result<(u64, u64, f64, f64)> {
    let mut frames: Vec<u64> = seen.iter().map(|s| s.frames).collect();
    frames.sort_unstable();
    let mut latency = Histogram::<u64>::new(3)?;
    for s in seen {
        for l in &s.latency_us {
            latency.record(*l)?;
        }
    }
    Ok((
        frames.first().copied().unwrap_or(0),
        frames.get(frames.len() / 2).copied().unwrap_or(0),
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.95) as f64 / 1000.0,
    ))
}

/// Relay fan-out (issue 16): (1) the origin's CPU with one relay and one subscriber against
/// three clustered relays with `per_relay` subscribers each; (2) how many light subscribers
/// one relay process carries, next to one StreamSocket server with as many light viewers
/// of its own (the `fanout` benchmark's), at the same rendition. Everything shares the
/// machine, so compare ratios within the run.
pub fn fanout(
    per_relay: usize,
    capacity: &[usize],
    seconds: u64,
    server_args: &[String],
) -> anyhow::Result<()> {
    let certs = RelayCerts::new()?;
    let ca = certs.ca();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let start_origin = |r1: &RelayProcess| -> anyhow::Result<ServerProcess> {
        let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
        let server = start_publishing(&[r1.url("live").as_str()], &ca, &args)?;
        wait_publishing(&server, 1, Duration::from_secs(30));
        Ok(server)
    };
    let cpu = |pid: Option<u32>, f: &mut dyn FnMut()| -> f64 {
        let before = pid.and_then(crate::cpu_seconds);
        let started = std::time::Instant::now();
        f();
        match (before, pid.and_then(crate::cpu_seconds)) {
            (Some(a), Some(b)) => (b - a) / started.elapsed().as_secs_f64() * 100.0,
            _ => f64::NAN,
        }
    };

    println!(
        "origin CPU (percent of a core) while subscribers watch through relays, {seconds} s each"
    );
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "setup", "subs", "origin %", "frames min", "frames med", "p50 ms", "p95 ms"
    );
    // (1a) One relay, one subscriber.
    let r1 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()))?;
    let server = start_origin(&r1)?;
    let mut seen = Vec::new();
    let one = cpu(Some(server.pid()), &mut || {
        seen = light_crowd(&runtime, &[&r1], &[1], &ca, seconds);
    });
    let (min, med, p50, p95) = crowd_figures(&seen)?;
    println!(
        "{:<28} {:>6} {:>10.1} {:>10} {:>10} {:>8.1} {:>8.1}",
        "R1", 1, one, min, med, p50, p95
    );
    // (1b) Three relays, R2 and R3 clustered to R1, `per_relay` subscribers on each.
    let r2 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()).connect_to(&r1))?;
    let r3 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()).connect_to(&r1))?;
    let many = cpu(Some(server.pid()), &mut || {
        seen = light_crowd(
            &runtime,
            &[&r1, &r2, &r3],
            &[per_relay, per_relay, per_relay],
            &ca,
            seconds,
        );
    });
    let (min, med, p50, p95) = crowd_figures(&seen)?;
    let connected = seen.iter().filter(|s| s.connected).count();
    println!(
        "{:<28} {:>6} {:>10.1} {:>10} {:>10} {:>8.1} {:>8.1}",
        "R1 + R2 + R3 (R2, R3 -> R1)", connected, many, min, med, p50, p95
    );
    println!(
        "origin CPU ratio, 3 x {per_relay} subscribers : 1 subscriber = {:.2}",
        many / one
    );
    drop((server, r2, r3, r1));

    // (2) One relay against one server, at each count.
    println!();
    println!("one relay process vs one StreamSocket server, light viewers, {seconds} s each (expected frames {})", seconds * 30);
    println!(
        "{:<8} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "carrier", "subs", "CPU %", "frames min", "frames med", "p50 ms", "p95 ms"
    );
    for &n in capacity {
        let r1 = RelayProcess::start(RelayOptions::public().with_tls(certs.tls()))?;
        let server = start_origin(&r1)?;
        let relay_cpu = cpu(r1.pid(), &mut || {
            seen = light_crowd(&runtime, &[&r1], &[n], &ca, seconds);
        });
        let (min, med, p50, p95) = crowd_figures(&seen)?;
        let connected = seen.iter().filter(|s| s.connected).count();
        println!(
            "{:<8} {:>6} {:>9.1} {:>10} {:>10} {:>8.1} {:>8.1}",
            "relay", connected, relay_cpu, min, med, p50, p95
        );
        drop((server, r1));
        let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
        let direct = crate::fanout::run(
            n,
            crate::fanout::Kind::Native,
            seconds,
            Duration::ZERO,
            &args,
        )?;
        println!(
            "{:<8} {:>6} {:>9.1} {:>10} {:>10} {:>8.1} {:>8.1}",
            "server",
            direct.connected,
            direct.cpu_percent,
            direct.frames_min,
            direct.frames_median,
            direct.latency_p50_ms,
            direct.latency_p95_ms
        );
    }
    Ok(())
}
