//! The WebTransport binding, spoken from Rust as a browser would (HTTP/3, the CONNECT
//! request with an Origin, the certificate accepted by the hash from `/session.json`), and
//! the page server: a web viewer gets the same stream and the same rules as a native one.
//! The page itself, in a real Chromium, is `browser.rs`.

use std::time::Duration;

use streamsocket_proto::control::{ControlMessage, Hello, WishedRendition};
use streamsocket_proto::media::FrameHeader;
use streamsocket_proto::{ErrorCode, PROTOCOL_VERSION};
use streamsocket_tests::web::{connect_web, https_get, https_request, WebSession};
use streamsocket_tests::{assert_kept_watching, exclusive, spawn_viewer, ServerProcess};
use streamsocket_transport::{ControlReader, ControlWriter};
use web_transport_quinn::{RecvStream, SendStream, Session, SessionError, WebTransportError};

type Control = (ControlWriter<SendStream>, ControlReader<RecvStream>);

fn hello(rendition: WishedRendition, token: &str) -> ControlMessage {
    ControlMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        rendition,
        latency_target_ms: 0,
        client_name: "web test".into(),
        token: streamsocket_proto::control::AccessToken::new(token),
    })
}

async fn control(session: &Session) -> Control {
    let (send, recv) = session.open_bi().await.expect("a control stream");
    (ControlWriter::new(send), ControlReader::new(recv))
}

/// Opens the control stream, says hello and returns it once welcomed.
async fn joined(session: &Session, rendition: WishedRendition, token: &str) -> Control {
    let (mut writer, mut reader) = control(session).await;
    writer.send(&hello(rendition, token)).await.unwrap();
    match next(&mut reader).await {
        ControlMessage::Welcome(_) => (writer, reader),
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

/// The next message, within 10 s.
async fn next(reader: &mut ControlReader<RecvStream>) -> ControlMessage {
    tokio::time::timeout(Duration::from_secs(10), reader.next())
        .await
        .expect("a message within 10 s")
        .expect("a readable control stream")
        .expect("a message, not the end")
}

/// The code and reason the server closed the session with.
async fn closed(session: &Session) -> (u32, String) {
    match tokio::time::timeout(Duration::from_secs(10), session.closed()).await {
        Ok(SessionError::WebTransportError(WebTransportError::Closed(code, reason))) => {
            (code, reason)
        }
        other => panic!("expected a WebTransport close, got {other:?}"),
    }
}

/// Says hello and expects a refusal: `Error(expected)` on the control stream, then the
/// session closed with the same code.
async fn refused(session: &Session, expected: ErrorCode) {
    let (mut writer, mut reader) = control(session).await;
    writer
        .send(&hello(WishedRendition::Auto, ""))
        .await
        .unwrap();
    match next(&mut reader).await {
        ControlMessage::Error { code, message } => assert_eq!(code, expected, "{message}"),
        other => panic!("expected Error({expected:?}), got {other:?}"),
    }
    let (code, reason) = closed(session).await;
    assert_eq!(code, u32::from(expected.to_u16()), "{reason}");
}

/// A frame from its stream: the header and the payload's length.
async fn read_frame(mut recv: RecvStream) -> Option<(FrameHeader, usize)> {
    let bytes = recv.read_to_end(4 << 20).await.ok()?;
    let header = FrameHeader::decode(&bytes).ok()?;
    let payload = bytes.len() - bytes[1] as usize;
    Some((header, payload))
}

#[test]
fn a_web_viewer_gets_the_stream_and_switches_like_a_native_one() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_endpoint, session) = connect_web(&server, &WebSession::own_page(&server))
            .await
            .unwrap();
        let (mut writer, mut reader) = control(&session).await;
        writer
            .send(&hello(WishedRendition::Fixed(2), ""))
            .await
            .unwrap();
        let ControlMessage::Welcome(welcome) = next(&mut reader).await else {
            panic!("no welcome")
        };
        assert_eq!(welcome.rendition, 2);
        assert_eq!(welcome.video.renditions.len(), 3);

        // Audio datagrams, counted on the side.
        let datagrams = session.clone();
        let audio = tokio::spawn(async move {
            let mut n = 0u32;
            while let Ok(d) = datagrams.read_datagram().await {
                assert_eq!(d[0], 0x41, "an audio datagram");
                n += 1;
            }
            n
        });

        // Frames of rendition 2, with no gap, starting with a keyframe; then a switch to 1.
        let mut seqs = Vec::new();
        let mut first_keyframe = None;
        while seqs.len() < 30 {
            let recv = tokio::time::timeout(Duration::from_secs(10), session.accept_uni())
                .await
                .expect("a frame within 10 s")
                .expect("a frame stream");
            let (header, payload) = read_frame(recv).await.expect("a whole frame");
            assert_eq!(header.rendition, 2);
            assert_eq!(payload, header.payload_len as usize);
            first_keyframe.get_or_insert(header.keyframe);
            seqs.push(header.seq);
        }
        seqs.sort_unstable();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "frames missing: {seqs:?}"
        );
        writer
            .send(&ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed(1),
            })
            .await
            .unwrap();
        loop {
            match next(&mut reader).await {
                ControlMessage::RenditionChanged { rendition: 1, .. } => break,
                ControlMessage::Pong(_) | ControlMessage::BroadcastPaused { .. } => {}
                other => panic!("expected RenditionChanged, got {other:?}"),
            }
        }
        let switched = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let recv = session.accept_uni().await.expect("a frame stream");
                if let Some((h, _)) = read_frame(recv).await {
                    if h.rendition == 1 {
                        return h;
                    }
                }
            }
        })
        .await
        .expect("a frame of the new rendition within 10 s");
        assert!(switched.keyframe, "a switch starts on a keyframe");

        session.close(0, b"done");
        let audio = audio.await.unwrap();
        assert!(audio >= 10, "{audio} audio datagrams");
    });
    assert!(server.log().contains("kind=\"web\""), "{}", server.log());
}

#[test]
fn origins_paths_and_tokens_are_checked_for_web_viewers() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[
        "--token",
        "secret",
        "--allow-origin",
        "https://other.example",
    ])
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let own = WebSession::own_page(&server);
        // Another site's page: refused before a session exists.
        let foreign = WebSession {
            origin: Some("https://evil.example".into()),
            ..own.clone()
        };
        assert!(connect_web(&server, &foreign).await.is_err());
        server
            .wait_for_log("reason=\"origin\"", Duration::from_secs(10))
            .await;
        // Another path: refused too.
        let elsewhere = WebSession {
            path: "/other".into(),
            ..own.clone()
        };
        assert!(connect_web(&server, &elsewhere).await.is_err());
        server
            .wait_for_log("reason=\"path\"", Duration::from_secs(10))
            .await;

        // The right origin with a wrong token in the URL: the session is refused in words,
        // then closed with the token's code.
        let wrong = WebSession {
            path: "/watch?token=wrong".into(),
            ..own.clone()
        };
        let (_e, session) = connect_web(&server, &wrong).await.unwrap();
        refused(&session, ErrorCode::TokenInvalid).await;

        // The token in the URL, and the one in the hello, each let a viewer in; so does an
        // origin named with --allow-origin.
        for (session, token) in [
            (
                WebSession {
                    path: "/watch?token=secret".into(),
                    ..own.clone()
                },
                "",
            ),
            (own.clone(), "secret"),
            (
                WebSession {
                    origin: Some("https://other.example".into()),
                    ..own.clone()
                },
                "secret",
            ),
        ] {
            let (_e, s) = connect_web(&server, &session).await.unwrap();
            // Panics with what came instead of a Welcome.
            let _control = joined(&s, WishedRendition::Auto, token).await;
            s.close(0, b"done");
        }
    });
}

#[test]
fn a_hostile_web_viewer_loses_only_its_own_session() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let good = spawn_viewer(&server, &["--duration", "8", "--quality", "3"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server
            .wait_for_log("viewer joined", Duration::from_secs(10))
            .await;
        // Garbage on the control stream.
        let (_e, garbage) = connect_web(&server, &WebSession::own_page(&server))
            .await
            .unwrap();
        let (mut writer, _reader) = control(&garbage).await;
        writer
            .stream()
            .write_all(&[0, 0, 0, 3, 0xEE, 1, 2])
            .await
            .unwrap();
        let (code, reason) = closed(&garbage).await;
        assert_eq!(
            code,
            u32::from(ErrorCode::MalformedMessage.to_u16()),
            "{reason}"
        );

        // A stream the protocol has no use for.
        let (_e, pushy) = connect_web(&server, &WebSession::own_page(&server))
            .await
            .unwrap();
        let _control = joined(&pushy, WishedRendition::Fixed(2), "").await;
        let mut extra = pushy.open_uni().await.unwrap();
        // The server may stop the stream as soon as it sees it open, before this write.
        let _ = extra.write_all(b"x").await;
        let (code, reason) = closed(&pushy).await;
        assert_eq!(
            code,
            u32::from(ErrorCode::UnexpectedMessage.to_u16()),
            "{reason}"
        );
    });
    assert_kept_watching(&good.join().unwrap(), 8.0, "the native viewer");
}

#[test]
fn the_page_server_serves_the_page_and_nothing_else() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let page = server.page_addr();
    // TCP on the QUIC port's number, unless that number was taken on TCP (the server then
    // says so and picks another: the tests let it choose an ephemeral port).
    if !server
        .log()
        .contains("serving the web page on another port")
    {
        assert_eq!(
            page.port(),
            server.addr.port(),
            "TCP on the QUIC port's number"
        );
    }
    let ca = server.ca();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let index = https_get(page, &ca, "/").await.unwrap();
        assert_eq!(index.status, 200);
        assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(index
            .header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'")));
        assert_eq!(index.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
        assert!(!index.body.is_empty());
        for script in ["/viewer.js", "/worklet.js"] {
            let r = https_get(page, &ca, script).await.unwrap();
            assert_eq!(r.status, 200, "{script}");
            assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
        }
        let session = https_get(page, &ca, "/session.json").await.unwrap();
        assert_eq!(session.header("cache-control"), Some("no-store"));
        let json = session.json();
        assert_eq!(json["webtransport_path"], "/watch");
        assert_eq!(json["protocol_version"], PROTOCOL_VERSION);

        assert_eq!(https_get(page, &ca, "/nothing").await.unwrap().status, 404);
        assert_eq!(https_get(page, &ca, "/../certs/server.key").await.unwrap().status, 404);
        let post = https_request(
            page,
            &ca,
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
        .await
        .unwrap();
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        let head = https_request(page, &ca, b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        // Headers beyond the limit: refused, not buffered. The server answers 431 and closes
        // with the rest unread, so the client may see the connection reset before it reads
        // the answer; either way the server goes on serving.
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        if let Ok(refused) = https_request(page, &ca, huge.as_bytes()).await {
            assert_eq!(refused.status, 431);
        }
        assert_eq!(https_get(page, &ca, "/").await.unwrap().status, 200);
    });
    let mut server = server;
    assert!(server.is_running(), "{}", server.log());
}

#[test]
fn a_stopping_server_tells_web_viewers_why() {
    let _machine = exclusive();
    let mut server = ServerProcess::start(&[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let session = runtime.block_on(async {
        let (endpoint, session) = connect_web(&server, &WebSession::own_page(&server))
            .await
            .unwrap();
        let control = joined(&session, WishedRendition::Fixed(2), "").await;
        (endpoint, session, control)
    });
    assert!(server.terminate(Duration::from_secs(10)).success());
    runtime.block_on(async {
        let (code, reason) = closed(&session.1).await;
        assert_eq!(
            code,
            u32::from(ErrorCode::ServerShuttingDown.to_u16()),
            "{reason}"
        );
        assert_eq!(reason, "server shutting down");
    });
}

#[test]
fn the_viewer_limit_counts_web_and_native_viewers_alike() {
    let _machine = exclusive();
    let server = ServerProcess::start(&["--max-viewers", "1"]).unwrap();
    let native = spawn_viewer(&server, &["--duration", "6", "--quality", "3"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server
            .wait_for_log("viewer joined", Duration::from_secs(10))
            .await;
        let (_e, session) = connect_web(&server, &WebSession::own_page(&server))
            .await
            .unwrap();
        refused(&session, ErrorCode::ServerFull).await;
    });
    assert_kept_watching(&native.join().unwrap(), 6.0, "the native viewer");
}
