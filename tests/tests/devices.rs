//! Device handling on a machine as CI has it: no camera, no microphone, no speakers. Listing
//! says so cleanly, `auto` falls back to the test source and says why, and asking for a device
//! that is not there is a clear error.

use std::process::Command;

use streamsocket_tests::{bin, exclusive, ServerProcess};

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin(program))
        .args(args)
        .output()
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn no_cameras_here() -> bool {
    !std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false)
}

#[test]
fn listing_devices_works_and_says_none_found() {
    let (ok, text) = run("streamsocket-server", &["devices"]);
    assert!(ok, "{text}");
    assert!(text.lines().any(|l| l.starts_with("cameras:")), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("microphones:")),
        "{text}"
    );
    if no_cameras_here() {
        assert!(text.contains("cameras: none found"), "{text}");
    }
    let (ok, text) = run("streamsocket-client", &["devices"]);
    assert!(ok, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("audio outputs:")),
        "{text}"
    );
}

#[test]
fn missing_devices_are_clear_errors() {
    let _guard = exclusive();
    let (_, devices) = run("streamsocket-server", &["devices"]);
    if no_cameras_here() {
        let e = ServerProcess::start(&["--video", "camera"])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no camera found"), "{e}");
    }
    let e = ServerProcess::start(&["--camera", "97"])
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("no camera 97"), "{e}");
    if devices.contains("microphones: none found") {
        let e = ServerProcess::start(&["--video", "test", "--audio", "mic"])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no microphone found"), "{e}");
        let e = ServerProcess::start(&["--video", "test", "--microphone", "Studio X"])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no microphone named \"Studio X\""), "{e}");
    }
}

#[test]
fn auto_falls_back_to_the_test_source_and_says_why() {
    let _guard = exclusive();
    let (_, devices) = run("streamsocket-server", &["devices"]);
    if !(no_cameras_here() && devices.contains("microphones: none found")) {
        return; // a machine with devices streams them; nothing to check here
    }
    let server = ServerProcess::start(&["--video", "auto", "--audio", "auto"]).expect("starts");
    let limit = std::time::Duration::from_secs(10);
    let video = server.wait_for_stdout_line("video:", limit);
    assert!(
        video.starts_with("video: test pattern") && video.ends_with("(no camera found)"),
        "{video}"
    );
    let audio = server.wait_for_stdout_line("audio source:", limit);
    assert!(
        audio.starts_with("audio source: test tone") && audio.ends_with("(no microphone found)"),
        "{audio}"
    );
}
