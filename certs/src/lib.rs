//! Certificates for StreamSocket: a local certificate authority and a server certificate signed
//! by it (generated with rcgen), their SHA-256 fingerprints, and loading them for rustls.
//!
//! A certificate directory holds four files:
//!
//! | file | what | who needs it |
//! | --- | --- | --- |
//! | `ca.pem` | the CA certificate | every viewer (copy it to them), to verify the server |
//! | `ca.key` | the CA private key | only the certificate tool, to sign new server certificates |
//! | `server.pem` | the server certificate | the server |
//! | `server.key` | the server private key | the server |
//!
//! Viewers either trust `ca.pem` or pin the server certificate's SHA-256 fingerprint.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Names every generated server certificate is valid for, besides those asked for.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long a generated CA stays valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a generated server certificate stays valid.
pub const SERVER_VALIDITY_DAYS: i64 = 365;

/// Problems with certificate files, each saying how to fix it.
#[derive(Debug, Error)]
pub enum CertError {
    #[error("cannot read {what} {path}: {source}\n  hint: {hint}")]
    Read {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {reason}\n  hint: regenerate it with `streamsocket-certs --dir {dir}`", dir = path.parent().map(|p| p.display().to_string()).unwrap_or_else(|| ".".into()))]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0:?} is not a valid host name or IP address for a certificate")]
    BadHost(String),
}

/// The paths of the files in a certificate directory.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub dir: PathBuf,
}

impl CertPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// True when the server's certificate and key are both present.
    pub fn server_identity_exists(&self) -> bool {
        self.server_cert().is_file() && self.server_key().is_file()
    }
}

/// The SHA-256 digest of a certificate's DER encoding, written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        Fingerprint(Sha256::digest(cert.as_ref()).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a fingerprint given on the command line could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid fingerprint {given:?}: {reason} (expected sha256:<64 hex digits>, as the server prints at start)")]
pub struct FingerprintParseError {
    given: String,
    reason: &'static str,
}

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Accepts `sha256:<hex>` or bare hex, upper or lower case, with or without `:` between
    /// byte pairs (as `openssl x509 -fingerprint` prints it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| FingerprintParseError {
            given: s.to_string(),
            reason,
        };
        let trimmed = s.trim();
        let hex_part = match trimmed.split_once(':') {
            Some((alg, rest)) if alg.eq_ignore_ascii_case("sha256") => rest,
            Some((alg, _)) if alg.len() > 2 => return Err(err("only sha256 is supported")),
            _ => trimmed,
        };
        let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
        if digits.len() != 64 {
            return Err(err("a SHA-256 fingerprint has 64 hex digits"));
        }
        let bytes = hex::decode(&digits).map_err(|_| err("not hexadecimal"))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(Fingerprint(out))
    }
}

/// What [`generate`] did.
#[derive(Debug)]
pub struct Generated {
    pub paths: CertPaths,
    /// False when an existing CA was reused to sign the new server certificate.
    pub new_ca: bool,
    pub hosts: Vec<String>,
    pub fingerprint: Fingerprint,
    pub not_after: time::OffsetDateTime,
}

/// Generates a server certificate for `DEFAULT_HOSTS` plus `extra_hosts` into `dir`, signed
/// by the CA in `dir`, or by a new CA when there is none.
pub fn generate(dir: &Path, extra_hosts: &[String]) -> Result<Generated, CertError> {
    let paths = CertPaths::new(dir);
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let now = time::OffsetDateTime::now_utc();
    // Back-date a little so a viewer whose clock is slightly behind still accepts it.
    let not_before = now - time::Duration::hours(1);

    let (issuer, new_ca) = if paths.ca_cert().is_file() && paths.ca_key().is_file() {
        let key_pem = read_to_string(
            &paths.ca_key(),
            "CA key",
            "the CA key is needed to sign server certificates",
        )?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Invalid {
            what: "CA key",
            path: paths.ca_key(),
            reason: e.to_string(),
        })?;
        let cert_pem = read_to_string(&paths.ca_cert(), "CA certificate", "")?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| CertError::Invalid {
            what: "CA certificate",
            path: paths.ca_cert(),
            reason: e.to_string(),
        })?;
        (issuer, false)
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "StreamSocket local CA");
        dn.push(DnType::OrganizationName, "StreamSocket");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        write_file(&paths.ca_cert(), cert.pem().as_bytes(), false)?;
        write_file(&paths.ca_key(), key.serialize_pem().as_bytes(), true)?;
        (Issuer::new(params, key), true)
    };

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
    let mut params =
        CertificateParams::new(hosts.clone()).map_err(|_| CertError::BadHost(hosts.join(",")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "StreamSocket server");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = now + time::Duration::days(SERVER_VALIDITY_DAYS);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&paths.server_cert(), cert.pem().as_bytes(), false)?;
    write_file(&paths.server_key(), key.serialize_pem().as_bytes(), true)?;

    Ok(Generated {
        paths,
        new_ca,
        hosts,
        fingerprint: Fingerprint::of(cert.der()),
        not_after: params.not_after,
    })
}

/// The server's certificate chain and private key, ready for rustls.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Fingerprint of the end-entity certificate, for viewers that pin it.
    pub fingerprint: Fingerprint,
}

/// Loads the server certificate and key from a certificate directory.
pub fn load_server_identity(paths: &CertPaths) -> Result<ServerIdentity, CertError> {
    let cert_pem = read_bytes(
        &paths.server_cert(),
        "server certificate",
        "generate one with `streamsocket-certs` (the server does this on first start)",
    )?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Invalid {
            what: "server certificate",
            path: paths.server_cert(),
            reason: e.to_string(),
        })?;
    let Some(first) = chain.first() else {
        return Err(CertError::Invalid {
            what: "server certificate",
            path: paths.server_cert(),
            reason: "no certificate in the file".into(),
        });
    };
    let fingerprint = Fingerprint::of(first);
    let key_pem = read_bytes(
        &paths.server_key(),
        "server key",
        "it belongs beside server.pem",
    )?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::Invalid {
        what: "server key",
        path: paths.server_key(),
        reason: e.to_string(),
    })?;
    Ok(ServerIdentity {
        chain,
        key,
        fingerprint,
    })
}

/// Loads the CA certificates a viewer trusts from a PEM file.
pub fn load_ca_roots(path: &Path) -> Result<rustls::RootCertStore, CertError> {
    let pem = read_bytes(
        path,
        "CA certificate",
        "copy ca.pem from the server's certificate directory and pass it with --ca, or pin the \
         server with --fingerprint sha256:<hex> as the server prints it at start",
    )?;
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| CertError::Invalid {
            what: "CA certificate",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| CertError::Invalid {
            what: "CA certificate",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(CertError::Invalid {
            what: "CA certificate",
            path: path.to_path_buf(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(roots)
}

fn read_bytes(path: &Path, what: &'static str, hint: &'static str) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Read {
        what,
        path: path.to_path_buf(),
        hint,
        source,
    })
}

fn read_to_string(
    path: &Path,
    what: &'static str,
    hint: &'static str,
) -> Result<String, CertError> {
    let bytes = read_bytes(path, what, hint)?;
    String::from_utf8(bytes).map_err(|_| CertError::Invalid {
        what,
        path: path.to_path_buf(),
        reason: "not text".into(),
    })
}

/// Writes a file; private keys are created readable by their owner only.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parses_the_forms_people_paste() {
        let fp = Fingerprint([0xab; 32]);
        let shown = fp.to_string();
        assert!(shown.starts_with("sha256:abab"));
        assert_eq!(shown.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(shown.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        assert_eq!(hex::encode(fp.0).parse::<Fingerprint>(), Ok(fp));
        let colons =
            fp.0.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
        assert_eq!(colons.parse::<Fingerprint>(), Ok(fp));
        assert!("sha256:abc".parse::<Fingerprint>().is_err());
        assert!("md5:abab".parse::<Fingerprint>().is_err());
        assert!(format!("sha256:{}", "zz".repeat(32))
            .parse::<Fingerprint>()
            .is_err());
    }

    #[test]
    fn generate_then_load_and_reuse_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), &["example.test".into()]).unwrap();
        assert!(first.new_ca);
        assert!(first.hosts.contains(&"example.test".to_string()));
        let identity = load_server_identity(&first.paths).unwrap();
        assert_eq!(identity.fingerprint, first.fingerprint);
        assert_eq!(identity.chain.len(), 1);
        let roots = load_ca_roots(&first.paths.ca_cert()).unwrap();
        assert_eq!(roots.len(), 1);

        let ca_before = fs::read(first.paths.ca_cert()).unwrap();
        let second = generate(dir.path(), &[]).unwrap();
        assert!(!second.new_ca, "an existing CA is reused");
        assert_ne!(second.fingerprint, first.fingerprint, "a new server key");
        assert_eq!(fs::read(second.paths.ca_cert()).unwrap(), ca_before);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(second.paths.server_key())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
        }
    }

    #[test]
    fn missing_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_ca_roots(&dir.path().join("ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--fingerprint"), "{err}");
        let err = load_server_identity(&CertPaths::new(dir.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("streamsocket-certs"), "{err}");
        fs::write(dir.path().join("ca.pem"), "not a pem").unwrap();
        assert!(load_ca_roots(&dir.path().join("ca.pem")).is_err());
    }
}
