//! The impairment relay in the path: a viewer connects through `streamsocket-netem` (5%
//! loss each way, 40 ms round trip) with the certificate still verified by name, keeps
//! watching, and counts what the network took.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use streamsocket_tests::{bin, exclusive, num, run_viewer, ServerProcess};

#[test]
fn a_viewer_behind_a_lossy_link_keeps_watching_and_counts_losses() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server starts");
    let mut relay = Command::new(bin("streamsocket-netem"))
        .args([
            "--to",
            &server.addr.to_string(),
            "--set",
            "delay=20ms,loss=5%",
            "--seed",
            "3",
            "--duration",
            "15",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay starts");
    let mut lines = BufReader::new(relay.stdout.take().expect("piped")).lines();
    let first = lines
        .next()
        .expect("relay prints its address")
        .expect("utf-8");
    let relay_addr = first
        .strip_prefix("relaying ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let run = run_viewer(
        &relay_addr,
        &[
            "--server-name",
            "localhost",
            "--ca",
            server.ca().to_str().unwrap(),
            "--headless",
            "--quality",
            "1",
            "--duration",
            "5",
        ],
        &[],
        Duration::from_secs(40),
    )
    .expect("viewer runs");
    let _ = relay.kill();
    let _ = relay.wait();
    assert!(run.output.status.success(), "{}", run.stderr());
    let s = run.stats();
    // It keeps watching: a good share of the frames decoded, none undecodable.
    let decoded = num(s, "/video/frames_decoded");
    assert!(decoded > 30.0, "{decoded} frames decoded:\n{s:#}");
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{s:#}");
    // Nothing lost silently: 5% of the audio datagrams are gone and counted as concealed.
    let concealed = num(s, "/audio/packets_concealed");
    assert!(concealed >= 1.0, "no audio loss counted:\n{s:#}");
    assert!(num(s, "/audio/packets_decoded") > 100.0, "{s:#}");
}
