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
pub use counters::{code_name, Handshake, Metrics, Stage};
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
