//! Trusting a server by the SHA-256 fingerprint of its certificate instead of a CA: for a
//! self-signed certificate, such as the one `moq-relay --listen-tls-generate` makes at start
//! (served at `http://HOST:PORT/certificate.sha256`). The pin names the certificate itself,
//! so name and chain checks do not apply; its dates do, and the handshake signature still
//! proves the server holds the certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;

use crate::{inspect_der, Fingerprint, Validity};

/// A certificate that none of the pins name.
#[derive(Error)]
#[error("its certificate's fingerprint is {got}, not {}", pinned(.pins))]
pub struct NotPinned {
    pub got: Fingerprint,
    pub pins: Vec<Fingerprint>,
}

/// rustls shows the reason inside its own error with `Debug`: the sentence, not the fields.
impl std::fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn pinned(pins: &[Fingerprint]) -> String {
    let names: Vec<String> = pins.iter().map(Fingerprint::to_string).collect();
    match names.as_slice() {
        [one] => format!("the pinned {one}"),
        _ => format!("any of the pinned {}", names.join(", ")),
    }
}

/// Accepts a server whose end-entity certificate has one of the pinned fingerprints.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl PinnedServerVerifier {
    pub fn new(pins: Vec<Fingerprint>, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(Self { pins, provider })
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity);
        if !self.pins.contains(&got) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotPinned {
                    got,
                    pins: self.pins.clone(),
                })),
            )));
        }
        let info = inspect_der(end_entity).map_err(rustls::Error::General)?;
        let now = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
            .map_err(|_| rustls::Error::General("the clock reads a time out of range".into()))?;
        match info.validity_at(now) {
            Validity::Valid { .. } => Ok(ServerCertVerified::assertion()),
            Validity::Expired { .. } => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
            }
            Validity::NotYetValid { .. } => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> CertificateDer<'static> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        cert.cert.der().clone()
    }

    fn verify(pins: Vec<Fingerprint>, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let verifier =
            PinnedServerVerifier::new(pins, Arc::new(rustls::crypto::ring::default_provider()));
        let name = ServerName::try_from("relay.example").unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_pinned_certificate_is_taken_whatever_its_name_and_another_is_refused_in_words() {
        let cert = self_signed();
        let other = self_signed();
        let pin = Fingerprint::of(&cert);
        // Made for localhost, presented by relay.example: the pin, not the name, decides.
        verify(vec![Fingerprint::of(&other), pin], &cert).unwrap();
        let err = verify(vec![pin], &other).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "fingerprint is {}, not the pinned {pin}",
                Fingerprint::of(&other)
            )),
            "{err}"
        );
    }
}
