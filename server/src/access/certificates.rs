//! The server's TLS side: its certificate (reloaded without a restart when the files change or
//! on SIGHUP) and, optionally, the viewer certificates it requires (mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use streamsocket_certs::{CertInfo, CertPaths, Fingerprint, Validity};

use crate::web::WebCertificate;

use crate::access::admission::Admission;
use crate::access::file_watch::FileWatch;
pub use crate::access::file_watch::FilesSeen;

/// How often a certificate close to its end is warned about.
const EXPIRY_WARNING_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Where the server's certificates come from and whom it asks for one.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The certificate directory (`server.pem`, `server.key`).
    pub certs: PathBuf,
    /// `Some(CA file)`: every viewer must present a certificate signed by this CA and not
    /// revoked in the CA's list beside it (`viewers.crl.pem` in the CA file's directory,
    /// where `streamsocket-certs revoke` writes it).
    pub viewer_ca: Option<PathBuf>,
    pub congestion: streamsocket_transport::settings::Congestion,
    /// How often to look for changed files; `None`: only on SIGHUP.
    pub check_every: Option<Duration>,
    /// The key of address-validation (Retry) tokens, the same across reloads.
    pub retry_key: RetryKey,
    /// The short-lived certificate browsers' WebTransport sessions get (ALPN `h3`).
    pub web: Arc<WebCertificate>,
    /// Where the certificate's expiry is published for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A certificate that can be replaced while connections use the old one: the page server's.
#[derive(Debug)]
pub struct CurrentKey(RwLock<Arc<CertifiedKey>>);

impl CurrentKey {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self(RwLock::new(key))
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for CurrentKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Picks the certificate by the protocols a client offers: a browser asking for HTTP/3 only
/// (WebTransport) gets the short-lived one it accepts by hash; everyone else the server's
/// own certificate.
#[derive(Debug)]
struct ByProtocol {
    native: Arc<CertifiedKey>,
    web: Arc<WebCertificate>,
}

impl ResolvesServerCert for ByProtocol {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered: Vec<&[u8]> = hello.alpn().map(|a| a.collect()).unwrap_or_default();
        let web = offered.contains(&web_transport_quinn::ALPN.as_bytes())
            && !offered.contains(&streamsocket_proto::ALPN);
        Some(if web {
            self.web.current().key.clone()
        } else {
            self.native.clone()
        })
    }
}

/// The page server's TLS configuration (HTTP/1.1), serving whatever `key` holds now.
pub fn page_config(key: Arc<CurrentKey>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_no_client_auth()
        .with_cert_resolver(key);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The key of the server's Retry tokens ([`streamsocket_transport::endpoint::retry_token_key`]).
#[derive(Clone)]
pub struct RetryKey(pub Arc<dyn quinn::crypto::HandshakeTokenKey>);

impl std::fmt::Debug for RetryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryKey(hidden)")
    }
}

impl TlsSettings {
    fn paths(&self) -> CertPaths {
        CertPaths::new(&self.certs)
    }

    /// The viewer CA's revocation list.
    fn viewer_crl(ca: &Path) -> PathBuf {
        ca.parent()
            .unwrap_or(Path::new("."))
            .join(streamsocket_certs::CRL_FILE)
    }

    /// Every file the configuration is built from.
    fn files(&self) -> Vec<PathBuf> {
        let paths = self.paths();
        let mut files = vec![paths.server_cert(), paths.server_key()];
        if let Some(ca) = &self.viewer_ca {
            files.push(ca.clone());
            files.push(Self::viewer_crl(ca));
        }
        files
    }
}

/// What the server serves now, for [`watch`] to compare the next load with.
#[derive(Debug, Clone)]
pub struct Served {
    /// The files as they were just before they were read.
    pub seen: FilesSeen,
    pub fingerprint: Fingerprint,
    pub revocation_lists: usize,
}

impl Loaded {
    pub fn served(&self) -> Served {
        Served {
            seen: self.seen.clone(),
            fingerprint: self.fingerprint,
            revocation_lists: self.revocation_lists,
        }
    }
}

/// A QUIC server configuration built from the certificate files, and what it holds.
pub struct Loaded {
    pub config: quinn::ServerConfig,
    /// The server's certificate and key (for the page server).
    pub key: Arc<CertifiedKey>,
    pub fingerprint: Fingerprint,
    pub info: CertInfo,
    /// The private key's bytes: the seed of stateless resets (see `endpoint::server`).
    pub reset_secret: Vec<u8>,
    /// Revocation lists loaded (0 without mutual TLS, or when the CA has revoked nothing).
    pub revocation_lists: usize,
    /// The serial numbers they revoke.
    pub revoked: Vec<Vec<u8>>,
    /// The files as they were just before they were read (for [`watch`]).
    pub seen: FilesSeen,
}

/// Builds the QUIC server configuration from the files `settings` names.
pub fn load(settings: &TlsSettings) -> anyhow::Result<Loaded> {
    let seen = FilesSeen::of(&settings.files());
    let identity = streamsocket_certs::load_server_identity(&settings.paths())?;
    let info = streamsocket_certs::inspect_der(&identity.chain[0])
        .map_err(|e| anyhow::anyhow!("{}: {e}", settings.paths().server_cert().display()))?;
    let fingerprint = identity.fingerprint;
    let reset_secret = identity.key.secret_der().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 setup")?;
    let mut revoked = Vec::new();
    let (builder, revocation_lists) = match &settings.viewer_ca {
        None => (builder.with_no_client_auth(), 0),
        Some(ca) => {
            let trust = streamsocket_certs::load_viewer_trust(ca, &TlsSettings::viewer_crl(ca))?;
            let lists = trust.crls.len();
            for list in &trust.crls {
                revoked.extend(streamsocket_certs::crl_serials(list).map_err(|e| {
                    anyhow::anyhow!(
                        "the revocation list {}: {e}",
                        TlsSettings::viewer_crl(ca).display()
                    )
                })?);
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(trust.roots),
                provider,
            )
            .with_crls(trust.crls)
            .build()
            .with_context(|| format!("viewer CA {}", ca.display()))?;
            (builder.with_client_cert_verifier(verifier), lists)
        }
    };
    let key = CertifiedKey::from_der(
        identity.chain,
        identity.key,
        &rustls::crypto::ring::default_provider(),
    )
    .with_context(|| {
        format!(
            "{} and {} do not belong together (is one of them being rewritten?)",
            settings.paths().server_cert().display(),
            settings.paths().server_key().display()
        )
    })?;
    let key = Arc::new(key);
    let mut tls = builder.with_cert_resolver(Arc::new(ByProtocol {
        native: key.clone(),
        web: settings.web.clone(),
    }));
    // Native viewers first; browsers offer only HTTP/3.
    tls.alpn_protocols = vec![
        streamsocket_proto::ALPN.to_vec(),
        web_transport_quinn::ALPN.as_bytes().to_vec(),
    ];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("TLS configuration not usable for QUIC")?;
    let mut config = quinn::ServerConfig::new(Arc::new(crypto), settings.retry_key.0.clone());
    config.transport_config(streamsocket_transport::settings::server_with(
        settings.congestion,
    ));
    Ok(Loaded {
        config,
        key,
        fingerprint,
        info,
        reset_secret,
        revocation_lists,
        revoked,
        seen,
    })
}

/// True when the certificate has expired, is not valid yet, or is due for renewal (as
/// `streamsocket-certs renew` sees it).
pub fn needs_attention(info: &CertInfo) -> bool {
    info.renewal_due(
        time::OffsetDateTime::now_utc(),
        time::Duration::days(streamsocket_certs::RENEW_WITHIN_DAYS),
    )
}

/// Logs what the certificate says, loudly when viewers will refuse it (or soon will).
pub fn log_certificate(info: &CertInfo, what: &str) {
    let validity = info.validity_now();
    let fingerprint = info.fingerprint;
    let names = info.names.join(", ");
    let renew =
        "renew it with `streamsocket-certs renew` (the server picks up the new one by itself)";
    match validity {
        Validity::Valid { .. } if needs_attention(info) => {
            tracing::warn!(%fingerprint, names, "{what}: {validity}: {renew}")
        }
        Validity::Valid { .. } => tracing::info!(%fingerprint, names, "{what}: {validity}"),
        _ => tracing::error!(
            %fingerprint,
            names,
            "{what}: {validity}: viewers will refuse it; {renew}"
        ),
    }
}

/// Reloads the certificate into `endpoint` whenever its files change (checked every
/// `settings.check_every`) or the process gets SIGHUP. Connections already open keep their
/// session (but a viewer whose certificate was revoked is cut off); new ones get the new
/// certificate. A set of files that does not load (a certificate whose key is still being
/// written, say) leaves the current one in place and is tried again when the files change
/// again. `page_key`, the page server's copy of the certificate, is replaced with it. Runs
/// until dropped.
pub async fn watch(
    endpoint: quinn::Endpoint,
    page_key: Arc<CurrentKey>,
    settings: TlsSettings,
    served: Served,
    admission: Arc<Admission>,
) {
    let mut current = served.fingerprint;
    let mut files = FileWatch::new(settings.files(), served.seen, settings.check_every);
    let mut had_revocations = served.revocation_lists > 0;
    let mut warning = tokio::time::interval_at(
        tokio::time::Instant::now() + EXPIRY_WARNING_EVERY,
        EXPIRY_WARNING_EVERY,
    );
    loop {
        let now = tokio::select! {
            now = files.changed() => now,
            _ = warning.tick() => {
                match streamsocket_certs::inspect(&settings.paths().server_cert()) {
                    Ok(info) if needs_attention(&info) => log_certificate(&info, "server certificate"),
                    _ => {}
                }
                continue;
            }
        };
        let loaded = load(&settings).and_then(|new| {
            // Revocation only ever grows: a list that vanished is a mistake, not a pardon.
            if had_revocations && new.revocation_lists == 0 {
                anyhow::bail!(
                    "the revocation list {} is gone; restore it (revoked viewers would get back in)",
                    settings
                        .viewer_ca
                        .as_deref()
                        .map(TlsSettings::viewer_crl)
                        .unwrap_or_default()
                        .display()
                );
            }
            Ok(new)
        });
        match loaded {
            Ok(new) => {
                had_revocations = new.revocation_lists > 0;
                endpoint.set_server_config(Some(new.config));
                page_key.set(new.key.clone());
                settings
                    .metrics
                    .set_server_certificate_not_after(new.info.not_after.unix_timestamp());
                files.loaded(new.seen);
                if new.fingerprint != current {
                    log_certificate(
                        &new.info,
                        "reloaded the server certificate: new viewers get the new one",
                    );
                } else if settings.viewer_ca.is_none() {
                    tracing::info!(fingerprint = %new.fingerprint, "reloaded: the server certificate is unchanged");
                }
                current = new.fingerprint;
                if settings.viewer_ca.is_some() {
                    tracing::info!(
                        revocation_lists = new.revocation_lists,
                        revoked = new.revoked.len(),
                        "viewer certificate checks reloaded"
                    );
                    let ended = admission.withdraw_certificates(&new.revoked);
                    if ended > 0 {
                        tracing::info!(ended, "ended the sessions of revoked viewer certificates");
                    }
                }
            }
            Err(e) => {
                if files.failed(now) {
                    tracing::warn!(
                        "kept the current server certificate: the new files do not load: {e:#}"
                    );
                }
            }
        }
    }
}

/// The viewer's certificate (mutual TLS), if it presented one.
pub fn viewer_certificate(conn: &quinn::Connection) -> Option<CertInfo> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    streamsocket_certs::inspect_der(chain.first()?).ok()
}
