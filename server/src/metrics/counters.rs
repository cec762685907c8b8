//! What the server counts as it goes, for `/metrics`: events only the session drivers and
//! the accept loop see (frames' fates, audio datagrams, handshakes, refusals). Everything the
//! hub, the encoders and the source already count is read at scrape time instead (see
//! `exporter`), so this holds only what would otherwise be lost.
//!
//! Each counter is a relaxed atomic add (prometheus-client's `Counter`); the per-frame ones
//! are taken where the driver already learns a frame's fate, and no lock is taken per frame.
//! Labelled families (refusals by reason) are only touched on rare events.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use streamsocket_proto::ErrorCode;

use crate::session::ViewerKind;

/// One label: name and value.
pub type Label = (&'static str, &'static str);

/// The server's own counters; one per server, shared by its sessions through the hub.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    started_unix_s: f64,
    viewers: Family<[Label; 1], Gauge>,
    viewers_native: Gauge,
    viewers_web: Gauge,
    admitted: Family<[Label; 1], Counter>,
    pub frames_sent: Counter,
    pub frame_bytes_sent: Counter,
    pub frames_reset: Counter,
    pub frames_lagged: Counter,
    pub audio_sent: Counter,
    pub audio_dropped: Counter,
    handshakes: Family<[Label; 1], Counter>,
    /// New addresses asked to prove themselves first (QUIC Retry).
    pub handshakes_retried: Counter,
    /// Handshakes ignored while too many were in progress.
    pub handshakes_ignored: Counter,
    /// Connections refused at once: as many open as the viewer limit allows.
    pub connections_refused: Counter,
    refused: Family<[Label; 2], Counter>,
    ended: Family<[Label; 1], Counter>,
    pub tokens_rejected: Counter,
    /// The server certificate's end of validity, unix seconds (0 before it is loaded).
    server_certificate_not_after: AtomicI64,
    /// Publishing into Media over QUIC relays (`--publish`).
    pub publishing: Publishing,
}

/// A gauge raised while this is held (a viewer connected, a relay session up...).
#[derive(Debug)]
pub struct Held(Gauge);

impl Held {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What publishing into relays counts (`publish_*`): the relays' sessions, and what went
/// into the broadcast or could not.
#[derive(Debug, Default)]
pub struct Publishing {
    /// Relays published into now.
    pub relays_connected: Gauge,
    /// Sessions made with a relay: the first and every reconnection.
    pub sessions: Counter,
    /// Sessions with a relay that ended (it restarted, fell silent or closed it).
    pub sessions_lost: Counter,
    /// Attempts to connect that failed (unreachable, refused, a certificate not trusted).
    pub connect_failures: Counter,
    /// Renditions some relay subscribes to now (encoded for the relays).
    pub renditions: Gauge,
    /// Video frames written into the broadcast.
    pub frames: Counter,
    /// Frames that could not start a group (before a keyframe): no relay got them.
    pub frames_skipped: Counter,
    /// Frames lost because publishing fell behind the encoder.
    pub frames_lagged: Counter,
    /// Audio packets written into the broadcast.
    pub audio_packets: Counter,
    /// Audio packets lost because publishing fell behind.
    pub audio_lagged: Counter,
}

impl Publishing {
    fn register(&self, registry: &mut Registry) {
        let gauges = [
            (
                "publish_relays_connected",
                "Relays the broadcast is published into now (--publish)",
                &self.relays_connected,
            ),
            (
                "publish_renditions",
                "Renditions some relay subscribes to now (their encoders run for the relays)",
                &self.renditions,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        let counters = [
            (
                "publish_sessions",
                "Sessions made with relays: the first and every reconnection",
                &self.sessions,
            ),
            (
                "publish_sessions_lost",
                "Sessions with relays that ended (the relay restarted, fell silent or closed it)",
                &self.sessions_lost,
            ),
            (
                "publish_connect_failures",
                "Attempts to connect to a relay that failed (unreachable, refused, certificate not trusted)",
                &self.connect_failures,
            ),
            (
                "publish_frames",
                "Video frames written into the broadcast",
                &self.frames,
            ),
            (
                "publish_frames_skipped",
                "Video frames that could not start a group (before a keyframe), so no relay got them",
                &self.frames_skipped,
            ),
            (
                "publish_frames_lagged",
                "Video frames lost because publishing fell behind the encoder",
                &self.frames_lagged,
            ),
            (
                "publish_audio_packets",
                "Audio packets written into the broadcast",
                &self.audio_packets,
            ),
            (
                "publish_audio_packets_lagged",
                "Audio packets lost because publishing fell behind",
                &self.audio_lagged,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let viewers = Family::<[Label; 1], Gauge>::default();
        let viewers_native = viewers.get_or_create_owned(&[("kind", ViewerKind::Native.as_str())]);
        let viewers_web = viewers.get_or_create_owned(&[("kind", ViewerKind::Web.as_str())]);
        let started_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            started: Instant::now(),
            started_unix_s,
            viewers,
            viewers_native,
            viewers_web,
            admitted: Family::default(),
            frames_sent: Counter::default(),
            frame_bytes_sent: Counter::default(),
            frames_reset: Counter::default(),
            frames_lagged: Counter::default(),
            audio_sent: Counter::default(),
            audio_dropped: Counter::default(),
            handshakes: Family::default(),
            handshakes_retried: Counter::default(),
            handshakes_ignored: Counter::default(),
            connections_refused: Counter::default(),
            refused: Family::default(),
            ended: Family::default(),
            tokens_rejected: Counter::default(),
            server_certificate_not_after: AtomicI64::new(0),
            publishing: Publishing::default(),
        }
    }
}

/// How a QUIC handshake ended (`streamsocket_handshakes_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Completed,
    /// Refused by TLS (an alert: no viewer certificate, a revoked or foreign one...).
    Tls,
    Failed,
    Timeout,
}

impl Handshake {
    pub fn as_str(self) -> &'static str {
        match self {
            Handshake::Completed => "completed",
            Handshake::Tls => "tls",
            Handshake::Failed => "failed",
            Handshake::Timeout => "timeout",
        }
    }
}

/// Where a viewer was turned away (`streamsocket_sessions_refused_total{stage}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A browser's CONNECT request (`web::connect::Refused::reason`).
    WebTransport,
    /// The session's hello and admission (the protocol's error codes).
    Session,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::WebTransport => "webtransport",
            Stage::Session => "session",
        }
    }
}

/// An error code's name as a label value (snake case, as docs/PROTOCOL.md names them).
pub fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NoError => "no_error",
        ErrorCode::UnsupportedVersion => "unsupported_version",
        ErrorCode::MalformedMessage => "malformed_message",
        ErrorCode::UnexpectedMessage => "unexpected_message",
        ErrorCode::UnknownRendition => "unknown_rendition",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::ServerShuttingDown => "server_shutting_down",
        ErrorCode::Internal => "internal",
        ErrorCode::Timeout => "timeout",
        ErrorCode::TokenRequired => "token_required",
        ErrorCode::TokenInvalid => "token_invalid",
        ErrorCode::ServerFull => "server_full",
        ErrorCode::AccessRevoked => "access_revoked",
        ErrorCode::Other(_) => "other",
    }
}

impl Metrics {
    /// The gauge of viewers connected now of one kind (held by each session while admitted).
    pub fn viewers(&self, kind: ViewerKind) -> &Gauge {
        match kind {
            ViewerKind::Native => &self.viewers_native,
            ViewerKind::Web => &self.viewers_web,
        }
    }

    pub fn admitted(&self, kind: ViewerKind) {
        self.admitted
            .get_or_create(&[("kind", kind.as_str())])
            .inc();
    }

    pub fn handshake(&self, outcome: Handshake) {
        self.handshakes
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    pub fn refused(&self, stage: Stage, reason: &'static str) {
        self.refused
            .get_or_create(&[("stage", stage.as_str()), ("reason", reason)])
            .inc();
    }

    /// An admitted session ended: `"left"`, or the error code it was closed with.
    pub fn ended(&self, reason: &'static str) {
        self.ended.get_or_create(&[("reason", reason)]).inc();
    }

    pub fn set_server_certificate_not_after(&self, unix_s: i64) {
        self.server_certificate_not_after
            .store(unix_s, Ordering::Relaxed);
    }

    pub fn server_certificate_not_after(&self) -> i64 {
        self.server_certificate_not_after.load(Ordering::Relaxed)
    }

    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn started_unix_s(&self) -> f64 {
        self.started_unix_s
    }

    /// Registers every counter in `registry` (which shares them: the counters stay here).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "viewers",
            "Viewers connected now (past their hello), by kind: native (QUIC) or web (WebTransport)",
            self.viewers.clone(),
        );
        registry.register(
            "sessions_admitted",
            "Viewers admitted, by kind",
            self.admitted.clone(),
        );
        registry.register(
            "sessions_refused",
            "Viewers turned away before watching, by stage (webtransport: the CONNECT request; session: the hello and admission) and reason",
            self.refused.clone(),
        );
        registry.register(
            "sessions_ended",
            "Admitted sessions that ended, by reason: left, or the error code the server closed them with",
            self.ended.clone(),
        );
        registry.register(
            "tokens_rejected",
            "Hellos whose token the server does not accept (token_invalid)",
            self.tokens_rejected.clone(),
        );
        registry.register(
            "handshakes",
            "QUIC handshakes by outcome: completed, tls (refused by TLS, e.g. a missing viewer certificate), failed, timeout",
            self.handshakes.clone(),
        );
        registry.register(
            "handshakes_retried",
            "Handshakes asked to prove their address first (QUIC Retry) because many were in progress",
            self.handshakes_retried.clone(),
        );
        registry.register(
            "handshakes_ignored",
            "Handshakes ignored because too many were in progress (the viewer retransmits)",
            self.handshakes_ignored.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused at once: as many were open as the viewer limit allows",
            self.connections_refused.clone(),
        );
        registry.register(
            "frames_sent",
            "Video frames delivered to viewers (acknowledged within their deadline)",
            self.frames_sent.clone(),
        );
        registry.register_with_unit(
            "video_sent",
            "Bytes of video frames delivered to viewers (headers and payload)",
            Unit::Bytes,
            self.frame_bytes_sent.clone(),
        );
        registry.register(
            "frames_reset",
            "Video frames whose stream was reset because they missed their deadline",
            self.frames_reset.clone(),
        );
        registry.register(
            "frames_lagged",
            "Video frames lost by sessions that fell behind the encoder (hub queue overflow)",
            self.frames_lagged.clone(),
        );
        registry.register(
            "audio_datagrams_sent",
            "Audio packets queued as datagrams to viewers",
            self.audio_sent.clone(),
        );
        self.publishing.register(registry);
        registry.register(
            "audio_datagrams_dropped",
            "Audio packets not sent: the session fell behind, the packet did not fit a datagram, or the connection refused it",
            self.audio_dropped.clone(),
        );
    }
}
