//! Metrics for operators: `/metrics` (Prometheus text) and `/status` (JSON) on the real
//! server, read over HTTPS (trusting the server's CA, as a scraper would) or plain HTTP
//! (`--metrics-listen`), and who may read them (docs/SECURITY.md, "Metrics").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use streamsocket_tests::{exclusive, spawn_viewer, ServerProcess};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    authorization: Option<&str>,
) -> Reply {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after a `Connection: close` reply.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).expect("a text reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole reply");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// GET over HTTPS, trusting only the server's CA and checking the name `localhost`.
async fn https_get(
    server: &ServerProcess,
    at: SocketAddr,
    path: &str,
    auth: Option<&str>,
) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(server.ca()).expect("the CA"))
        .expect("a CA certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(at).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("a TLS handshake with the server's certificate");
    exchange(tls, path, auth).await
}

async fn http_get(at: SocketAddr, path: &str, auth: Option<&str>) -> Reply {
    let tcp = tokio::net::TcpStream::connect(at).await.expect("connect");
    exchange(tcp, path, auth).await
}

/// One sample: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly enough to catch what a scraper
/// rejects: every sample belongs to a family declared by `# HELP` and `# TYPE` before it,
/// names and label names are valid, label values are quoted, values are numbers, counters
/// end in `_total`, and no family is declared twice.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the text ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "{line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter without _total: {line}");
            }
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, HashMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = HashMap::new();
                for pair in inner.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(valid_name(k), "label name in {line}");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value in {line}"));
                    labels.insert(k.to_string(), v.to_string());
                }
                (name, labels)
            }
        };
        assert!(valid_name(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "a sample without TYPE: {line}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The value of the sample `name` with these labels (among others), if there is one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Polls `/metrics` over HTTPS until `done` holds, failing with the last text after `limit`.
async fn metrics_until(
    server: &ServerProcess,
    page: SocketAddr,
    what: &str,
    limit: Duration,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let started = Instant::now();
    loop {
        let reply = https_get(server, page, "/metrics", None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let samples = parse_prometheus(&reply.body);
        if done(&samples) {
            return samples;
        }
        assert!(
            started.elapsed() < limit,
            "{what} not within {limit:?}:\n{}\nserver log:\n{}",
            reply.body,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn metrics_and_status_on_a_loopback_page_server() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[]).expect("server");
    let page = server.printed_addr("web page https://");

    let idle = metrics_until(
        &server,
        page,
        "the first scrape",
        Duration::from_secs(5),
        |_| true,
    )
    .await;
    assert_eq!(
        value(&idle, "streamsocket_viewers", &[("kind", "native")]),
        Some(0.0)
    );
    assert!(value(&idle, "streamsocket_build_info", &[]).is_some());
    for cert in ["server", "webtransport"] {
        let not_after = value(
            &idle,
            "streamsocket_certificate_expiry_timestamp_seconds",
            &[("certificate", cert)],
        )
        .unwrap_or_else(|| panic!("no expiry for the {cert} certificate"));
        assert!(not_after > now_unix() + 86_400.0, "{cert}: {not_after}");
    }
    assert!(value(&idle, "streamsocket_uptime_seconds", &[]).unwrap() >= 0.0);

    let viewer = spawn_viewer(&server, &["--duration", "5"]);
    let watching = metrics_until(
        &server,
        page,
        "one native viewer with frames sent",
        Duration::from_secs(20),
        |s| {
            value(s, "streamsocket_viewers", &[("kind", "native")]) == Some(1.0)
                && value(s, "streamsocket_frames_sent_total", &[]).unwrap_or(0.0) > 0.0
        },
    )
    .await;
    assert_eq!(
        value(&watching, "streamsocket_viewers", &[("kind", "web")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &watching,
            "streamsocket_sessions_admitted_total",
            &[("kind", "native")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &watching,
            "streamsocket_handshakes_total",
            &[("outcome", "completed")]
        )
        .unwrap()
            >= 1.0
    );
    let running: Vec<&Sample> = watching
        .iter()
        .filter(|s| s.name == "streamsocket_encoder_running" && s.value == 1.0)
        .collect();
    assert_eq!(running.len(), 1, "one encoder runs: {running:?}");
    let rendition = running[0].labels["rendition"].clone();
    let on = [("rendition", rendition.as_str())];
    assert_eq!(
        value(&watching, "streamsocket_rendition_viewers", &on),
        Some(1.0)
    );
    assert!(value(&watching, "streamsocket_encoder_frames_total", &on).unwrap() > 0.0);
    assert!(value(&watching, "streamsocket_encoder_output_bytes_total", &on).unwrap() > 0.0);
    assert!(value(&watching, "streamsocket_encoder_keyframes_total", &on).unwrap() >= 1.0);
    assert!(value(&watching, "streamsocket_encoder_encode_seconds_total", &on).unwrap() > 0.0);
    assert!(value(&watching, "streamsocket_video_sent_bytes_total", &[]).unwrap() > 0.0);

    // /status: what the preview shows, while the viewer watches (rates need two samples).
    let started = Instant::now();
    let status = loop {
        let reply = https_get(&server, page, "/status", None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/json");
        let v: Value = serde_json::from_str(&reply.body).expect("JSON");
        let encoding = v["renditions"]
            .as_array()
            .expect("renditions")
            .iter()
            .find(|r| r["encoding"] == true)
            .cloned();
        if encoding
            .as_ref()
            .is_some_and(|r| r["encoded_fps"].as_f64().unwrap() > 0.0)
        {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no encoder rate in /status: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for field in [
        "version",
        "uptime_s",
        "paused",
        "muted",
        "audio_peak",
        "audio_peak_dbfs",
        "viewers",
        "renditions",
        "source",
    ] {
        assert!(
            status.get(field).is_some(),
            "/status has no {field}: {status:#}"
        );
    }
    assert_eq!(status["paused"], false);
    assert_eq!(status["viewers"]["total"], 1);
    assert_eq!(status["viewers"]["native"], 1);
    let r = status["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == rendition.as_str())
        .expect("the rendition watched");
    for field in [
        "width",
        "height",
        "fps",
        "bitrate_kbps",
        "viewers",
        "encoding",
        "encoded_fps",
        "encoded_kbps",
        "frames_encoded",
        "keyframes",
    ] {
        assert!(r.get(field).is_some(), "a rendition has no {field}: {r:#}");
    }
    assert!(r["encoded_kbps"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(status["source"]["frames"].as_u64().unwrap() > 0);

    let run = viewer.join().expect("viewer thread");
    assert!(run.output.status.success(), "{}", run.stderr());
    let after = metrics_until(
        &server,
        page,
        "the viewer counted as gone",
        Duration::from_secs(10),
        |s| {
            value(s, "streamsocket_viewers", &[("kind", "native")]) == Some(0.0)
                && value(
                    s,
                    "streamsocket_sessions_ended_total",
                    &[("reason", "left")],
                ) == Some(1.0)
        },
    )
    .await;
    let sent = value(&after, "streamsocket_frames_sent_total", &[]).unwrap();
    let received = streamsocket_tests::num(run.stats(), "/video/frames_received");
    // Frames delivered are acknowledged ones: about what the viewer received.
    assert!(
        sent >= received * 0.9 && sent <= received + 5.0,
        "sent {sent}, received {received}"
    );
    assert!(value(&after, "streamsocket_audio_datagrams_sent_total", &[]).unwrap() > 0.0);
}

#[tokio::test]
async fn metrics_off_on_a_public_page_server_unless_a_token_is_given() {
    let _machine = exclusive();
    // The page server on every address: metrics are not served there without a token.
    let open_page = ServerProcess::start(&["--http-listen", "0.0.0.0:0"]).expect("server");
    let page = open_page.printed_addr("web page https://");
    assert_eq!(https_get(&open_page, page, "/", None).await.status, 200);
    for path in ["/metrics", "/status"] {
        let reply = https_get(&open_page, page, path, None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(
            https_get(&open_page, page, path, Some("Bearer anything"))
                .await
                .status,
            404
        );
    }
    assert!(
        open_page
            .log()
            .contains("/metrics and /status are off on the page server"),
        "{}",
        open_page.log()
    );
    drop(open_page);

    let guarded = ServerProcess::start(&[
        "--http-listen",
        "0.0.0.0:0",
        "--metrics-token",
        "m3trics-s3cret",
    ])
    .expect("server");
    let page = guarded.printed_addr("web page https://");
    for path in ["/metrics", "/status"] {
        for auth in [None, Some("Bearer wrong"), Some("Basic bTNocmljcw==")] {
            let reply = https_get(&guarded, page, path, auth).await;
            assert_eq!(reply.status, 401, "{path} {auth:?}: {}", reply.body);
            assert!(
                reply.headers["www-authenticate"].starts_with("Bearer"),
                "{:?}",
                reply.headers
            );
        }
        let ok = https_get(&guarded, page, path, Some("Bearer m3trics-s3cret")).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
    }
    let ok = https_get(&guarded, page, "/metrics", Some("Bearer m3trics-s3cret")).await;
    assert!(ok.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert!(!parse_prometheus(&ok.body).is_empty());
    assert!(
        !guarded.log().contains("m3trics-s3cret"),
        "the token is never logged"
    );
}

#[tokio::test]
async fn metrics_listen_serves_them_over_plain_http() {
    let _machine = exclusive();
    let server = ServerProcess::start(&[
        "--http-listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .expect("server");
    let listener = server.printed_addr("metrics http://");
    let page = server.printed_addr("web page https://");
    let metrics = http_get(listener, "/metrics", None).await;
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let samples = parse_prometheus(&metrics.body);
    assert_eq!(
        value(&samples, "streamsocket_viewers", &[("kind", "native")]),
        Some(0.0)
    );
    let status = http_get(listener, "/status", None).await;
    assert_eq!(status.status, 200);
    let v: Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(v["viewers"]["total"], 0);
    // Only the metrics there: no page; and still none on the public page server.
    assert_eq!(http_get(listener, "/", None).await.status, 404);
    assert_eq!(http_get(listener, "/session.json", None).await.status, 404);
    assert_eq!(https_get(&server, page, "/metrics", None).await.status, 404);
}
