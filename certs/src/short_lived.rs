//! The short-lived certificate browsers accept by its hash (WebTransport's
//! `serverCertificateHashes`): ECDSA P-256, self-signed, valid for at most 14 days in all
//! (the browser's limit), held in memory only and replaced by the server before it expires.

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::issue::server_hosts;
use crate::CertError;

/// The longest validity (not after − not before) a browser accepts for a certificate it
/// checks by hash.
pub const HASHED_CERT_MAX_DAYS: i64 = 14;
/// The validity this module gives: a day under the limit, so clock rounding on either side
/// cannot push it over.
pub const HASHED_CERT_DAYS: i64 = HASHED_CERT_MAX_DAYS - 1;
/// How far the certificate is back-dated (a browser whose clock is a little behind).
const BACKDATE: Duration = Duration::hours(1);

/// A certificate and its key, never written to disk.
pub struct HashedCertificate {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the certificate's DER: what the page gives `serverCertificateHashes`.
    pub sha256: [u8; 32],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for HashedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashedCertificate")
            .field("sha256", &hex::encode(self.sha256))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Issues a fresh certificate for `DEFAULT_HOSTS` plus `extra_hosts`, valid from an hour ago
/// for [`HASHED_CERT_DAYS`] in all.
pub fn issue_hashed(extra_hosts: &[String]) -> Result<HashedCertificate, CertError> {
    let hosts = server_hosts(extra_hosts)?;
    let mut params =
        CertificateParams::new(hosts.clone()).map_err(|_| CertError::BadHost(hosts.join(",")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "StreamSocket WebTransport");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_before = OffsetDateTime::now_utc() - BACKDATE;
    let not_after = not_before + Duration::days(HASHED_CERT_DAYS);
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CertError::Generate)?;
    let cert = params.self_signed(&key).map_err(CertError::Generate)?;
    let der = cert.der().clone();
    let sha256: [u8; 32] = Sha256::digest(&der).into();
    Ok(HashedCertificate {
        cert: der,
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        sha256,
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect_der;

    #[test]
    fn within_the_browsers_limit_and_p256() {
        let c = issue_hashed(&["example.org".into()]).unwrap();
        let info = inspect_der(&c.cert).unwrap();
        assert!(info.lifetime() <= Duration::days(HASHED_CERT_MAX_DAYS));
        assert!(info.names.iter().any(|n| n == "example.org"));
        assert_eq!(c.sha256, <[u8; 32]>::from(Sha256::digest(&c.cert)));
        // ECDSA P-256: the OID of id-ecPublicKey with the prime256v1 curve in the SPKI.
        let (_, x509) = x509_parser::parse_x509_certificate(&c.cert).unwrap();
        let spki = &x509.tbs_certificate.subject_pki;
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        assert!(
            x509.tbs_certificate.validity.not_before.timestamp()
                < OffsetDateTime::now_utc().unix_timestamp()
        );
    }

    #[test]
    fn each_is_new() {
        let a = issue_hashed(&[]).unwrap();
        let b = issue_hashed(&[]).unwrap();
        assert_ne!(a.sha256, b.sha256);
    }

    #[test]
    fn bad_host_is_refused() {
        assert!(matches!(
            issue_hashed(&["a b".into()]),
            Err(CertError::BadHost(_))
        ));
    }
}
