//! A broken or hostile viewer loses its own connection, with an error code; a good viewer
//! watching at the same time keeps receiving.

use std::time::Duration;

use streamsocket_proto::control::{ControlMessage, Ping};
use streamsocket_proto::ErrorCode;
use streamsocket_tests::{
    assert_kept_watching, connect_raw, exclusive, num, proc_status, spawn_viewer, ServerProcess,
};

/// Sends `bytes` on a fresh control stream and returns the code the server closed with.
async fn close_code_after(server: &ServerProcess, bytes: &[u8], finish: bool) -> ErrorCode {
    let (_endpoint, conn) = connect_raw(server).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            ErrorCode::from_u16(c.error_code.into_inner() as u16)
        }
        other => panic!("expected the server to close the connection, got {other:?}"),
    }
}

#[test]
fn broken_viewers_are_disconnected_while_a_good_one_keeps_watching() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let good = spawn_viewer(&server, &["--duration", "7"]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The good viewer must be watching before the hostile ones arrive.
        server
            .wait_for_log("viewer joined", Duration::from_secs(10))
            .await;
        let garbage = [0, 0, 0, 3, 0x7f, 1, 2];
        assert_eq!(
            close_code_after(&server, &garbage, false).await,
            ErrorCode::MalformedMessage
        );
        let oversized = [0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            close_code_after(&server, &oversized, false).await,
            ErrorCode::MalformedMessage
        );
        let truncated = [0, 0, 0, 10, 0x01, 0x00];
        assert_eq!(
            close_code_after(&server, &truncated, true).await,
            ErrorCode::MalformedMessage
        );
        let future_version = [0, 0, 0, 3, 0x01, 0x00, 0x63];
        assert_eq!(
            close_code_after(&server, &future_version, false).await,
            ErrorCode::UnsupportedVersion
        );
        let ping_first = ControlMessage::Ping(Ping {
            seq: 1,
            client_time_us: 2,
        })
        .to_bytes();
        assert_eq!(
            close_code_after(&server, &ping_first, false).await,
            ErrorCode::UnexpectedMessage
        );
    });

    assert_kept_watching(&good.join().unwrap(), 7.0, "the good viewer");
    let mut server = server;
    assert!(server.is_running(), "server died:\n{}", server.log());
    let log = server.log();
    assert!(
        log.contains("malformed message") || log.contains("control stream"),
        "server logs why:\n{log}"
    );
}

/// A raw viewer that has said hello and read its welcome, for scripted misbehaviour.
async fn joined_raw(
    server: &ServerProcess,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    streamsocket_transport::ControlWriter,
    streamsocket_transport::ControlReader,
) {
    let (endpoint, conn) = connect_raw(server).await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut writer = streamsocket_transport::ControlWriter::new(send);
    let mut reader = streamsocket_transport::ControlReader::new(recv);
    let hello = ControlMessage::Hello(streamsocket_proto::control::Hello {
        version: streamsocket_proto::PROTOCOL_VERSION,
        rendition: streamsocket_proto::control::WishedRendition::Fixed(0),
        latency_target_ms: 0,
        client_name: "hostile".into(),
        token: Default::default(),
    });
    writer.send(&hello).await.unwrap();
    match reader.next().await {
        Ok(Some(ControlMessage::Welcome(_))) => {}
        other => panic!("expected a welcome, got {other:?}"),
    }
    (endpoint, conn, writer, reader)
}

/// Sends the first flight of a QUIC handshake to `server` from a new UDP socket, and never
/// answers: the socket is returned so that its port stays taken (and quiet).
fn abandoned_handshake(
    server: std::net::SocketAddr,
    config: quinn::ClientConfig,
) -> std::net::UdpSocket {
    let mut endpoint = quinn_proto::Endpoint::new(
        std::sync::Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = std::time::Instant::now();
    let (_, mut conn) = endpoint.connect(now, config, server, "localhost").unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = Vec::new();
    while let Some(transmit) = conn.poll_transmit(now, 1, &mut buf) {
        socket
            .send_to(&buf[..transmit.size], transmit.destination)
            .unwrap();
        buf.clear();
    }
    socket
}

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:").expect("VmRSS")
}

#[test]
fn floods_deaf_viewers_and_abandoned_handshakes_do_not_reach_a_good_viewer() {
    let _machine = exclusive();
    let server = ServerProcess::start(&["--max-viewers", "8"]).unwrap();
    let good = spawn_viewer(&server, &["--duration", "16", "--quality", "1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server
            .wait_for_log("viewer joined", Duration::from_secs(10))
            .await;

        // A viewer that never reads: it accepts no frame stream and no datagram. QUIC's flow
        // control holds the server back, the deadlines reset what it cannot send, and the
        // server's memory does not grow with it.
        // The encoder's memory grows for its first seconds (12 to 60 MB here); measure from
        // its first status report, when it runs steadily.
        server
            .wait_for_log("encoder status", Duration::from_secs(15))
            .await;
        let (_deaf_endpoint, deaf, _deaf_send, _deaf_reader) = joined_raw(&server).await;
        let before = rss_kib(server.pid());

        // Viewers that send datagrams and open streams towards the server: the server ignores
        // the datagrams and ends a session that opens a unidirectional stream or a second
        // bidirectional one (flow control grants a few: a browser's HTTP/3 needs them).
        for second_bidi in [false, true] {
            let (_e, pushy, _s, _r) = joined_raw(&server).await;
            for _ in 0..100 {
                let _ = pushy.send_datagram(vec![0x41; 1000].into());
            }
            if second_bidi {
                let (mut send, _recv) = pushy.open_bi().await.unwrap();
                send.write_all(b"x").await.unwrap();
            } else {
                let mut send = pushy.open_uni().await.unwrap();
                send.write_all(b"x").await.unwrap();
            }
            match tokio::time::timeout(Duration::from_secs(10), pushy.closed()).await {
                Ok(quinn::ConnectionError::ApplicationClosed(c)) => assert_eq!(
                    ErrorCode::from_u16(c.error_code.into_inner() as u16),
                    ErrorCode::UnexpectedMessage,
                    "{:?}",
                    c.reason
                ),
                other => panic!("expected UnexpectedMessage, got {other:?}"),
            }
        }

        // A flood of keyframe requests: the server closes that viewer for it.
        let (_e, flooder, mut writer, _r) = joined_raw(&server).await;
        for _ in 0..1000 {
            if writer
                .send(&ControlMessage::KeyframeRequest { rendition: 0 })
                .await
                .is_err()
            {
                break;
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), flooder.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(c)) => assert_eq!(
                ErrorCode::from_u16(c.error_code.into_inner() as u16),
                ErrorCode::RateLimited
            ),
            other => panic!("expected RateLimited, got {other:?}"),
        }

        // Handshakes started and abandoned, many more than the server admits viewers: each
        // from its own port, the client's first flight and then silence (a viewer that
        // vanished mid-handshake, or a forged address).
        let (config, _) =
            streamsocket_client::client_config(streamsocket_client::Trust::Ca(server.ca()), None)
                .unwrap();
        let _silent: Vec<std::net::UdpSocket> = (0..150)
            .map(|_| abandoned_handshake(server.addr, config.clone()))
            .collect();

        // A newcomer still gets in at once: beyond a few, the abandoned handshakes cost the
        // server a stateless Retry each, not one of its 8 + 64 places.
        let (_e, newcomer, _s, _r) = joined_raw(&server).await;
        assert!(newcomer.close_reason().is_none());
        server
            .wait_for_log("QUIC Retry", Duration::from_secs(10))
            .await;

        // Five seconds of exposure to the deaf viewer (and the abandoned handshakes): the
        // server's memory has not grown with what the deaf viewer did not read.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = rss_kib(server.pid());
        assert!(
            after < before + 16 * 1024,
            "server memory grew from {before} KiB to {after} KiB"
        );
        drop(deaf);
    });

    // Through all of it the good viewer kept watching, and the flood did not make it pay
    // for keyframes: forced ones come at most every 500 ms per rendition.
    let run = good.join().unwrap();
    assert_kept_watching(&run, 16.0, "the good viewer");
    let keyframes = num(run.stats(), "/video/keyframes");
    assert!(
        keyframes <= 16.0 / 0.5 + 2.0,
        "{keyframes} keyframes in 16 s"
    );
    let mut server = server;
    assert!(server.is_running(), "server died:\n{}", server.log());
}

/// A client that offers another application protocol (HTTP/0.9 over QUIC, say) is refused in
/// the handshake, as docs/PROTOCOL.md says: a QUIC CONNECTION_CLOSE with the crypto error for
/// TLS's `no_application_protocol` alert (0x100 + 120), before any stream exists.
#[test]
fn a_handshake_offering_another_protocol_is_refused() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (config, _) = streamsocket_client::client_config_with_alpn(
            streamsocket_client::Trust::Ca(server.ca()),
            None,
            b"hq-interop",
        )
        .unwrap();
        let endpoint =
            streamsocket_transport::endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let refused = endpoint
            .connect_with(config, server.addr, "localhost")
            .unwrap()
            .await;
        match refused {
            Err(quinn::ConnectionError::ConnectionClosed(c)) => {
                assert_eq!(
                    u64::from(c.error_code),
                    0x100 + 120,
                    "no_application_protocol: {c:?}"
                );
            }
            other => panic!("expected a refused handshake, got {other:?}"),
        }
    });
    // The server is still there for everybody else.
    let run = streamsocket_tests::run_viewer(
        &server.addr.to_string(),
        &[
            "--headless",
            "--duration",
            "1",
            "--ca",
            server.ca().to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(run.output.status.success(), "{}", run.stderr());
    assert!(num(run.stats(), "/video/frames_decoded") >= 1.0);
}
