//! A real Media over QUIC relay (`moq-relay`, installed by `scripts/install-deps.sh`) on
//! loopback, and the auth server its JWT checks go through (issue 16).
//!
//! [`RelayProcess`] starts the relay on free loopback ports, waits until it serves, and
//! kills it when dropped (or on purpose, for failover tests: [`RelayProcess::kill`] and
//! [`RelayProcess::restart`], which comes back on the same ports). [`AuthServer`] is
//! moq-auth's reference auth server in process, the one `moq auth serve` runs: relay 0.17
//! does not verify tokens itself, it asks `--auth-url` about every session.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};

/// The relay version the project installs and tests against; the moq crates in this
/// crate's Cargo.toml are the ones it is built with.
pub const MOQ_RELAY_VERSION: &str = "0.17.10";

/// How long a relay may take to start serving on a busy 2-core machine.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Where `scripts/install-deps.sh` installs the project's tools:
/// `$STREAMSOCKET_TOOLS`, else `~/.cache/streamsocket/tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("STREAMSOCKET_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".cache/streamsocket/tools")
        }
    }
}

/// The `moq-relay` binary: `$STREAMSOCKET_MOQ_RELAY`, else the one `scripts/install-deps.sh`
/// installs, with an error saying how to get it when it is missing.
pub fn moq_relay_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STREAMSOCKET_MOQ_RELAY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "STREAMSOCKET_MOQ_RELAY is {}, which is not a file: point it at a moq-relay \
                 {MOQ_RELAY_VERSION} binary, or unset it and run scripts/install-deps.sh",
                path.display()
            );
        }
        return Ok(path);
    }
    let path = tools_dir()
        .join(format!("moq-relay-{MOQ_RELAY_VERSION}"))
        .join("bin/moq-relay");
    if !path.is_file() {
        bail!(
            "moq-relay {MOQ_RELAY_VERSION} is not installed at {}: run scripts/install-deps.sh \
             (it builds it once with cargo install), or set STREAMSOCKET_MOQ_RELAY to a moq-relay binary",
            path.display()
        );
    }
    Ok(path)
}

/// Who the relay admits.
#[derive(Debug, Clone)]
pub enum RelayAuth {
    /// `--auth-public PATTERN`: anybody may publish and subscribe under the pattern (`**`:
    /// everything). A JWT in the URL is ignored.
    Public(String),
    /// `--auth-url URL`: every session is decided by the auth server at that URL
    /// ([`AuthServer::url`]), which checks the `?jwt=` token.
    Url(String),
}

/// The relay's certificate.
#[derive(Debug, Clone)]
pub enum RelayTls {
    /// `--listen-tls-generate localhost`: a self-signed certificate made at start (a new one
    /// on each start), trusted by its fingerprint ([`RelayProcess::fingerprint`]).
    Generate,
    /// `--listen-tls-cert/--listen-tls-key` from a `streamsocket-certs` directory (made with
    /// [`RelayCerts`]): valid for localhost and 127.0.0.1, signed by its `ca.pem`, and the
    /// same across restarts. Relays of one cluster share it and trust each other by the CA.
    Certs(PathBuf),
}

/// A certificate directory (`ca.pem`, `server.pem`, `server.key`) made by our own
/// certificate code, for relays and the clients that trust them, as `certs/` in a working
/// directory (where relays started from a configuration file run: relays/*.toml name
/// `certs/...`); removed when dropped.
pub struct RelayCerts {
    work: tempfile::TempDir,
}

impl RelayCerts {
    pub fn new() -> anyhow::Result<Self> {
        let work = tempfile::tempdir()?;
        streamsocket_certs::generate(&work.path().join("certs"), &[])?;
        Ok(Self { work })
    }

    /// The certificate directory.
    pub fn dir(&self) -> PathBuf {
        self.work.path().join("certs")
    }

    /// The directory holding `certs/`.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    pub fn ca(&self) -> PathBuf {
        streamsocket_certs::CertPaths::new(self.dir()).ca_cert()
    }

    pub fn tls(&self) -> RelayTls {
        RelayTls::Certs(self.dir())
    }
}

/// How to start a relay. [`RelayOptions::public`] is a standalone relay anybody may use.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub auth: RelayAuth,
    pub tls: RelayTls,
    /// `--cluster-connect`: relays this one dials as cluster peers (it publishes what it
    /// has to them and subscribes to what they have).
    pub cluster_connect: Vec<RelayPeer>,
    /// More flags, after the ones above.
    pub extra: Vec<String>,
    /// A configuration file (TOML) the flags above override, and the directory the relay
    /// runs in (its relative paths are relative to it).
    pub config: Option<(PathBuf, PathBuf)>,
}

/// A cluster peer to dial, with how to trust its certificate.
#[derive(Debug, Clone)]
pub struct RelayPeer {
    pub url: String,
    pub tls: PeerTls,
}

#[derive(Debug, Clone)]
pub enum PeerTls {
    /// `--connect-tls-root CA`.
    Ca(PathBuf),
    /// `--connect-tls-fingerprint HEX` (a generated certificate; a restarted peer has
    /// another).
    Fingerprint(String),
}

impl RelayOptions {
    /// Anybody may publish and subscribe everything; a generated certificate.
    pub fn public() -> Self {
        Self {
            auth: RelayAuth::Public("**".into()),
            tls: RelayTls::Generate,
            cluster_connect: Vec::new(),
            extra: Vec::new(),
            config: None,
        }
    }

    /// A relay from one of the committed configurations (`relays/relay1.toml`...), run in
    /// `certs`' working directory (they name `certs/...`), on free ports rather than the
    /// file's and with its certificates, anonymous access and `cluster_connect` given as
    /// flags (which override the file's).
    pub fn from_config(file: &Path, certs: &RelayCerts) -> Self {
        Self {
            config: Some((file.to_path_buf(), certs.work_dir().to_path_buf())),
            ..Self::public().with_tls(certs.tls())
        }
    }

    pub fn with_auth(mut self, auth: RelayAuth) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_tls(mut self, tls: RelayTls) -> Self {
        self.tls = tls;
        self
    }

    /// Dials `peer` as a cluster peer.
    pub fn connect_to(mut self, peer: &RelayProcess) -> Self {
        self.cluster_connect.push(peer.as_peer());
        self
    }

    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// The command-line flags (without the listen addresses).
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        match &self.tls {
            RelayTls::Generate => args.extend(["--listen-tls-generate".into(), "localhost".into()]),
            RelayTls::Certs(dir) => {
                let paths = streamsocket_certs::CertPaths::new(dir);
                args.push("--listen-tls-cert".into());
                args.push(paths.server_cert().to_string_lossy().into_owned());
                args.push("--listen-tls-key".into());
                args.push(paths.server_key().to_string_lossy().into_owned());
            }
        }
        match &self.auth {
            RelayAuth::Public(pattern) => args.extend(["--auth-public".into(), pattern.clone()]),
            RelayAuth::Url(url) => args.extend(["--auth-url".into(), url.clone()]),
        }
        for peer in &self.cluster_connect {
            args.extend(["--cluster-connect".into(), peer.url.clone()]);
            match &peer.tls {
                PeerTls::Ca(ca) => args.extend([
                    "--connect-tls-root".into(),
                    ca.to_string_lossy().into_owned(),
                ]),
                PeerTls::Fingerprint(hex) => {
                    args.extend(["--connect-tls-fingerprint".into(), hex.clone()])
                }
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// A `moq-relay` process on loopback, killed when dropped.
pub struct RelayProcess {
    child: Option<Child>,
    binary: PathBuf,
    options: RelayOptions,
    /// Its QUIC (UDP) address.
    pub addr: SocketAddr,
    /// Its plain HTTP listener (TCP): `/certificate.sha256`, `/announced`, WebSocket.
    pub http_addr: SocketAddr,
    fingerprint: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl RelayProcess {
    /// Starts a relay on free loopback ports and waits until it serves.
    pub fn start(options: RelayOptions) -> anyhow::Result<Self> {
        let binary = moq_relay_binary()?;
        let log_dir = tempfile::tempdir()?;
        let log = log_dir.path().join("moq-relay.log");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let mut relay = Self {
            child: None,
            binary,
            options,
            addr: any,
            http_addr: any,
            fingerprint: String::new(),
            log,
            _log_dir: log_dir,
        };
        relay.spawn(any, any)?;
        Ok(relay)
    }

    fn spawn(&mut self, listen: SocketAddr, http: SocketAddr) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.binary);
        if let Some((file, dir)) = &self.options.config {
            cmd.arg(file).current_dir(dir);
        }
        cmd.arg("--listen")
            .arg(listen.to_string())
            .arg("--web-http-listen")
            .arg(http.to_string())
            .args(["--log-level", "info"])
            .args(self.options.args())
            // Its log is read by tests: no colour codes. The relay refuses to start on
            // removed `MOQ_*` settings, so none leak in from the environment.
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MOQ_") {
                cmd.env_remove(key);
            }
        }
        // Only this start's lines count (a restart appends to the same log).
        let log_start = self.log().len();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        // It logs its listeners once bound (ports chosen)...
        let (addr, http_addr) = loop {
            let text = self.log();
            let text = &text[log_start.min(text.len())..];
            if let (Some(quic), Some(web)) =
                (listening_addr(text, "quic"), listening_addr(text, "http"))
            {
                break (quic, web);
            }
            self.check_alive(started)?;
            std::thread::sleep(Duration::from_millis(20));
        };
        self.addr = addr;
        self.http_addr = http_addr;
        // ...and serves its web routes and QUIC together (one loop): it is ready when its
        // HTTP listener answers with the certificate's fingerprint.
        loop {
            if let Ok((200, body)) = crate::http_get(http_addr, "/certificate.sha256") {
                self.fingerprint = body.trim().to_string();
                return Ok(());
            }
            self.check_alive(started)?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails when the relay exited or took too long to start, with its log.
    fn check_alive(&mut self, started: Instant) -> anyhow::Result<()> {
        let child = self.child.as_mut().expect("spawned");
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "moq-relay exited before it was ready ({status}); its log:\n{}",
                self.log()
            );
        }
        if started.elapsed() > START_LIMIT {
            bail!(
                "moq-relay did not serve within {START_LIMIT:?}; its log:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// `https://127.0.0.1:PORT/PATH` (PATH without its leading slash; may carry a query).
    pub fn url(&self, path: &str) -> url::Url {
        format!(
            "https://127.0.0.1:{}/{}",
            self.addr.port(),
            path.trim_start_matches('/')
        )
        .parse()
        .expect("a relay URL")
    }

    /// The SHA-256 of its certificate, in hex, as it serves it at `/certificate.sha256`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How a client trusts it: its CA when it runs on [`RelayCerts`], else its fingerprint.
    pub fn trust(&self) -> streamsocket_client::Trust {
        match &self.options.tls {
            RelayTls::Certs(dir) => {
                streamsocket_client::Trust::Ca(streamsocket_certs::CertPaths::new(dir).ca_cert())
            }
            RelayTls::Generate => streamsocket_client::Trust::Pinned(
                self.fingerprint
                    .parse()
                    .expect("the relay serves a SHA-256 in hex"),
            ),
        }
    }

    /// How another relay dials this one as a cluster peer.
    pub fn as_peer(&self) -> RelayPeer {
        RelayPeer {
            url: self.url("").to_string(),
            tls: match &self.options.tls {
                RelayTls::Certs(dir) => {
                    PeerTls::Ca(streamsocket_certs::CertPaths::new(dir).ca_cert())
                }
                RelayTls::Generate => PeerTls::Fingerprint(self.fingerprint.clone()),
            },
        }
    }

    /// What the relay has logged so far (every start of it, in order).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log satisfies `done`, failing after `limit` with `what` and the log.
    pub fn wait_for_log_where(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        crate::wait_for_log_of("moq-relay", || self.log(), what, limit, done);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills it at once (SIGKILL, as a crashed machine): peers and clients are not told.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again (killing it first if it runs) on the same ports, with the same
    /// options, and waits until it serves. A generated certificate is a new one.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn(self.addr, self.http_addr)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in the relay's `listening` line for `kind` (`quic`, `http`):
/// `INFO moq_relay::relay: listening addr=127.0.0.1:4443 kind="quic"`.
fn listening_addr(log: &str, kind: &str) -> Option<SocketAddr> {
    let kind_field = format!("kind=\"{kind}\"");
    log.lines()
        .filter(|l| l.contains(" listening") && l.contains(&kind_field))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse().ok())
        })
}

/// A signing key for relay tokens (moq-auth's JWK, HS256 as `moq auth generate` makes).
pub struct AuthKey {
    key: moq_auth::Key,
}

impl AuthKey {
    pub fn generate() -> anyhow::Result<Self> {
        let key = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None)?;
        Ok(Self { key })
    }

    /// A token for the session path `root` (the URL's path, e.g. `live`) that may publish
    /// the broadcasts matching `publish` and subscribe to those matching `subscribe`
    /// (patterns relative to the root: `**` everything, `show` one broadcast, `show/**` a
    /// subtree), valid for an hour.
    pub fn sign(&self, root: &str, publish: &[&str], subscribe: &[&str]) -> anyhow::Result<String> {
        let patterns = |list: &[&str]| -> anyhow::Result<Vec<moq_auth::Pattern>> {
            list.iter()
                .map(|p| p.parse().with_context(|| format!("pattern {p:?}")))
                .collect()
        };
        let now = SystemTime::now();
        let claims = moq_auth::Claims::default()
            .with_root(root)
            .with_publish(patterns(publish)?)
            .with_subscribe(patterns(subscribe)?)
            .with_issued(now)
            .with_expires(now + Duration::from_secs(3600));
        Ok(self.key.sign(&claims)?)
    }

    /// Writes the key as a JWK file (what `moq auth serve --key` reads).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        Ok(self.key.to_file(path)?)
    }
}

/// moq-auth's reference auth server (what `moq auth serve --key KEY` runs) on a loopback
/// port, on its own thread: it admits a session whose `?jwt=` verifies with the key and
/// grants what the token says, and refuses (403) everything else. Stopped when dropped.
pub struct AuthServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    pub fn start(key: &AuthKey) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key_path = dir.path().join("root.jwk");
        key.write(&key_path)?;
        let mut policy = moq_auth::serve::Policy::default();
        policy.keys = Some(moq_auth::serve::Keys::File(key_path));
        let server = moq_auth::serve::Server::new(policy)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("moq-auth-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::select! {
                        served = server.serve(listener) => {
                            if let Err(e) = served {
                                eprintln!("moq-auth server failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                })
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// What the relay's `--auth-url` is.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn relay_auth(&self) -> RelayAuth {
        RelayAuth::Url(self.url())
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a StreamSocket server (test source) publishing into every relay URL in `urls`,
/// their certificates checked against `ca`, with `extra` server options. It returns at
/// once; [`wait_publishing`] waits for the sessions.
pub fn start_publishing(
    urls: &[&str],
    ca: &Path,
    extra: &[&str],
) -> anyhow::Result<crate::ServerProcess> {
    let ca = ca.to_str().context("a UTF-8 CA path")?;
    let mut args = vec!["--publish-ca", ca];
    for url in urls {
        args.extend(["--publish", url]);
    }
    args.extend_from_slice(extra);
    crate::ServerProcess::start(&args)
}

/// Waits until `server` has started `sessions` publishing sessions in all (one per relay,
/// one more per reconnection), failing after `limit`.
pub fn wait_publishing(server: &crate::ServerProcess, sessions: usize, limit: Duration) {
    server.wait_for_log_where("publishing to the relays", limit, |log| {
        log.matches("publishing to the relay").count() >= sessions
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_lines() {
        let log = "2026-12-03T13:00:00.000000Z  INFO moq_relay::web: listening addr=127.0.0.1:40001 kind=\"http\"\n\
                   2026-12-03T13:00:00.000001Z  INFO moq_relay::relay: listening addr=127.0.0.1:40002 kind=\"quic\"\n";
        assert_eq!(
            listening_addr(log, "quic"),
            Some("127.0.0.1:40002".parse().unwrap())
        );
        assert_eq!(
            listening_addr(log, "http"),
            Some("127.0.0.1:40001".parse().unwrap())
        );
        assert_eq!(listening_addr(log, "https"), None);
    }
}
