//! `--quality` takes a rendition's name as the server lists it, and `auto`, end to end: the
//! real server with the test source (640x360: 360p, 240p and 180p), the real viewer.

use std::time::Duration;

use streamsocket_tests::{exclusive, num, spawn_viewer, ServerProcess};

fn watch(server: &ServerProcess, quality: &str, seconds: &str) -> serde_json::Value {
    let run = spawn_viewer(server, &["--quality", quality, "--duration", seconds])
        .join()
        .expect("viewer thread");
    assert!(
        run.output.status.success(),
        "viewer with --quality {quality} failed:\n{}",
        run.stderr()
    );
    run.stats().clone()
}

#[test]
fn quality_takes_a_rendition_name_and_auto() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server starts");
    let ladder = server.wait_for_stdout_line("rendition 3:", Duration::from_secs(5));
    assert!(
        ladder.contains("180p"),
        "the test ladder's third rung: {ladder}"
    );

    // By name: the viewer ends on the 320x180 rung, and not by automatic quality.
    let s = watch(&server, "180p", "4");
    assert_eq!(num(&s, "/video/width"), 320.0, "{s:#}");
    assert_eq!(num(&s, "/video/height"), 180.0, "{s:#}");
    assert_eq!(s["auto"], false, "{s:#}");
    assert!(num(&s, "/video/frames_decoded") >= 30.0, "{s:#}");

    // `auto` is accepted and runs automatic quality.
    let s = watch(&server, "auto", "2");
    assert_eq!(s["auto"], true, "{s:#}");
    assert!(num(&s, "/video/frames_decoded") >= 10.0, "{s:#}");
}
