//! Many viewers at once, each at the quality it asked for; switching mid-stream; encoders that
//! run only while watched; keyframe floods that cannot make everybody pay.

use std::time::Duration;

use streamsocket_proto::control::{ControlMessage, Hello, WishedRendition};
use streamsocket_proto::PROTOCOL_VERSION;
use streamsocket_tests::{
    assert_kept_watching, connect_raw, exclusive, num, spawn_viewer, ServerProcess,
};

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
        .map(|_| spawn_viewer(&server, &["--duration", "6", "--quality", "1"]))
        .collect();
    for (i, v) in viewers.into_iter().enumerate() {
        assert_kept_watching(&v.join().unwrap(), 6.0, &format!("viewer {i}"));
    }
    // One encoder served all eight.
    let log = server.log();
    assert_eq!(log.matches("encoder started").count(), 1, "{log}");
}

#[test]
fn renditions_have_their_sizes_and_a_switch_is_seamless() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let top = spawn_viewer(&server, &["--duration", "5", "--quality", "1"]);
    let low = spawn_viewer(&server, &["--duration", "5", "--quality", "3"]);
    let switching = spawn_viewer(
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
    // The lower rung is a scaled copy, and its pixels still carry each picture's capture
    // time (docs/PROTOCOL.md, "Test source").
    let (matched, decoded) = (
        num(low.stats(), "/video/pixel_clock/matched"),
        num(low.stats(), "/video/frames_decoded"),
    );
    assert!(
        matched >= decoded * 0.95,
        "{matched} of {decoded} lower-rung pictures carried their timestamp:\n{:#}",
        low.stats()
    );

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
    let first = spawn_viewer(&server, &["--duration", "2", "--quality", "2"]);
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

    let again = spawn_viewer(&server, &["--duration", "2", "--quality", "2"]);
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

async fn flooder(
    server: &ServerProcess,
) -> (quinn::Endpoint, quinn::Connection, quinn::SendStream) {
    let (endpoint, conn) = connect_raw(server).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = ControlMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        rendition: WishedRendition::Fixed(0),
        latency_target_ms: 300,
        client_name: "flooder".into(),
        token: Default::default(),
    });
    send.write_all(&hello.to_bytes()).await.unwrap();
    // Read (and drop) the server's answers so that its replies never stall.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
    });
    (endpoint, conn, send)
}

#[test]
fn a_keyframe_flood_does_not_raise_the_keyframe_rate_of_others() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let seconds = 6.0;
    let good = spawn_viewer(&server, &["--duration", "6", "--quality", "1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent = runtime.block_on(async {
        server
            .wait_for_log("viewer joined", Duration::from_secs(10))
            .await;
        let (_endpoint, conn, mut send) = flooder(&server).await;
        // Keyframe and quality requests just under the server's message limit: 45 keyframe
        // requests and 45 rendition switches a second, 440 in all (about 5 s; longer on a
        // busy machine, never faster: missed ticks are delayed, not bunched).
        let mut burst = Vec::new();
        ControlMessage::KeyframeRequest { rendition: 0 }.encode(&mut burst);
        let mut sent = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(22));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..220 {
            tick.tick().await;
            let mut msgs = burst.clone();
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed((sent / 2 % 2) as u8),
            }
            .encode(&mut msgs);
            send.write_all(&msgs).await.unwrap();
            sent += 2;
        }
        assert!(
            conn.close_reason().is_none(),
            "flooder below the limit was disconnected: {:?}",
            conn.close_reason()
        );
        conn.close(0u32.into(), b"done");
        sent
    });
    assert_eq!(sent, 440, "the whole flood was sent");
    let run = good.join().unwrap();
    assert_kept_watching(&run, seconds, "the good viewer");
    let s = run.stats();
    // Natural keyframes every 2 s, plus at most one forced every 500 ms.
    let keyframes = num(s, "/video/keyframes");
    let limit = seconds / 2.0 + seconds / 0.5 + 2.0;
    assert!(
        keyframes <= limit,
        "{keyframes} keyframes in {seconds} s (limit {limit}):\n{s:#}"
    );
}

#[test]
fn a_viewer_over_the_message_limit_is_disconnected() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_endpoint, conn, mut send) = flooder(&server).await;
        let mut flood = Vec::new();
        for _ in 0..2000 {
            ControlMessage::KeyframeRequest { rendition: 0 }.encode(&mut flood);
        }
        let _ = send.write_all(&flood).await;
        match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
                assert_eq!(
                    streamsocket_proto::ErrorCode::from_u16(c.error_code.into_inner() as u16),
                    streamsocket_proto::ErrorCode::RateLimited
                );
            }
            other => panic!("expected a RateLimited close, got {other:?}"),
        }
    });
    let mut server = server;
    assert!(server.is_running());
}
