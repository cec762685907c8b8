//! The server publishing into a real Media over QUIC relay (moq-relay 0.17.10, issue 16):
//! a subscriber through the relay finds the broadcast's hang catalog, and reads AV1 frames
//! that dav1d decodes (a group starting at a keyframe) and Opus packets; a rendition is
//! encoded only while the relay subscribes to it; a relay restart is recovered from, and
//! counted in `/metrics`.

use std::time::Duration;

use streamsocket_moq::media::decode_frame;
use streamsocket_tests::moq::{self, Role};
use streamsocket_tests::relay::{
    start_publishing, AuthKey, AuthServer, RelayCerts, RelayOptions, RelayProcess,
};
use streamsocket_tests::ServerProcess;

/// Bounds for what must happen on a busy machine; nothing is timed.
const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    streamsocket_tests::within(what, LIMIT, f).await
}

/// A server publishing into the relay at `url` (verified with `ca`), with `extra` options.
fn publishing_server(url: &url::Url, ca: &std::path::Path, extra: &[&str]) -> ServerProcess {
    start_publishing(&[url.as_str()], ca, extra).unwrap()
}

#[test]
fn the_server_publishes_its_ladder_and_audio_into_a_relay() {
    let certs = RelayCerts::new().unwrap();
    let relay = RelayProcess::start(RelayOptions::public().with_tls(certs.tls())).unwrap();
    let url = relay.url("live");
    let ca = certs.ca();
    let server = publishing_server(&url, &ca, &["--broadcast", "show.hang"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server.wait_for_log("publishing to the relay", LIMIT).await;
        let viewer = within(
            "connecting",
            moq::connect(&url, relay.trust(), Role::Subscribe),
        )
        .await
        .unwrap();

        // The catalog: one AV1 track per rendition, one Opus track per audio bitrate.
        let json = read_catalog(&viewer, "show.hang").await;
        let video = json["video"]["renditions"].as_object().unwrap();
        assert_eq!(
            video.keys().collect::<Vec<_>>(),
            ["180p", "240p", "360p"],
            "{json}"
        );
        assert_eq!(video["360p"]["codec"], "av01.0.04M.08");
        assert_eq!(video["360p"]["codedWidth"], 640);
        let audio = json["audio"]["renditions"].as_object().unwrap();
        assert!(!audio.is_empty(), "{json}");
        assert!(audio.values().all(|a| a["codec"] == "opus"), "{json}");
        let audio_track = audio.keys().next().unwrap().clone();

        // Nobody subscribed yet: no rendition is encoded for the relay.
        assert!(
            !server.log().contains("a relay subscribed"),
            "{}",
            server.log()
        );

        // A rendition: its frames decode, from the group's keyframe on.
        let mut frames = within("subscribing to 240p", viewer.subscribe("show.hang", "240p"))
            .await
            .unwrap();
        let mut decoder = dav1d::Decoder::new().unwrap();
        let mut pictures = 0;
        let mut last_capture = 0;
        for _ in 0..20 {
            let frame = within("a frame", frames.next_frame()).await.unwrap();
            let (capture_us, payload) = decode_frame(frame).unwrap();
            assert!(capture_us > last_capture, "capture times increase");
            last_capture = capture_us;
            decoder
                .send_data(payload.to_vec(), None, None, None)
                .unwrap();
            while let Ok(picture) = decoder.get_picture() {
                assert_eq!((picture.width(), picture.height()), (426, 240));
                pictures += 1;
            }
        }
        assert!(pictures >= 15, "{pictures} of 20 frames decoded");
        server
            .wait_for_log("a relay subscribed: publishing this rendition", LIMIT)
            .await;

        // Sound: Opus packets, one per group.
        let mut sound = within(
            "subscribing to audio",
            viewer.subscribe("show.hang", &audio_track),
        )
        .await
        .unwrap();
        let mut opus = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 5760];
        for _ in 0..5 {
            let packet = within("an audio packet", sound.next_frame()).await.unwrap();
            let (_, payload) = decode_frame(packet).unwrap();
            let samples = opus.decode(&payload, &mut pcm, false).unwrap();
            assert!(samples > 0);
        }

        // The viewer leaves: the relay drops its subscription, and the rendition is no
        // longer encoded for it.
        drop((frames, sound, viewer));
        server
            .wait_for_log("no relay subscribes any more", LIMIT)
            .await;
    });
}

/// The catalog of `broadcast`, as `viewer` reads it through the relay.
async fn read_catalog(viewer: &moq::MoqSession, broadcast: &str) -> serde_json::Value {
    let mut catalog = within("the catalog", viewer.subscribe(broadcast, "catalog.json"))
        .await
        .unwrap();
    let json = within("the catalog's frame", catalog.next_frame())
        .await
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// Reads one decodable frame of the 180p rendition through `relay`, as a new subscriber,
/// from a group after `after` if given; returns its group's sequence.
async fn watch_a_frame(relay: &RelayProcess, url: &url::Url, after: Option<u64>) -> u64 {
    let viewer = within(
        "connecting",
        moq::connect(url, relay.trust(), Role::Subscribe),
    )
    .await
    .unwrap();
    let mut frames = within("subscribing", viewer.subscribe("streamsocket.hang", "180p"))
        .await
        .unwrap();
    // dav1d hands out its first picture a few frames in (its frame threads).
    let mut decoder = dav1d::Decoder::new().unwrap();
    let mut decoded = 0;
    while decoded < 30 {
        let frame = within("a frame", frames.next_frame()).await.unwrap();
        let group = frames.group_sequence().expect("a frame comes from a group");
        if after.is_some_and(|after| group <= after) {
            continue;
        }
        decoded += 1;
        let (_, payload) = decode_frame(frame).unwrap();
        decoder
            .send_data(payload.to_vec(), None, None, None)
            .expect("decodable from the group's keyframe on");
        if let Ok(picture) = decoder.get_picture() {
            assert_eq!(picture.height(), 180);
            return group;
        }
    }
    panic!("no picture out of 30 frames");
}

#[test]
fn the_publisher_comes_back_to_a_relay_that_restarts() {
    let certs = RelayCerts::new().unwrap();
    let mut relay = RelayProcess::start(RelayOptions::public().with_tls(certs.tls())).unwrap();
    let url = relay.url("live");
    let ca = certs.ca();
    let server = publishing_server(&url, &ca, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.printed_addr("metrics http://");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server.wait_for_log("publishing to the relay", LIMIT).await;
        let first = watch_a_frame(&relay, &url, None).await;
        let before = scrape(metrics);
        assert_eq!(sample(&before, "publish_relays_connected"), 1.0, "{before}");
        assert_eq!(sample(&before, "publish_sessions_total"), 1.0, "{before}");
        assert_eq!(
            sample(&before, "publish_sessions_lost_total"),
            0.0,
            "{before}"
        );
        assert!(sample(&before, "publish_frames_total") > 0.0, "{before}");

        // Killed as in a crash, and back on the same address: the server notices, says
        // so, and publishes again, without a restart of its own.
        relay.kill();
        relay.restart().unwrap();
        server.wait_for_log_where("the server noticing the relay is gone", LIMIT, |log| {
            log.contains("the relay session ended")
        });
        server.wait_for_log_where("publishing again", LIMIT, |log| {
            log.matches("publishing to the relay").count() >= 2
        });
        // A group published since: the origin may first hand the restarted relay the group
        // it kept from before.
        watch_a_frame(&relay, &url, Some(first)).await;
        // Counted for operators: one session lost, one more made, connected again, and
        // the frames just read written since the first scrape.
        let after = scrape(metrics);
        assert_eq!(sample(&after, "publish_relays_connected"), 1.0, "{after}");
        assert_eq!(
            sample(&after, "publish_sessions_lost_total"),
            1.0,
            "{after}"
        );
        assert_eq!(sample(&after, "publish_sessions_total"), 2.0, "{after}");
        assert!(
            sample(&after, "publish_frames_total") > sample(&before, "publish_frames_total"),
            "{after}"
        );
    });
}

fn scrape(at: std::net::SocketAddr) -> String {
    let (status, body) = streamsocket_tests::http_get(at, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the unlabelled sample `streamsocket_<name>`.
fn sample(text: &str, name: &str) -> f64 {
    let name = format!("streamsocket_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn the_relay_takes_the_publisher_token_and_refuses_a_wrong_one() {
    let key = AuthKey::generate().unwrap();
    let auth = AuthServer::start(&key).unwrap();
    let certs = RelayCerts::new().unwrap();
    let relay = RelayProcess::start(
        RelayOptions::public()
            .with_tls(certs.tls())
            .with_auth(auth.relay_auth()),
    )
    .unwrap();
    let ca = certs.ca();
    let url = relay.url("live");

    // A token that may publish under "live", from a file.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("publish.jwt");
    std::fs::write(&token_file, key.sign("live", &["**"], &[]).unwrap() + "\n").unwrap();
    let server = publishing_server(
        &url,
        &ca,
        &["--publish-token-file", token_file.to_str().unwrap()],
    );
    let viewer_token = key.sign("live", &[], &["**"]).unwrap();
    let viewer_url = relay.url(&format!("live?jwt={viewer_token}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server.wait_for_log("publishing to the relay", LIMIT).await;
        watch_a_frame(&relay, &viewer_url, None).await;
    });

    // Signed with another key: refused, and the log says why in words (never the token).
    let wrong = AuthKey::generate()
        .unwrap()
        .sign("live", &["**"], &[])
        .unwrap();
    let refused = publishing_server(&url, &ca, &["--publish-token", &wrong]);
    // Said in words, and tried again after a wait, not at once (the second refusal comes
    // after a wait of 500 ms, the third after 1 s).
    refused.wait_for_log_where("the refusals in the log", LIMIT, |log| {
        log.matches("the relay refused the token").count() >= 3
    });
    let log = refused.log();
    assert!(
        log.contains("check --publish-token; trying again in 500ms")
            && log.contains("trying again in 1s"),
        "{log}"
    );
    assert!(!log.contains(&wrong), "the token stays out of the log");
}

#[test]
fn without_sound_the_catalog_lists_no_audio_track() {
    let certs = RelayCerts::new().unwrap();
    let relay = RelayProcess::start(RelayOptions::public().with_tls(certs.tls())).unwrap();
    let url = relay.url("live");
    let server = publishing_server(&url, &certs.ca(), &["--audio", "none"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server.wait_for_log("publishing to the relay", LIMIT).await;
        let viewer = within(
            "connecting",
            moq::connect(&url, relay.trust(), Role::Subscribe),
        )
        .await
        .unwrap();
        let json = read_catalog(&viewer, "streamsocket.hang").await;
        assert!(json["video"]["renditions"]["180p"].is_object(), "{json}");
        assert!(
            json["audio"]["renditions"]
                .as_object()
                .is_none_or(|a| a.is_empty()),
            "{json}"
        );
        // The clock a viewer behind relays measures latency with.
        assert!(json["clock"]["wall"].as_u64().unwrap() > 0, "{json}");
    });
}

#[test]
fn a_relay_with_a_generated_certificate_is_trusted_by_its_fingerprint() {
    // `moq-relay --listen-tls-generate`: a self-signed certificate, no CA to give.
    let relay = RelayProcess::start(RelayOptions::public()).unwrap();
    let url = relay.url("live");
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let refused =
        ServerProcess::start(&["--publish", url.as_str(), "--publish-fingerprint", &wrong])
            .unwrap();
    refused.wait_for_log_where("the pin refusing the relay", LIMIT, |log| {
        log.contains("cannot publish to the relay")
            && log.contains(&format!("not the pinned {wrong}"))
    });
    assert!(!refused.log().contains("publishing to the relay"));

    let server = ServerProcess::start(&[
        "--publish",
        url.as_str(),
        "--publish-fingerprint",
        relay.fingerprint(),
    ])
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server.wait_for_log("publishing to the relay", LIMIT).await;
        watch_a_frame(&relay, &url, None).await;
    });
}
