//! Verifying the server: against a CA file, or a pinned SHA-256 fingerprint. There is no way to
//! turn verification off. When verification fails, the verifier records which check failed so
//! the viewer can say exactly what is wrong and how to fix it. Also the viewer's own
//! certificate, for servers that require one (mutual TLS), and what their refusals mean.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use streamsocket_certs::{format_span, format_time, Fingerprint, Validity};
use time::OffsetDateTime;

/// How the viewer decides the server is the right one.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The server's certificate must chain to this CA and carry the server's name.
    Ca(PathBuf),
    /// The server's certificate must have exactly this fingerprint.
    Pinned(Fingerprint),
}

/// Which check refused the server, with what the viewer needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    WrongCa {
        ca: PathBuf,
    },
    NameMismatch {
        name: String,
        valid_for: Vec<String>,
    },
    FingerprintMismatch {
        expected: Fingerprint,
        got: Fingerprint,
    },
    Expired {
        on: OffsetDateTime,
    },
    NotYetValid {
        from: OffsetDateTime,
    },
    Other {
        detail: String,
    },
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyFailure::WrongCa { ca } => write!(
                f,
                "wrong CA: the server's certificate is not signed by the CA in {}.\n  \
                 fix: use the ca.pem from the server's certificate directory (--ca <file>), \
                 or pin the server with --fingerprint sha256:<hex> as the server prints it at start",
                ca.display()
            ),
            VerifyFailure::NameMismatch { name, valid_for } => {
                write!(
                    f,
                    "name mismatch: the server's certificate is not valid for \"{name}\""
                )?;
                if !valid_for.is_empty() {
                    write!(f, " (it is valid for: {})", valid_for.join(", "))?;
                }
                write!(
                    f,
                    ".\n  fix: connect with one of the names it is valid for, pass --server-name <name>, \
                     or issue a certificate for this name on the server: streamsocket-certs --host {name}"
                )
            }
            VerifyFailure::FingerprintMismatch { expected, got } => write!(
                f,
                "fingerprint mismatch: the server's certificate is {got}, not the pinned {expected}.\n  \
                 fix: if the server's certificate was regenerated, pin the fingerprint it prints at start; \
                 otherwise this is not the server you meant"
            ),
            VerifyFailure::Expired { on } => write!(
                f,
                "expired certificate: the server's certificate expired on {} ({} ago).\n  \
                 fix: the server's operator renews it with `streamsocket-certs renew` (a running \
                 server picks it up by itself); if that date has not passed, set this machine's clock",
                format_time(*on),
                format_span(OffsetDateTime::now_utc() - *on)
            ),
            VerifyFailure::NotYetValid { from } => write!(
                f,
                "certificate not valid yet: the server's certificate is valid from {} (in {}; this \
                 machine's clock says {}).\n  fix: set this machine's clock (or the server's, if it \
                 issued the certificate with a wrong one)",
                format_time(*from),
                format_span(*from - OffsetDateTime::now_utc()),
                format_time(OffsetDateTime::now_utc())
            ),
            VerifyFailure::Other { detail } => write!(f, "the server's certificate was refused: {detail}"),
        }
    }
}

/// A server certificate verifier that remembers why it refused.
#[derive(Debug)]
pub struct ExplainingVerifier {
    trust: Trust,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    failure: Mutex<Option<VerifyFailure>>,
}

impl ExplainingVerifier {
    pub fn new(trust: Trust, provider: Arc<CryptoProvider>) -> anyhow::Result<Arc<Self>> {
        let webpki = match &trust {
            Trust::Ca(path) => {
                let roots = streamsocket_certs::load_ca_roots(path)?;
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?,
                )
            }
            Trust::Pinned(_) => None,
        };
        Ok(Arc::new(Self {
            trust,
            webpki,
            provider,
            failure: Mutex::new(None),
        }))
    }

    /// Why the last verification failed, if it did.
    pub fn failure(&self) -> Option<VerifyFailure> {
        self.failure.lock().expect("not poisoned").clone()
    }

    fn refuse(
        &self,
        failure: VerifyFailure,
        err: rustls::Error,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.failure.lock().expect("not poisoned") = Some(failure);
        Err(err)
    }
}

impl ServerCertVerifier for ExplainingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match (&self.trust, &self.webpki) {
            (Trust::Pinned(expected), _) => {
                let got = Fingerprint::of(end_entity);
                if got == *expected {
                    // The pin names this exact certificate: name and chain checks do not apply,
                    // its dates do. The handshake signature checks below still prove the
                    // server holds its key.
                    match validity_failure(end_entity, now) {
                        None => Ok(ServerCertVerified::assertion()),
                        Some(failure) => {
                            let error = match failure {
                                VerifyFailure::NotYetValid { .. } => CertificateError::NotValidYet,
                                _ => CertificateError::Expired,
                            };
                            self.refuse(failure, rustls::Error::InvalidCertificate(error))
                        }
                    }
                } else {
                    self.refuse(
                        VerifyFailure::FingerprintMismatch {
                            expected: *expected,
                            got,
                        },
                        rustls::Error::InvalidCertificate(
                            CertificateError::ApplicationVerificationFailure,
                        ),
                    )
                }
            }
            (Trust::Ca(ca), Some(webpki)) => {
                match webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    Ok(v) => Ok(v),
                    Err(err) => {
                        let failure = match &err {
                            rustls::Error::InvalidCertificate(c) => match c {
                                CertificateError::UnknownIssuer
                                | CertificateError::BadSignature => {
                                    VerifyFailure::WrongCa { ca: ca.clone() }
                                }
                                CertificateError::NotValidForName => VerifyFailure::NameMismatch {
                                    name: server_name.to_str().into_owned(),
                                    valid_for: Vec::new(),
                                },
                                CertificateError::NotValidForNameContext { presented, .. } => {
                                    VerifyFailure::NameMismatch {
                                        name: server_name.to_str().into_owned(),
                                        valid_for: presented.clone(),
                                    }
                                }
                                CertificateError::Expired
                                | CertificateError::ExpiredContext { .. }
                                | CertificateError::NotValidYet
                                | CertificateError::NotValidYetContext { .. } => {
                                    validity_failure(end_entity, now).unwrap_or_else(|| {
                                        VerifyFailure::Other {
                                            detail: format!("{c:?}"),
                                        }
                                    })
                                }
                                other => VerifyFailure::Other {
                                    detail: format!("{other:?}"),
                                },
                            },
                            other => VerifyFailure::Other {
                                detail: other.to_string(),
                            },
                        };
                        self.refuse(failure, err)
                    }
                }
            }
            (Trust::Ca(_), None) => unreachable!("a CA verifier is built with its roots"),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a certificate is not valid at `now` (a verifier's clock), if it is not.
fn validity_failure(cert: &CertificateDer<'_>, now: UnixTime) -> Option<VerifyFailure> {
    let info = streamsocket_certs::inspect_der(cert).ok()?;
    let now = OffsetDateTime::from_unix_timestamp(now.as_secs() as i64).ok()?;
    match info.validity_at(now) {
        Validity::Valid { .. } => None,
        Validity::Expired { on } => Some(VerifyFailure::Expired { on }),
        Validity::NotYetValid { from } => Some(VerifyFailure::NotYetValid { from }),
    }
}

/// The viewer's own certificate and key, for servers that require one (mutual TLS).
#[derive(Debug, Clone)]
pub struct ViewerIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse a certificate outside its dates before connecting (tests turn this off to see
    /// the server refuse it).
    pub check_dates: bool,
}

impl ViewerIdentity {
    /// `--cert` alone implies the key beside it: `alice.pem` → `alice.key`.
    pub fn new(cert: PathBuf, key: Option<PathBuf>) -> Self {
        let key = key.unwrap_or_else(|| cert.with_extension("key"));
        ViewerIdentity {
            cert,
            key,
            check_dates: true,
        }
    }

    /// Loads both files, refusing a certificate that is not valid now: the server would
    /// refuse it too, with a less helpful message.
    fn load(&self) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read your viewer {what} {}: {e}\n  hint: the server's operator issues \
                     them with `streamsocket-certs viewer <your name>`",
                    path.display()
                )
            })
        };
        let pem = read(&self.cert, "certificate")?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{} is not a certificate: {e}", self.cert.display()))?;
        let first = chain
            .first()
            .ok_or_else(|| anyhow::anyhow!("{} holds no certificate", self.cert.display()))?;
        let info = streamsocket_certs::inspect_der(first)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.cert.display()))?;
        match info.validity_now() {
            Validity::Valid { .. } => {}
            _ if !self.check_dates => {}
            invalid => anyhow::bail!(
                "your viewer certificate {} is not valid now: {invalid}\n  fix: ask the server's \
                 operator to renew it (streamsocket-certs renew), or check this machine's clock",
                self.cert.display()
            ),
        }
        let pem = read(&self.key, "key")?;
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not a private key: {e}", self.key.display()))?;
        Ok((chain, key))
    }
}

/// The QUIC client configuration for a trust mode (and the viewer's certificate, if it has
/// one), and the verifier to ask after a failure.
pub fn client_config(
    trust: Trust,
    identity: Option<&ViewerIdentity>,
) -> anyhow::Result<(quinn::ClientConfig, Arc<ExplainingVerifier>)> {
    client_config_with_alpn(trust, identity, streamsocket_proto::ALPN)
}

/// [`client_config`] offering another application protocol: for tests of how a server
/// refuses one it does not speak.
pub fn client_config_with_alpn(
    trust: Trust,
    identity: Option<&ViewerIdentity>,
    alpn: &[u8],
) -> anyhow::Result<(quinn::ClientConfig, Arc<ExplainingVerifier>)> {
    let (mut tls, verifier) = rustls_config(trust, identity)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(streamsocket_transport::settings::client());
    Ok((config, verifier))
}

/// The TLS 1.3 client configuration for a trust mode (and certificate), without ALPN: the
/// relays' connections use it with MoQ's.
pub fn rustls_config(
    trust: Trust,
    identity: Option<&ViewerIdentity>,
) -> anyhow::Result<(rustls::ClientConfig, Arc<ExplainingVerifier>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = ExplainingVerifier::new(trust, provider.clone())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let (chain, key) = id.load()?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                anyhow::anyhow!(
                    "{} and {} do not belong together: {e}",
                    id.cert.display(),
                    id.key.display()
                )
            })?
        }
    };
    Ok((tls, verifier))
}

/// What a TLS alert from the server says about the viewer's own certificate, worded for the
/// person running the viewer; `None` for alerts about anything else.
pub fn explain_refusal(alert: u8) -> Option<&'static str> {
    // RFC 8446 section 6.2 alert numbers.
    Some(match alert {
        116 => {
            "this server only admits viewers with a certificate: pass --cert <name>.pem --key \
             <name>.key (the server's operator issues them with `streamsocket-certs viewer <name>`)"
        }
        48 | 51 => {
            "the server refused your viewer certificate: it is not signed by the CA this server \
             trusts (or the server cannot tell whether it was revoked). Ask its operator for one \
             (`streamsocket-certs viewer <name>` in the server's certificate directory)"
        }
        42 => {
            "the server refused your viewer certificate as malformed (unreadable, or with an \
             extension it does not handle). Ask its operator for one (`streamsocket-certs viewer <name>`)"
        }
        46 | 49 => {
            "the server refused your viewer certificate. Ask its operator for one \
             (`streamsocket-certs viewer <name>`)"
        }
        43 => {
            "the server refused your certificate: it is not a viewer certificate (a server's or \
             CA's, say). Ask the server's operator for one (`streamsocket-certs viewer <name>`)"
        }
        44 => "the server refused your viewer certificate: it has been revoked. Ask the server's operator for a new one",
        45 => {
            "the server refused your viewer certificate: it has expired or is not valid yet (by \
             the server's clock). Ask its operator to renew it (`streamsocket-certs renew`)"
        }
        _ => return None,
    })
}

/// The default CA file: `certs/ca.pem` in the working directory.
pub fn default_ca() -> PathBuf {
    Path::new("certs").join("ca.pem")
}
