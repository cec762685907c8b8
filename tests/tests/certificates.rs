//! Certificates: the viewer verifies the server (a wrong CA, name or fingerprint, an expired
//! or not-yet-valid certificate each refuse the connection with a message that says which and
//! how to fix it); the server reloads its certificate without a restart; mutual TLS with
//! viewer certificates and their revocation; the certs tool.

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

/// Runs a viewer that must connect and watch; returns its run.
fn accepted(server: &ServerProcess, args: &[&str]) -> streamsocket_tests::ViewerRun {
    let run = run_viewer(&server.addr.to_string(), args, &[], Duration::from_secs(20)).unwrap();
    assert!(
        run.output.status.success(),
        "viewer refused although it should not be:\n{}",
        run.stderr()
    );
    run
}

#[test]
fn certificate_failures_are_refused_with_an_explanation() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();

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
    accepted(
        &server,
        &[
            "--headless",
            "--duration",
            "1.5",
            "--fingerprint",
            &server.fingerprint,
        ],
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

fn lifetime(from_days: i64, to_days: i64) -> streamsocket_certs::Lifetime {
    let now = time::OffsetDateTime::now_utc();
    streamsocket_certs::Lifetime {
        not_before: now + time::Duration::days(from_days),
        not_after: now + time::Duration::days(to_days),
    }
}

/// Waits until the server logs that it reloaded its certificate and now serves `fingerprint`.
fn wait_for_reload(server: &ServerProcess, fingerprint: &str) {
    server.wait_for_log_where(
        &format!("reload of {fingerprint}"),
        Duration::from_secs(20),
        |log| {
            log.lines()
                .any(|l| l.contains("reloaded the server certificate") && l.contains(fingerprint))
        },
    );
}

#[test]
fn the_server_reloads_its_certificate_and_viewers_explain_each_bad_one() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).unwrap();
    let ca = server.ca();
    let ca = ca.to_str().unwrap();
    let hosts: Vec<String> = Vec::new();
    // A viewer that watches throughout: a reload leaves open connections alone.
    let watcher = streamsocket_tests::spawn_viewer(&server, &["--duration", "12"]);
    server.wait_for_log_where("the watcher's join", Duration::from_secs(20), |log| {
        log.contains("viewer joined")
    });

    // Files that do not load (a half-written certificate) leave the current one in place.
    std::fs::write(
        server.certs.join("server.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    server.wait_for_log_where("a refused reload", Duration::from_secs(20), |log| {
        log.contains("kept the current server certificate")
    });
    accepted(
        &server,
        &[
            "--headless",
            "--duration",
            "1",
            "--fingerprint",
            &server.fingerprint,
        ],
    );

    // An expired certificate: the reload takes it, and viewers say what is wrong.
    let expired =
        streamsocket_certs::issue_server(&server.certs, &hosts, lifetime(-30, -2)).unwrap();
    wait_for_reload(&server, &expired.fingerprint.to_string());
    assert!(
        server.log().contains("EXPIRED on"),
        "the server warns:\n{}",
        server.log()
    );
    let err = refused(&server, &["--headless", "--duration", "1", "--ca", ca]);
    assert!(
        err.contains("expired certificate") && err.contains("streamsocket-certs renew"),
        "{err}"
    );
    let err = refused(
        &server,
        &[
            "--headless",
            "--duration",
            "1",
            "--fingerprint",
            &expired.fingerprint.to_string(),
        ],
    );
    assert!(
        err.contains("expired certificate"),
        "a pin does not excuse the date: {err}"
    );

    // One that is not valid yet.
    let early = streamsocket_certs::issue_server(&server.certs, &hosts, lifetime(3, 30)).unwrap();
    wait_for_reload(&server, &early.fingerprint.to_string());
    let err = refused(&server, &["--headless", "--duration", "1", "--ca", ca]);
    assert!(
        err.contains("not valid yet") && err.contains("clock"),
        "{err}"
    );

    // A good one again: new viewers get it, and the old pin no longer matches.
    let renewed = streamsocket_certs::generate(&server.certs, &hosts).unwrap();
    let renewed_fp = renewed.fingerprint.to_string();
    wait_for_reload(&server, &renewed_fp);
    accepted(
        &server,
        &[
            "--headless",
            "--duration",
            "1",
            "--fingerprint",
            &renewed_fp,
        ],
    );
    let err = refused(
        &server,
        &[
            "--headless",
            "--duration",
            "1",
            "--fingerprint",
            &server.fingerprint,
        ],
    );
    assert!(
        err.contains("fingerprint mismatch") && err.contains(&renewed_fp),
        "{err}"
    );

    let watched = watcher.join().unwrap();
    streamsocket_tests::assert_kept_watching(
        &watched,
        12.0,
        "the viewer watching during the reloads",
    );
    assert_eq!(
        streamsocket_tests::num(watched.stats(), "/connection/reconnects"),
        0.0,
        "a reload must not cut open connections"
    );
}

#[test]
fn a_server_that_requires_viewer_certificates_explains_every_refusal() {
    let _machine = exclusive();
    // Reload only on SIGHUP here, so that the revocation below proves the signal works.
    let server = ServerProcess::start(&["--require-viewer-cert", "--cert-check", "0"]).unwrap();
    let ca = server.ca();
    let ca = ca.to_str().unwrap();
    let alice = streamsocket_certs::issue_viewer(&server.certs, "alice", lifetime(0, 30)).unwrap();
    let alice_cert = alice.cert.to_str().unwrap();
    let refused_with = |cert: &str| {
        refused(
            &server,
            &["--headless", "--duration", "1", "--ca", ca, "--cert", cert],
        )
    };

    let err = refused(&server, &["--headless", "--duration", "1", "--ca", ca]);
    assert!(
        err.contains("only admits viewers with a certificate") && err.contains("--cert"),
        "{err}"
    );

    let run = accepted(
        &server,
        &[
            "--headless",
            "--duration",
            "1.5",
            "--ca",
            ca,
            "--cert",
            alice_cert,
        ],
    );
    assert!(streamsocket_tests::num(run.stats(), "/video/frames_decoded") > 0.0);
    assert!(
        server.log().contains("viewer_cert=alice"),
        "the server names her:\n{}",
        server.log()
    );

    // A viewer certificate from another installation's CA.
    let other = tempfile::tempdir().unwrap();
    streamsocket_certs::generate(other.path(), &[]).unwrap();
    let mallory =
        streamsocket_certs::issue_viewer(other.path(), "mallory", lifetime(0, 30)).unwrap();
    let err = refused_with(mallory.cert.to_str().unwrap());
    assert!(
        err.contains("not signed by the CA this server trusts"),
        "{err}"
    );

    // The server's own certificate is not a viewer's.
    let server_pem = server.certs.join("server.pem");
    let err = refused_with(server_pem.to_str().unwrap());
    assert!(err.contains("not a viewer certificate"), "{err}");

    // An expired viewer certificate is caught before connecting.
    let old = streamsocket_certs::issue_viewer(&server.certs, "old", lifetime(-30, -1)).unwrap();
    let err = refused_with(old.cert.to_str().unwrap());
    assert!(
        err.contains("not valid now") && err.contains("EXPIRED"),
        "{err}"
    );
    // Presented anyway, the server refuses it: certificate_expired (45), explained.
    let mut expired = streamsocket_client::ViewerIdentity::new(old.cert.clone(), None);
    expired.check_dates = false;
    let closed = presented_and_refused(&server, &expired);
    assert_eq!(closed, 0x100 + 45, "a TLS certificate_expired alert");

    // Alice's certificate is renewed; she watches with the new one. Revoked while she
    // watches, and the server told with SIGHUP: her session ends at once, and neither her new
    // certificate nor the one she had before the renewal gets her back in.
    let old_alice = tempfile::tempdir().unwrap();
    let old_cert = old_alice.path().join("alice.pem");
    std::fs::copy(&alice.cert, &old_cert).unwrap();
    std::fs::copy(&alice.key, old_alice.path().join("alice.key")).unwrap();
    streamsocket_certs::issue_viewer(&server.certs, "alice", lifetime(0, 30)).unwrap();
    let watching =
        streamsocket_tests::spawn_viewer(&server, &["--duration", "40", "--cert", alice_cert]);
    server.wait_for_log_where("alice's second join", Duration::from_secs(20), |log| {
        log.matches("viewer_cert=alice").count() >= 2
    });
    streamsocket_certs::revoke_viewer(&server.certs, "alice").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    server.wait_for_log_where(
        "the revocation list's reload",
        Duration::from_secs(20),
        |log| log.contains("viewer certificate checks reloaded revocation_lists=1 revoked=2"),
    );
    let ended = watching.join().unwrap();
    assert!(
        !ended.output.status.success(),
        "alice kept watching:\n{}",
        ended.stderr()
    );
    assert!(ended.stderr().contains("was revoked"), "{}", ended.stderr());
    for cert in [alice_cert, old_cert.to_str().unwrap()] {
        let err = refused_with(cert);
        assert!(err.contains("it has been revoked"), "{cert}: {err}");
    }
    assert!(
        server.log().contains("turned away during the handshake"),
        "the server logs refusals:\n{}",
        server.log()
    );
}

/// Connects presenting `identity` (unchecked), and returns the QUIC error code of the
/// server's refusal.
fn presented_and_refused(
    server: &ServerProcess,
    identity: &streamsocket_client::ViewerIdentity,
) -> u64 {
    let (config, _) = streamsocket_client::client_config(
        streamsocket_client::Trust::Ca(server.ca()),
        Some(identity),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let endpoint =
            streamsocket_transport::endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let outcome = async {
            let conn = endpoint
                .connect_with(config, server.addr, "localhost")
                .unwrap()
                .await?;
            // TLS 1.3 checks the client's certificate after the client's side is done: the
            // refusal arrives as the connection's close.
            Err::<(), _>(conn.closed().await)
        };
        match tokio::time::timeout(Duration::from_secs(10), outcome).await {
            Ok(Err(quinn::ConnectionError::ConnectionClosed(close))) => u64::from(close.error_code),
            other => panic!("expected the server to refuse the certificate, got {other:?}"),
        }
    })
}

#[test]
fn certs_tool_states_validity_renews_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let tool = |args: &[&str]| {
        let out = std::process::Command::new(streamsocket_tests::bin("streamsocket-certs"))
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = tool(&["--days", "20"]);
    assert!(ok && out.contains("valid until:"), "{out}");
    // A 22-day certificate with 2 days left: due for renewal.
    streamsocket_certs::issue_server(dir.path(), &[], lifetime(-20, 2)).unwrap();
    let (ok, out, _) = tool(&["viewer", "alice"]);
    assert!(
        ok && out.contains("--cert") && out.contains("alice.pem"),
        "{out}"
    );
    let (ok, _, err) = tool(&["viewer", "../escape"]);
    assert!(!ok && err.contains("not a usable viewer name"), "{err}");

    let (ok, out, _) = tool(&["status"]);
    assert!(ok, "a certificate that expires soon is a warning:\n{out}");
    assert!(out.contains("due for renewal"), "{out}");
    assert!(out.contains("viewer (alice)"), "{out}");

    let (ok, out, _) = tool(&["renew"]);
    assert!(ok, "{out}");
    let line_about = |file: &str| {
        out.lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("nothing about {file}:\n{out}"))
            .to_string()
    };
    assert!(line_about("server.pem").starts_with("renewed"), "{out}");
    assert!(line_about("alice.pem").starts_with("kept"), "{out}");
    assert!(line_about("ca.pem").starts_with("kept"), "{out}");

    let (ok, out, _) = tool(&["revoke", "alice"]);
    assert!(ok && out.contains("lists 1 certificate"), "{out}");
    let (_, out, _) = tool(&["status"]);
    assert!(out.contains("[REVOKED]"), "{out}");

    streamsocket_certs::issue_server(dir.path(), &[], lifetime(-10, -1)).unwrap();
    let (ok, out, _) = tool(&["status"]);
    assert!(!ok, "an expired certificate fails the status:\n{out}");
    assert!(out.contains("EXPIRED on"), "{out}");
}
