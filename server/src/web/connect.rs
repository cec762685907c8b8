//! A browser's WebTransport session, from its QUIC connection (ALPN `h3`) to a
//! [`Connection`] the session driver serves: the HTTP/3 CONNECT request must name
//! [`WEBTRANSPORT_PATH`] and come from an origin the server allows.

use std::time::Duration;

use streamsocket_proto::control::AccessToken;
use web_transport_quinn::http::StatusCode;

use crate::session::{Connection, ViewerKind};

/// The path of the WebTransport endpoint (`https://HOST:PORT/watch`).
pub const WEBTRANSPORT_PATH: &str = "/watch";
/// How long a browser has, after the QUIC handshake, to send its CONNECT request (the same
/// as a native viewer has to open its control stream).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which web pages may open a session: the server's own page always; others only when
/// named with `--allow-origin`.
///
/// Origins protect viewers' browsers (a page elsewhere cannot use a viewer's network
/// position to watch), not the server: a program can send any Origin, so access itself is
/// the token's and the certificate's job. A request without an Origin is not from a
/// browser page and is let through to those checks.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Also allowed, as `scheme://host[:port]`, lower case, without a trailing slash.
    pub also: Vec<String>,
}

impl OriginPolicy {
    pub fn new(also: &[String]) -> Self {
        Self {
            also: also
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a page at `origin` may open a session addressed to `authority` (the host and
    /// port the browser connected to, as in the CONNECT's URL).
    pub fn allows(&self, origin: Option<&str>, authority: &str) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.to_ascii_lowercase();
        origin == format!("https://{}", authority.to_ascii_lowercase())
            || self.also.contains(&origin)
    }
}

/// Why a WebTransport request was not served.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no WebTransport CONNECT request within {CONNECT_TIMEOUT:?}")]
    Timeout,
    #[error("the WebTransport handshake failed: {0}")]
    Handshake(String),
    #[error("a WebTransport request for {0:?}, not {WEBTRANSPORT_PATH}: answered 404")]
    Path(String),
    #[error("a WebTransport request from the origin {origin:?}, which may not open sessions to {authority} (see --allow-origin): answered 403")]
    Origin { origin: String, authority: String },
}

impl Refused {
    /// A short name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Timeout => "timeout",
            Refused::Handshake(_) => "handshake",
            Refused::Path(_) => "path",
            Refused::Origin { .. } => "origin",
        }
    }
}

/// Takes a browser's connection through HTTP/3 and its CONNECT request.
pub async fn accept(
    conn: quinn::Connection,
    origins: &OriginPolicy,
) -> Result<Connection, Refused> {
    let request = tokio::time::timeout(CONNECT_TIMEOUT, web_transport_quinn::Request::accept(conn))
        .await
        .map_err(|_| Refused::Timeout)?
        .map_err(|e| Refused::Handshake(e.to_string()))?;
    let url = request.url.clone();
    if url.path() != WEBTRANSPORT_PATH {
        let _ = request.reject(StatusCode::NOT_FOUND).await;
        return Err(Refused::Path(url.path().chars().take(200).collect()));
    }
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => String::new(),
    };
    let origin = request
        .headers
        .get("origin")
        .map(|o| o.to_str().unwrap_or("(not text)").to_string());
    if !origins.allows(origin.as_deref(), &authority) {
        let _ = request.reject(StatusCode::FORBIDDEN).await;
        return Err(Refused::Origin {
            origin: origin.unwrap_or_default().chars().take(200).collect(),
            authority,
        });
    }
    let url_token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| AccessToken::new(v.into_owned()));
    let link = request
        .ok()
        .await
        .map_err(|e| Refused::Handshake(e.to_string()))?;
    Ok(Connection {
        link,
        kind: ViewerKind::Web,
        url_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_and_listed_ones_only() {
        let policy = OriginPolicy::new(&["https://Example.org/".into()]);
        assert!(policy.allows(Some("https://localhost:4443"), "localhost:4443"));
        assert!(policy.allows(Some("https://LOCALHOST:4443"), "localhost:4443"));
        assert!(policy.allows(Some("https://example.org"), "localhost:4443"));
        assert!(!policy.allows(Some("https://localhost:4444"), "localhost:4443"));
        assert!(!policy.allows(Some("http://localhost:4443"), "localhost:4443"));
        assert!(!policy.allows(Some("https://evil.example"), "localhost:4443"));
        assert!(!policy.allows(Some("null"), "localhost:4443"));
        // Not a page: left to the token and certificate checks.
        assert!(policy.allows(None, "localhost:4443"));
    }
}
