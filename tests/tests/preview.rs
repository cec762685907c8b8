//! The broadcaster's window under Xvfb: Space pauses the broadcast (no frames reach a viewer,
//! which is told), Space again resumes it with a keyframe, Q stops the server cleanly.

use std::process::Command;
use std::time::Duration;

use streamsocket_tests::{bin, exclusive, num, require_tools, run_with_limit};

#[test]
fn space_pauses_and_resumes_the_broadcast_and_q_stops_the_server() {
    let _machine = exclusive();
    require_tools(&["xvfb-run", "xdotool"]);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // Inside the virtual display: the server with its preview, a headless viewer; once the
    // viewer decodes, Space pauses; after 1.5 s of pause Space resumes; when the viewer is
    // done, Q stops the server. Each step waits for the log line that says the last one
    // happened. The test picture size (streamsocket_tests::TEST_PICTURE), as for every test.
    let script = r#"
wait_for() { until grep -q "$2" "$1"; do kill -0 $3 2>/dev/null || { echo "process gone waiting for $2"; exit 1; }; sleep 0.05; done; }
"$SERVER_BIN" --listen 127.0.0.1:0 --certs "$CERTS" --width 640 --height 360 --preview >"$SOUT" 2>"$SLOG" &
SPID=$!
wait_for "$SOUT" "listening on" $SPID
ADDR=$(grep "listening on" "$SOUT" | awk '{print $3}')
"$CLIENT" "$ADDR" --ca "$CERTS/ca.pem" --headless --quality 1 --duration 7 --stats-json "$STATS" 2>"$VLOG" &
VPID=$!
WID=$(xdotool search --sync --name "StreamSocket server preview" | head -1)
wait_for "$SLOG" "preview window open" $SPID
wait_for "$VLOG" "first frame decoded" $VPID
xdotool windowfocus "$WID" keydown space sleep 0.2 keyup space
wait_for "$VLOG" "the broadcaster paused the stream" $VPID
sleep 1.5
xdotool windowfocus "$WID" keydown space sleep 0.2 keyup space
wait_for "$VLOG" "the broadcaster resumed the stream" $VPID
wait $VPID || { echo "viewer failed"; exit 1; }
xdotool windowfocus "$WID" keydown q sleep 0.2 keyup q
wait $SPID
echo "server exit $?"
"#;
    let out = run_with_limit(
        Command::new("xvfb-run")
            .args(["-a", "sh", "-c", script])
            .env("SERVER_BIN", bin("streamsocket-server"))
            .env("CLIENT", bin("streamsocket-client"))
            .env("CERTS", path("certs"))
            .env("SOUT", path("server.out"))
            .env("SLOG", path("server.log"))
            .env("VLOG", path("viewer.log"))
            .env("STATS", path("stats.json")),
        Duration::from_secs(60),
    )
    .unwrap();
    let read = |name: &str| std::fs::read_to_string(path(name)).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("server exit 0"),
        "{stdout}\nserver:\n{}\nviewer:\n{}",
        read("server.log"),
        read("viewer.log")
    );
    let server_log = read("server.log");
    for line in [
        "broadcast paused",
        "broadcast resumed",
        "stop asked from the preview window",
    ] {
        assert!(server_log.contains(line), "{line}:\n{server_log}");
    }
    let s: serde_json::Value = serde_json::from_str(&read("stats.json")).unwrap();
    assert_eq!(num(&s, "/broadcast/pauses"), 1.0, "{s:#}");
    assert_eq!(num(&s, "/broadcast/resumes"), 1.0, "{s:#}");
    // Only frames already in flight when the pause began may arrive during it.
    assert!(num(&s, "/broadcast/frames_during_pause") <= 3.0, "{s:#}");
    assert_eq!(num(&s, "/broadcast/resumed_on_keyframe"), 1.0, "{s:#}");
    // The sequence numbers the encoders used during the pause are not losses.
    assert_eq!(num(&s, "/video/frames_skipped"), 0.0, "{s:#}");
    // Frames flowed before and after: 7 s minus a 1.5 s pause.
    assert!(num(&s, "/video/frames_decoded") > 60.0, "{s:#}");
    assert_eq!(num(&s, "/video/decode_errors"), 0.0, "{s:#}");
}
