//! Connecting to a Media over QUIC relay: QUIC on our own quinn endpoint (no HTTP/3; the
//! relay takes moq-lite's versions as ALPN, and the URL's path and query in the session's
//! SETUP), then a moq-net session whose driver runs on a tokio task.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use url::Url;

/// The moq-lite versions offered, newest first: those moq-relay 0.17 speaks over raw QUIC.
/// (moq-net's full list also has the IETF drafts, which have no SETUP path.)
pub const ALPNS: &[&str] = &["moq-lite-06", "moq-lite-05"];

/// Where a relay is and what to ask it for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// As given, with any token taken out (for logs).
    pub shown: String,
    pub host: String,
    pub port: u16,
    /// The path (the broadcasts' prefix on the relay, and the token's root) and query,
    /// with the token as `jwt=` when there is one.
    pub path_and_query: String,
}

impl RelayUrl {
    /// Parses `https://HOST[:PORT]/PATH` (or `moql://`), with a token from `token` or the
    /// URL's own `?jwt=`. The port defaults to 443.
    pub fn parse(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let parsed = Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "https" | "moql") {
            bail!(
                "{url:?}: a relay URL starts with https:// (or moql://), for example https://relay.example:4443/live"
            );
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow!("{url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(443);
        let mut pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "jwt")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let url_token = parsed
            .query_pairs()
            .find(|(k, _)| k == "jwt")
            .map(|(_, v)| v.into_owned());
        if let Some(jwt) = token.map(str::to_string).or(url_token) {
            pairs.push(("jwt".into(), jwt));
        }
        let mut path_and_query = parsed.path().to_string();
        if !pairs.is_empty() {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            path_and_query = format!("{path_and_query}?{query}");
        }
        let mut shown = parsed.clone();
        shown.set_query(None);
        Ok(Self {
            shown: shown.to_string(),
            host,
            port,
            path_and_query,
        })
    }

    /// The relay's address (the first the name resolves to).
    pub async fn resolve(&self) -> anyhow::Result<SocketAddr> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve {}", self.host))?
            .next()
            .ok_or_else(|| anyhow!("{} has no address", self.host))
    }
}

/// MoQ's close code for a session the relay's authorisation refused.
const UNAUTHORIZED: u32 = 2;

/// Why a relay session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The relay refused the token (MoQ close code 2, "unauthorized"): missing, wrong,
    /// expired, or not granting this path and role. The relay tells no more.
    Unauthorized,
    /// Anything else, in moq-net's words.
    Other(String),
}

impl Ended {
    fn of(error: moq_net::Error) -> Self {
        match &error {
            moq_net::Error::Unauthorized
            | moq_net::Error::Session(moq_net::SessionError::Unauthorized) => Ended::Unauthorized,
            // The relay's CONNECTION_CLOSE reaches moq-net as the transport's words only
            // (quinn's "closed by peer: REASON (code N)").
            moq_net::Error::Transport(words)
                if words.contains(&format!(
                    "closed by peer: unauthorized (code {UNAUTHORIZED})"
                )) =>
            {
                Ended::Unauthorized
            }
            other => Ended::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Unauthorized => f.write_str(
                "the relay refused the token (MoQ close code 2, unauthorized): it is missing, wrong, expired, or does not grant this path",
            ),
            Ended::Other(why) => f.write_str(why),
        }
    }
}

/// The relay took the QUIC connection but refused the MoQ session (as [`Ended`] says):
/// kept apart from other failures, because trying again will not help.
#[derive(Debug, thiserror::Error)]
#[error("the relay {relay} refused the session: {why}")]
pub struct Refused {
    pub relay: String,
    pub why: Ended,
}

/// A moq-net session with a relay; its driver runs on a task of its own until the session
/// ends.
pub struct Link {
    pub session: moq_net::Session,
    /// The QUIC connection under it (for its statistics, and to close it).
    pub conn: quinn::Connection,
    /// The moq-lite version the relay chose (its ALPN).
    pub version: String,
}

impl Link {
    /// Connects and sets up a session that publishes and/or subscribes as `client` says.
    /// `tls` is the client configuration that decides which relays are trusted; its ALPN is
    /// replaced by moq-lite's.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        relay: &RelayUrl,
        tls: &rustls::ClientConfig,
        transport: Arc<quinn::TransportConfig>,
        client: moq_net::Client,
    ) -> anyhow::Result<Self> {
        let addr = relay.resolve().await?;
        let mut tls = tls.clone();
        tls.alpn_protocols = ALPNS.iter().map(|a| a.as_bytes().to_vec()).collect();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .context("the TLS configuration cannot do QUIC")?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport);
        let conn = endpoint
            .connect_with(config, addr, &relay.host)?
            .await
            .with_context(|| format!("cannot connect to the relay {}", relay.shown))?;
        let version = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol)
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        let session = web_transport_quinn_moq::Session::raw(conn.clone());
        let (session, driver) = client
            .with_path(relay.path_and_query.clone())
            .connect(std::time::Instant::now(), session)
            .await
            .map_err(|e| Refused {
                relay: relay.shown.clone(),
                why: Ended::of(e),
            })?;
        tokio::spawn(async move {
            let end = moq_net::time::run(driver).await;
            tracing::debug!("relay session driver ended: {end}");
        });
        Ok(Self {
            session,
            conn,
            version,
        })
    }

    /// Waits until the session ends, and says why.
    pub async fn closed(&self) -> Ended {
        Ended::of(self.session.closed().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_is_told_apart() {
        assert_eq!(
            Ended::of(moq_net::Error::Transport(
                "connection error: closed by peer: unauthorized (code 2)".into()
            )),
            Ended::Unauthorized
        );
        assert_eq!(Ended::of(moq_net::Error::Unauthorized), Ended::Unauthorized);
        assert!(matches!(
            Ended::of(moq_net::Error::Transport("timed out".into())),
            Ended::Other(_)
        ));
    }

    #[test]
    fn urls_with_and_without_tokens() {
        let r = RelayUrl::parse("https://relay.example:4443/live", None).unwrap();
        assert_eq!(r.host, "relay.example");
        assert_eq!(r.port, 4443);
        assert_eq!(r.path_and_query, "/live");
        let r = RelayUrl::parse("https://relay.example/live?jwt=abc", None).unwrap();
        assert_eq!(r.port, 443);
        assert_eq!(r.path_and_query, "/live?jwt=abc");
        assert_eq!(r.shown, "https://relay.example/live");
        // A token given apart wins over one in the URL.
        let r = RelayUrl::parse("https://[::1]:9/a/b?jwt=old", Some("new")).unwrap();
        assert_eq!(r.host, "::1");
        assert_eq!(r.path_and_query, "/a/b?jwt=new");
        assert!(RelayUrl::parse("http://relay.example/live", None).is_err());
        assert!(RelayUrl::parse("relay.example", None).is_err());
    }
}
