//! Who may watch: access tokens checked in constant time (a token file is reread when it
//! changes, and a withdrawn token ends its viewer's session), and the most viewers at once.
//!
//! Tokens are compared as SHA-256 digests with `subtle`'s constant-time equality, against
//! every known token whatever matches, so neither the time taken nor an early exit tells a
//! guesser how close a token came or how many there are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};
use streamsocket_proto::control::MAX_TOKEN;
use streamsocket_proto::ErrorCode;
use subtle::ConstantTimeEq;

use crate::access::file_watch::{FileWatch, FilesSeen};

/// Viewers admitted at once when not told otherwise.
pub const DEFAULT_MAX_VIEWERS: usize = 1000;

/// An accepted token, kept as its digest, with the name logs use for its holder.
#[derive(Clone)]
struct Token {
    name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself, even hashed.
        f.debug_struct("Token").field("name", &self.name).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Token {
    fn new(name: &str, token: &str) -> anyhow::Result<Self> {
        if token.is_empty() {
            bail!("the token for {name:?} is empty");
        }
        if token.len() > MAX_TOKEN {
            bail!("the token for {name:?} is longer than {MAX_TOKEN} bytes");
        }
        if token.chars().any(char::is_whitespace) {
            bail!("the token for {name:?} contains white space");
        }
        Ok(Token {
            name: name.to_string(),
            digest: digest(token),
        })
    }
}

/// Why a viewer was turned away: the code and the message it gets.
pub type Refusal = (ErrorCode, String);

/// An admitted viewer: what it proved (the digest of its token, the serial number of its
/// certificate), and what ends its session when either is withdrawn.
struct Watcher {
    token: Option<[u8; 32]>,
    certificate: Option<Vec<u8>>,
    withdraw: Box<dyn Fn() + Send + Sync>,
}

pub struct Admission {
    /// From `--token`: for as long as the server runs.
    fixed: Vec<Token>,
    /// From `--token-file`: reread when the file changes ([`Admission::watch_token_file`]).
    token_file: Option<PathBuf>,
    from_file: RwLock<Vec<Token>>,
    max_viewers: usize,
    viewers: AtomicUsize,
    /// The admitted viewers' tokens, and how to end each one's session.
    admitted: Mutex<HashMap<u64, Watcher>>,
    next_id: AtomicU64,
    /// Viewers must have presented a certificate (mutual TLS).
    certificates_required: bool,
    /// Serial numbers of revoked viewer certificates: a viewer whose handshake began before
    /// a revocation reached the TLS configuration is still turned away here.
    revoked: RwLock<Vec<Vec<u8>>>,
}

/// Locks whatever a panicking holder left: the data here (counts, lists) stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("fixed", &self.fixed)
            .field("token_file", &self.token_file)
            .field("from_file", &self.from_file)
            .field("max_viewers", &self.max_viewers)
            .field("viewers", &self.viewers)
            .finish()
    }
}

/// A viewer counted against the limit while this lives.
#[derive(Debug)]
pub struct Admitted<'a> {
    admission: &'a Admission,
    id: u64,
    /// The token's name, when tokens are required.
    pub name: Option<String>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        lock(&self.admission.admitted).remove(&self.id);
        self.admission.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What rereading the token file did.
#[derive(Debug)]
pub struct Reloaded {
    /// Tokens accepted now, `--token` included.
    pub tokens: usize,
    /// Viewers whose token is no longer accepted: their sessions were ended.
    pub withdrawn: usize,
}

impl Admission {
    /// Anyone may watch, up to `max_viewers` at once.
    pub fn open(max_viewers: usize) -> Self {
        Self {
            fixed: Vec::new(),
            token_file: None,
            from_file: RwLock::new(Vec::new()),
            max_viewers,
            viewers: AtomicUsize::new(0),
            admitted: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            certificates_required: false,
            revoked: RwLock::new(Vec::new()),
        }
    }

    /// Every viewer must have presented a certificate (the TLS configuration checks it; this
    /// makes sure its serial number is known, for revocation).
    pub fn require_certificates(&mut self) {
        self.certificates_required = true;
    }

    /// Adds an accepted token (`--token`).
    pub fn add_token(&mut self, name: &str, token: &str) -> anyhow::Result<()> {
        self.fixed.push(Token::new(name, token)?);
        Ok(())
    }

    /// Accepts the tokens of a token file: one `NAME TOKEN` per line; blank lines and `#`
    /// comments ignored. [`Admission::watch_token_file`] rereads it when it changes.
    pub fn add_token_file(&mut self, path: &Path) -> anyhow::Result<()> {
        *self
            .from_file
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = read_token_file(path)?;
        self.token_file = Some(path.to_path_buf());
        Ok(())
    }

    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// Rereads the token file and ends the sessions of viewers whose token it no longer
    /// holds. A file that does not read (or holds no token) changes nothing.
    pub fn reload_token_file(&self) -> anyhow::Result<Reloaded> {
        let Some(path) = &self.token_file else {
            bail!("no token file");
        };
        let tokens = read_token_file(path)?;
        let accepted: Vec<[u8; 32]> = self.fixed.iter().chain(&tokens).map(|t| t.digest).collect();
        let count = accepted.len();
        // The new tokens and the scan under one write lock: `admit` holds the read lock until
        // its viewer is listed, so no viewer is admitted by an old token after the scan.
        let withdrawn = {
            let mut from_file = write(&self.from_file);
            *from_file = tokens;
            self.take_watchers(|w| w.token.is_some_and(|t| !accepted.contains(&t)))
        };
        for watcher in &withdrawn {
            (watcher.withdraw)();
        }
        Ok(Reloaded {
            tokens: count,
            withdrawn: withdrawn.len(),
        })
    }

    /// Rereads the token file when it changes (checked every `check_every`; `None`: only on
    /// SIGHUP). Runs until dropped; does nothing without a token file.
    pub async fn watch_token_file(self: Arc<Self>, check_every: Option<Duration>) {
        let Some(path) = self.token_file.clone() else {
            return;
        };
        let files = vec![path.clone()];
        let mut watch = FileWatch::new(files.clone(), FilesSeen::of(&files), check_every);
        loop {
            let seen = watch.changed().await;
            match self.reload_token_file() {
                Ok(r) => {
                    watch.loaded(seen);
                    tracing::info!(
                        file = %path.display(),
                        tokens = r.tokens,
                        withdrawn = r.withdrawn,
                        "reloaded the token file"
                    );
                }
                Err(e) => {
                    if watch.failed(seen) {
                        tracing::warn!("kept the current tokens: {e:#}");
                    }
                }
            }
        }
    }

    pub fn requires_token(&self) -> bool {
        !self.fixed.is_empty() || self.token_file.is_some()
    }

    pub fn token_count(&self) -> usize {
        self.fixed.len() + read(&self.from_file).len()
    }

    pub fn max_viewers(&self) -> usize {
        self.max_viewers
    }

    /// Viewers admitted now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Takes the watchers `matches` picks out of the list (their sessions are about to end;
    /// the closures run after the lock is released).
    fn take_watchers(&self, matches: impl Fn(&Watcher) -> bool) -> Vec<Watcher> {
        let mut admitted = lock(&self.admitted);
        let ids: Vec<u64> = admitted
            .iter()
            .filter(|(_, w)| matches(w))
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| admitted.remove(id)).collect()
    }

    /// From now on refuses the certificates with these serial numbers, and ends the sessions
    /// of viewers watching with one; returns how many.
    pub fn withdraw_certificates(&self, revoked: &[Vec<u8>]) -> usize {
        let withdrawn = {
            let mut list = write(&self.revoked);
            *list = revoked.to_vec();
            self.take_watchers(|w| w.certificate.as_ref().is_some_and(|s| revoked.contains(s)))
        };
        for watcher in &withdrawn {
            (watcher.withdraw)();
        }
        withdrawn.len()
    }

    /// Admits a viewer with `token` (empty for none), or says why not. `certificate` is the
    /// serial number of the certificate it presented (mutual TLS), if any; `withdraw` ends
    /// its session if its token or certificate is withdrawn while it watches.
    pub fn admit(
        &self,
        token: &str,
        certificate: Option<Vec<u8>>,
        withdraw: impl Fn() + Send + Sync + 'static,
    ) -> Result<Admitted<'_>, Refusal> {
        // Held until the viewer is listed (see `reload_token_file`, `withdraw_certificates`).
        let from_file = read(&self.from_file);
        let revoked = read(&self.revoked);
        match &certificate {
            None if self.certificates_required => {
                return Err((
                    ErrorCode::Internal,
                    "the server could not read your viewer certificate".into(),
                ))
            }
            Some(serial) if revoked.contains(serial) => {
                return Err((
                    ErrorCode::AccessRevoked,
                    "your viewer certificate was revoked".into(),
                ))
            }
            _ => {}
        }
        let (name, digest) = if self.requires_token() {
            if token.is_empty() {
                return Err((
                    ErrorCode::TokenRequired,
                    "this server admits viewers with a token only".into(),
                ));
            }
            let offered = digest(token);
            // Every token is compared, so the time does not depend on which one matches.
            let mut matched = None;
            for t in self.fixed.iter().chain(from_file.iter()) {
                if bool::from(t.digest.ct_eq(&offered)) {
                    matched = Some(t.name.clone());
                }
            }
            let Some(name) = matched else {
                return Err((ErrorCode::TokenInvalid, "unknown token".into()));
            };
            (Some(name), Some(offered))
        } else {
            (None, None)
        };
        let admitted = self
            .viewers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_viewers).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err((
                ErrorCode::ServerFull,
                format!(
                    "{} viewers are watching, as many as this server admits",
                    self.max_viewers
                ),
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.admitted).insert(
            id,
            Watcher {
                token: digest,
                certificate,
                withdraw: Box::new(withdraw),
            },
        );
        Ok(Admitted {
            admission: self,
            id,
            name,
        })
    }
}

/// Reads a token file: one `NAME TOKEN` per line; blank lines and `#` comments ignored.
fn read_token_file(path: &Path) -> anyhow::Result<Vec<Token>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
            bail!("{} line {}: expected \"NAME TOKEN\"", path.display(), i + 1);
        };
        tokens.push(
            Token::new(name, token)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?,
        );
    }
    // An empty file is more likely a mistake (or half a write) than a wish to admit nobody.
    if tokens.is_empty() {
        bail!("the token file {} has no tokens", path.display());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_server_admits_anyone_up_to_its_limit() {
        let a = Admission::open(2);
        let first = a.admit("", None, || {}).unwrap();
        let _second = a.admit("anything", None, || {}).unwrap();
        assert_eq!(
            a.admit("", None, || {}).unwrap_err().0,
            ErrorCode::ServerFull
        );
        drop(first);
        assert!(a.admit("", None, || {}).is_ok(), "a place freed up");
    }

    #[test]
    fn tokens_are_required_and_checked() {
        let mut a = Admission::open(10);
        a.add_token("alice", "correct-horse").unwrap();
        a.add_token("bob", "battery-staple").unwrap();
        assert_eq!(
            a.admit("", None, || {}).unwrap_err().0,
            ErrorCode::TokenRequired
        );
        assert_eq!(
            a.admit("correct-hors", None, || {}).unwrap_err().0,
            ErrorCode::TokenInvalid
        );
        assert_eq!(
            a.admit("correct-horse", None, || {})
                .unwrap()
                .name
                .as_deref(),
            Some("alice")
        );
        assert_eq!(
            a.admit("battery-staple", None, || {})
                .unwrap()
                .name
                .as_deref(),
            Some("bob")
        );
        assert_eq!(a.viewers(), 0, "admissions dropped above");
    }

    #[test]
    fn token_files_name_their_holders_and_explain_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# viewers\n\nalice t0k3n-a\nbob   t0k3n-b  \n").unwrap();
        let mut a = Admission::open(10);
        a.add_token_file(&path).unwrap();
        assert_eq!(a.token_count(), 2);
        assert_eq!(
            a.admit("t0k3n-b", None, || {}).unwrap().name.as_deref(),
            Some("bob")
        );

        std::fs::write(&path, "alice\n").unwrap();
        let e = format!(
            "{:#}",
            Admission::open(1).add_token_file(&path).unwrap_err()
        );
        assert!(e.contains("line 1") && e.contains("NAME TOKEN"), "{e}");
        std::fs::write(&path, "# nothing\n").unwrap();
        let e = format!(
            "{:#}",
            Admission::open(1).add_token_file(&path).unwrap_err()
        );
        assert!(e.contains("no tokens"), "{e}");
        let long = "x".repeat(MAX_TOKEN + 1);
        assert!(Admission::open(1).add_token("x", &long).is_err());
    }

    #[test]
    fn a_withdrawn_token_ends_its_viewers_session() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "alice token-a\nbob token-b\n").unwrap();
        let mut a = Admission::open(10);
        a.add_token("operator", "token-op").unwrap();
        a.add_token_file(&path).unwrap();
        let ended = |flag: &Arc<AtomicBool>| {
            let flag = flag.clone();
            move || flag.store(true, Ordering::Relaxed)
        };
        let (alice_ended, bob_ended, op_ended) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let _alice = a.admit("token-a", None, ended(&alice_ended)).unwrap();
        let _bob = a.admit("token-b", None, ended(&bob_ended)).unwrap();
        let _op = a.admit("token-op", None, ended(&op_ended)).unwrap();

        std::fs::write(&path, "bob token-b\ncarol token-c\n").unwrap();
        let r = a.reload_token_file().unwrap();
        assert_eq!((r.tokens, r.withdrawn), (3, 1));
        assert!(alice_ended.load(Ordering::Relaxed));
        assert!(!bob_ended.load(Ordering::Relaxed));
        assert!(
            !op_ended.load(Ordering::Relaxed),
            "--token is not the file's"
        );
        assert_eq!(
            a.admit("token-a", None, || {}).unwrap_err().0,
            ErrorCode::TokenInvalid
        );
        assert!(a.admit("token-c", None, || {}).is_ok());

        // A file emptied by mistake (or caught half written) changes nothing.
        std::fs::write(&path, "").unwrap();
        assert!(a.reload_token_file().is_err());
        assert!(a.admit("token-b", None, || {}).is_ok());
        assert!(!bob_ended.load(Ordering::Relaxed));
        assert!(a.requires_token());
    }

    #[test]
    fn a_revoked_certificate_ends_its_viewers_session() {
        use std::sync::atomic::AtomicBool;
        let a = Admission::open(10);
        let (revoked, kept) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, k) = (revoked.clone(), kept.clone());
        let _alice = a
            .admit("", Some(vec![1, 2, 3]), move || {
                r.store(true, Ordering::Relaxed)
            })
            .unwrap();
        let _bob = a
            .admit("", Some(vec![4, 5, 6]), move || {
                k.store(true, Ordering::Relaxed)
            })
            .unwrap();
        let _anonymous = a
            .admit("", None, || panic!("no certificate to revoke"))
            .unwrap();
        assert_eq!(a.withdraw_certificates(&[vec![1, 2, 3], vec![9]]), 1);
        assert!(revoked.load(Ordering::Relaxed));
        assert!(!kept.load(Ordering::Relaxed));
        // Ended once: a second reload does not count it again.
        assert_eq!(a.withdraw_certificates(&[vec![1, 2, 3], vec![9]]), 0);
        // A viewer whose handshake began before the revocation is turned away at its hello.
        assert_eq!(
            a.admit("", Some(vec![9]), || {}).unwrap_err().0,
            ErrorCode::AccessRevoked
        );
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let mut a = Admission::open(1);
        a.add_token("alice", "sup3r-s3cret").unwrap();
        let shown = format!("{a:?}");
        assert!(
            shown.contains("alice") && !shown.contains("sup3r"),
            "{shown}"
        );
    }
}
