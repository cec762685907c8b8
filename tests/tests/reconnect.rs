//! The viewer reconnects by itself: the server crashes (no goodbye) and comes back on the
//! same address; the viewer notices, connects again with back-off, and streams again from
//! the new server, whose clock it measures afresh.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamsocket_tests::{bin, exclusive, num, wait_for_file, ServerProcess};

#[test]
fn the_viewer_reconnects_by_itself_when_the_server_comes_back() {
    let _machine = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let stats_path = dir.path().join("stats.json");
    let log_path = dir.path().join("viewer.log");
    let first = ServerProcess::start_with_certs(&certs, None, &[]).unwrap();
    let addr = first.addr.to_string();

    let mut viewer = Command::new(bin("streamsocket-client"))
        .arg(&addr)
        .args(["--headless", "--quality", "1", "--duration", "14", "--ca"])
        .arg(first.ca())
        .arg("--stats-json")
        .arg(&stats_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    // The viewer watches the first server...
    wait_for_file(&log_path, "first frame decoded", Duration::from_secs(15));
    // ...which crashes: killed, no goodbye. Another takes its address, with the same
    // certificates, as a supervisor restarting it would.
    drop(first);
    let second = ServerProcess::start_with_certs(&certs, None, &["--listen", &addr]).unwrap();
    // Well before the 10 s idle timeout: the restarted server's stateless reset (keyed by its
    // private key, so valid across restarts) tells the viewer at its first packet.
    wait_for_file(&log_path, "reconnected", Duration::from_secs(8));

    let started = Instant::now();
    let status = loop {
        if let Some(status) = viewer.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = viewer.kill();
            panic!("the viewer did not end after its --duration");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "viewer failed:\n{log}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    assert!(log.contains("connection lost"), "{log}");
    assert_eq!(num(&stats, "/connection/lost"), 1.0, "{stats:#}");
    assert_eq!(num(&stats, "/connection/reconnects"), 1.0, "{stats:#}");
    assert_eq!(stats["connection"]["reconnecting"], false, "{stats:#}");

    // The second server streamed to it: its session's frames were decoded too (the first
    // session decoded at least its first frame before the crash).
    let server_log = second.log();
    assert!(server_log.contains("viewer joined"), "{server_log}");
    let decoded = num(&stats, "/video/frames_decoded");
    assert!(decoded >= 30.0, "{decoded} frames decoded:\n{stats:#}");
    assert_eq!(num(&stats, "/video/decode_errors"), 0.0, "{stats:#}");
    assert!(num(&stats, "/audio/packets_decoded") > 0.0, "{stats:#}");
    // Latency stays plausible across servers: the new server's clock started afresh and
    // the viewer measured its offset again. A stale offset would add the time between the
    // two servers' starts (seconds) to every frame of the second session, most of the run.
    let p50 = num(&stats, "/video/latency_ms/p50");
    assert!(p50 < 1000.0, "latency p50 {p50} ms:\n{stats:#}");
    assert!(log.contains("reset by peer"), "{log}");
}
