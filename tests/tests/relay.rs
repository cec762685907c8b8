//! A real Media over QUIC relay (moq-relay 0.17.10, from scripts/install-deps.sh) on
//! loopback (issue 16): it starts and carries a broadcast, three relays form a cluster that
//! carries a broadcast two hops, and a relay behind the auth server admits a right token
//! and refuses a wrong one. The broadcasts are our small moq-net test client's, until the
//! server publishes.

use std::path::Path;
use std::time::Duration;

use streamsocket_tests::moq::{self, Role};
use streamsocket_tests::relay::{AuthKey, AuthServer, RelayCerts, RelayOptions, RelayProcess};

/// Generous bounds for what must happen (a busy 2-core machine): a test that hangs fails
/// with a message instead. Nothing is timed.
const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    streamsocket_tests::within(what, LIMIT, f).await
}

/// Publishes a live one-track broadcast `name` through `publisher` and reads a frame of it
/// through `subscriber` (sessions on the same or on clustered relays).
async fn carries(publisher: &moq::MoqSession, subscriber: &moq::MoqSession, name: &str) {
    let writer = publisher
        .publish(name, "frames")
        .expect("publish")
        .keep_writing(&format!("{name} frame "), Duration::from_millis(50));
    let mut reader = within("subscribing", subscriber.subscribe(name, "frames"))
        .await
        .unwrap_or_else(|e| panic!("subscribing to {name}: {e:#}"));
    let frame = within("a frame", reader.next_frame())
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {e:#}"));
    let text = String::from_utf8_lossy(&frame);
    assert!(
        text.starts_with(&format!("{name} frame ")),
        "unexpected frame {text:?}"
    );
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_starts_and_carries_a_broadcast_and_comes_back_after_a_kill() {
    let mut relay = RelayProcess::start(RelayOptions::public()).unwrap();
    let url = relay.url("live");
    let publisher = within(
        "connecting",
        moq::connect(&url, relay.trust(), Role::Publish),
    )
    .await
    .unwrap();
    let subscriber = within(
        "connecting",
        moq::connect(&url, relay.trust(), Role::Subscribe),
    )
    .await
    .unwrap();
    assert!(
        subscriber.version().starts_with("moq-lite-"),
        "negotiated {}",
        subscriber.version()
    );
    carries(&publisher, &subscriber, "one-relay").await;
    drop((publisher, subscriber));

    // Killed (as a crash) and started again on the same ports: it serves again, with a new
    // generated certificate.
    let before = relay.fingerprint().to_string();
    relay.kill();
    assert!(!relay.is_running());
    relay.restart().unwrap();
    assert_ne!(
        relay.fingerprint(),
        before,
        "a new certificate is generated"
    );
    assert_eq!(relay.url("live"), url, "same address");
    let publisher = within(
        "reconnecting",
        moq::connect(&url, relay.trust(), Role::Publish),
    )
    .await
    .unwrap();
    let subscriber = within(
        "reconnecting",
        moq::connect(&url, relay.trust(), Role::Subscribe),
    )
    .await
    .unwrap();
    carries(&publisher, &subscriber, "after-restart").await;
}

/// The committed configurations (relays/relay1.toml..relay3.toml, as
/// scripts/cluster-demo.sh runs them, on free ports here): R1 (where an origin publishes)
/// <- R2 <- R3 (viewers; two hops from R1), on certificates of one CA that each relay
/// verifies its peer with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_form_a_cluster_that_carries_a_broadcast_two_hops() {
    let certs = RelayCerts::new().unwrap();
    let config = |n: u32| {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../relays/relay{n}.toml"));
        RelayOptions::from_config(&file, &certs)
    };
    let r1 = RelayProcess::start(config(1)).unwrap();
    let r2 = RelayProcess::start(config(2).connect_to(&r1)).unwrap();
    let r3 = RelayProcess::start(config(3).connect_to(&r2)).unwrap();

    let publisher = within(
        "connecting to R1",
        moq::connect(&r1.url("live"), r1.trust(), Role::Publish),
    )
    .await
    .unwrap();
    let viewer = within(
        "connecting to R3",
        moq::connect(&r3.url("live"), r3.trust(), Role::Subscribe),
    )
    .await
    .unwrap();
    carries(&publisher, &viewer, "two-hops").await;
    // R2 carries it too, one hop away.
    let near = within(
        "connecting to R2",
        moq::connect(&r2.url("live"), r2.trust(), Role::Subscribe),
    )
    .await
    .unwrap();
    carries(&publisher, &near, "one-hop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_admits_a_right_token_and_refuses_a_wrong_one() {
    let key = AuthKey::generate().unwrap();
    let auth = AuthServer::start(&key).unwrap();
    let relay = RelayProcess::start(RelayOptions::public().with_auth(auth.relay_auth())).unwrap();
    let with_token = |token: &str| relay.url(&format!("live?jwt={token}"));

    // Right: signed with the auth server's key, for the root the session dials.
    let right = key.sign("live", &["**"], &["**"]).unwrap();
    let url = with_token(&right);
    let publisher = within(
        "connecting",
        moq::connect(&url, relay.trust(), Role::Publish),
    )
    .await
    .expect("a right token is admitted");
    let subscriber = within(
        "connecting",
        moq::connect(&url, relay.trust(), Role::Subscribe),
    )
    .await
    .expect("a right token is admitted");
    carries(&publisher, &subscriber, "with-token").await;

    // Wrong: the same claims signed with another key; and no token at all.
    let other = AuthKey::generate().unwrap();
    let wrong = other.sign("live", &["**"], &["**"]).unwrap();
    for (what, url) in [
        ("a wrong token", with_token(&wrong)),
        ("no token", relay.url("live")),
    ] {
        let refusal =
            match within("connecting", moq::connect(&url, relay.trust(), Role::Both)).await {
                Err(e) => format!("{e:#}"),
                // The transport is accepted first; the relay then closes the MoQ session.
                Ok(session) => format!("{:#}", within("the refusal", session.closed(&url)).await),
            };
        assert!(
            refusal.contains("refused the session: unauthorized"),
            "{what}: unexpected error {refusal:?}\nrelay log:\n{}",
            relay.log()
        );
        assert!(
            !refusal.contains("jwt="),
            "the token is not shown: {refusal}"
        );
    }
    // The relay says why in its log (the auth server's 403; its reason is not passed on).
    relay.wait_for_log_where("the relay logging the refusals", LIMIT, |log| {
        log.matches("the auth server refused the session").count() >= 2
    });
}
