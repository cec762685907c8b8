//! Graceful shutdown: SIGTERM stops the server, every viewer hears why and says so, and
//! nothing panics on the way.

use std::time::Duration;

use streamsocket_tests::{exclusive, spawn_viewer, ServerProcess};

#[test]
fn sigterm_says_goodbye_to_every_viewer() {
    let _machine = exclusive();
    let mut server = ServerProcess::start(&[]).expect("server starts");
    let viewers: Vec<_> = (0..2)
        .map(|_| spawn_viewer(&server, &["--duration", "30"]))
        .collect();
    server.wait_for_log_where("both viewers joining", Duration::from_secs(20), |log| {
        log.matches("viewer joined").count() >= 2
    });
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "server exit {status}:\n{}", server.log());
    for v in viewers {
        let run = v.join().unwrap();
        let said = run.stderr();
        // Told why, not left to time out (that would take the 10 s idle timeout and say
        // "connection lost"), and it ended as a clean exit.
        assert!(
            said.contains("the server ended the session: server shutting down"),
            "{said}"
        );
        assert!(run.output.status.success(), "{said}");
        assert!(!said.contains("panicked"), "{said}");
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
