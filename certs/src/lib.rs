//! Certificates for StreamSocket: a local certificate authority, the server's certificate and
//! viewers' certificates signed by it (generated with rcgen), their SHA-256 fingerprints and
//! validity, renewal and revocation, and loading them for rustls.
//!
//! A certificate directory holds:
//!
//! | file | what | who needs it |
//! | --- | --- | --- |
//! | `ca.pem` | the CA certificate | every viewer (copy it to them), to verify the server |
//! | `ca.key` | the CA private key | only the certificate tool, to sign certificates |
//! | `server.pem` | the server certificate | the server |
//! | `server.key` | the server private key | the server |
//! | `viewers/<name>.pem`, `.key` | a viewer's certificate and key (mutual TLS) | that viewer |
//! | `viewers.crl.pem` | revoked viewer certificates | the server, when it requires viewer certificates |
//!
//! Viewers either trust `ca.pem` or pin the server certificate's SHA-256 fingerprint.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;

mod inspect;
mod issue;
mod pinned;
mod short_lived;

pub use inspect::{format_span, format_time, inspect, inspect_der, CertInfo, CertKind, Validity};
pub use issue::{
    crl_serials, generate, issue_server, issue_viewer, renew, revoke_viewer, revoked_serials,
    status, Generated, IssuedViewer, Lifetime, Renewal, CA_VALIDITY_DAYS, DEFAULT_HOSTS,
    RENEW_WITHIN_DAYS, SERVER_VALIDITY_DAYS, VIEWER_VALIDITY_DAYS,
};
pub use pinned::{NotPinned, PinnedServerVerifier};
pub use short_lived::{issue_hashed, HashedCertificate, HASHED_CERT_DAYS, HASHED_CERT_MAX_DAYS};

/// Problems with certificate files, each saying how to fix it.
#[derive(Debug, Error)]
pub enum CertError {
    #[error("cannot read {what} {path}: {source}{}", hint_line(hint))]
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
    #[error("{0:?} is not a usable viewer name: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadViewerName(String),
    #[error("{path} ({subject:?}) was not made by streamsocket-certs: renew it with the tool that issued it")]
    ForeignCa { path: PathBuf, subject: String },
    #[error("there is no CA in {dir}\n  hint: create one with `streamsocket-certs --dir {dir}` (or start the server once)", dir = dir.display())]
    NoCa { dir: PathBuf },
}

fn hint_line(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("\n  hint: {hint}")
    }
}

/// The revocation list's file name, beside the CA that signs it.
pub const CRL_FILE: &str = "viewers.crl.pem";

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
    /// Where viewer certificates (for mutual TLS) are issued.
    pub fn viewers_dir(&self) -> PathBuf {
        self.dir.join("viewers")
    }
    pub fn viewer_cert(&self, name: &str) -> PathBuf {
        self.viewers_dir().join(format!("{name}.pem"))
    }
    pub fn viewer_key(&self, name: &str) -> PathBuf {
        self.viewers_dir().join(format!("{name}.key"))
    }
    /// The CA's list of revoked viewer certificates.
    pub fn crl(&self) -> PathBuf {
        self.dir.join(CRL_FILE)
    }
    /// Every serial number issued to a viewer name (for revoking them all).
    pub fn viewer_serials(&self, name: &str) -> PathBuf {
        self.viewers_dir().join(format!("{name}.serials"))
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

/// What a server that requires viewer certificates trusts: the CA that issues them and the
/// CA's revocation list, when there is one.
pub struct ViewerTrust {
    pub roots: rustls::RootCertStore,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Loads the CA that signs viewer certificates and, if the file exists, its revocation list.
pub fn load_viewer_trust(ca: &Path, crl: &Path) -> Result<ViewerTrust, CertError> {
    let roots = load_ca_roots(ca)?;
    let mut crls = Vec::new();
    if crl.is_file() {
        let invalid = |reason: String| CertError::Invalid {
            what: "revocation list",
            path: crl.to_path_buf(),
            reason,
        };
        let pem = read_bytes(crl, "revocation list", "")?;
        for list in CertificateRevocationListDer::pem_slice_iter(&pem) {
            crls.push(list.map_err(|e| invalid(e.to_string()))?);
        }
        // An empty file would silently turn revocation off.
        if crls.is_empty() {
            return Err(invalid("no revocation list in the file".into()));
        }
    }
    Ok(ViewerTrust { roots, crls })
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

pub(crate) fn read_bytes(
    path: &Path,
    what: &'static str,
    hint: &'static str,
) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Read {
        what,
        path: path.to_path_buf(),
        hint,
        source,
    })
}

pub(crate) fn read_to_string(
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

/// Writes a file whole (a temporary file renamed over it, so a reader never sees half of it);
/// private keys are created readable by their owner only.
pub(crate) fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    // A leftover from an interrupted run may have other permissions: start afresh, and
    // create the file new so that the mode below applies.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(err(e));
    }
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

    #[cfg(unix)]
    #[test]
    fn a_leftover_temporary_file_never_leaks_a_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::new(dir.path());
        let stale = dir.path().join("server.key.new");
        fs::write(&stale, "left over").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
        generate(dir.path(), &[]).unwrap();
        let mode = fs::metadata(paths.server_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        assert!(!stale.exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "new"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
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
