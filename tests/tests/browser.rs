//! The web viewer in a real browser: the server serves the page over HTTPS and media over
//! WebTransport; headless Chromium (the system's, driven by `web/test/browser-e2e.mjs` through
//! puppeteer-core) loads the page, and this test asserts on what the page reports: pictures
//! decoded and shown whose timestamp row (read back from the canvas) matches their frame
//! header, a key switching the rendition, Space pausing and resuming, a wrong token refused
//! in words, a page from another origin refused by the server, and a browser without
//! WebTransport told what it lacks.
//!
//! Needs `node`, `/usr/bin/chromium` and `web/node_modules` (`npm ci` in `web/`;
//! `scripts/test.sh` runs it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use streamsocket_tests::{exclusive, ServerProcess};

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Runs the browser script with `args` and returns the JSON it printed. Its output goes to
/// files, not pipes: a pipe nobody reads while waiting would stall a talkative browser.
fn run_browser(args: &[&str]) -> Value {
    let web = web_dir();
    assert!(
        web.join("node_modules/puppeteer-core").is_dir(),
        "{} is missing: run `npm ci` in web/ (scripts/test.sh does)",
        web.join("node_modules/puppeteer-core").display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new("node")
        .arg(web.join("test/browser-e2e.mjs"))
        .args(args)
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("node runs (is Node.js installed?)");
    let limit = Duration::from_secs(240);
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("the browser script printed no JSON ({e}); stdout:\n{stdout}\nstderr:\n{stderr}")
    })
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer}"))
}

#[test]
fn the_web_viewer_plays_switches_pauses_and_is_refused_where_it_must_be() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server starts");
    let guarded = ServerProcess::start(&["--token", "the-right-token"]).expect("server starts");
    let url = format!("https://{}/", server.addr);
    let wrong_token = format!("https://{}/?token=not-the-token", guarded.addr);
    let certs = format!("{},{}", server.certs.display(), guarded.certs.display());
    let v = run_browser(&[
        "--url",
        &url,
        "--certs",
        &certs,
        "--token-url",
        &wrong_token,
    ]);
    let context = || {
        format!(
            "{}\nserver log:\n{}",
            serde_json::to_string_pretty(&v).unwrap(),
            server.log()
        )
    };
    assert!(
        v["error"].is_null(),
        "the browser script failed: {}",
        context()
    );

    // The page loads and connects.
    assert_eq!(v["page"]["state"], "connected", "{}", context());
    let renditions = v["page"]["renditions"].as_array().expect("the ladder");
    assert!(renditions.len() >= 2, "{}", context());

    // Frames decode and show, and every picture whose timestamp row could be read from the
    // canvas is the one its header names.
    let play = &v["play"];
    assert!(u64_at(play, "/video/frames_decoded") >= 60, "{}", context());
    assert!(
        u64_at(play, "/video/frames_presented") >= 60,
        "{}",
        context()
    );
    let read = u64_at(play, "/video/pixel_clock/read");
    assert!(read >= 60, "{}", context());
    assert_eq!(
        u64_at(play, "/video/pixel_clock/matched"),
        read,
        "a picture shown is not the frame its header names: {}",
        context()
    );
    assert_eq!(u64_at(play, "/video/decode_errors"), 0, "{}", context());

    // '2' moved the picture to the second rendition.
    let switched = &v["switched"];
    assert_eq!(switched["rendition"], 1, "{}", context());
    assert_eq!(
        switched["video"]["width"],
        renditions[1]["width"],
        "{}",
        context()
    );
    assert!(
        u64_at(switched, "/video/rendition_switches") >= 1,
        "{}",
        context()
    );
    assert_eq!(
        u64_at(switched, "/video/pixel_clock/matched"),
        u64_at(switched, "/video/pixel_clock/read"),
        "{}",
        context()
    );

    // Space paused (no frame for a whole second) and Space resumed.
    assert_eq!(v["paused"]["paused"], true, "{}", context());
    assert_eq!(v["resumed"]["paused"], false, "{}", context());
    assert!(
        u64_at(&v["resumed"], "/video/frames_presented")
            > u64_at(&v["paused"], "/video/frames_presented"),
        "{}",
        context()
    );

    // A wrong token is refused, with its code and in words.
    let refused = &v["wrong_token"];
    assert_eq!(refused["state"], "refused", "{}", context());
    assert_eq!(refused["close_code"], 10, "{}", context());
    assert_eq!(refused["close_name"], "TokenInvalid", "{}", context());
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("did not accept the token"),
        "{message}: {}",
        context()
    );

    // A page from another origin cannot open a session: the server answers its CONNECT 403.
    assert_eq!(v["other_origin"]["connected"], false, "{}", context());
    let origin = v["other_origin"]["origin"].as_str().expect("the origin");
    server.wait_for_log_where(
        "the server turning the other origin away",
        Duration::from_secs(10),
        |log| log.lines().any(|l| l.contains(origin) && l.contains("403")),
    );

    // A browser without WebTransport says what it lacks and what to use instead.
    assert_eq!(v["unsupported"]["state"], "unsupported", "{}", context());
    let message = v["unsupported"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("WebTransport") && message.contains("Chromium"),
        "{message}"
    );
    // So does one whose WebCodecs cannot decode AV1.
    assert_eq!(v["no_av1"]["state"], "unsupported", "{}", context());
    let message = v["no_av1"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("AV1 decoding in WebCodecs") && message.contains("Chromium"),
        "{message}"
    );
}
