//! The control reader is cancel-safe: waiting on it inside `select!`, losing the race while
//! half a message has arrived, loses nothing (the server's control loop does exactly that
//! beside the broadcaster's pause). Real QUIC on loopback.

use std::sync::Arc;
use std::time::Duration;

use streamsocket_proto::control::{ControlMessage, Ping};
use streamsocket_transport::ControlReader;

fn configs() -> (quinn::ServerConfig, quinn::ClientConfig) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap(),
        )),
        quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(client).unwrap(),
        )),
    )
}

#[tokio::test]
async fn half_a_message_survives_a_lost_select_race() {
    let (server_config, client_config) = configs();
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();

    let mut bytes = Vec::new();
    ControlMessage::Ping(Ping {
        seq: 7,
        client_time_us: 123_456,
    })
    .encode(&mut bytes);
    let (first, rest) = bytes.split_at(3);
    let (first, rest) = (first.to_vec(), rest.to_vec());
    let rest_wanted = Arc::new(tokio::sync::Notify::new());

    let sender = {
        let rest_wanted = rest_wanted.clone();
        tokio::spawn(async move {
            let conn = client
                .connect_with(client_config, addr, "localhost")
                .unwrap()
                .await
                .unwrap();
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            send.write_all(&first).await.unwrap();
            rest_wanted.notified().await;
            send.write_all(&rest).await.unwrap();
            send.finish().unwrap();
            // Keep the connection until the reader is done.
            conn.closed().await;
        })
    };

    let conn = server.accept().await.unwrap().await.unwrap();
    let (_send, recv) = conn.accept_bi().await.unwrap();
    let mut reader = ControlReader::new(recv);
    let mut lost_races = 0;
    let msg = loop {
        tokio::select! {
            msg = reader.next() => break msg,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                // The timer won while the first three bytes were in (the stream is accepted
                // when its first data arrives): the read was cancelled with part of a
                // message taken. Only then let the rest of the message go.
                lost_races += 1;
                if lost_races == 2 {
                    rest_wanted.notify_one();
                }
            }
        }
    };
    assert!(lost_races >= 2, "the reader never lost a race");
    assert_eq!(
        msg.unwrap(),
        Some(ControlMessage::Ping(Ping {
            seq: 7,
            client_time_us: 123_456
        }))
    );
    conn.close(0u32.into(), b"done");
    let _ = sender.await;
}
