//! The certificate a browser's WebTransport session is served: ECDSA P-256, valid for less
//! than 14 days, accepted by the page through `serverCertificateHashes` without any CA
//! set-up. The server issues one at start, in memory only, and replaces it before it
//! expires; the page asks for the current hash (`/session.json`) before each connection.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

/// How long before its end the certificate is replaced: a page that fetched the old hash
/// just before has days to connect with it, and a server whose renewal fails has days of
/// retries before browsers refuse it.
pub const RENEW_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long a failed renewal waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(3600);

/// One issued certificate, as the TLS stack and the page need it.
#[derive(Debug)]
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    pub sha256: [u8; 32],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// The current short-lived certificate, shared by the TLS resolver, the page server and
/// the renewal task.
pub struct WebCertificate {
    hosts: Vec<String>,
    current: RwLock<Arc<Issued>>,
}

impl std::fmt::Debug for WebCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.current();
        f.debug_struct("WebCertificate")
            .field("sha256", &hex::encode(c.sha256))
            .field("not_after", &c.not_after)
            .finish()
    }
}

impl WebCertificate {
    /// Issues the first certificate, for the default names plus `hosts`.
    pub fn new(hosts: &[String]) -> anyhow::Result<Arc<Self>> {
        let first = issue(hosts)?;
        Ok(Arc::new(Self {
            hosts: hosts.to_vec(),
            current: RwLock::new(Arc::new(first)),
        }))
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<Issued> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the certificate with a new one (sessions already open keep theirs).
    pub fn renew(&self) -> anyhow::Result<Arc<Issued>> {
        let next = Arc::new(issue(&self.hosts)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
        Ok(next)
    }

    /// Renews the certificate [`RENEW_BEFORE`] its end, for as long as the server runs.
    pub async fn keep_renewed(self: Arc<Self>) {
        loop {
            let wait = renewal_delay(self.current().not_after, OffsetDateTime::now_utc());
            tokio::time::sleep(wait).await;
            match self.renew() {
                Ok(new) => tracing::info!(
                    sha256 = %hex::encode(new.sha256),
                    not_after = %streamsocket_certs::format_time(new.not_after),
                    "renewed the browsers' WebTransport certificate (pages fetch the new hash)"
                ),
                Err(e) => {
                    tracing::error!("cannot renew the browsers' WebTransport certificate: {e:#}; retrying in an hour");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
}

/// How long to wait, at `now`, before renewing a certificate valid until `not_after`.
pub fn renewal_delay(not_after: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let left = (not_after - now).max(time::Duration::ZERO);
    let left = Duration::try_from(left).unwrap_or_default();
    left.saturating_sub(RENEW_BEFORE)
}

fn issue(hosts: &[String]) -> anyhow::Result<Issued> {
    let c = streamsocket_certs::issue_hashed(hosts)
        .context("issuing the browsers' WebTransport certificate")?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(vec![c.cert], c.key.into(), &provider)
        .context("the WebTransport certificate and its key")?;
    Ok(Issued {
        key: Arc::new(key),
        sha256: c.sha256,
        not_before: c.not_before,
        not_after: c.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_three_days_before_the_end_and_at_once_when_late() {
        let now = OffsetDateTime::now_utc();
        let in_13_days = now + time::Duration::days(13);
        assert_eq!(
            renewal_delay(in_13_days, now),
            Duration::from_secs(10 * 24 * 3600)
        );
        assert_eq!(
            renewal_delay(now + time::Duration::days(2), now),
            Duration::ZERO
        );
        assert_eq!(
            renewal_delay(now - time::Duration::days(1), now),
            Duration::ZERO
        );
    }

    #[test]
    fn renewal_replaces_the_certificate() {
        let web = WebCertificate::new(&[]).unwrap();
        let first = web.current();
        let second = web.renew().unwrap();
        assert_ne!(first.sha256, second.sha256);
        assert_eq!(web.current().sha256, second.sha256);
        assert!(second.not_after - second.not_before <= time::Duration::days(14));
    }
}
