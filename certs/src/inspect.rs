//! Reading what a certificate says: who it is for, which names, and when it is valid.

use std::fmt;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use crate::{CertError, Fingerprint};

/// What a certificate is for, as far as StreamSocket is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A certificate authority (signs the others).
    Ca,
    /// A server certificate (extended key usage "server authentication").
    Server,
    /// A viewer certificate for mutual TLS ("client authentication").
    Viewer,
    /// Anything else.
    Other,
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertKind::Ca => "CA",
            CertKind::Server => "server",
            CertKind::Viewer => "viewer",
            CertKind::Other => "other",
        })
    }
}

/// The facts of one certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub kind: CertKind,
    /// The subject's common name ("StreamSocket server", a viewer's name).
    pub common_name: String,
    /// DNS names and IP addresses (subject alternative names).
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub fingerprint: Fingerprint,
    /// The serial number, big-endian without leading zeros (what a revocation list names).
    pub serial: Vec<u8>,
}

/// Whether a certificate is valid at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid { until: OffsetDateTime },
    Expired { on: OffsetDateTime },
    NotYetValid { from: OffsetDateTime },
}

impl CertInfo {
    pub fn validity_at(&self, now: OffsetDateTime) -> Validity {
        if now < self.not_before {
            Validity::NotYetValid {
                from: self.not_before,
            }
        } else if now > self.not_after {
            Validity::Expired { on: self.not_after }
        } else {
            Validity::Valid {
                until: self.not_after,
            }
        }
    }

    pub fn validity_now(&self) -> Validity {
        self.validity_at(OffsetDateTime::now_utc())
    }

    /// True when the certificate should be renewed at `now`: it is not valid, or it expires
    /// within `within` or within a third of its lifetime, whichever is sooner (so a short-lived
    /// certificate is not renewed the moment it is issued).
    pub fn renewal_due(&self, now: OffsetDateTime, within: time::Duration) -> bool {
        now < self.not_before || self.not_after - now < within.min(self.lifetime() / 3)
    }

    /// How long the certificate was issued for.
    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }
}

impl fmt::Display for Validity {
    /// "valid until 2027-11-26 06:47 UTC (365 days left)", "EXPIRED on …", "NOT YET VALID: from …".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = OffsetDateTime::now_utc();
        match *self {
            Validity::Valid { until } => write!(
                f,
                "valid until {} ({} left)",
                format_time(until),
                format_span(until - now)
            ),
            Validity::Expired { on } => write!(
                f,
                "EXPIRED on {} ({} ago)",
                format_time(on),
                format_span(now - on)
            ),
            Validity::NotYetValid { from } => write!(
                f,
                "NOT YET VALID: valid from {} (in {})",
                format_time(from),
                format_span(from - now)
            ),
        }
    }
}

/// `2027-11-26 06:47 UTC`
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

/// `12 days`, `5 hours`, `3 minutes`
pub fn format_span(d: time::Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d.whole_days() >= 2 {
        plural(d.whole_days(), "day")
    } else if d.whole_hours() >= 1 {
        plural(d.whole_hours(), "hour")
    } else {
        plural(d.whole_minutes().max(0), "minute")
    }
}

/// Reads the facts of a DER certificate.
pub fn inspect_der(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let kind = if cert.is_ca() {
        CertKind::Ca
    } else {
        match cert.extended_key_usage() {
            Ok(Some(eku)) if eku.value.server_auth => CertKind::Server,
            Ok(Some(eku)) if eku.value.client_auth => CertKind::Viewer,
            _ => CertKind::Other,
        }
    };
    let validity = cert.validity();
    Ok(CertInfo {
        kind,
        common_name,
        names,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        fingerprint: Fingerprint::of(der),
        serial: cert.tbs_certificate.serial.to_bytes_be(),
    })
}

/// Reads the facts of the first certificate in a PEM file.
pub fn inspect(path: &Path) -> Result<CertInfo, CertError> {
    let invalid = |reason: String| CertError::Invalid {
        what: "certificate",
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|source| CertError::Read {
        what: "certificate",
        path: path.to_path_buf(),
        hint: "",
        source,
    })?;
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| invalid("no certificate in the file".into()))?
        .map_err(|e| invalid(e.to_string()))?;
    inspect_der(&der).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times_read_well() {
        assert_eq!(format_span(time::Duration::days(30)), "30 days");
        assert_eq!(format_span(time::Duration::hours(25)), "25 hours");
        assert_eq!(format_span(time::Duration::hours(1)), "1 hour");
        assert_eq!(format_span(time::Duration::seconds(90)), "1 minute");
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(format_time(t), "2027-01-15 08:00 UTC");
    }
}
