//! Many viewers at once, each at the quality it asked for; switching mid-stream; encoders that
//! run only while watched; keyframe floods that cannot make everybody pay.

use std::time::Duration;

use streamsocket_client::tls::{client_config, Trust};
use streamsocket_proto::control::{ControlMessage, Hello, WishedRendition};
use streamsocket_proto::PROTOCOL_VERSION;
use streamsocket_tests::{exclusive, num, run_viewer, ServerProcess, ViewerRun};

fn viewer_thread(server: &ServerProcess, args: &[&str]) -> std::thread::JoinHandle<ViewerRun> {
    let addr = server.addr.to_string();
    let mut all: Vec<String> = vec![
        "--headless".into(),
        "--ca".into(),
        server.ca().to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    std::thread::spawn(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        run_viewer(&addr, &args, &[], Duration::from_secs(60)).unwrap()
    })
}

fn sizes(stats: &serde_json::Value) -> Vec<String> {
    stats["video"]["frames_by_size"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn eight_viewers_at_once_each_decode_nearly_every_frame() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let viewers: Vec<_> = (0..8)
        .map(|_| viewer_thread(&server, &["--duration", "6", "--quality", "1"]))
        .collect();
    for (i, v) in viewers.into_iter().enumerate() {
        let run = v.join().unwrap();
        assert!(
            run.output.status.success(),
            "viewer {i} failed:\n{}",
            run.stderr()
        );
        let s = run.stats();
        let received = num(s, "/video/frames_received");
        let decoded = num(s, "/video/frames_decoded");
        assert!(
            received >= 30.0 * 5.0 * 0.5,
            "viewer {i}: only {received} frames\n{s:#}"
        );
        assert!(
            decoded >= received - 2.0,
            "viewer {i}: {decoded} of {received} decoded"
        );
        assert_eq!(num(s, "/video/decode_errors"), 0.0);
        assert!(
            num(s, "/audio/packets_decoded") >= 50.0 * 5.0 * 0.5,
            "viewer {i} audio\n{s:#}"
        );
    }
    // One encoder served all eight.
    let log = server.log();
    assert_eq!(log.matches("encoder started").count(), 1, "{log}");
}

#[test]
fn renditions_have_their_sizes_and_a_switch_is_seamless() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let top = viewer_thread(&server, &["--duration", "5", "--quality", "1"]);
    let low = viewer_thread(&server, &["--duration", "5", "--quality", "3"]);
    let switching = viewer_thread(
        &server,
        &[
            "--duration",
            "7",
            "--quality",
            "1",
            "--script",
            "3:quality=3",
        ],
    );

    let top = top.join().unwrap();
    assert!(top.output.status.success(), "{}", top.stderr());
    assert_eq!(sizes(top.stats()), vec!["640x360"], "{:#}", top.stats());
    let low = low.join().unwrap();
    assert!(low.output.status.success(), "{}", low.stderr());
    assert_eq!(sizes(low.stats()), vec!["320x180"], "{:#}", low.stats());

    let sw = switching.join().unwrap();
    assert!(sw.output.status.success(), "{}", sw.stderr());
    let s = sw.stats();
    assert_eq!(
        sizes(s),
        vec!["320x180", "640x360"],
        "decoded both sizes:\n{s:#}"
    );
    assert_eq!(num(s, "/video/rendition_switches"), 1.0);
    assert_eq!(
        num(s, "/video/decode_errors"),
        0.0,
        "nothing undecodable:\n{s:#}"
    );
    assert_eq!(
        num(s, "/video/frames_skipped"),
        0.0,
        "the old rendition played until the new one was decodable:\n{s:#}"
    );
    assert!(num(s, "/video/frames_by_size/320x180") >= 30.0, "{s:#}");
    assert_eq!(num(s, "/rendition"), 2.0);
    assert!(num(s, "/video/switch_ms/count") == 1.0);
}

#[test]
fn an_encoder_runs_only_while_watched() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let first = viewer_thread(&server, &["--duration", "2", "--quality", "2"]);
    runtime.block_on(server.wait_for_log(
        "encoder started (first viewer) rendition=240p",
        Duration::from_secs(10),
    ));
    assert!(first.join().unwrap().output.status.success());
    runtime.block_on(server.wait_for_log(
        "encoder stopped (last viewer left) rendition=240p",
        Duration::from_secs(10),
    ));
    let log = server.log();
    assert!(
        !log.contains("rendition=360p"),
        "nobody watched 360p:\n{log}"
    );

    let again = viewer_thread(&server, &["--duration", "2", "--quality", "2"]);
    let run = again.join().unwrap();
    assert!(run.output.status.success(), "{}", run.stderr());
    assert!(num(run.stats(), "/video/frames_decoded") > 10.0);
    let log = server.log();
    assert_eq!(
        log.matches("encoder started (first viewer) rendition=240p")
            .count(),
        2,
        "{log}"
    );
}

#[test]
fn a_keyframe_flood_does_not_raise_the_keyframe_rate_of_others() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let seconds = 6.0;
    let good = viewer_thread(&server, &["--duration", "6", "--quality", "1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent = runtime.block_on(async {
        server
            .wait_for_log("viewer joined", Duration::from_secs(10))
            .await;
        let (config, _) = client_config(Trust::Ca(server.ca())).unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(config, server.addr, "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let hello = ControlMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            rendition: WishedRendition::Fixed(0),
            latency_target_ms: 300,
            client_name: "flooder".into(),
        });
        send.write_all(&hello.to_bytes()).await.unwrap();
        // Read (and drop) the server's answers so that its replies never stall the flood.
        tokio::spawn(async move {
            let mut recv = recv;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(Some(_)) = recv.read(&mut buf).await {}
        });
        // Keyframe and quality requests as fast as the stream takes them, for 5 s.
        let mut burst = Vec::new();
        for i in 0..50u8 {
            ControlMessage::KeyframeRequest { rendition: 0 }.encode(&mut burst);
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed(i % 2),
            }
            .encode(&mut burst);
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut sent = 0;
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout_at(until, send.write_all(&burst)).await {
                Ok(Ok(())) => sent += 100,
                Ok(Err(e)) => panic!("the server dropped the flooder early: {e}"),
                Err(_) => break,
            }
        }
        conn.close(0u32.into(), b"done");
        sent
    });
    assert!(sent > 1000, "the flood sent only {sent} requests");
    let run = good.join().unwrap();
    assert!(run.output.status.success(), "{}", run.stderr());
    let s = run.stats();
    // Natural keyframes every 2 s, plus at most one forced every 500 ms.
    let keyframes = num(s, "/video/keyframes");
    let limit = seconds / 2.0 + seconds / 0.5 + 2.0;
    assert!(
        keyframes <= limit,
        "{keyframes} keyframes in {seconds} s (limit {limit}):\n{s:#}"
    );
    assert!(
        num(s, "/video/frames_decoded") >= 30.0 * 5.0 * 0.5,
        "the good viewer kept watching:\n{s:#}"
    );
}
