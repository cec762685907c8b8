//! The viewer verifies the server: a wrong CA, a wrong name or a wrong fingerprint refuses the
//! connection with a message that says which, and how to fix it.

use std::time::Duration;

use streamsocket_tests::{exclusive, run_viewer, ServerProcess};

fn refused(server: &ServerProcess, args: &[&str]) -> String {
    let run = run_viewer(&server.addr.to_string(), args, &[], Duration::from_secs(20)).unwrap();
    assert!(
        !run.output.status.success(),
        "viewer connected although it should not:\n{}",
        run.stderr()
    );
    run.stderr()
}

#[test]
fn certificate_failures_are_refused_with_an_explanation() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let addr = server.addr.to_string();

    // A CA from another installation.
    let other = tempfile::tempdir().unwrap();
    streamsocket_certs_generate(other.path());
    let wrong_ca = other.path().join("ca.pem");
    let err = refused(
        &server,
        &[
            "--headless",
            "--duration",
            "1",
            "--ca",
            wrong_ca.to_str().unwrap(),
        ],
    );
    assert!(err.contains("wrong CA"), "{err}");
    assert!(err.contains("--fingerprint"), "says how to fix it: {err}");

    // The right CA, but a name the certificate is not for.
    let ca = server.ca();
    let err = refused(
        &server,
        &[
            "--headless",
            "--duration",
            "1",
            "--ca",
            ca.to_str().unwrap(),
            "--server-name",
            "elsewhere.example",
        ],
    );
    assert!(err.contains("name mismatch"), "{err}");
    assert!(
        err.contains("elsewhere.example") && err.contains("localhost"),
        "names both: {err}"
    );

    // A pinned fingerprint that is not the server's.
    let wrong_fp = format!("sha256:{}", "ab".repeat(32));
    let err = refused(
        &server,
        &["--headless", "--duration", "1", "--fingerprint", &wrong_fp],
    );
    assert!(err.contains("fingerprint mismatch"), "{err}");
    assert!(
        err.contains(&server.fingerprint),
        "shows the server's real fingerprint: {err}"
    );

    // A malformed fingerprint is a usage error, before any connection.
    let err = refused(&server, &["--headless", "--fingerprint", "sha256:nothex"]);
    assert!(err.contains("64 hex digits"), "{err}");

    // The right pin is accepted, without any CA file.
    let run = run_viewer(
        &addr,
        &[
            "--headless",
            "--duration",
            "1.5",
            "--fingerprint",
            &server.fingerprint,
        ],
        &[],
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(
        run.output.status.success(),
        "pinned viewer failed:\n{}",
        run.stderr()
    );

    // A missing CA file says where to get one.
    let err = refused(&server, &["--headless", "--ca", "/nonexistent/ca.pem"]);
    assert!(
        err.contains("ca.pem") && err.contains("--fingerprint"),
        "{err}"
    );
}

fn streamsocket_certs_generate(dir: &std::path::Path) {
    let out = std::process::Command::new(streamsocket_tests::bin("streamsocket-certs"))
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn certs_tool_names_extra_hosts_and_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(streamsocket_tests::bin("streamsocket-certs"))
        .arg("--dir")
        .arg(dir.path())
        .args(["--host", "cam.example", "--host", "10.1.2.3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("new CA") && text.contains("cam.example") && text.contains("10.1.2.3"),
        "{text}"
    );
    assert!(text.contains("fingerprint:        sha256:"), "{text}");
    let again = std::process::Command::new(streamsocket_tests::bin("streamsocket-certs"))
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept CA"));
}
