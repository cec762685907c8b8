//! The real viewer window under Xvfb, driven by the keyboard: pressing 3 switches to the third
//! rendition mid-stream, and a quick tap (pressed and released between two window updates)
//! is not missed.

use std::process::Command;
use std::time::Duration;

use streamsocket_tests::{bin, exclusive, num, require_tools, run_with_limit, ServerProcess};

#[test]
fn pressing_a_number_key_in_the_window_switches_rendition() {
    let _machine = exclusive();
    require_tools(&["xvfb-run", "xdotool"]);
    let server = ServerProcess::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let log = dir.path().join("viewer.log");
    // Inside the virtual display: start the viewer, wait for its window and its first
    // decoded frame, then hold the "3" key down for 200 ms, as a person would press it; then
    // tap "]" as xdotool's `key` does, down and up at once.
    let script = r#"
"$CLIENT" "$SERVER" --ca "$CA" --quality 1 --duration 6 --stats-json "$STATS" 2>"$LOG" &
PID=$!
WID=$(xdotool search --sync --name "StreamSocket" | head -1)
until grep -q "first frame decoded" "$LOG"; do
  kill -0 $PID 2>/dev/null || break
  sleep 0.05
done
xdotool windowfocus "$WID" keydown 3 sleep 0.2 keyup 3
sleep 0.5
xdotool windowfocus "$WID" key bracketright
wait $PID
"#;
    let out = run_with_limit(
        Command::new("xvfb-run")
            .args(["-a", "sh", "-c", script])
            .env("CLIENT", bin("streamsocket-client"))
            .env("SERVER", server.addr.to_string())
            .env("CA", server.ca())
            .env("STATS", &stats)
            .env("LOG", &log),
        Duration::from_secs(60),
    )
    .unwrap();
    let viewer_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "viewer failed:\n{viewer_log}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(
        viewer_log.contains("key Key3: Quality(2)"),
        "the key reached the viewer:\n{viewer_log}"
    );
    assert!(
        viewer_log.contains("key RightBracket: AudioBitrateUp"),
        "the quick tap reached the viewer:\n{viewer_log}"
    );
    assert_eq!(num(&s, "/video/rendition_switches"), 1.0, "{s:#}");
    assert!(
        num(&s, "/video/frames_by_size/320x180") > 10.0,
        "the new size was decoded:\n{s:#}"
    );
    assert_eq!(num(&s, "/video/decode_errors"), 0.0);
    assert!(num(&s, "/video/frames_presented") > 10.0);
}
