//! `/metrics`: a prometheus-client registry holding the server's counters ([`Metrics`]) and
//! a collector that reads, at each scrape, what the hub, the encoders and the source already
//! count. Encoded in the Prometheus text format (0.0.4) on each request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::Observed;

/// The `Content-Type` of what [`Exporter::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry `/metrics` encodes.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    pub fn new(observed: Arc<Observed>) -> Self {
        let mut registry = Registry::with_prefix("streamsocket");
        observed.hub.metrics().register(&mut registry);
        registry.register(
            "build",
            "The server's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(Scraped(observed)));
        Self { registry }
    }

    /// The metrics now, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// What is read from the hub, the encoders, the source and the certificates at each scrape.
#[derive(Debug)]
struct Scraped(Arc<Observed>);

/// One metric with a value per rendition.
fn per_rendition<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    o: &Observed,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    value: impl Fn(&crate::fanout::hub::RenditionChannel) -> M,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for r in o.hub.renditions() {
        let labels = [("rendition", r.info.name.as_str())];
        value(r).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: M,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for Scraped {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let o = &*self.0;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        per_rendition(
            &mut e,
            o,
            "rendition_viewers",
            "Sessions receiving each rendition now (a viewer switching counts on both for a moment).",
            None,
            MetricType::Gauge,
            |r| ConstGauge::new(r.viewers() as i64),
        )?;
        per_rendition(
            &mut e,
            o,
            "encoder_running",
            "1 while the rendition's encoder runs (it runs while somebody watches it).",
            None,
            MetricType::Gauge,
            |r| ConstGauge::new(i64::from(r.viewers() > 0)),
        )?;
        per_rendition(
            &mut e,
            o,
            "encoder_starts",
            "Times the rendition's encoder was started.",
            None,
            MetricType::Counter,
            |r| ConstCounter::new(load(&r.starts)),
        )?;
        per_rendition(
            &mut e,
            o,
            "encoder_frames",
            "Frames encoded (rate(): frames per second).",
            None,
            MetricType::Counter,
            |r| ConstCounter::new(load(&r.stats.frames_out)),
        )?;
        per_rendition(
            &mut e,
            o,
            "encoder_keyframes",
            "Keyframes encoded.",
            None,
            MetricType::Counter,
            |r| ConstCounter::new(load(&r.stats.keyframes)),
        )?;
        per_rendition(
            &mut e,
            o,
            "encoder_output",
            "Bytes of AV1 encoded (rate() * 8: the bitrate).",
            Some(&Unit::Bytes),
            MetricType::Counter,
            |r| ConstCounter::new(load(&r.stats.bytes_out)),
        )?;
        per_rendition(
            &mut e,
            o,
            "encoder_encode",
            "Time spent encoding, scaling excluded (divided by encoder_frames_total: the mean time per frame).",
            Some(&Unit::Seconds),
            MetricType::Counter,
            |r| ConstCounter::new(load(&r.stats.encode_us_total) as f64 / 1e6),
        )?;
        let s = &o.source;
        single(
            &mut e,
            "source_frames",
            "Pictures the video source made.",
            None,
            ConstCounter::new(load(&s.frames)),
        )?;
        single(
            &mut e,
            "source_frames_dropped_encoder_busy",
            "Source pictures an encoder was too busy to take.",
            None,
            ConstCounter::new(load(&s.dropped_encoder_busy)),
        )?;
        single(
            &mut e,
            "source_slots_skipped_late",
            "Capture slots skipped because the source ran late.",
            None,
            ConstCounter::new(load(&s.skipped_late)),
        )?;
        let controls = o.hub.controls();
        single(
            &mut e,
            "broadcast_paused",
            "1 while the broadcaster has paused the stream.",
            None,
            ConstGauge::new(i64::from(controls.paused())),
        )?;
        single(
            &mut e,
            "microphone_muted",
            "1 while the broadcaster has muted the sound.",
            None,
            ConstGauge::new(i64::from(controls.muted())),
        )?;
        let certificates = [
            ("server", o.hub.metrics().server_certificate_not_after()),
            ("webtransport", o.web.current().not_after.unix_timestamp()),
        ];
        let mut expiry = e.encode_descriptor(
            "certificate_expiry_timestamp",
            "When each certificate stops being valid, unix time: server (the one native viewers and the page get; updated on reload), webtransport (the short-lived one browsers accept by hash; renewed by itself).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (name, not_after) in certificates {
            ConstGauge::new(not_after).encode(expiry.encode_family(&[("certificate", name)])?)?;
        }
        let metrics = o.hub.metrics();
        single(
            &mut e,
            "start_time",
            "When the server started, unix time.",
            Some(&Unit::Seconds),
            ConstGauge::new(metrics.started_unix_s()),
        )?;
        single(
            &mut e,
            "uptime",
            "Time since the server started.",
            Some(&Unit::Seconds),
            ConstGauge::new(metrics.uptime_s()),
        )?;
        Ok(())
    }
}
