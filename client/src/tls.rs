//! Verifying the server: against a CA file, or a pinned SHA-256 fingerprint. There is no way to
//! turn verification off. When verification fails, the verifier records which check failed so
//! the viewer can say exactly what is wrong and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use streamsocket_certs::Fingerprint;

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
        detail: String,
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
            VerifyFailure::Expired { detail } => write!(
                f,
                "the server's certificate is not valid now ({detail}).\n  \
                 fix: check this machine's clock, or renew the certificate on the server with streamsocket-certs"
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
                    // The pin names this exact certificate: name and chain checks do not apply.
                    // The handshake signature checks below still prove the server holds its key.
                    Ok(ServerCertVerified::assertion())
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
                                    VerifyFailure::Expired {
                                        detail: format!("{c:?}"),
                                    }
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

/// The QUIC client configuration for a trust mode, and the verifier to ask after a failure.
pub fn client_config(
    trust: Trust,
) -> anyhow::Result<(quinn::ClientConfig, Arc<ExplainingVerifier>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = ExplainingVerifier::new(trust, provider.clone())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![streamsocket_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(streamsocket_transport::settings::client());
    Ok((config, verifier))
}

/// The default CA file: `certs/ca.pem` in the working directory.
pub fn default_ca() -> PathBuf {
    Path::new("certs").join("ca.pem")
}
