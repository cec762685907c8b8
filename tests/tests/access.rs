//! Only invited viewers get in: a server with a token refuses viewers without it or with a
//! wrong one, each with an error that says what to do; a full server refuses the next viewer
//! while the admitted one keeps watching.

use std::time::Duration;

use streamsocket_tests::{
    assert_kept_watching, exclusive, run_viewer, spawn_viewer, ServerProcess,
};

/// A viewer of `server` for a moment, with `extra` options; returns whether it succeeded and
/// what it said.
fn try_viewer(server: &ServerProcess, extra: &[&str]) -> (bool, String) {
    let ca = server.ca();
    let mut args = vec![
        "--headless",
        "--duration",
        "2",
        "--ca",
        ca.to_str().unwrap(),
    ];
    args.extend(extra);
    let run = run_viewer(
        &server.addr.to_string(),
        &args,
        &[],
        Duration::from_secs(30),
    )
    .expect("viewer runs");
    (run.output.status.success(), run.stderr())
}

#[test]
fn a_token_and_a_viewer_limit_keep_out_whoever_is_not_invited() {
    let _machine = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# who may watch\nalice 4lice-t0ken\nbob b0b-t0ken\n",
    )
    .unwrap();
    let server = ServerProcess::start(&[
        "--token-file",
        tokens.to_str().unwrap(),
        "--max-viewers",
        "1",
    ])
    .expect("server starts");

    let (ok, said) = try_viewer(&server, &[]);
    assert!(
        !ok && said.contains("needs a token: pass --token"),
        "{said}"
    );
    let (ok, said) = try_viewer(&server, &["--token", "b0b-t0ke"]);
    assert!(!ok && said.contains("did not accept the token"), "{said}");
    assert!(
        !said.contains("b0b-t0ke"),
        "the viewer does not echo tokens: {said}"
    );

    // Alice watches; while she does, the server is full for Bob.
    let alice = spawn_viewer(&server, &["--duration", "6", "--token", "4lice-t0ken"]);
    server.wait_for_log_where("alice joining", Duration::from_secs(20), |log| {
        log.contains("token=alice")
    });
    let (ok, said) = try_viewer(&server, &["--token", "b0b-t0ken"]);
    assert!(!ok && said.contains("the server is full"), "{said}");
    assert_kept_watching(&alice.join().unwrap(), 6.0, "alice");

    // The server logs who was turned away and why, never the tokens themselves.
    let log = server.log();
    assert!(log.contains("turned away"), "{log}");
    for secret in ["4lice-t0ken", "b0b-t0ken", "b0b-t0ke"] {
        assert!(!log.contains(secret), "the log shows a token:\n{log}");
    }
}

#[test]
fn a_token_taken_out_of_the_file_ends_that_viewers_session_alone() {
    let _machine = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alice 4lice-t0ken\nbob b0b-t0ken\n").unwrap();
    let server = ServerProcess::start(&["--token-file", tokens.to_str().unwrap()]).unwrap();

    let alice = spawn_viewer(&server, &["--duration", "40", "--token", "4lice-t0ken"]);
    let bob = spawn_viewer(&server, &["--duration", "8", "--token", "b0b-t0ken"]);
    server.wait_for_log_where("both joining", Duration::from_secs(20), |log| {
        log.contains("token=alice") && log.contains("token=bob")
    });

    // The operator takes alice out (and invites carol); the server rereads the file by itself.
    std::fs::write(&tokens, "bob b0b-t0ken\ncarol c4rol-t0ken\n").unwrap();
    server.wait_for_log_where("the token file's reload", Duration::from_secs(20), |log| {
        log.contains("reloaded the token file") && log.contains("withdrawn=1")
    });
    let alice = alice.join().unwrap();
    assert!(
        !alice.output.status.success(),
        "alice kept watching:\n{}",
        alice.stderr()
    );
    assert!(
        alice.stderr().contains("access was revoked"),
        "{}",
        alice.stderr()
    );
    let (ok, said) = try_viewer(&server, &["--token", "4lice-t0ken"]);
    assert!(!ok && said.contains("did not accept the token"), "{said}");
    let (ok, said) = try_viewer(&server, &["--token", "c4rol-t0ken"]);
    assert!(ok, "carol was not admitted: {said}");
    assert_kept_watching(&bob.join().unwrap(), 8.0, "bob");
}
