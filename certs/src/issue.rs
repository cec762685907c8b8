//! Issuing certificates: the local CA, the server's certificate, viewers' certificates for
//! mutual TLS, their revocation, and renewal of whatever is about to expire.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::inspect::{inspect, CertInfo, CertKind, Validity};
use crate::{read_bytes, read_to_string, write_file, CertError, CertPaths, Fingerprint};

/// Names every generated server certificate is valid for, besides those asked for.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// The common name of the CA this tool generates (and is willing to renew).
const CA_NAME: &str = "StreamSocket local CA";
/// How long a generated CA stays valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a generated server certificate stays valid.
pub const SERVER_VALIDITY_DAYS: i64 = 365;
/// How long a generated viewer certificate stays valid.
pub const VIEWER_VALIDITY_DAYS: i64 = 365;
/// `renew` renews what expires within this many days.
pub const RENEW_WITHIN_DAYS: i64 = 30;
/// How far new certificates are back-dated, so a viewer whose clock is slightly behind still
/// accepts them.
const BACKDATE: Duration = Duration::hours(1);

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Lifetime {
    /// From an hour ago (clock skew) until `days` from now.
    pub fn days_from_now(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Lifetime {
            not_before: now - BACKDATE,
            not_after: now + Duration::days(days),
        }
    }

    /// Starting an hour ago and lasting as long as `previous` did (for renewals).
    fn like(previous: &CertInfo) -> Self {
        let now = OffsetDateTime::now_utc();
        let length = previous.lifetime().max(Duration::days(1));
        Lifetime {
            not_before: now - BACKDATE,
            not_after: now - BACKDATE + length,
        }
    }
}

/// What [`issue_server`] did.
#[derive(Debug)]
pub struct Generated {
    pub paths: CertPaths,
    /// False when an existing CA was reused to sign the new server certificate.
    pub new_ca: bool,
    pub hosts: Vec<String>,
    pub fingerprint: Fingerprint,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Generates a server certificate for `DEFAULT_HOSTS` plus `extra_hosts`, valid for
/// [`SERVER_VALIDITY_DAYS`], signed by the CA in `dir` (or a new CA when there is none).
pub fn generate(dir: &Path, extra_hosts: &[String]) -> Result<Generated, CertError> {
    issue_server(
        dir,
        extra_hosts,
        Lifetime::days_from_now(SERVER_VALIDITY_DAYS),
    )
}

/// `DEFAULT_HOSTS` plus `extra_hosts` (trimmed, each once); an empty name or one with
/// spaces is refused.
pub(crate) fn server_hosts(extra_hosts: &[String]) -> Result<Vec<String>, CertError> {
    let mut hosts: Vec<String> = DEFAULT_HOSTS.iter().map(|s| s.to_string()).collect();
    for h in extra_hosts {
        let h = h.trim().to_string();
        if h.is_empty() || h.contains(char::is_whitespace) {
            return Err(CertError::BadHost(h));
        }
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    Ok(hosts)
}

/// Issues a server certificate for `DEFAULT_HOSTS` plus `extra_hosts` with the given
/// lifetime, signed by the CA in `dir` (or a new CA when there is none).
pub fn issue_server(
    dir: &Path,
    extra_hosts: &[String],
    lifetime: Lifetime,
) -> Result<Generated, CertError> {
    let paths = CertPaths::new(dir);
    create_dir(dir)?;
    let (issuer, new_ca) = match load_ca(&paths)? {
        Some(issuer) => (issuer, false),
        None => (new_ca(&paths)?, true),
    };

    let hosts = server_hosts(extra_hosts)?;
    let mut params =
        CertificateParams::new(hosts.clone()).map_err(|_| CertError::BadHost(hosts.join(",")))?;
    params.distinguished_name = common_name("StreamSocket server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (fingerprint, _) = sign_leaf(
        params,
        lifetime,
        &issuer,
        &paths.server_cert(),
        &paths.server_key(),
    )?;
    Ok(Generated {
        paths,
        new_ca,
        hosts,
        fingerprint,
        not_before: lifetime.not_before,
        not_after: lifetime.not_after,
    })
}

/// What [`issue_viewer`] wrote.
#[derive(Debug)]
pub struct IssuedViewer {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: Fingerprint,
    pub not_after: OffsetDateTime,
}

/// Issues a viewer certificate (for servers that require one) named `name`, signed by the CA
/// in `dir`, into `dir/viewers/<name>.pem` and `.key`. The CA must exist already.
pub fn issue_viewer(dir: &Path, name: &str, lifetime: Lifetime) -> Result<IssuedViewer, CertError> {
    check_viewer_name(name)?;
    let paths = CertPaths::new(dir);
    let issuer = load_ca(&paths)?.ok_or_else(|| CertError::NoCa { dir: dir.into() })?;
    create_dir(&paths.viewers_dir())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cert, key) = (paths.viewer_cert(name), paths.viewer_key(name));
    let (fingerprint, _) = sign_leaf(params, lifetime, &issuer, &cert, &key)?;
    // Every certificate a name was given, so that revoking the name revokes them all (a
    // renewed or re-issued certificate does not make the old one invalid).
    let serial = inspect(&cert)?.serial;
    let record = paths.viewer_serials(name);
    let mut serials = fs::read_to_string(&record).unwrap_or_default();
    serials.push_str(&hex::encode(serial));
    serials.push('\n');
    write_file(&record, serials.as_bytes(), false)?;
    Ok(IssuedViewer {
        name: name.to_string(),
        cert,
        key,
        fingerprint,
        not_after: lifetime.not_after,
    })
}

/// Revokes every certificate issued to the viewer `name` (the current `viewers/<name>.pem`
/// and any it replaced): adds them to the CA's revocation list `dir/viewers.crl.pem`, which a
/// server that requires viewer certificates reads (and reloads on change). Returns how many
/// certificates the list now names.
pub fn revoke_viewer(dir: &Path, name: &str) -> Result<usize, CertError> {
    check_viewer_name(name)?;
    let paths = CertPaths::new(dir);
    let issuer = load_ca(&paths)?.ok_or_else(|| CertError::NoCa { dir: dir.into() })?;
    let mut serials: Vec<Vec<u8>> = fs::read_to_string(paths.viewer_serials(name))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| hex::decode(line.trim()).ok())
        .filter(|serial| !serial.is_empty())
        .collect();
    match inspect(&paths.viewer_cert(name)) {
        Ok(current) => serials.push(current.serial),
        Err(e) if serials.is_empty() => return Err(e),
        Err(_) => {}
    }
    let now = OffsetDateTime::now_utc();

    let (mut revoked, number) = match read_crl(&paths.crl())? {
        Some((entries, number)) => (entries, number + 1),
        None => (Vec::new(), 1),
    };
    for serial in serials {
        if !revoked
            .iter()
            .any(|r: &RevokedCertParams| r.serial_number.as_ref() == serial.as_slice())
        {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: now,
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            });
        }
    }
    let count = revoked.len();
    let crl = CertificateRevocationListParams {
        this_update: now - BACKDATE,
        // The server does not enforce this date; a far one keeps an old list usable.
        next_update: now + Duration::days(CA_VALIDITY_DAYS),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    write_file(&paths.crl(), crl.pem()?.as_bytes(), false)?;
    Ok(count)
}

/// Reads a revocation list written by [`revoke_viewer`]: its entries and number.
fn read_crl(path: &Path) -> Result<Option<(Vec<RevokedCertParams>, u64)>, CertError> {
    if !path.is_file() {
        return Ok(None);
    }
    let invalid = |reason: String| CertError::Invalid {
        what: "revocation list",
        path: path.to_path_buf(),
        reason,
    };
    let pem = read_bytes(path, "revocation list", "")?;
    let der =
        CertificateRevocationListDer::from_pem_slice(&pem).map_err(|e| invalid(e.to_string()))?;
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.user_certificate.to_bytes_be()),
            revocation_time: r.revocation_date.to_datetime(),
            reason_code: Some(RevocationReason::CessationOfOperation),
            invalidity_date: None,
        })
        .collect();
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    Ok(Some((entries, number)))
}

/// One certificate [`renew`] looked at.
#[derive(Debug)]
pub struct Renewal {
    pub path: PathBuf,
    pub kind: CertKind,
    /// Its validity before renewal.
    pub was: Validity,
    /// `Some(new validity)` when it was renewed; `None` when it did not need to be.
    pub renewed: Option<Validity>,
    /// A new fingerprint (viewers that pin the server need it).
    pub fingerprint: Fingerprint,
    /// A revoked viewer certificate, left as it is.
    pub revoked: bool,
}

/// Renews every certificate in `dir` (CA, server, viewers) that is due (see
/// [`CertInfo::renewal_due`]), or all of them with `force`; revoked viewer certificates stay
/// as they are. Each keeps its names and
/// the length of its lifetime. The CA is renewed with its own key, so certificates it signed
/// stay valid and viewers only need the new `ca.pem` before the old one expires.
pub fn renew(dir: &Path, within: Duration, force: bool) -> Result<Vec<Renewal>, CertError> {
    let paths = CertPaths::new(dir);
    if !paths.ca_cert().is_file() {
        return Err(CertError::NoCa { dir: dir.into() });
    }
    let now = OffsetDateTime::now_utc();
    let due = |info: &CertInfo| force || info.renewal_due(now, within);
    let revoked = revoked_serials(dir)?;
    let mut out = Vec::new();

    // Read everything before changing anything: a broken file stops the run up front.
    let ca = inspect(&paths.ca_cert())?;
    let server = match paths.server_cert().is_file() {
        true => Some(inspect(&paths.server_cert())?),
        false => None,
    };
    let viewers = viewer_certs(&paths)?
        .into_iter()
        .map(|(name, path)| inspect(&path).map(|info| (name, path, info)))
        .collect::<Result<Vec<_>, _>>()?;
    if due(&ca) && ca.common_name != CA_NAME {
        return Err(CertError::ForeignCa {
            path: paths.ca_cert(),
            subject: ca.common_name,
        });
    }

    let mut renewal = Renewal {
        path: paths.ca_cert(),
        kind: CertKind::Ca,
        was: ca.validity_at(now),
        renewed: None,
        fingerprint: ca.fingerprint,
        revoked: false,
    };
    if due(&ca) {
        let key = load_ca_key(&paths)?;
        let (params, cert) = self_sign_ca(&key, Lifetime::like(&ca))?;
        write_file(&paths.ca_cert(), cert.pem().as_bytes(), false)?;
        renewal.renewed = Some(Validity::Valid {
            until: params.not_after,
        });
        renewal.fingerprint = Fingerprint::of(cert.der());
    }
    out.push(renewal);

    if let Some(server) = server {
        let mut renewal = Renewal {
            path: paths.server_cert(),
            kind: CertKind::Server,
            was: server.validity_at(now),
            renewed: None,
            fingerprint: server.fingerprint,
            revoked: false,
        };
        if due(&server) {
            let g = issue_server(dir, &server.names, Lifetime::like(&server))?;
            renewal.renewed = Some(Validity::Valid { until: g.not_after });
            renewal.fingerprint = g.fingerprint;
        }
        out.push(renewal);
    }

    for (name, path, viewer) in viewers {
        let mut renewal = Renewal {
            path,
            kind: CertKind::Viewer,
            was: viewer.validity_at(now),
            renewed: None,
            fingerprint: viewer.fingerprint,
            revoked: revoked.contains(&viewer.serial),
        };
        if due(&viewer) && !renewal.revoked {
            let v = issue_viewer(dir, &name, Lifetime::like(&viewer))?;
            renewal.renewed = Some(Validity::Valid { until: v.not_after });
            renewal.fingerprint = v.fingerprint;
        }
        out.push(renewal);
    }
    Ok(out)
}

/// Every certificate in `dir`: CA, server, viewers (in that order).
pub fn status(dir: &Path) -> Result<Vec<(PathBuf, CertInfo)>, CertError> {
    let paths = CertPaths::new(dir);
    let mut out = Vec::new();
    for path in [paths.ca_cert(), paths.server_cert()] {
        if path.is_file() {
            let info = inspect(&path)?;
            out.push((path, info));
        }
    }
    for (_, path) in viewer_certs(&paths)? {
        let info = inspect(&path)?;
        out.push((path, info));
    }
    Ok(out)
}

/// The serial numbers a revocation list names, as [`CertInfo::serial`] spells them.
pub fn crl_serials(der: &CertificateRevocationListDer<'_>) -> Result<Vec<Vec<u8>>, String> {
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
        .map_err(|e| format!("not a revocation list: {e}"))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| r.user_certificate.to_bytes_be())
        .collect())
}

/// The serial numbers a revocation list in `dir` names (empty when there is none).
pub fn revoked_serials(dir: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    Ok(read_crl(&CertPaths::new(dir).crl())?
        .map(|(entries, _)| {
            entries
                .into_iter()
                .map(|e| e.serial_number.as_ref().to_vec())
                .collect()
        })
        .unwrap_or_default())
}

/// `(name, path)` of each viewer certificate, sorted by name.
fn viewer_certs(paths: &CertPaths) -> Result<Vec<(String, PathBuf)>, CertError> {
    let dir = paths.viewers_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CertError::Read {
                what: "viewer certificate directory",
                path: dir,
                hint: "",
                source,
            })
        }
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    out.sort();
    Ok(out)
}

/// A viewer's name becomes a file name and a certificate's common name: keep it plain.
fn check_viewer_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CertError::BadViewerName(name.to_string()))
    }
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// A serial number unique to this key and moment (a renewed CA keeps its key, so the key
/// alone would repeat its predecessor's serial).
fn fresh_serial(key: &KeyPair) -> SerialNumber {
    let mut hasher = Sha256::new();
    hasher.update(rcgen::PublicKeyData::der_bytes(key));
    hasher.update(
        OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes(),
    );
    let mut serial = hasher.finalize()[..16].to_vec();
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x40; // no leading zero byte, so every reader spells it the same way
    SerialNumber::from_slice(&serial)
}

fn load_ca_key(paths: &CertPaths) -> Result<KeyPair, CertError> {
    let key_pem = read_to_string(
        &paths.ca_key(),
        "CA key",
        "the CA key is needed to sign certificates; it stays on the machine that issues them",
    )?;
    KeyPair::from_pem(&key_pem).map_err(|e| CertError::Invalid {
        what: "CA key",
        path: paths.ca_key(),
        reason: e.to_string(),
    })
}

/// The CA in `paths`, ready to sign; `None` when there is none.
fn load_ca(paths: &CertPaths) -> Result<Option<Issuer<'static, KeyPair>>, CertError> {
    if !paths.ca_cert().is_file() {
        return Ok(None);
    }
    let key = load_ca_key(paths)?;
    let cert_pem = read_to_string(&paths.ca_cert(), "CA certificate", "")?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| CertError::Invalid {
        what: "CA certificate",
        path: paths.ca_cert(),
        reason: e.to_string(),
    })?;
    Ok(Some(issuer))
}

fn self_sign_ca(
    key: &KeyPair,
    lifetime: Lifetime,
) -> Result<(CertificateParams, rcgen::Certificate), CertError> {
    let mut params = CertificateParams::default();
    let mut dn = common_name(CA_NAME);
    dn.push(DnType::OrganizationName, "StreamSocket");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = lifetime.not_before;
    params.not_after = lifetime.not_after;
    params.serial_number = Some(fresh_serial(key));
    let cert = params.self_signed(key)?;
    Ok((params, cert))
}

fn new_ca(paths: &CertPaths) -> Result<Issuer<'static, KeyPair>, CertError> {
    let key = KeyPair::generate()?;
    let (params, cert) = self_sign_ca(&key, Lifetime::days_from_now(CA_VALIDITY_DAYS))?;
    // The key first: a certificate without its key would make every later run fail.
    write_file(&paths.ca_key(), key.serialize_pem().as_bytes(), true)?;
    write_file(&paths.ca_cert(), cert.pem().as_bytes(), false)?;
    Ok(Issuer::new(params, key))
}

/// Signs a leaf certificate with a new key and writes both; returns its fingerprint.
fn sign_leaf(
    mut params: CertificateParams,
    lifetime: Lifetime,
    issuer: &Issuer<'static, KeyPair>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Fingerprint, rcgen::Certificate), CertError> {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = lifetime.not_before;
    params.not_after = lifetime.not_after;
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    params.serial_number = Some(fresh_serial(&key));
    let cert = params.signed_by(&key, issuer)?;
    // A server watching these files may see the new key beside the old certificate for a
    // moment; it keeps its current pair and tries again (see the server's certificate
    // reloader).
    write_file(key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(cert_path, cert.pem().as_bytes(), false)?;
    Ok((Fingerprint::of(cert.der()), cert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lifetime(from_days: i64, to_days: i64) -> Lifetime {
        let now = OffsetDateTime::now_utc();
        Lifetime {
            not_before: now + Duration::days(from_days),
            not_after: now + Duration::days(to_days),
        }
    }

    /// Verifies `dir`'s server certificate against `dir`'s CA, as a viewer would.
    fn viewer_accepts_server(dir: &Path) -> Result<(), rustls::Error> {
        let paths = CertPaths::new(dir);
        let roots = crate::load_ca_roots(&paths.ca_cert()).unwrap();
        let identity = crate::load_server_identity(&paths).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &identity.chain[0],
                &[],
                &rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn certificates_state_their_validity() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::new(dir.path());
        let g = issue_server(dir.path(), &["cam.test".into()], lifetime(-10, -1)).unwrap();
        let info = inspect(&paths.server_cert()).unwrap();
        assert_eq!(info.kind, CertKind::Server);
        assert!(info.names.contains(&"cam.test".to_string()), "{info:?}");
        assert!(info.names.contains(&"::1".to_string()), "{info:?}");
        assert_eq!(info.fingerprint, g.fingerprint);
        assert!(matches!(info.validity_now(), Validity::Expired { .. }));
        assert!(info.validity_now().to_string().starts_with("EXPIRED on "));
        assert!(viewer_accepts_server(dir.path()).is_err());

        issue_server(dir.path(), &[], lifetime(2, 30)).unwrap();
        let info = inspect(&paths.server_cert()).unwrap();
        assert!(matches!(info.validity_now(), Validity::NotYetValid { .. }));
        assert!(
            info.validity_now().to_string().contains("in 2 days")
                || info.validity_now().to_string().contains("in 47 hours")
        );

        let ca = inspect(&paths.ca_cert()).unwrap();
        assert_eq!(ca.kind, CertKind::Ca);
        assert!(matches!(ca.validity_now(), Validity::Valid { .. }));
    }

    #[test]
    fn viewer_certificates_need_a_ca_and_a_plain_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = issue_viewer(dir.path(), "alice", Lifetime::days_from_now(1)).unwrap_err();
        assert!(matches!(err, CertError::NoCa { .. }), "{err}");
        generate(dir.path(), &[]).unwrap();
        for bad in ["", "../x", ".hidden", "a b", &"x".repeat(65)] {
            let err = issue_viewer(dir.path(), bad, Lifetime::days_from_now(1)).unwrap_err();
            assert!(matches!(err, CertError::BadViewerName(_)), "{bad}: {err}");
        }
        let v = issue_viewer(dir.path(), "alice-laptop", Lifetime::days_from_now(30)).unwrap();
        let info = inspect(&v.cert).unwrap();
        assert_eq!(info.kind, CertKind::Viewer);
        assert_eq!(info.common_name, "alice-laptop");
        assert_eq!(info.fingerprint, v.fingerprint);
        assert!(v.key.is_file());
    }

    #[test]
    fn revoking_lists_each_certificate_once() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[]).unwrap();
        let alice = issue_viewer(dir.path(), "alice", Lifetime::days_from_now(30)).unwrap();
        let bob = issue_viewer(dir.path(), "bob", Lifetime::days_from_now(30)).unwrap();
        assert!(revoked_serials(dir.path()).unwrap().is_empty());
        assert_eq!(revoke_viewer(dir.path(), "alice").unwrap(), 1);
        assert_eq!(revoke_viewer(dir.path(), "alice").unwrap(), 1);
        assert_eq!(revoke_viewer(dir.path(), "bob").unwrap(), 2);
        let serials = revoked_serials(dir.path()).unwrap();
        assert!(serials.contains(&inspect(&alice.cert).unwrap().serial));
        assert!(serials.contains(&inspect(&bob.cert).unwrap().serial));
        let (_, number) = read_crl(&CertPaths::new(dir.path()).crl())
            .unwrap()
            .unwrap();
        assert_eq!(number, 3, "each revocation numbers a new list");
        // The server can load it.
        let paths = CertPaths::new(dir.path());
        let trust = crate::load_viewer_trust(&paths.ca_cert(), &paths.crl()).unwrap();
        assert_eq!(trust.crls.len(), 1);
        assert!(revoke_viewer(dir.path(), "carol").is_err());
    }

    #[test]
    fn renew_replaces_what_is_due_and_keeps_names_and_lifetimes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::new(dir.path());
        issue_server(dir.path(), &["cam.test".into()], lifetime(-100, -2)).unwrap();
        issue_viewer(dir.path(), "fresh", lifetime(0, 300)).unwrap();
        issue_viewer(dir.path(), "old", lifetime(-300, 5)).unwrap();
        issue_viewer(dir.path(), "gone", lifetime(-300, 5)).unwrap();
        revoke_viewer(dir.path(), "gone").unwrap();
        let fresh_before = inspect(&paths.viewer_cert("fresh")).unwrap();

        let renewals = renew(dir.path(), Duration::days(RENEW_WITHIN_DAYS), false).unwrap();
        let by_path = |p: PathBuf| renewals.iter().find(|r| r.path == p).unwrap();
        assert!(by_path(paths.ca_cert()).renewed.is_none());
        assert!(by_path(paths.server_cert()).renewed.is_some());
        assert!(by_path(paths.viewer_cert("old")).renewed.is_some());
        assert!(by_path(paths.viewer_cert("fresh")).renewed.is_none());
        assert!(by_path(paths.viewer_cert("gone")).revoked);
        assert!(by_path(paths.viewer_cert("gone")).renewed.is_none());

        let server = inspect(&paths.server_cert()).unwrap();
        assert!(matches!(server.validity_now(), Validity::Valid { .. }));
        assert!(server.names.contains(&"cam.test".to_string()));
        assert_eq!(server.lifetime(), Duration::days(98));
        viewer_accepts_server(dir.path()).unwrap();
        assert_eq!(
            inspect(&paths.viewer_cert("fresh")).unwrap().fingerprint,
            fresh_before.fingerprint
        );
    }

    #[test]
    fn a_renewed_ca_still_vouches_for_what_it_signed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::new(dir.path());
        generate(dir.path(), &[]).unwrap();
        let ca_before = inspect(&paths.ca_cert()).unwrap();
        let server_before = inspect(&paths.server_cert()).unwrap();
        // `force` renews everything; restore the old server certificate afterwards to see
        // that the renewed CA still vouches for it.
        let old_server = (
            fs::read(paths.server_cert()).unwrap(),
            fs::read(paths.server_key()).unwrap(),
        );
        let renewals = renew(dir.path(), Duration::days(1), true).unwrap();
        assert!(renewals.iter().all(|r| r.renewed.is_some()));
        fs::write(paths.server_cert(), &old_server.0).unwrap();
        fs::write(paths.server_key(), &old_server.1).unwrap();
        let ca_after = inspect(&paths.ca_cert()).unwrap();
        assert_ne!(ca_after.fingerprint, ca_before.fingerprint);
        assert_ne!(ca_after.serial, ca_before.serial);
        assert_eq!(
            inspect(&paths.server_cert()).unwrap().fingerprint,
            server_before.fingerprint
        );
        viewer_accepts_server(dir.path())
            .expect("the old server certificate verifies against the renewed CA");
    }
}
