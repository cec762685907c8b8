//! Connecting: resolving the server, verifying its certificate, the hello and the welcome,
//! and words for what went wrong.

use std::net::SocketAddr;
use std::time::Duration;

use streamsocket_proto::control::{ControlMessage, Hello, Welcome, WishedRendition};
use streamsocket_proto::{ErrorCode, PROTOCOL_VERSION};
use streamsocket_transport::{ControlReader, ControlWriter, ReadError};
use thiserror::Error;

use crate::control::latency_budget::LatencyBudget;
use crate::net::tls::{client_config, explain_refusal, Trust, VerifyFailure, ViewerIdentity};

/// How long connecting (handshake, hello, welcome) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the viewer could not connect, worded for the person running it.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("{0}")]
    Verify(VerifyFailure),
    /// The server refused the viewer's own certificate (or its lack of one).
    #[error("{0}")]
    ViewerCertificate(&'static str),
    #[error("the server refused the session ({}): {message}", code.describe())]
    Refused { code: ErrorCode, message: String },
    #[error("no answer from {0} within 5 s: is streamsocket-server running there, and is its UDP port reachable?")]
    Unreachable(SocketAddr),
    #[error("connection to {addr} failed: {detail}")]
    Failed { addr: SocketAddr, detail: String },
    #[error("{0:#}")]
    Setup(anyhow::Error),
}

/// Where to connect and how to trust the server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` as given on the command line.
    pub server: String,
    /// Name to verify in the certificate; the host part of `server` when not given.
    pub server_name: Option<String>,
    pub trust: Trust,
    pub rendition: WishedRendition,
    pub latency: LatencyBudget,
    /// The access token for servers that require one (empty: none).
    pub token: streamsocket_proto::control::AccessToken,
    /// The viewer's certificate, for servers that require one.
    pub identity: Option<ViewerIdentity>,
}

/// A connected, welcomed session.
pub struct Session {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub welcome: Welcome,
    pub writer: ControlWriter,
    pub reader: ControlReader,
}

/// Splits `host:port` (or `[v6]:port`, or a bare host with the default port).
pub fn split_host_port(server: &str) -> (String, u16) {
    if let Some(rest) = server.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            if let Ok(p) = port.parse() {
                return (host.to_string(), p);
            }
        }
        return (
            rest.trim_end_matches(']').to_string(),
            streamsocket_proto::DEFAULT_PORT,
        );
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host.to_string(), p),
            Err(_) => (server.to_string(), streamsocket_proto::DEFAULT_PORT),
        },
        _ => (server.to_string(), streamsocket_proto::DEFAULT_PORT),
    }
}

/// Connects, verifies the server and exchanges hello and welcome.
pub async fn connect(opts: &ConnectOptions) -> Result<Session, ConnectError> {
    let (host, port) = split_host_port(&opts.server);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ConnectError::Resolve(opts.server.clone(), e.to_string()))?
        .next()
        .ok_or_else(|| ConnectError::Resolve(opts.server.clone(), "no address".into()))?;
    let server_name = opts.server_name.clone().unwrap_or(host);

    let (config, verifier) =
        client_config(opts.trust.clone(), opts.identity.as_ref()).map_err(ConnectError::Setup)?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let endpoint = streamsocket_transport::endpoint::client(bind)
        .map_err(|e| ConnectError::Setup(e.into()))?;
    let connecting = endpoint
        .connect_with(config, addr, &server_name)
        .map_err(|e| ConnectError::Failed {
            addr,
            detail: e.to_string(),
        })?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => return Err(ConnectError::Unreachable(addr)),
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            if let Some(f) = verifier.failure() {
                return Err(ConnectError::Verify(f));
            }
            return Err(connection_error(addr, e));
        }
    };

    let handshake = async {
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connection_error(addr, e))?;
        let mut writer = ControlWriter::new(send);
        let mut reader = ControlReader::new(recv);
        let hello = ControlMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            rendition: opts.rendition,
            latency_target_ms: opts.latency.as_ms(),
            client_name: format!("streamsocket-client {}", env!("CARGO_PKG_VERSION")),
            token: opts.token.clone(),
        });
        // The server may refuse our certificate just after our side of the handshake is done
        // (TLS 1.3 client authentication): its reason arrives as the connection's close.
        writer.send(&hello).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => connection_error(addr, e),
            e => ConnectError::Failed {
                addr,
                detail: e.to_string(),
            },
        })?;
        loop {
            match reader.next().await {
                Ok(Some(ControlMessage::Welcome(w))) => return Ok((w, writer, reader)),
                Ok(Some(ControlMessage::Error {
                    code: ErrorCode::UnknownRendition,
                    message,
                })) => {
                    tracing::warn!("{message}");
                }
                Ok(Some(ControlMessage::Error { code, message })) => {
                    return Err(ConnectError::Refused { code, message })
                }
                Ok(Some(other)) => {
                    return Err(ConnectError::Failed {
                        addr,
                        detail: format!("the server sent {} before its welcome", other.name()),
                    })
                }
                Ok(None) => {
                    return Err(ConnectError::Failed {
                        addr,
                        detail: "the server closed the control stream".into(),
                    })
                }
                Err(ReadError::Stream(quinn::ReadError::ConnectionLost(e))) => {
                    return Err(connection_error(addr, e))
                }
                Err(e) => {
                    return Err(ConnectError::Failed {
                        addr,
                        detail: e.to_string(),
                    })
                }
            }
        }
    };
    let (welcome, writer, reader) = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Err(_) => {
            return Err(ConnectError::Failed {
                addr,
                detail: "no welcome from the server within 5 s".into(),
            })
        }
        Ok(r) => r?,
    };
    Ok(Session {
        endpoint,
        conn,
        welcome,
        writer,
        reader,
    })
}

pub(crate) fn connection_error(addr: SocketAddr, e: quinn::ConnectionError) -> ConnectError {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => ConnectError::Refused {
            code: ErrorCode::from_u16(c.error_code.into_inner().min(u16::MAX as u64) as u16),
            message: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        quinn::ConnectionError::TimedOut => ConnectError::Unreachable(addr),
        quinn::ConnectionError::ConnectionClosed(close) => {
            // TLS alerts arrive as QUIC crypto errors, 0x100 + the alert number.
            let code = u64::from(close.error_code);
            match (code & !0xff == 0x100)
                .then(|| explain_refusal((code & 0xff) as u8))
                .flatten()
            {
                Some(text) => ConnectError::ViewerCertificate(text),
                None => ConnectError::Failed {
                    addr,
                    detail: quinn::ConnectionError::ConnectionClosed(close).to_string(),
                },
            }
        }
        other => ConnectError::Failed {
            addr,
            detail: other.to_string(),
        },
    }
}

/// Whether connecting again may help: the network or the server may come back, while a
/// certificate that fails verification or a refusal on principle will not change by itself.
pub fn worth_retrying(e: &ConnectError) -> bool {
    match e {
        ConnectError::Resolve(..) | ConnectError::Unreachable(_) | ConnectError::Failed { .. } => {
            true
        }
        ConnectError::Refused { code, .. } => {
            matches!(code, ErrorCode::ServerShuttingDown | ErrorCode::RateLimited)
        }
        ConnectError::Verify(_) | ConnectError::ViewerCertificate(_) | ConnectError::Setup(_) => {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_may_pass_are_retried() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(worth_retrying(&ConnectError::Unreachable(addr)));
        assert!(worth_retrying(&ConnectError::Refused {
            code: ErrorCode::ServerShuttingDown,
            message: String::new()
        }));
        assert!(!worth_retrying(&ConnectError::Refused {
            code: ErrorCode::UnsupportedVersion,
            message: String::new()
        }));
        assert!(!worth_retrying(&ConnectError::Setup(anyhow::anyhow!("x"))));
    }

    #[test]
    fn host_and_port_are_split_as_people_write_them() {
        assert_eq!(
            split_host_port("localhost:4443"),
            ("localhost".into(), 4443)
        );
        assert_eq!(split_host_port("127.0.0.1:9"), ("127.0.0.1".into(), 9));
        assert_eq!(split_host_port("[::1]:5000"), ("::1".into(), 5000));
        assert_eq!(
            split_host_port("example.test"),
            ("example.test".into(), 4443)
        );
        assert_eq!(split_host_port("::1"), ("::1".into(), 4443));
    }
}
