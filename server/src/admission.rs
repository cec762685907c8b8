//! Who may watch: access tokens checked in constant time, and the most viewers at once.
//!
//! Tokens are compared as SHA-256 digests with `subtle`'s constant-time equality, against
//! every known token whatever matches, so neither the time taken nor an early exit tells a
//! guesser how close a token came or how many there are.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};
use streamsocket_proto::control::MAX_TOKEN;
use streamsocket_proto::ErrorCode;
use subtle::ConstantTimeEq;

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

/// Why a viewer was turned away: the code and the message it gets.
pub type Refusal = (ErrorCode, String);

#[derive(Debug)]
pub struct Admission {
    tokens: Vec<Token>,
    max_viewers: usize,
    viewers: AtomicUsize,
}

/// A viewer counted against the limit while this lives.
#[derive(Debug)]
pub struct Admitted<'a> {
    admission: &'a Admission,
    /// The token's name, when tokens are required.
    pub name: Option<String>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.admission.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// Anyone may watch, up to `max_viewers` at once.
    pub fn open(max_viewers: usize) -> Self {
        Self {
            tokens: Vec::new(),
            max_viewers,
            viewers: AtomicUsize::new(0),
        }
    }

    /// Adds an accepted token (`--token`, or a line of `--token-file`).
    pub fn add_token(&mut self, name: &str, token: &str) -> anyhow::Result<()> {
        if token.is_empty() {
            bail!("the token for {name:?} is empty");
        }
        if token.len() > MAX_TOKEN {
            bail!("the token for {name:?} is longer than {MAX_TOKEN} bytes");
        }
        if token.chars().any(char::is_whitespace) {
            bail!("the token for {name:?} contains white space");
        }
        self.tokens.push(Token {
            name: name.to_string(),
            digest: digest(token),
        });
        Ok(())
    }

    /// Reads a token file: one `NAME TOKEN` per line; blank lines and `#` comments ignored.
    pub fn add_token_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let before = self.tokens.len();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                bail!("{} line {}: expected \"NAME TOKEN\"", path.display(), i + 1);
            };
            self.add_token(name, token)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?;
        }
        if self.tokens.len() == before {
            bail!("the token file {} has no tokens", path.display());
        }
        Ok(())
    }

    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    pub fn max_viewers(&self) -> usize {
        self.max_viewers
    }

    /// Viewers admitted now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Admits a viewer with `token` (empty for none), or says why not.
    pub fn admit(&self, token: &str) -> Result<Admitted<'_>, Refusal> {
        let name = if self.requires_token() {
            if token.is_empty() {
                return Err((
                    ErrorCode::TokenRequired,
                    "this server admits viewers with a token only".into(),
                ));
            }
            let offered = digest(token);
            // Every token is compared, so the time does not depend on which one matches.
            let mut matched = None;
            for t in &self.tokens {
                if bool::from(t.digest.ct_eq(&offered)) {
                    matched = Some(t.name.clone());
                }
            }
            let Some(name) = matched else {
                return Err((ErrorCode::TokenInvalid, "unknown token".into()));
            };
            Some(name)
        } else {
            None
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
        Ok(Admitted {
            admission: self,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_server_admits_anyone_up_to_its_limit() {
        let a = Admission::open(2);
        let first = a.admit("").unwrap();
        let _second = a.admit("anything").unwrap();
        assert_eq!(a.admit("").unwrap_err().0, ErrorCode::ServerFull);
        drop(first);
        assert!(a.admit("").is_ok(), "a place freed up");
    }

    #[test]
    fn tokens_are_required_and_checked() {
        let mut a = Admission::open(10);
        a.add_token("alice", "correct-horse").unwrap();
        a.add_token("bob", "battery-staple").unwrap();
        assert_eq!(a.admit("").unwrap_err().0, ErrorCode::TokenRequired);
        assert_eq!(
            a.admit("correct-hors").unwrap_err().0,
            ErrorCode::TokenInvalid
        );
        assert_eq!(
            a.admit("correct-horse").unwrap().name.as_deref(),
            Some("alice")
        );
        assert_eq!(
            a.admit("battery-staple").unwrap().name.as_deref(),
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
        assert_eq!(a.admit("t0k3n-b").unwrap().name.as_deref(), Some("bob"));

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
