//! Who may read `/metrics` and `/status` (docs/SECURITY.md, "Metrics").
//!
//! On the page server they are on without a token only when it listens on a loopback
//! address; on any other address they are off (404, as if they did not exist) unless a
//! metrics token is set, which requests must then carry as `Authorization: Bearer TOKEN`
//! (401 otherwise). `--metrics-listen` serves them on a plain-HTTP listener of their own,
//! open (or behind the token when one is set): for a scraper on a private network.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A metrics token, kept as its SHA-256 digest (compared in constant time, never logged).
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

impl MetricsToken {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(!token.trim().is_empty(), "the metrics token is empty");
        Ok(Self(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `offered` is this token, in time independent of where they differ.
    fn matches(&self, offered: &[u8]) -> bool {
        let offered: [u8; 32] = Sha256::digest(offered).into();
        bool::from(self.0.ct_eq(&offered))
    }
}

/// How one listener answers `/metrics` and `/status`.
#[derive(Debug, Clone)]
pub enum MetricsAccess {
    /// 404, as for any unknown path.
    Off,
    /// Anyone who reaches the listener.
    Open,
    /// Requests with `Authorization: Bearer TOKEN`.
    Token(MetricsToken),
}

/// Why a request for metrics is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Answered 404: they are off here (not revealed).
    NotFound,
    /// Answered 401 with `WWW-Authenticate: Bearer`: no token or a wrong one.
    Unauthorized,
}

impl MetricsAccess {
    /// The page server's rule: on a loopback address, open (or the token's, if set); on any
    /// other, only with the token.
    pub fn for_page(loopback: bool, token: Option<&MetricsToken>) -> Self {
        match (token, loopback) {
            (Some(t), _) => MetricsAccess::Token(t.clone()),
            (None, true) => MetricsAccess::Open,
            (None, false) => MetricsAccess::Off,
        }
    }

    /// The `--metrics-listen` listener's rule: open, or the token's if set.
    pub fn for_listener(token: Option<&MetricsToken>) -> Self {
        match token {
            Some(t) => MetricsAccess::Token(t.clone()),
            None => MetricsAccess::Open,
        }
    }

    pub fn is_off(&self) -> bool {
        matches!(self, MetricsAccess::Off)
    }

    /// Whether a request with this `Authorization` header (if any) may read the metrics.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), Denied> {
        match self {
            MetricsAccess::Off => Err(Denied::NotFound),
            MetricsAccess::Open => Ok(()),
            MetricsAccess::Token(token) => {
                let offered = authorization.and_then(bearer).ok_or(Denied::Unauthorized)?;
                if token.matches(offered) {
                    Ok(())
                } else {
                    Err(Denied::Unauthorized)
                }
            }
        }
    }
}

/// The credentials of an `Authorization: Bearer ...` header (the scheme in any case).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_server_open_on_loopback_only() {
        let token = MetricsToken::new("s3cret").unwrap();
        assert!(matches!(
            MetricsAccess::for_page(true, None),
            MetricsAccess::Open
        ));
        assert!(MetricsAccess::for_page(false, None).is_off());
        assert!(matches!(
            MetricsAccess::for_page(false, Some(&token)),
            MetricsAccess::Token(_)
        ));
        // A token set is asked for everywhere, loopback too.
        assert!(matches!(
            MetricsAccess::for_page(true, Some(&token)),
            MetricsAccess::Token(_)
        ));
        assert!(matches!(
            MetricsAccess::for_listener(None),
            MetricsAccess::Open
        ));
    }

    #[test]
    fn off_is_not_found_and_a_wrong_token_unauthorized() {
        let off = MetricsAccess::Off;
        assert_eq!(off.check(None), Err(Denied::NotFound));
        assert_eq!(off.check(Some(b"Bearer x")), Err(Denied::NotFound));
        assert_eq!(MetricsAccess::Open.check(None), Ok(()));
        let t = MetricsAccess::Token(MetricsToken::new("s3cret").unwrap());
        assert_eq!(t.check(None), Err(Denied::Unauthorized));
        assert_eq!(t.check(Some(b"Bearer wrong")), Err(Denied::Unauthorized));
        assert_eq!(t.check(Some(b"Bearer s3cre")), Err(Denied::Unauthorized));
        assert_eq!(t.check(Some(b"Basic czNjcmV0")), Err(Denied::Unauthorized));
        assert_eq!(t.check(Some(b"s3cret")), Err(Denied::Unauthorized));
        assert_eq!(t.check(Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(t.check(Some(b"bearer  s3cret ")), Ok(()));
    }

    #[test]
    fn empty_tokens_are_refused_and_never_shown() {
        assert!(MetricsToken::new("  ").is_err());
        let t = MetricsToken::new("s3cret").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
