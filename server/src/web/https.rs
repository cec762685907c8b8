//! The page server: HTTPS (HTTP/1.1 over TLS, on TCP) for the web viewer's page, its
//! scripts and `/session.json`, the current WebTransport certificate hash; and the
//! operators' `/metrics` and `/status` where [`MetricsAccess`] allows them. The same server
//! without TLS and without the page is the `--metrics-listen` listener.
//!
//! Small on purpose: GET and HEAD of a fixed set of paths, no request bodies read, a bound
//! on connections, header bytes and the time to send them (docs/SECURITY.md, "HTTP").

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::assets;
use super::certificate::WebCertificate;
use super::connect::WEBTRANSPORT_PATH;
use crate::metrics::{Denied, MetricsAccess, MetricsEndpoint};

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_HTTP_CONNECTIONS: usize = 256;
/// Time for a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a request's headers, from its first byte (and for an idle connection to send
/// its next request).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a request line and headers (hyper's buffer; its minimum is 8 KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Headers on every response. The page loads only its own scripts and connects only to its
/// own server; no page may frame it; it sends no Referer (a token in its URL stays there).
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// What the page server answers from.
pub struct PageState {
    pub web_certificate: Arc<WebCertificate>,
    /// Whether the page, its scripts and `/session.json` are served (not on the metrics
    /// listener).
    pub page: bool,
    /// `/metrics` and `/status`, answered as `metrics_access` says.
    pub metrics: Option<Arc<MetricsEndpoint>>,
    pub metrics_access: MetricsAccess,
}

/// A bound page server; [`PageServer::run`] serves it.
pub struct PageServer {
    listener: TcpListener,
    /// `None`: plain HTTP (the metrics listener).
    acceptor: Option<TlsAcceptor>,
    state: Arc<PageState>,
}

impl PageServer {
    /// Binds `addr` (TCP) with `tls` (the server's own certificate). Needs a Tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        state: PageState,
    ) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .with_context(|| format!("cannot listen for HTTPS on TCP {addr} (--http-listen chooses another address, --no-http turns the web page off)"))?;
        Ok(Self {
            listener,
            acceptor: Some(TlsAcceptor::from(tls)),
            state: Arc::new(state),
        })
    }

    /// Binds `addr` (TCP) for plain HTTP: the `--metrics-listen` listener, which serves only
    /// `/metrics` and `/status`.
    pub fn bind_plain(addr: SocketAddr, state: PageState) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .with_context(|| {
                format!("cannot listen for metrics on TCP {addr} (--metrics-listen)")
            })?;
        Ok(Self {
            listener,
            acceptor: None,
            state: Arc::new(PageState {
                page: false,
                ..state
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until dropped.
    pub async fn run(self) {
        let permits = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
        loop {
            // Wait for a free place before accepting: beyond the bound, connections queue in
            // the kernel rather than in memory here.
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: pause rather than spin.
                    tracing::warn!("HTTPS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(acceptor) = acceptor else {
                    return serve_connection(tcp, state, remote).await;
                };
                let tls =
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            return tracing::debug!(%remote, "HTTPS handshake failed: {e}");
                        }
                        Err(_) => return tracing::debug!(%remote, "HTTPS handshake timed out"),
                    };
                serve_connection(tls, state, remote).await
            });
        }
    }
}

/// Serves HTTP/1.1 requests on one connection (TLS or not) until it ends.
async fn serve_connection<Io>(io: Io, state: Arc<PageState>, remote: SocketAddr)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(&state, &req)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%remote, "HTTP connection ended: {e}");
    }
}

/// The answer to one request.
pub fn respond(state: &PageState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    answer(state, req.method(), req.uri().path(), authorization)
}

fn answer(
    state: &PageState,
    method: &Method,
    path: &str,
    authorization: Option<&[u8]>,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut response = if let Some(metrics) = state
        .metrics
        .as_ref()
        .filter(|_| MetricsEndpoint::serves(path))
    {
        match metrics.answer(&state.metrics_access, path, authorization) {
            Ok((content_type, body)) => {
                let mut r = with_body(StatusCode::OK, content_type, body);
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(Denied::NotFound) => text(StatusCode::NOT_FOUND, "not found\n"),
            Err(Denied::Unauthorized) => {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "a metrics token is needed: Authorization: Bearer TOKEN\n",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"streamsocket metrics\""),
                );
                r
            }
        }
    } else if !state.page {
        text(StatusCode::NOT_FOUND, "not found\n")
    } else if path == "/session.json" {
        let body = session_json(&state.web_certificate);
        let mut r = with_body(StatusCode::OK, "application/json", body.into_bytes().into());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else if path == "/" || path == "/index.html" {
        // The page carries the session info for its first connection: no /session.json
        // request before it (it is fetched again for every later attempt).
        let page = assets::find("/").expect("the page is embedded");
        let mut r = with_body(
            StatusCode::OK,
            page.content_type,
            page_with_session(page.body, &session_json(&state.web_certificate)).into(),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else if let Some(asset) = assets::find(path) {
        let mut r = with_body(
            StatusCode::OK,
            asset.content_type,
            Bytes::from_static(asset.body),
        );
        // Revalidated each time: a new server version brings new files at the same paths.
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    };
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

/// Where the server writes the session info into the page.
const SESSION_PLACEHOLDER: &str = "<!--streamsocket-session-->";

/// The page with the session info in a JSON data block (never run as a script, so the CSP's
/// `script-src 'self'` allows it). `<` is escaped so nothing in it can end the element.
fn page_with_session(page: &[u8], session_json: &str) -> Vec<u8> {
    let page = String::from_utf8_lossy(page);
    let block = format!(
        "<script type=\"application/json\" id=\"session\">{}</script>",
        session_json.replace('<', "\\u003c")
    );
    page.replacen(SESSION_PLACEHOLDER, &block, 1).into_bytes()
}

/// What the page needs to open its WebTransport session.
fn session_json(web: &WebCertificate) -> String {
    let current = web.current();
    serde_json::json!({
        "protocol_version": streamsocket_proto::PROTOCOL_VERSION,
        "webtransport_path": WEBTRANSPORT_PATH,
        "certificate_hashes": [{
            "algorithm": "sha-256",
            "value": base64::engine::general_purpose::STANDARD.encode(current.sha256),
        }],
        "certificate_not_after": streamsocket_certs::format_time(current.not_after),
    })
    .to_string()
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_body(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn with_body(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    for (name, value) in SECURITY_HEADERS {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PageState {
        PageState {
            web_certificate: WebCertificate::new(&[]).unwrap(),
            page: true,
            metrics: None,
            metrics_access: MetricsAccess::Off,
        }
    }

    #[test]
    fn serves_the_page_and_the_current_hash() {
        let s = state();
        let page = answer(&s, &Method::GET, "/", None);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        let json = answer(&s, &Method::GET, "/session.json", None);
        assert_eq!(json.headers()["cache-control"], "no-store");
        let v: serde_json::Value = serde_json::from_str(&session_json(&s.web_certificate)).unwrap();
        let hash = v["certificate_hashes"][0]["value"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hash)
            .unwrap();
        assert_eq!(bytes, s.web_certificate.current().sha256);
        assert_eq!(v["webtransport_path"], "/watch");
    }

    #[test]
    fn the_page_carries_the_session_info() {
        let s = state();
        let page = answer(&s, &Method::GET, "/", None);
        assert_eq!(page.headers()["cache-control"], "no-store");
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(http_body_util::BodyExt::collect(page.into_body()))
            .unwrap()
            .to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains(SESSION_PLACEHOLDER));
        let start = body
            .find(r#"<script type="application/json" id="session">"#)
            .unwrap();
        let json = &body[start..];
        let json = &json[json.find('>').unwrap() + 1..json.find("</script>").unwrap()];
        let inline: serde_json::Value = serde_json::from_str(json).unwrap();
        let served: serde_json::Value =
            serde_json::from_str(&session_json(&s.web_certificate)).unwrap();
        assert_eq!(inline, served);
        // Nothing in a session can end the element early.
        assert_eq!(
            page_with_session(b"a <!--streamsocket-session--> b", r#"{"x":"</script>"}"#),
            br#"a <script type="application/json" id="session">{"x":"\u003c/script>"}</script> b"#
        );
    }

    #[test]
    fn metrics_routes_answer_as_their_access_says() {
        let metrics = crate::metrics::tests::endpoint();
        let with = |access: MetricsAccess, page: bool| PageState {
            metrics: Some(metrics.clone()),
            metrics_access: access,
            page,
            ..state()
        };
        let off = with(MetricsAccess::Off, true);
        assert_eq!(
            answer(&off, &Method::GET, "/metrics", None).status(),
            StatusCode::NOT_FOUND
        );
        let open = with(MetricsAccess::Open, true);
        let ok = answer(&open, &Method::GET, "/metrics", None);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["cache-control"], "no-store");
        let token = crate::metrics::MetricsToken::new("t0ken").unwrap();
        let guarded = with(MetricsAccess::Token(token), true);
        let denied = answer(&guarded, &Method::GET, "/status", Some(b"Bearer x"));
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert!(denied.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(
            answer(&guarded, &Method::GET, "/status", Some(b"Bearer t0ken")).status(),
            StatusCode::OK
        );
        // The metrics listener serves nothing else.
        let listener = with(MetricsAccess::Open, false);
        assert_eq!(
            answer(&listener, &Method::GET, "/", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&listener, &Method::GET, "/session.json", None).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn refuses_other_methods_and_paths() {
        let s = state();
        let post = answer(&s, &Method::POST, "/", None);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()["allow"], "GET, HEAD");
        assert_eq!(
            answer(&s, &Method::GET, "/../Cargo.toml", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&s, &Method::GET, "/viewer.js", None).status(),
            StatusCode::OK
        );
    }
}
