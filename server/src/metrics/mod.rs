//! Metrics for operators: `/metrics` (Prometheus text format, prometheus-client) and
//! `/status` (JSON, what the preview window shows), served by the page server
//! (`web::https`) and, with `--metrics-listen`, by a plain-HTTP listener of their own.
//!
//! [`Metrics`] counts what only the session drivers and the accept loop see (relaxed atomic
//! adds, no lock per frame); the rest (viewers per rendition, encoders, source, certificates)
//! is read at scrape time from what the hub and the encoders already count. [`MetricsAccess`]
//! decides who may read them (docs/SECURITY.md, "Metrics").

mod access;
mod counters;
mod exporter;
mod status;

use std::sync::{Arc, Mutex};

use bytes::Bytes;

pub use access::{Denied, MetricsAccess, MetricsToken};
pub use counters::{code_name, Handshake, Held, Metrics, Stage};
pub use exporter::{Exporter, CONTENT_TYPE};
pub use status::{sample_rates, status, RenditionStatus, SourceStatus, Status, Viewers};

use crate::capture::SourceStats;
use crate::fanout::hub::Hub;
use crate::web::WebCertificate;

/// What `/metrics` and `/status` read.
pub struct Observed {
    pub hub: Arc<Hub>,
    pub source: Arc<SourceStats>,
    pub web: Arc<WebCertificate>,
    rates: Mutex<status::Rates>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl Observed {
    pub fn new(hub: Arc<Hub>, source: Arc<SourceStats>, web: Arc<WebCertificate>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            source,
            web,
            rates: Mutex::default(),
        })
    }
}

/// The paths served.
pub const METRICS_PATH: &str = "/metrics";
pub const STATUS_PATH: &str = "/status";

/// `/metrics` and `/status`, shared by every listener that serves them.
#[derive(Debug)]
pub struct MetricsEndpoint {
    observed: Arc<Observed>,
    exporter: Exporter,
}

/// A body and its content type.
pub type Answer = (&'static str, Bytes);

impl MetricsEndpoint {
    pub fn new(observed: Arc<Observed>) -> Arc<Self> {
        Arc::new(Self {
            exporter: Exporter::new(observed.clone()),
            observed,
        })
    }

    pub fn observed(&self) -> &Arc<Observed> {
        &self.observed
    }

    /// Whether `path` is one of ours.
    pub fn serves(path: &str) -> bool {
        path == METRICS_PATH || path == STATUS_PATH
    }

    /// The answer to a GET of `path` (one of ours) under `access`, given the request's
    /// `Authorization` header.
    pub fn answer(
        &self,
        access: &MetricsAccess,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Answer, Denied> {
        access.check(authorization)?;
        Ok(match path {
            METRICS_PATH => (CONTENT_TYPE, self.exporter.encode().into()),
            _ => (
                "application/json",
                serde_json::to_vec(&status(&self.observed))
                    .expect("the status serialises")
                    .into(),
            ),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use streamsocket_proto::ErrorCode;

    /// An endpoint over a hub with the 640x360 ladder (360p, 240p, 180p) and no encoder.
    pub(crate) fn endpoint() -> Arc<MetricsEndpoint> {
        let hub = Arc::new(Hub::for_tests());
        MetricsEndpoint::new(Observed::new(
            hub,
            Arc::default(),
            WebCertificate::new(&[]).unwrap(),
        ))
    }

    fn line<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }

    #[test]
    fn metrics_are_named_and_typed_as_prometheus_expects() {
        let e = endpoint();
        let m = e.observed().hub.metrics();
        let _watching = m.viewers(crate::session::ViewerKind::Native).clone();
        m.viewers(crate::session::ViewerKind::Native).inc();
        m.frames_sent.inc_by(3);
        m.refused(Stage::Session, code_name(ErrorCode::TokenInvalid));
        m.refused(Stage::WebTransport, "origin");
        m.handshake(Handshake::Completed);
        let (content_type, body) = e.answer(&MetricsAccess::Open, METRICS_PATH, None).unwrap();
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let text = std::str::from_utf8(&body).unwrap();
        assert!(line(text, "streamsocket_viewers{kind=\"native\"}").ends_with(" 1"));
        assert!(line(text, "streamsocket_viewers{kind=\"web\"}").ends_with(" 0"));
        assert!(line(text, "streamsocket_frames_sent_total").ends_with(" 3"));
        line(
            text,
            "streamsocket_sessions_refused_total{stage=\"session\",reason=\"token_invalid\"}",
        );
        line(
            text,
            "streamsocket_sessions_refused_total{stage=\"webtransport\",reason=\"origin\"}",
        );
        line(text, "streamsocket_handshakes_total{outcome=\"completed\"}");
        line(text, "streamsocket_encoder_running{rendition=\"240p\"}");
        line(
            text,
            "streamsocket_encoder_encode_seconds_total{rendition=\"180p\"}",
        );
        line(
            text,
            concat!(
                "streamsocket_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\"}"
            ),
        );
        line(
            text,
            "streamsocket_certificate_expiry_timestamp_seconds{certificate=\"webtransport\"}",
        );
        // Every family declared once, counters ending in _total, every sample typed.
        let mut typed = std::collections::HashMap::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(typed.insert(name.to_string(), kind).is_none(), "{l}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{l}");
                }
                assert!(name.starts_with("streamsocket_"), "{l}");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(typed.contains_key(name), "untyped sample {l}");
            }
        }
    }

    #[test]
    fn status_carries_the_previews_fields() {
        let e = endpoint();
        let c = e.observed().hub.controls().clone();
        c.viewer_joined();
        c.set_audio_peak(0.25);
        c.set_paused(true);
        let (content_type, body) = e.answer(&MetricsAccess::Open, STATUS_PATH, None).unwrap();
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["paused"], true);
        assert_eq!(v["muted"], false);
        assert_eq!(v["viewers"]["total"], 1);
        assert_eq!(v["audio_peak_dbfs"], -12.0);
        assert_eq!(v["renditions"].as_array().unwrap().len(), 3);
        assert_eq!(v["renditions"][1]["name"], "240p");
        assert_eq!(v["renditions"][1]["encoding"], false);
        assert_eq!(v["source"]["frames"], 0);
    }

    #[test]
    fn answers_follow_the_access_rule() {
        let e = endpoint();
        assert_eq!(
            e.answer(&MetricsAccess::Off, METRICS_PATH, None).err(),
            Some(Denied::NotFound)
        );
        let guarded = MetricsAccess::Token(MetricsToken::new("t0ken").unwrap());
        assert_eq!(
            e.answer(&guarded, STATUS_PATH, Some(b"Bearer nope")).err(),
            Some(Denied::Unauthorized)
        );
        assert!(e
            .answer(&guarded, STATUS_PATH, Some(b"Bearer t0ken"))
            .is_ok());
    }
}
