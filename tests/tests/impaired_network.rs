//! The impairment relay in the path (`streamsocket-netem`), the certificate still verified by
//! name: a viewer behind a lossy link keeps watching and counts what the network took; after
//! an outage it comes back to live instead of replaying the backlog; automatic quality steps
//! down under a bandwidth cap.

use std::time::Duration;

use streamsocket_tests::{exclusive, num, run_viewer, Relay, ServerProcess};

/// A relay to `server` with `set` from the start and `schedule`.
fn relay(server: &ServerProcess, set: &str, schedule: &str) -> Relay {
    Relay::start(server.addr, set, schedule, 3).expect("relay starts")
}

/// A headless viewer through `addr` for `seconds`; `extra` options after the usual ones.
fn watch(server: &ServerProcess, addr: &str, seconds: u32, extra: &[&str]) -> serde_json::Value {
    let ca = server.ca();
    let duration = seconds.to_string();
    let mut args = vec![
        "--server-name",
        "localhost",
        "--ca",
        ca.to_str().unwrap(),
        "--headless",
        "--duration",
        &duration,
    ];
    args.extend(extra);
    let run = run_viewer(addr, &args, &[], Duration::from_secs(60)).expect("viewer runs");
    assert!(run.output.status.success(), "{}", run.stderr());
    run.stats().clone()
}

#[test]
fn a_viewer_behind_a_lossy_link_keeps_watching_and_counts_losses() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server starts");
    let relay = relay(&server, "delay=20ms,loss=5%", "");
    let stats = watch(&server, &relay.addr, 5, &["--quality", "1"]);
    let s = &stats;
    // It keeps watching: a good share of the frames decoded, none undecodable.
    let decoded = num(s, "/video/frames_decoded");
    assert!(decoded > 30.0, "{decoded} frames decoded:\n{s:#}");
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{s:#}");
    // Nothing lost silently: 5% of the audio datagrams are gone and counted as concealed.
    let concealed = num(s, "/audio/packets_concealed");
    assert!(concealed >= 1.0, "no audio loss counted:\n{s:#}");
    assert!(num(s, "/audio/packets_decoded") > 100.0, "{s:#}");
}

#[test]
fn after_an_outage_the_viewer_is_live_again_without_replaying_the_backlog() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server starts");
    // The same path without impairment first: the reference.
    let clean = watch(
        &server,
        &relay(&server, "", "").addr,
        4,
        &["--quality", "1"],
    );
    // A 2-second outage from 3 s to 5 s of a 10-second run.
    let outage = relay(&server, "", "3:down;5:up");
    let s = watch(&server, &outage.addr, 10, &["--quality", "1"]);
    // The outage was seen (the picture froze at least that long) ...
    let freeze = num(&s, "/video/longest_freeze_ms");
    assert!(
        freeze >= 1500.0,
        "no freeze of the outage's length: {freeze} ms\n{s:#}"
    );
    // ... and the stream came back: well over the 3 s before the outage were decoded.
    let decoded = num(&s, "/video/frames_decoded");
    assert!(
        decoded > 30.0 * 3.0 + 30.0,
        "{decoded} frames decoded:\n{s:#}"
    );
    assert_eq!(num(&s, "/video/decode_errors"), 0.0, "{s:#}");
    // Live, not replaying: most frames as fresh as on the clean path (the server's deadline
    // drops what the outage held back).
    let (p50, clean_p50) = (
        num(&s, "/video/latency_ms/p50"),
        num(&clean, "/video/latency_ms/p50"),
    );
    assert!(
        p50 <= clean_p50 + 100.0,
        "latency p50 {p50} ms after an outage, {clean_p50} ms clean:\n{s:#}"
    );
    // A replayed backlog (2 s of frames, a fifth of the run, each seconds old) would show in
    // the tail: p95 stays within the deadline's reach of the clean run.
    let (p95, clean_p95) = (
        num(&s, "/video/latency_ms/p95"),
        num(&clean, "/video/latency_ms/p95"),
    );
    assert!(
        p95 <= clean_p95 + 300.0,
        "latency p95 {p95} ms after an outage, {clean_p95} ms clean:\n{s:#}"
    );
    // Audio came back too, and its gap was concealed and counted rather than replayed.
    assert!(num(&s, "/audio/packets_decoded") > 50.0 * 5.0, "{s:#}");
}

#[test]
fn automatic_quality_steps_down_under_a_bandwidth_cap() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server starts");
    // The top rung is 800 kbit/s; the path carries 500.
    let capped = relay(&server, "rate=500kbit,queue=30kB", "");
    let s = watch(&server, &capped.addr, 10, &[]);
    assert!(num(&s, "/video/rendition_switches") >= 1.0, "{s:#}");
    let rendition = num(&s, "/rendition");
    assert!(
        rendition >= 1.0,
        "still on the top rung under the cap:\n{s:#}"
    );
    assert_eq!(num(&s, "/video/decode_errors"), 0.0, "{s:#}");
}
