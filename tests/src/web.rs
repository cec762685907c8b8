//! The browser's side of a server, spoken from Rust: HTTPS requests to the page server and
//! WebTransport sessions on the QUIC endpoint, as a page would open them (for the
//! WebTransport tests and the fan-out benchmark's web viewers).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::ServerProcess;

/// An HTTP response, as read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl ServerProcess {
    /// Where the server serves its web page (it prints `web page https://HOST:PORT/`).
    pub fn page_addr(&self) -> SocketAddr {
        let line = self.wait_for_stdout_line("web page https://", Duration::from_secs(10));
        let authority = line
            .trim_start_matches("web page https://")
            .trim_end_matches('/');
        let port: u16 = authority
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the page's address");
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) over TLS to `addr`,
/// trusting the CA in `ca`, and reads the response until the server closes.
pub async fn https_request(
    addr: SocketAddr,
    ca: &Path,
    request: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let mut tls = connector.connect(name, tcp).await?;
    // A server may answer and close before the whole request is written (one too large, say):
    // what it answered is the result, and the failed write only matters without an answer.
    let written = tls.write_all(request).await;
    let mut raw = Vec::new();
    // A server that closes without TLS's close_notify is still a response.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await;
    parse_response(&raw).map_err(|e| match written {
        Err(w) => anyhow::anyhow!("{e} (writing the request failed: {w})"),
        Ok(()) => e,
    })
}

/// `GET path` with the headers a browser would not forget.
pub async fn https_get(addr: SocketAddr, ca: &Path, path: &str) -> anyhow::Result<HttpResponse> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    https_request(addr, ca, request.as_bytes()).await
}

fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no complete response head in {} bytes", raw.len());
    };
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// The SHA-256 of the certificate browsers get, from `/session.json` as a page reads it.
pub async fn web_certificate_hash(server: &ServerProcess) -> anyhow::Result<[u8; 32]> {
    let response = https_get(server.page_addr(), &server.ca(), "/session.json").await?;
    let json = response.json();
    let value = json["certificate_hashes"][0]["value"]
        .as_str()
        .context("no certificate hash in /session.json")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value)?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a certificate hash that is not 32 bytes"))
}

/// How a test's browser-like client opens its session.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// The page's origin, as a browser sends it; `None`: no Origin header.
    pub origin: Option<String>,
    /// The request's path and query, e.g. `/watch?token=secret`.
    pub path: String,
}

impl WebSession {
    /// From the server's own page, to `/watch`.
    pub fn own_page(server: &ServerProcess) -> Self {
        Self {
            origin: Some(format!("https://localhost:{}", server.addr.port())),
            path: "/watch".into(),
        }
    }

    /// A client config that accepts the browsers' certificate by `hash` (as
    /// `serverCertificateHashes` does) and speaks HTTP/3.
    pub fn client_config(hash: [u8; 32]) -> anyhow::Result<quinn::ClientConfig> {
        let pin = streamsocket_client::Trust::Pinned(streamsocket_certs::Fingerprint(hash));
        Ok(streamsocket_client::client_config_with_alpn(pin, None, b"h3")?.0)
    }

    /// Opens the session: QUIC handshake (ALPN h3), HTTP/3 settings, CONNECT.
    pub async fn open(
        &self,
        endpoint: &quinn::Endpoint,
        config: quinn::ClientConfig,
        addr: SocketAddr,
    ) -> anyhow::Result<web_transport_quinn::Session> {
        let conn = endpoint
            .connect_with(config, addr, "localhost")?
            .await
            .context("QUIC handshake")?;
        let url: url::Url = format!("https://localhost:{}{}", addr.port(), self.path).parse()?;
        let mut request = web_transport_quinn::proto::ConnectRequest::new(url);
        if let Some(origin) = &self.origin {
            request
                .headers
                .insert("origin", origin.parse().context("an origin header")?);
        }
        Ok(web_transport_quinn::Session::connect(conn, request).await?)
    }
}

/// A WebTransport session to `server` from its own page, and the endpoint it needs.
pub async fn connect_web(
    server: &ServerProcess,
    session: &WebSession,
) -> anyhow::Result<(quinn::Endpoint, web_transport_quinn::Session)> {
    let hash = web_certificate_hash(server).await?;
    let endpoint = streamsocket_transport::endpoint::client("127.0.0.1:0".parse()?)?;
    let s = session
        .open(&endpoint, WebSession::client_config(hash)?, server.addr)
        .await?;
    Ok((endpoint, s))
}
