//! Wiring: certificates, sources, encoders, hub and the QUIC endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use streamsocket_certs::{CertPaths, Fingerprint};
use streamsocket_proto::ErrorCode;

use crate::access::certificates::{self, TlsSettings};
use crate::capture::clock::MediaClock;
use crate::capture::{self, AudioInput, SourceStats, VideoInput};
use crate::encode::audio::{AudioEncoder, OpusSettings};
use crate::encode::ladder::Ladder;
use crate::encode::video::EncoderSettings;
use crate::fanout::hub::Hub;
use crate::session::JoinStrategy;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub certs: PathBuf,
    /// Extra names for a certificate generated at start.
    pub hosts: Vec<String>,
    /// Renditions on offer; the first is the source's size and frame rate.
    pub ladder: Ladder,
    pub encoder: EncoderTuning,
    /// How joining and switching viewers get their first keyframe.
    pub join: JoinStrategy,
    /// QUIC congestion controller towards viewers.
    pub congestion: streamsocket_transport::settings::Congestion,
    /// Who may watch: tokens and the most viewers at once.
    pub admission: Arc<crate::access::admission::Admission>,
    /// `Some(CA file)`: viewers must present a certificate signed by it (mutual TLS).
    pub viewer_ca: Option<PathBuf>,
    /// How often to look for new certificate files; `None`: only on SIGHUP.
    pub cert_check: Option<Duration>,
    /// One Opus packet's duration, ms (10 or 20).
    pub audio_frame_ms: u32,
    /// Where the web viewer's page is served (HTTPS on TCP); `None`: no page. Port 0 with
    /// the same IP as `listen`: the port QUIC got.
    pub http: Option<SocketAddr>,
    /// Web pages besides the server's own that may open WebTransport sessions.
    pub allow_origins: Vec<String>,
    /// `/metrics` and `/status` on the page server need this token (`Authorization:
    /// Bearer`); without it they are served there only on a loopback address.
    pub metrics_token: Option<crate::metrics::MetricsToken>,
    /// A plain-HTTP listener serving only `/metrics` and `/status` (behind the token if set).
    pub metrics_listen: Option<SocketAddr>,
    /// Media over QUIC relays to publish the stream into (`--publish`).
    pub publish: Option<crate::publish::PublishOptions>,
}

/// Where pictures and sound come from (see [`capture::open_video`], [`capture::open_audio`]).
pub struct Inputs {
    /// The clock the inputs stamp captures on (a camera stamps frames as they arrive); the
    /// server's clock.
    pub clock: MediaClock,
    pub video: Box<dyn VideoInput>,
    /// `None`: the stream has no sound (viewers get no audio packets).
    pub audio: Option<Box<dyn AudioInput>>,
    /// The preview window's feed of source pictures (`--preview`).
    pub preview: Option<crossbeam_channel::Sender<Arc<crate::capture::frame::RawFrame>>>,
}

/// Encoder choice and knobs from the command line, for tuning and benchmarks.
#[derive(Debug, Clone)]
pub struct EncoderTuning {
    pub kind: crate::encode::video::EncoderKind,
    /// rav1e's speed preset or libaom's cpu-used (both 0-10); `None`: the backend's default.
    pub speed: Option<u8>,
    pub tiles: usize,
    pub threads: usize,
    pub keyframe_interval_s: f32,
    /// rav1e only: RDO lookahead frames.
    pub rdo_lookahead_frames: usize,
    /// libaom only: error-resilient frames.
    pub error_resilient: bool,
}

impl EncoderTuning {
    /// The settings of one rung's encoder.
    pub fn settings(&self, spec: &crate::encode::ladder::RenditionSpec) -> EncoderSettings {
        let mut settings = EncoderSettings {
            tiles: self.tiles,
            threads: self.threads,
            keyframe_interval: ((self.keyframe_interval_s * spec.fps as f32).round() as u64).max(1),
            ..EncoderSettings::realtime(
                self.kind,
                spec.width,
                spec.height,
                spec.fps,
                spec.bitrate_kbps,
            )
        };
        if let Some(t) = settings.rav1e_mut() {
            t.rdo_lookahead_frames = self.rdo_lookahead_frames;
            if let Some(speed) = self.speed {
                t.speed = speed;
            }
        }
        if let Some(t) = settings.aom_mut() {
            t.error_resilient = self.error_resilient;
            if let Some(speed) = self.speed {
                t.cpu_used = speed;
            }
        }
        settings
    }
}

/// A running server: its address and fingerprint, and the handles that keep it alive.
pub struct Server {
    endpoint: quinn::Endpoint,
    join: JoinStrategy,
    hub: Arc<Hub>,
    clock: MediaClock,
    stop: Arc<AtomicBool>,
    admission: Arc<crate::access::admission::Admission>,
    tls: TlsSettings,
    served: certificates::Served,
    /// The page server's copy of the certificate, kept current by `certificates::watch`.
    page_key: Arc<certificates::CurrentKey>,
    page: Option<crate::web::PageServer>,
    metrics_listener: Option<crate::web::PageServer>,
    observed: Arc<crate::metrics::Observed>,
    origins: Arc<crate::web::OriginPolicy>,
    publish: Option<crate::publish::PublishOptions>,
    /// The certificate's fingerprint at start (it may change: see `certificates::watch`).
    pub fingerprint: Fingerprint,
    pub source_stats: Arc<SourceStats>,
}

/// Connections (handshakes included) allowed beyond the viewer limit, so that viewers over
/// the limit still hear "server full" while a flood of handshakes cannot grow without bound.
const HANDSHAKE_SLACK: usize = 64;
/// Handshakes in progress above which a new address must first prove that it receives the
/// server's packets (a QUIC Retry: one round trip, and no state kept until it answers). A
/// flood from forged or vanishing addresses then costs a packet each, not a place.
const VALIDATE_ABOVE: usize = 16;
/// Handshakes in progress beyond which new ones are ignored until places free up (their
/// first packet is retransmitted, so an honest viewer gets in a moment later): the bound on
/// what hosts that answer the Retry can hold.
const MAX_HANDSHAKES: usize = 64;
/// How long a handshake may take before the server forgets it, however its packets trickle
/// in (long enough for three lost flights: 1 + 2 + 4 s of back-off).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts something (an open connection, a handshake) while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Server {
    /// Loads (or generates) certificates, starts the media pipeline and binds the endpoint.
    pub fn start(opts: &ServerOptions, inputs: Inputs) -> anyhow::Result<Server> {
        let paths = CertPaths::new(&opts.certs);
        if !paths.server_identity_exists() {
            let g = streamsocket_certs::generate(&opts.certs, &opts.hosts)
                .context("generating certificates")?;
            tracing::info!(
                dir = %opts.certs.display(),
                hosts = %g.hosts.join(", "),
                "generated a CA and a server certificate (give viewers {})",
                g.paths.ca_cert().display()
            );
        }
        let web = crate::web::WebCertificate::new(&opts.hosts)?;
        {
            let c = web.current();
            tracing::info!(
                sha256 = %hex::encode(c.sha256),
                not_after = %streamsocket_certs::format_time(c.not_after),
                "issued the browsers' WebTransport certificate (ECDSA P-256, renewed by itself)"
            );
        }
        let tls = TlsSettings {
            certs: opts.certs.clone(),
            viewer_ca: opts.viewer_ca.clone(),
            congestion: opts.congestion,
            check_every: opts.cert_check,
            retry_key: certificates::RetryKey(streamsocket_transport::endpoint::retry_token_key()),
            web: web.clone(),
            metrics: Arc::default(),
        };
        // From here on SIGHUP means "reload", never the default "terminate", even before the
        // reload tasks start (a deploy hook may send it as soon as the server is up).
        #[cfg(unix)]
        let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let loaded = certificates::load(&tls)?;
        certificates::log_certificate(&loaded.info, "server certificate");
        tls.metrics
            .set_server_certificate_not_after(loaded.info.not_after.unix_timestamp());
        if let Some(ca) = &opts.viewer_ca {
            tracing::info!(
                ca = %ca.display(),
                revocation_lists = loaded.revocation_lists,
                "viewers need a certificate signed by this CA (streamsocket-certs viewer NAME issues one)"
            );
        }
        // The admission check refuses revoked certificates too (see `withdraw_certificates`).
        opts.admission.withdraw_certificates(&loaded.revoked);
        let served = loaded.served();
        // The page server's certificate: the same, replaced with it on reload.
        let page_key = Arc::new(certificates::CurrentKey::new(loaded.key.clone()));
        let fingerprint = loaded.fingerprint;
        let server_config = loaded.config;
        // Stateless resets keyed by the private key survive a restart (see endpoint::server).
        let reset_secret = loaded.reset_secret;

        opts.ladder.validate()?;
        let clock = inputs.clock;
        let t = &opts.encoder;
        let renditions = opts
            .ladder
            .wire()
            .into_iter()
            .zip(&opts.ladder.renditions)
            .map(|(info, spec)| (info, t.settings(spec)))
            .collect();
        let audio_bitrates: Vec<u32> = opts
            .ladder
            .audio_bitrates_kbps
            .iter()
            .map(|k| k * 1000)
            .collect();
        let opus = OpusSettings {
            frame_ms: opts.audio_frame_ms,
            ..OpusSettings::default()
        };
        let hub = Arc::new(Hub::with_metrics(
            renditions,
            opus.format(),
            &audio_bitrates,
            clock,
            tls.metrics.clone(),
        ));
        let stop = Arc::new(AtomicBool::new(false));

        // Video: source thread -> (per running encoder: bounded queue -> scaler + AV1 encoder
        // thread) -> hub. Encoders start and stop with their viewers (hub::Hub::watch).
        let source_stats = Arc::new(SourceStats::default());
        capture::spawn_video(
            inputs.video,
            clock,
            hub.taps(),
            inputs.preview,
            stop.clone(),
            source_stats.clone(),
        );
        // Relays are told of sound only when there is some (a MoQ player waits for a track
        // listed in the catalog).
        let publish = opts
            .publish
            .clone()
            .map(|p| crate::publish::PublishOptions {
                audio: inputs.audio.is_some(),
                ..p
            });
        // Audio: one Opus encoder per bitrate on offer, all fed the same samples (cheap).
        if let Some(audio) = inputs.audio {
            let encoders = audio_bitrates
                .iter()
                .map(|&bitrate_bps| {
                    AudioEncoder::new(OpusSettings {
                        bitrate_bps,
                        ..opus
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let hub_for_audio = hub.clone();
            capture::spawn_audio(
                audio,
                clock,
                encoders,
                stop.clone(),
                hub.controls().clone(),
                hub.audio_loss().clone(),
                move |i, p| hub_for_audio.publish_audio(i, p),
            );
        }

        let (endpoint, buffers) =
            streamsocket_transport::endpoint::server(server_config, opts.listen, &reset_secret)
                .with_context(|| format!("cannot listen on {}", opts.listen))?;
        tracing::debug!(
            receive_bytes = buffers.receive,
            send_bytes = buffers.send,
            "UDP socket buffers"
        );
        let observed =
            crate::metrics::Observed::new(hub.clone(), source_stats.clone(), web.clone());
        let metrics = crate::metrics::MetricsEndpoint::new(observed.clone());
        let token = opts.metrics_token.as_ref();
        let page = match opts.http {
            None => None,
            Some(addr) => {
                let access =
                    crate::metrics::MetricsAccess::for_page(addr.ip().is_loopback(), token);
                let bind = |addr| {
                    let state = crate::web::https::PageState {
                        web_certificate: web.clone(),
                        page: true,
                        metrics: Some(metrics.clone()),
                        metrics_access: access.clone(),
                    };
                    crate::web::PageServer::bind(
                        addr,
                        certificates::page_config(page_key.clone())?,
                        state,
                    )
                };
                // Port 0 with QUIC's IP: the port number QUIC got, if TCP has it free too
                // (an ephemeral port chosen for UDP may be in use on TCP); else any.
                let page = if addr.port() == 0 && addr.ip() == opts.listen.ip() {
                    let same = SocketAddr::new(addr.ip(), endpoint.local_addr()?.port());
                    bind(same).or_else(|e| {
                        tracing::warn!("{e:#}: serving the web page on another port");
                        bind(addr)
                    })?
                } else {
                    bind(addr)?
                };
                let at = page.local_addr()?;
                match access {
                    crate::metrics::MetricsAccess::Off => tracing::info!(
                        "/metrics and /status are off on the page server (https://{at}, not a loopback address): pass --metrics-token, or --metrics-listen for a private network"
                    ),
                    crate::metrics::MetricsAccess::Open => tracing::info!(
                        "metrics: https://{at}/metrics and /status (loopback: no token needed)"
                    ),
                    crate::metrics::MetricsAccess::Token(_) => tracing::info!(
                        "metrics: https://{at}/metrics and /status, with Authorization: Bearer (--metrics-token)"
                    ),
                }
                Some(page)
            }
        };
        let metrics_listener = match opts.metrics_listen {
            None => None,
            Some(addr) => {
                let listener = crate::web::PageServer::bind_plain(
                    addr,
                    crate::web::https::PageState {
                        web_certificate: web.clone(),
                        page: false,
                        metrics: Some(metrics.clone()),
                        metrics_access: crate::metrics::MetricsAccess::for_listener(token),
                    },
                )?;
                let at = listener.local_addr()?;
                tracing::info!(
                    token = token.is_some(),
                    "metrics: http://{at}/metrics and /status (plain HTTP: keep it on a private network)"
                );
                Some(listener)
            }
        };
        Ok(Server {
            endpoint,
            join: opts.join,
            hub,
            clock,
            stop,
            admission: opts.admission.clone(),
            tls,
            served,
            page_key,
            page,
            metrics_listener,
            observed,
            origins: Arc::new(crate::web::OriginPolicy::new(&opts.allow_origins)),
            publish,
            fingerprint,
            source_stats,
        })
    }

    /// The broadcaster's controls: pause, mute, status.
    pub fn controls(&self) -> Arc<crate::fanout::controls::Controls> {
        self.hub.controls().clone()
    }

    /// The hub, for the preview window's status.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Where the web viewer's page is served (HTTPS), if it is.
    pub fn page_addr(&self) -> Option<SocketAddr> {
        self.page.as_ref().and_then(|p| p.local_addr().ok())
    }

    /// Where `--metrics-listen` serves `/metrics` and `/status` (plain HTTP), if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|p| p.local_addr().ok())
    }

    /// Accepts viewers until `shutdown` completes, then says goodbye to everyone.
    pub async fn serve(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let page = self.page.take().map(|p| tokio::spawn(p.run()));
        // Publishing into relays, for as long as the server serves.
        let _publisher = self
            .publish
            .take()
            .map(|o| crate::publish::start(self.hub.clone(), o))
            .transpose()?;
        // Tells every session the server is stopping, so each closes in its own binding's
        // words (a browser's session needs a WebTransport close to read the code from).
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let metrics_listener = self.metrics_listener.take().map(|p| tokio::spawn(p.run()));
        let rates = tokio::spawn(crate::metrics::sample_rates(self.observed.clone()));
        let renewal = tokio::spawn(self.tls.web.clone().keep_renewed());
        let next_id = AtomicU64::new(1);
        let metrics = self.hub.metrics().clone();
        let status = tokio::spawn(log_status(self.hub.clone(), self.source_stats.clone()));
        let token_reloader = tokio::spawn(
            self.admission
                .clone()
                .watch_token_file(self.tls.check_every),
        );
        let reloader = tokio::spawn(certificates::watch(
            self.endpoint.clone(),
            self.page_key.clone(),
            self.tls.clone(),
            self.served.clone(),
            self.admission.clone(),
        ));
        tokio::pin!(shutdown);
        let open = Arc::new(AtomicUsize::new(0));
        let handshaking = Arc::new(AtomicUsize::new(0));
        let max_open = self.admission.max_viewers() + HANDSHAKE_SLACK;
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    if open.load(Ordering::Relaxed) >= max_open {
                        tracing::debug!(remote = %incoming.remote_address(), "refusing a connection: {max_open} open already");
                        metrics.connections_refused.inc();
                        incoming.refuse();
                        continue;
                    }
                    let in_progress = handshaking.load(Ordering::Relaxed);
                    if in_progress >= MAX_HANDSHAKES {
                        tracing::debug!(remote = %incoming.remote_address(), "ignoring a handshake: {in_progress} in progress");
                        metrics.handshakes_ignored.inc();
                        incoming.ignore();
                        continue;
                    }
                    if in_progress >= VALIDATE_ABOVE && !incoming.remote_address_validated() {
                        metrics.handshakes_retried.inc();
                        if let Err(e) = incoming.retry() {
                            e.into_incoming().refuse();
                        }
                        continue;
                    }
                    let counted = Counted::new(&open);
                    let in_handshake = Counted::new(&handshaking);
                    let hub = self.hub.clone();
                    let admission = self.admission.clone();
                    let clock = self.clock;
                    let join = self.join;
                    let origins = self.origins.clone();
                    let stopping = stopping.clone();
                    let metrics = metrics.clone();
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        use crate::metrics::{Handshake, Stage};
                        let _counted = counted;
                        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await;
                        drop(in_handshake);
                        let Ok(handshake) = handshake else {
                            metrics.handshake(Handshake::Timeout);
                            tracing::debug!("a handshake did not finish within {HANDSHAKE_TIMEOUT:?}: forgotten");
                            return;
                        };
                        metrics.handshake(match &handshake {
                            Ok(_) => Handshake::Completed,
                            Err(quinn::ConnectionError::TransportError(e))
                                if u64::from(e.code) & !0xff == 0x100 => Handshake::Tls,
                            Err(_) => Handshake::Failed,
                        });
                        match handshake {
                            Ok(conn) if negotiated_protocol(&conn).as_deref() == Some(web_transport_quinn::ALPN.as_bytes()) => {
                                let remote = conn.remote_address();
                                match crate::web::connect::accept(conn, &origins).await {
                                    Ok(connection) => {
                                        crate::session::serve(connection, hub, admission, clock, id, join, stopping).await
                                    }
                                    Err(e) => {
                                        metrics.refused(Stage::WebTransport, e.reason());
                                        tracing::info!(%remote, reason = e.reason(), "web viewer turned away: {e}")
                                    }
                                }
                            }
                            Ok(conn) => {
                                crate::session::serve(crate::session::Connection::native(conn), hub, admission, clock, id, join, stopping).await
                            }
                            // A refused certificate (mutual TLS, a TLS alert) is worth knowing
                            // about; an abandoned or malformed handshake is not.
                            Err(quinn::ConnectionError::TransportError(e))
                                if u64::from(e.code) & !0xff == 0x100 =>
                            {
                                tracing::info!("turned away during the handshake: {e}")
                            }
                            Err(e) => tracing::debug!("handshake failed: {e}"),
                        }
                    });
                }
                _ = &mut shutdown => {
                    tracing::info!("shutting down");
                    break;
                }
            }
        }
        status.abort();
        rates.abort();
        if let Some(listener) = metrics_listener {
            listener.abort();
        }
        renewal.abort();
        if let Some(page) = page {
            page.abort();
        }
        reloader.abort();
        token_reloader.abort();
        self.stop.store(true, Ordering::Relaxed);
        // Sessions close themselves first (a web session's close waits a moment for the
        // browser to acknowledge it); what is left after a second is closed below.
        let _ = stopping_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        self.endpoint.close(
            quinn::VarInt::from_u32(ErrorCode::ServerShuttingDown.to_u16() as u32),
            b"server shutting down",
        );
        // Give the close frames a moment to leave.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        Ok(())
    }
}

/// The application protocol a connection's handshake settled on.
fn negotiated_protocol(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// Logs what the encoders are doing every few seconds (only those with viewers), and how many
/// handshakes had to prove their address or wait.
async fn log_status(hub: Arc<Hub>, source: Arc<SourceStats>) {
    let handshakes = hub.metrics().clone();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last: Vec<(u64, u64)> = vec![(0, 0); hub.renditions().len()];
    let mut last_handshakes = (0, 0);
    loop {
        tick.tick().await;
        let now = (
            handshakes.handshakes_retried.get(),
            handshakes.handshakes_ignored.get(),
        );
        if now != last_handshakes {
            tracing::info!(
                retried = now.0 - last_handshakes.0,
                ignored = now.1 - last_handshakes.1,
                retried_total = now.0,
                ignored_total = now.1,
                "many handshakes at once: new addresses were asked to prove themselves (QUIC Retry), and beyond {MAX_HANDSHAKES} in progress new ones waited"
            );
            last_handshakes = now;
        }
        for (r, prev) in hub.renditions().iter().zip(last.iter_mut()) {
            let frames = r.stats.frames_out.load(Ordering::Relaxed);
            let bytes = r.stats.bytes_out.load(Ordering::Relaxed);
            let fps = (frames - prev.0) as f64 / 5.0;
            let kbps = (bytes - prev.1) as f64 * 8.0 / 5000.0;
            *prev = (frames, bytes);
            if r.viewers() == 0 {
                continue;
            }
            tracing::info!(
                rendition = %r.info.name,
                viewers = r.viewers(),
                fps = format!("{fps:.1}"),
                kbps = format!("{kbps:.0}"),
                keyframes = r.stats.keyframes.load(Ordering::Relaxed),
                dropped_encoder_busy = source.dropped_encoder_busy.load(Ordering::Relaxed),
                "encoder status"
            );
        }
    }
}
