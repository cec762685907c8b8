//! Every refusal is explained before the close: the viewer reads an `Error` with the close's
//! own code on its control stream, then the connection closes with that code
//! (docs/PROTOCOL.md, "Access" and "Error"). A second implementation found the close arriving
//! alone; these tests read the control stream as any viewer would.

use streamsocket_proto::control::{ControlMessage, Hello, Ping, WishedRendition};
use streamsocket_proto::{ErrorCode, PROTOCOL_VERSION};
use streamsocket_tests::{connect_raw, exclusive, ServerProcess};
use streamsocket_transport::{ControlReader, ControlWriter};

fn hello(token: &str) -> ControlMessage {
    ControlMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        rendition: WishedRendition::Fixed(0),
        latency_target_ms: 0,
        client_name: "refusals test".into(),
        token: token.into(),
    })
}

/// Opens a control stream, writes `first` (raw bytes), then (with `flood`) pings past the
/// rate limit; returns every message the server sent before the connection closed, and the
/// close code.
async fn refused_after(
    server: &ServerProcess,
    first: Vec<u8>,
    flood: bool,
) -> (Vec<ControlMessage>, ErrorCode) {
    let (_endpoint, conn) = connect_raw(server).await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut writer = ControlWriter::new(send);
    let mut reader = ControlReader::new(recv);
    writer.stream().write_all(&first).await.unwrap();
    let mut received = Vec::new();
    if flood {
        // Past the control rate limit (100 a second after a burst of 200) at once.
        for seq in 0..1000 {
            let ping = ControlMessage::Ping(Ping {
                seq,
                client_time_us: 0,
            });
            if writer.send(&ping).await.is_err() {
                break;
            }
        }
    }
    while let Ok(Ok(Some(m))) =
        tokio::time::timeout(std::time::Duration::from_secs(10), reader.next()).await
    {
        received.push(m);
    }
    let code = match tokio::time::timeout(std::time::Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            ErrorCode::from_u16(c.error_code.into_inner() as u16)
        }
        other => panic!("expected the server to close the connection, got {other:?}"),
    };
    (received, code)
}

/// The last message before the close is an Error with the close's code, and the close has
/// the expected code.
fn assert_explained(received: &[ControlMessage], code: ErrorCode, expected: ErrorCode) {
    assert_eq!(code, expected, "close code; received {received:?}");
    match received.last() {
        Some(ControlMessage::Error {
            code: said,
            message,
        }) => {
            assert_eq!(*said, expected, "the Error's code: {message}");
            assert!(!message.is_empty(), "an Error says why");
        }
        other => panic!("no Error before the {expected:?} close; last message {other:?}"),
    }
}

#[test]
fn every_refusal_is_explained_before_the_close() {
    let _machine = exclusive();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let open = ServerProcess::start(&["--max-viewers", "1"]).unwrap();
    runtime.block_on(async {
        // Another version.
        let mut bytes = hello("").to_bytes();
        bytes[5..7].copy_from_slice(&(PROTOCOL_VERSION + 6).to_be_bytes());
        let (received, code) = refused_after(&open, bytes, false).await;
        assert_explained(&received, code, ErrorCode::UnsupportedVersion);
        if let Some(ControlMessage::Error { message, .. }) = received.last() {
            assert!(
                !message.contains("malformed"),
                "another version is not a malformed message: {message}"
            );
        }

        // Garbage where the hello should be.
        let (received, code) = refused_after(&open, vec![0, 0, 0, 3, 0xEE, 1, 2], false).await;
        assert_explained(&received, code, ErrorCode::MalformedMessage);

        // A flood of pings after the welcome: the welcome, then the Error, then the close.
        let (received, code) = refused_after(&open, hello("").to_bytes(), true).await;
        assert!(
            matches!(received.first(), Some(ControlMessage::Welcome(_))),
            "{received:?}"
        );
        assert_explained(&received, code, ErrorCode::RateLimited);

        // The one viewer the server admits, then one too many.
        let (_endpoint, first) = connect_raw(&open).await;
        let (send, recv) = first.open_bi().await.unwrap();
        let (mut w, mut r) = (ControlWriter::new(send), ControlReader::new(recv));
        w.send(&hello("")).await.unwrap();
        assert!(matches!(
            r.next().await,
            Ok(Some(ControlMessage::Welcome(_)))
        ));
        let (received, code) = refused_after(&open, hello("").to_bytes(), false).await;
        assert_explained(&received, code, ErrorCode::ServerFull);
    });
    drop(open);

    let guarded = ServerProcess::start(&["--token", "right-token"]).unwrap();
    runtime.block_on(async {
        let (received, code) = refused_after(&guarded, hello("").to_bytes(), false).await;
        assert_explained(&received, code, ErrorCode::TokenRequired);
        let (received, code) =
            refused_after(&guarded, hello("wrong-token").to_bytes(), false).await;
        assert_explained(&received, code, ErrorCode::TokenInvalid);
    });
}
