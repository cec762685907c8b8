//! `streamsocket-client` watching through real moq-relay processes (issue 16): origin →
//! relay → viewer decoding every frame, a rendition switch (another track, taken at its
//! newest group's keyframe), automatic quality stepping down under a bandwidth cap between
//! relay and viewer, a group the relay kept from an earlier viewer not played as live, a
//! wrong JWT refused in words, a killed relay left for the next one, an
//! origin restart recovered from, and hostile input from the relay side (a broken catalog,
//! garbage and oversize objects) told clearly while the origin keeps serving.

use std::path::Path;
use std::time::Duration;

use streamsocket_tests::moq::{self, Role};
use streamsocket_tests::relay::{
    start_publishing, wait_publishing, AuthKey, AuthServer, RelayCerts, RelayOptions, RelayProcess,
};
use streamsocket_tests::{
    exclusive, num, run_viewer, Relay, ServerProcess, ViewerProcess, ViewerRun,
};

/// Bounds for what must happen on a busy machine; nothing is timed.
const LIMIT: Duration = Duration::from_secs(60);

/// A server publishing into every relay URL given (verified with `ca`), with `extra`
/// options, once it publishes into all of them.
fn publishing_server(urls: &[&url::Url], ca: &Path, extra: &[&str]) -> ServerProcess {
    let urls: Vec<&str> = urls.iter().map(|u| u.as_str()).collect();
    let server = start_publishing(&urls, ca, extra).unwrap();
    wait_publishing(&server, urls.len(), LIMIT);
    server
}

/// One relay on certificates of our own with an origin publishing into it, and what a
/// viewer needs to watch through it.
struct OneRelay {
    relay: RelayProcess,
    server: ServerProcess,
    url: url::Url,
    /// The relay's CA: as a path for the origin, as an argument for viewers.
    ca: std::path::PathBuf,
    ca_arg: String,
    /// The viewer's relay URLs.
    urls: [String; 1],
    _certs: RelayCerts,
}

/// Starts a relay and an origin (with `extra` options) publishing into it; both run while
/// the value lives.
fn one_relay(extra: &[&str]) -> OneRelay {
    let certs = RelayCerts::new().unwrap();
    let relay = RelayProcess::start(RelayOptions::public().with_tls(certs.tls())).unwrap();
    let url = relay.url("live");
    let ca = certs.ca();
    let server = publishing_server(&[&url], &ca, extra);
    OneRelay {
        relay,
        server,
        ca_arg: ca.to_string_lossy().into_owned(),
        urls: [url.to_string()],
        url,
        ca,
        _certs: certs,
    }
}

/// The viewer's arguments for watching `urls` (in order) headless, trusting `ca`.
fn through<'a>(urls: &'a [String], ca: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["--headless", "--ca", ca]);
    args.extend_from_slice(extra);
    args
}

fn assert_ran(run: &ViewerRun) {
    assert!(
        run.output.status.success(),
        "the viewer failed:\n{}",
        run.stderr()
    );
}

#[test]
fn a_viewer_watches_through_a_relay_decodes_every_frame_and_switches_rendition() {
    let one = one_relay(&[]);
    let (urls, ca) = (&one.urls[..], one.ca_arg.as_str());
    // 360p first, then 180p: a subscription to the other track, taken at its next group;
    // and another audio bitrate (another track), recorded all along.
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("through-relay.webm");
    let recording_arg = recording.to_string_lossy().into_owned();
    let args = through(
        urls,
        ca,
        &[
            "--quality",
            "1",
            "--duration",
            "8",
            "--script",
            "3:audio-down,4:quality=3",
            "--record",
            &recording_arg,
        ],
    );
    let run = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert_ran(&run);
    let s = run.stats();
    let stderr = run.stderr();
    assert!(stderr.contains("connected to the relay"), "{stderr}");
    assert!(num(s, "/video/frames_received") > 30.0, "{s:#}");
    // Every frame decoded: none lost, broken or undecodable on the way.
    assert_eq!(num(s, "/video/frames_skipped"), 0.0, "{s:#}");
    assert_eq!(num(s, "/video/frames_malformed"), 0.0, "{s:#}");
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{s:#}");
    // Both renditions were shown, and the switch ended on 180p (id 2 in ladder order).
    assert!(num(s, "/video/frames_by_size/640x360") > 0.0, "{s:#}");
    assert!(num(s, "/video/frames_by_size/320x180") > 0.0, "{s:#}");
    assert_eq!(num(s, "/rendition"), 2.0, "{s:#}");
    assert!(num(s, "/audio/packets_decoded") > 0.0, "{s:#}");
    assert_eq!(num(s, "/audio/packets_malformed"), 0.0, "{s:#}");
    // The other audio track continued the numbering: a packet or two may be lost or come
    // late at the switch (the two tracks' groups race), but no run of them (a numbering
    // off by the tracks' different group counts would be read as hundreds late or missing).
    assert!(num(s, "/audio/packets_late") <= 3.0, "{s:#}");
    assert!(num(s, "/audio/packets_concealed") <= 5.0, "{s:#}");
    assert_eq!(num(s, "/audio/bitrate_bps"), 24_000.0, "{s:#}");
    // What arrived was recorded, both renditions.
    assert!(num(s, "/recording/video_frames") > 30.0, "{s:#}");
    assert!(std::fs::metadata(&recording).unwrap().len() > 10_000);
    // The catalog's clock puts capture times on the viewer's clock: a latency, not the
    // origin's uptime or a negative number clamped to zero.
    let p50 = num(s, "/video/latency_ms/p50");
    assert!(p50 > 0.0 && p50 < 5_000.0, "{s:#}");
}

#[test]
fn under_a_cap_automatic_quality_steps_down_and_the_lower_track_comes_through() {
    let _machine = exclusive();
    // The shipped picture (720p at 2 Mbit/s on top): the path below carries 500 kbit/s.
    let one = one_relay(&["--width", "1280", "--height", "720"]);
    let ca = one.ca_arg.as_str();
    let capped = Relay::start(one.relay.addr, "rate=500kbit,queue=30kB", "", 3).unwrap();
    let urls = [format!("https://{}/live", capped.addr)];
    let args = through(&urls, ca, &["--duration", "10"]);
    let run = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert_ran(&run);
    let s = run.stats();
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{s:#}");
    let steps = s["rendition_timeline"].as_array().expect("a timeline");
    assert!(
        steps.iter().any(|c| num(c, "/rendition") >= 1.0),
        "never left the top rung under the cap:\n{s:#}"
    );
    // The step down was taken, not only asked for: the lower rendition's track came through
    // the narrow path (at equal priority the relay would keep sending the older
    // subscription, the top rung's, which alone fills it; the new one would never start).
    let frames_at = |size: &str| {
        s.pointer(&format!("/video/frames_by_size/{size}"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let lower = frames_at("640x360") + frames_at("320x180");
    assert!(
        lower >= 30.0,
        "{lower} frames of a lower rendition decoded:\n{s:#}"
    );
}

#[test]
fn a_group_the_relay_kept_from_an_earlier_viewer_is_not_played_as_live() {
    let one = one_relay(&[]);
    let (urls, ca) = (&one.urls[..], one.ca_arg.as_str());
    let args = through(urls, ca, &["--quality", "3", "--duration", "3"]);
    let first = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert_ran(&first);
    // The relay keeps 180p's last group after the first viewer left. Once that group is
    // older than any a live subscription starts with, the next viewer of 180p is handed it.
    std::thread::sleep(streamsocket_client::relay::STALE_GROUP + Duration::from_secs(1));
    let args = through(urls, ca, &["--quality", "3", "--duration", "4"]);
    let next = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert_ran(&next);
    let stderr = next.stderr();
    assert!(
        stderr.contains("kept from an earlier subscription"),
        "the relay handed over no old group (its behaviour changed?):\n{stderr}"
    );
    // It waited for the live group instead: no frame seconds old was decoded.
    let s = next.stats();
    assert!(num(s, "/video/frames_decoded") > 30.0, "{s:#}");
    let p99 = num(s, "/video/latency_ms/p99");
    assert!(
        p99 < streamsocket_client::relay::STALE_GROUP.as_millis() as f64,
        "{s:#}"
    );
}

#[test]
fn a_wrong_jwt_is_refused_in_words_and_a_right_one_watches() {
    let key = AuthKey::generate().unwrap();
    let auth = AuthServer::start(&key).unwrap();
    let certs = RelayCerts::new().unwrap();
    let relay = RelayProcess::start(
        RelayOptions::public()
            .with_tls(certs.tls())
            .with_auth(auth.relay_auth()),
    )
    .unwrap();
    let url = relay.url("live");
    let ca = certs.ca();
    let publish_token = key.sign("live", &["**"], &[]).unwrap();
    let _server = publishing_server(&[&url], &ca, &["--publish-token", &publish_token]);
    let ca = ca.to_string_lossy().into_owned();
    let urls = [url.to_string()];

    let wrong = AuthKey::generate()
        .unwrap()
        .sign("live", &[], &["**"])
        .unwrap();
    let args = through(&urls, &ca, &["--token", &wrong, "--duration", "5"]);
    let run = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert!(!run.output.status.success(), "{}", run.stderr());
    let stderr = run.stderr();
    assert!(stderr.contains("refused the token"), "{stderr}");
    assert!(
        !stderr.contains(&wrong),
        "the token stays out of what is printed"
    );

    let right = key.sign("live", &[], &["**"]).unwrap();
    let args = through(&urls, &ca, &["--token", &right, "--duration", "3"]);
    let run = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert_ran(&run);
    assert!(num(run.stats(), "/video/frames_decoded") > 0.0);
}

#[test]
fn a_viewer_moves_to_the_next_relay_when_one_is_killed() {
    let certs = RelayCerts::new().unwrap();
    let mut first = RelayProcess::start(RelayOptions::public().with_tls(certs.tls())).unwrap();
    let second = RelayProcess::start(RelayOptions::public().with_tls(certs.tls())).unwrap();
    let (url1, url2) = (first.url("live"), second.url("live"));
    let ca = certs.ca();
    // The origin publishes into both relays.
    let _server = publishing_server(&[&url1, &url2], &ca, &[]);
    let ca = ca.to_string_lossy().into_owned();
    let urls = [url1.to_string(), url2.to_string()];
    let viewer = ViewerProcess::start(&through(
        &urls,
        &ca,
        &["--quality", "3", "--duration", "12"],
    ))
    .unwrap();
    viewer.wait_for_stderr(&format!("through the relay {url1}"), LIMIT);

    // Killed as in a crash: no goodbye, the viewer only hears silence.
    first.kill();
    viewer.wait_for_stderr("connection lost", LIMIT);
    viewer.wait_for_stderr(&format!("through the relay {url2}"), LIMIT);
    let run = viewer.finish(LIMIT).unwrap();
    assert_ran(&run);
    let s = run.stats();
    assert_eq!(num(s, "/connection/lost"), 1.0, "{s:#}");
    assert_eq!(num(s, "/connection/reconnects"), 1.0, "{s:#}");
    assert!(num(s, "/video/frames_decoded") > 30.0, "{s:#}");
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{s:#}");
}

#[test]
fn viewers_recover_from_an_origin_restart_without_restarting() {
    let mut one = one_relay(&[]);
    let (urls, ca_arg) = (one.urls.clone(), one.ca_arg.clone());
    let viewer = ViewerProcess::start(&through(
        &urls,
        &ca_arg,
        &["--quality", "3", "--duration", "15"],
    ))
    .unwrap();
    viewer.wait_for_stderr("connected to the relay", LIMIT);
    one.server.terminate(LIMIT);
    viewer.wait_for_stderr("connection lost", LIMIT);
    let _restarted = publishing_server(&[&one.url], &one.ca, &[]);
    viewer.wait_for_stderr("reconnected", LIMIT);
    let run = viewer.finish(LIMIT).unwrap();
    assert_ran(&run);
    let s = run.stats();
    assert!(num(s, "/connection/reconnects") >= 1.0, "{s:#}");
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{s:#}");
}

#[test]
fn hostile_input_from_the_relay_side_is_told_and_the_origin_keeps_serving() {
    let mut one = one_relay(&[]);
    let (url, urls, ca_arg) = (one.url.clone(), one.urls.clone(), one.ca_arg.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hostile = runtime.block_on(async {
        moq::connect(&url, one.relay.trust(), Role::Both)
            .await
            .unwrap()
    });

    // A catalog that is not JSON: the viewer says so and stops (there is nothing to play).
    let broken = hostile.publish("broken.hang", "catalog.json").unwrap();
    broken
        .write_group(&[b"{ this is not a catalog".as_slice()])
        .unwrap();
    let args = through(
        &urls,
        &ca_arg,
        &["--broadcast", "broken.hang", "--duration", "5"],
    );
    let run = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert!(!run.output.status.success(), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("the catalog of \"broken.hang\" cannot be read"),
        "{}",
        run.stderr()
    );

    // A good catalog whose track carries garbage and an object over the viewer's limit:
    // counted, said, and the viewer goes on to the end of its run.
    let catalog = r#"{"video":{"renditions":{"360p":{"codec":"av01.0.04M.08","codedWidth":640,"codedHeight":360}}}}"#;
    let evil = hostile
        .publish_tracks("evil.hang", &["catalog.json", "360p"])
        .unwrap();
    evil.write_group_to("catalog.json", &[catalog.as_bytes()])
        .unwrap();
    let viewer = ViewerProcess::start(&through(
        &urls,
        &ca_arg,
        &["--broadcast", "evil.hang", "--duration", "6"],
    ))
    .unwrap();
    viewer.wait_for_stderr("connected to the relay", LIMIT);
    let writer = std::thread::spawn(move || {
        // A hang frame is a varint timestamp, then the codec's bytes: 9 MiB of them is over
        // the limit; a frame of bytes that are not AV1 does not decode.
        let mut oversize = vec![0u8; 9 * 1024 * 1024 + 1];
        oversize[0] = 0;
        // The oversize group goes last in each round: a newer group would overtake it.
        for _ in 0..3 {
            evil.write_group_to("360p", &[b"\x01not av1 at all".as_slice()])
                .unwrap();
            evil.write_group_to("360p", &[oversize.as_slice()]).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
        evil
    });
    // Meanwhile the hostile side asks the origin's broadcast for a track it does not have.
    runtime.block_on(async {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            hostile.subscribe("streamsocket.hang", "no-such-track"),
        )
        .await;
    });
    let run = viewer.finish(LIMIT).unwrap();
    let _evil = writer.join().unwrap();
    assert_ran(&run);
    let s = run.stats();
    assert!(num(s, "/video/frames_malformed") >= 1.0, "{s:#}");
    assert!(
        run.stderr()
            .contains("the relay sent an object of 9437185 bytes"),
        "{}",
        run.stderr()
    );

    // The origin is unharmed: it runs, and a viewer through the relay decodes its stream.
    assert!(one.server.is_running());
    let args = through(&urls, &ca_arg, &["--duration", "3"]);
    let run = run_viewer(args[0], &args[1..], &[], LIMIT).unwrap();
    assert_ran(&run);
    assert!(num(run.stats(), "/video/frames_decoded") > 0.0);
}
