//! Helpers for end-to-end tests and benchmarks: start the real `streamsocket-server` and
//! `streamsocket-client` binaries on loopback and read what they report.
//!
//! The binaries come from the same target directory as the test executable; build them first
//! (`cargo build --workspace`, which `scripts/test.sh` does).

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

pub mod moq;
pub mod relay;
pub mod web;
use serde_json::Value;

/// End-to-end tests encode video: two at once on a 2-core machine would starve each other.
/// Each test holds this while its processes run.
static MACHINE: Mutex<()> = Mutex::new(());

/// The machine, held: by this process's other tests (a mutex) and by other test binaries or
/// runs on the same build (a file lock beside the binaries, released when the holder ends).
pub struct Exclusive {
    _file: std::fs::File,
    _in_process: MutexGuard<'static, ()>,
}

pub fn exclusive() -> Exclusive {
    let in_process = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    let path = bin_dir().join("streamsocket-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    Exclusive {
        _file: file,
        _in_process: in_process,
    }
}

/// Where the workspace binaries are: beside the running test executable's folder.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // Tests run from target/<profile>/deps/, binaries (benchmarks) from target/<profile>/.
    let mut dir = exe.parent().expect("target dir").to_path_buf();
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir").to_path_buf();
    }
    dir
}

/// Path of a workspace binary built beside the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A `streamsocket-server` process on a loopback port, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub certs: PathBuf,
    _certs_dir: Option<tempfile::TempDir>,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    /// What the server printed on standard output after its address and fingerprint.
    stdout_lines: Arc<Mutex<Vec<String>>>,
}

/// The picture size tests and benchmarks run the test source at unless they choose: 640x360
/// (ladder 360p, 240p, 180p), the size the latency targets are set at, and light enough for
/// CI's 2 cores to run several decoding viewers beside the server. The shipped default is
/// 1280x720 ([`ServerProcess::start_as_shipped`]).
pub const TEST_PICTURE: [&str; 4] = ["--width", "640", "--height", "360"];

/// Whether a server option sets the picture size (`--width 640` or `--width=640`).
fn sets_size(arg: &str) -> bool {
    ["--width", "--height"]
        .iter()
        .any(|flag| arg == *flag || arg.starts_with(&format!("{flag}=")))
}

/// The server options [`ServerProcess::start`] runs with `extra`, as benchmarks print them:
/// `extra`, after [`TEST_PICTURE`] unless `extra` sets the size.
pub fn server_options(extra: &[&str]) -> Vec<String> {
    let sized = extra.iter().any(|a| sets_size(a));
    let picture: &[&str] = if sized { &[] } else { &TEST_PICTURE };
    picture.iter().chain(extra).map(|s| s.to_string()).collect()
}

impl ServerProcess {
    /// Starts a server with fresh certificates in a temporary directory, at
    /// [`TEST_PICTURE`] unless `extra` sets the size.
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        Self::start_with_certs(&certs, Some(dir), extra)
    }

    /// Starts a server with its shipped picture size and ladder (only the test source and a
    /// loopback address chosen, as for every test).
    pub fn start_as_shipped(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        Self::spawn(&certs, Some(dir), extra, false)
    }

    pub fn start_with_certs(
        certs: &Path,
        owner: Option<tempfile::TempDir>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn(certs, owner, extra, true)
    }

    fn spawn(
        certs: &Path,
        owner: Option<tempfile::TempDir>,
        extra: &[&str],
        test_picture: bool,
    ) -> anyhow::Result<Self> {
        let log_dir = tempfile::tempdir()?;
        let log = log_dir.path().join("server.log");
        // The embedded test source unless the test chooses: a machine with a camera or a
        // microphone must not change what the tests see.
        let chooses = |flags: &[&str]| extra.iter().any(|a| flags.contains(a));
        let mut defaults = Vec::new();
        if !chooses(&["--listen"]) {
            defaults.extend(["--listen", "127.0.0.1:0"]);
        }
        if !chooses(&["--video", "--camera"]) {
            defaults.extend(["--video", "test"]);
        }
        if !chooses(&["--audio", "--microphone"]) {
            defaults.extend(["--audio", "test"]);
        }
        if test_picture && !extra.iter().any(|a| sets_size(a)) {
            defaults.extend(TEST_PICTURE);
        }
        let mut child = Command::new(bin("streamsocket-server"))
            .arg("--certs")
            .arg(certs)
            .args(defaults)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting streamsocket-server")?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        let mut fingerprint = None;
        while addr.is_none() || fingerprint.is_none() {
            let Some(line) = lines.next() else {
                let mut text = String::new();
                std::fs::File::open(&log)?.read_to_string(&mut text)?;
                bail!("server exited before it was ready:\n{text}");
            };
            let line = line?;
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.trim().parse()?);
            } else if let Some(f) = line.strip_prefix("fingerprint ") {
                fingerprint = Some(f.trim().to_string());
            }
        }
        // Keep draining stdout so the server never blocks on it; keep what it says.
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let kept = stdout_lines.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().expect("not poisoned").push(line);
            }
        });
        Ok(Self {
            child,
            addr: addr.expect("set"),
            fingerprint: fingerprint.expect("set"),
            certs: certs.to_path_buf(),
            _certs_dir: owner,
            log,
            _log_dir: log_dir,
            stdout_lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ca(&self) -> PathBuf {
        self.certs.join("ca.pem")
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server's log contains `needle` (polling the log file).
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < limit,
                "server never logged {needle:?} within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (blocking) until the server's log satisfies `done`, failing after `limit` with
    /// `what` and the log.
    pub fn wait_for_log_where(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        wait_for_log_of("the server", || self.log(), what, limit, done);
    }

    /// What the server has printed on standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout_lines.lock().expect("not poisoned").clone()
    }

    /// An address the server printed on standard output after `prefix` (`web page https://`,
    /// `metrics http://`), on loopback.
    pub fn printed_addr(&self, prefix: &str) -> SocketAddr {
        let line = self.wait_for_stdout_line(prefix, Duration::from_secs(10));
        let hostport = line[prefix.len()..].split('/').next().expect("host:port");
        let port: u16 = hostport
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Waits until the server printed a line starting with `prefix` on standard output.
    pub fn wait_for_stdout_line(&self, prefix: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let lines = self.stdout_lines.lock().expect("not poisoned").clone();
            if let Some(l) = lines.iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            assert!(
                started.elapsed() < limit,
                "server never printed a line starting {prefix:?}: {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the server SIGTERM and waits for it to exit, failing after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the server did not exit within {limit:?} of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion, killing it after `limit`.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> anyhow::Result<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "{cmd:?} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A numeric field of /proc/PID/status (e.g. "VmRSS:" in KiB, "Threads:"): the first word
/// of its value.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Waits until the file at `path` contains `needle` (polling it), failing after `limit`.
pub fn wait_for_file(path: &Path, needle: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{} never contained {needle:?} within {limit:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A finished viewer run: its exit status, what it printed and the stats it wrote.
pub struct ViewerRun {
    pub output: Output,
    pub stats: Option<Value>,
}

impl ViewerRun {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stats(&self) -> &Value {
        self.stats
            .as_ref()
            .unwrap_or_else(|| panic!("viewer wrote no stats; stderr:\n{}", self.stderr()))
    }
}

/// Runs `streamsocket-client` with `args` (after the server address) and reads its stats.
/// `wrapper` runs it under another program (e.g. `xvfb-run -a`).
pub fn run_viewer(
    server: &str,
    args: &[&str],
    wrapper: &[&str],
    limit: Duration,
) -> anyhow::Result<ViewerRun> {
    let dir = tempfile::tempdir()?;
    let stats_path = dir.path().join("stats.json");
    let client = bin("streamsocket-client");
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&client);
            c
        }
        None => Command::new(&client),
    };
    cmd.arg(server)
        .args(args)
        .arg("--stats-json")
        .arg(&stats_path);
    let output = run_with_limit(&mut cmd, limit)?;
    let stats = match std::fs::read_to_string(&stats_path) {
        Ok(text) => {
            Some(serde_json::from_str(&text).map_err(|e| anyhow!("bad stats JSON: {e}\n{text}"))?)
        }
        Err(_) => None,
    };
    Ok(ViewerRun { output, stats })
}

/// A `streamsocket-client` running on its own, its standard error written to a file that
/// a test can watch while it runs ([`Self::wait_for_stderr`]).
pub struct ViewerProcess {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl ViewerProcess {
    /// Starts `streamsocket-client ARGS --stats-json <temp>`.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let child = Command::new(bin("streamsocket-client"))
            .args(args)
            .arg("--stats-json")
            .arg(dir.path().join("stats.json"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting streamsocket-client")?;
        Ok(Self { child, dir })
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits until the viewer has said `needle`, failing after `limit`.
    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) {
        wait_for_file(&self.dir.path().join("stderr"), needle, limit);
    }

    /// Waits for the viewer to end (killing it after `limit`) and reads its stats.
    pub fn finish(mut self, limit: Duration) -> anyhow::Result<ViewerRun> {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                bail!(
                    "the viewer still ran after {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stats = std::fs::read_to_string(self.dir.path().join("stats.json"))
            .ok()
            .map(|text| serde_json::from_str(&text))
            .transpose()?;
        Ok(ViewerRun {
            output: Output {
                status,
                stdout: Vec::new(),
                stderr: self.stderr().into_bytes(),
            },
            stats,
        })
    }
}

impl Drop for ViewerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number from the stats, failing the test with the whole JSON if it is missing.
pub fn num(stats: &Value, pointer: &str) -> f64 {
    stats
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("stats have no number at {pointer}:\n{stats:#}"))
}

/// Starts a headless viewer of `server` on its own thread (`args` come after `--headless
/// --ca <server's CA>`); join the handle for its run.
pub fn spawn_viewer(server: &ServerProcess, args: &[&str]) -> std::thread::JoinHandle<ViewerRun> {
    let addr = server.addr.to_string();
    let mut all: Vec<String> = vec![
        "--headless".into(),
        "--ca".into(),
        server.ca().to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    std::thread::spawn(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        run_viewer(&addr, &args, &[], Duration::from_secs(60)).expect("viewer ran")
    })
}

/// Asserts that a viewer kept watching for a run of `seconds`: it exited cleanly, received at
/// least half the frames of the run (the machine is shared and slow) and decoded nearly every
/// frame it received, without decoding errors, and decoded at least half its audio packets.
pub fn assert_kept_watching(run: &ViewerRun, seconds: f64, who: &str) {
    assert!(
        run.output.status.success(),
        "{who} failed:\n{}",
        run.stderr()
    );
    let s = run.stats();
    let received = num(s, "/video/frames_received");
    assert!(
        received >= 30.0 * (seconds - 1.0) * 0.5,
        "{who} starved: {received} frames\n{s:#}"
    );
    assert!(
        num(s, "/video/frames_decoded") >= received - 2.0,
        "{who} decoded too few:\n{s:#}"
    );
    assert_eq!(num(s, "/video/decode_errors"), 0.0, "{who}:\n{s:#}");
    assert!(
        num(s, "/audio/packets_decoded") >= 50.0 * (seconds - 1.0) * 0.5,
        "{who} audio:\n{s:#}"
    );
}

/// A `streamsocket-netem` relay in front of a server, killed when dropped.
pub struct Relay {
    child: Child,
    /// Where viewers connect.
    pub addr: String,
}

impl Relay {
    /// Starts a relay to `server` with `set` from the start and `schedule` (see
    /// `streamsocket-netem --help`), seeded with `seed`.
    pub fn start(server: SocketAddr, set: &str, schedule: &str, seed: u64) -> anyhow::Result<Self> {
        let mut child = Command::new(bin("streamsocket-netem"))
            .args([
                "--to",
                &server.to_string(),
                "--set",
                set,
                "--schedule",
                schedule,
            ])
            .args(["--seed", &seed.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting streamsocket-netem")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines
            .next()
            .context("streamsocket-netem exited before relaying")??;
        let addr = first
            .strip_prefix("relaying ")
            .and_then(|r| r.split_whitespace().next())
            .with_context(|| format!("unexpected first line from streamsocket-netem: {first:?}"))?
            .to_string();
        // Keep reading what it prints: a closed pipe would end it.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, addr })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test with a clear message when a tool the install script provides is missing.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is not installed: run scripts/install-deps.sh"
        );
    }
}

/// A raw QUIC connection to `server` that trusts its CA, for tests that speak the protocol
/// by hand (hostile or scripted viewers). Keep the endpoint alive as long as the connection.
pub async fn connect_raw(server: &ServerProcess) -> (quinn::Endpoint, quinn::Connection) {
    let (config, _) =
        streamsocket_client::client_config(streamsocket_client::Trust::Ca(server.ca()), None)
            .expect("client config");
    let endpoint =
        streamsocket_transport::endpoint::client("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
    let conn = endpoint
        .connect_with(config, server.addr, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    (endpoint, conn)
}

/// Polls `log` until `done` holds, failing after `limit` with `what` and the log of `whose`
/// (a condition, never a fixed sleep: it returns as soon as the log shows it).
pub fn wait_for_log_of(
    whose: &str,
    log: impl Fn() -> String,
    what: &str,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) {
    let started = Instant::now();
    while !done(&log()) {
        assert!(
            started.elapsed() < limit,
            "{what} not within {limit:?}; {whose}'s log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `f`, or a panic naming `what` when it takes more than `limit`: a bound for what must
/// happen, so a hung test fails with a message (nothing is timed).
pub async fn within<T>(what: &str, limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// A plain HTTP/1.1 GET on loopback: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no response head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("5\r\nhello\r\n3\r\n ab\r\n0\r\n\r\n"), "hello ab");
    }
}
