//! A broken or hostile viewer loses its own connection, with an error code; a good viewer
//! watching at the same time keeps receiving.

use std::time::Duration;

use streamsocket_proto::control::{ControlMessage, Ping};
use streamsocket_proto::ErrorCode;
use streamsocket_tests::{
    assert_kept_watching, connect_raw, exclusive, spawn_viewer, ServerProcess,
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
