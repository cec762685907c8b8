//! Finding the broadcast on a relay: QUIC to the relay (moq-lite over raw QUIC), wait until
//! it announces the broadcast, read the broadcast's `hang` catalog, and describe it to the
//! control core as a server's welcome would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamsocket_moq::catalog::{self as moq_catalog, Listing};
use streamsocket_moq::link::{Ended, Link, Refused, RelayUrl};
use streamsocket_moq::{hang, moq_net};
use streamsocket_proto::control::{
    AudioFormat, VideoFormat, Welcome, WishedRendition, AUDIO_CODEC_OPUS, VIDEO_CODEC_AV1,
};
use tokio::task::JoinHandle;

use crate::net::tls::{rustls_config, Trust};

/// How long a relay may take to announce the broadcast once connected (a relay that
/// carries it announces it at once; one cluster hop away, within a round trip or two).
const ANNOUNCE_WAIT: Duration = Duration::from_secs(3);
/// Frames further than this from the catalog's clock belong to another origin than the
/// catalog (far more than a latency budget plus a group's backlog).
pub const CLOCK_MISMATCH: Duration = Duration::from_secs(8);
/// How long the catalog may take once the broadcast is found.
const CATALOG_WAIT: Duration = Duration::from_secs(3);

/// Where to watch from.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Relay URLs (`https://HOST:PORT/PATH`), tried in order; after losing one, the viewer
    /// moves to the next.
    pub urls: Vec<String>,
    /// The broadcast's name under each URL's path.
    pub broadcast: String,
    /// The relays' JWT, if they want one (sent as `?jwt=` in the session's path).
    pub token: Option<String>,
    /// How the relays' certificates are checked.
    pub trust: Trust,
    /// A relay silent for this long is lost.
    pub timeout: Duration,
}

impl RelayOptions {
    /// Checks every URL now, so that a typo is told before anything connects.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.urls.is_empty(), "no relay URL given");
        anyhow::ensure!(
            !self.broadcast.is_empty(),
            "the broadcast name is empty (--broadcast)"
        );
        for url in &self.urls {
            RelayUrl::parse(url, None)?;
        }
        anyhow::ensure!(
            self.timeout >= Duration::from_millis(100),
            "--relay-timeout must be at least 100 ms"
        );
        Ok(())
    }
}

/// Why no relay could be watched from.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay refused the token: trying again (or elsewhere) will not help.
    #[error("{0}")]
    Unauthorized(Refused),
    /// The broadcast is there but offers nothing this viewer can play.
    #[error("{0}")]
    Unplayable(String),
    /// Anything else (no relay answers, the broadcast is not announced yet, ...): worth
    /// trying again.
    #[error("{0}")]
    Failed(String),
}

impl RelayError {
    pub fn retry(&self) -> bool {
        matches!(self, RelayError::Failed(_))
    }
}

/// The broadcast's media clock as this viewer reads it: from the catalog's wall-clock zero
/// (machines' clocks agree through NTP), or, for a catalog without one, from the first
/// frame received, taken as captured on arrival (latencies then start from zero).
#[derive(Clone, Debug)]
pub struct MediaClock {
    zero_wall_us: Arc<AtomicU64>,
}

impl MediaClock {
    const UNKNOWN: u64 = u64::MAX;

    fn new(zero_wall_us: Option<u64>) -> Self {
        Self {
            zero_wall_us: Arc::new(AtomicU64::new(zero_wall_us.unwrap_or(Self::UNKNOWN))),
        }
    }

    /// The media clock now (µs), if known.
    pub fn now_us(&self) -> Option<u64> {
        let zero = self.zero_wall_us.load(Ordering::Relaxed);
        (zero != Self::UNKNOWN).then(|| moq_catalog::wall_now_us().saturating_sub(zero))
    }

    /// How far (µs) a frame stamped `pts_us`, arriving now, is from this clock, when that is
    /// more than any latency or group backlog explains ([`CLOCK_MISMATCH`]): the catalog
    /// and the frames come from different origins.
    pub fn mismatch_us(&self, pts_us: u64) -> Option<u64> {
        let off = self.now_us()?.abs_diff(pts_us);
        (off > CLOCK_MISMATCH.as_micros() as u64).then_some(off)
    }

    /// A frame stamped `pts_us` arrived now: without a clock yet, it sets one.
    pub fn learn(&self, pts_us: u64) {
        let zero = moq_catalog::wall_now_us().saturating_sub(pts_us);
        if self
            .zero_wall_us
            .compare_exchange(Self::UNKNOWN, zero, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                "the catalog has no clock: latencies are counted from the first frame's arrival"
            );
        }
    }
}

/// A relay session carrying the broadcast, its catalog read.
pub struct RelaySession {
    pub endpoint: quinn::Endpoint,
    pub link: Link,
    pub broadcast: moq_net::broadcast::Consumer,
    /// Kept open: it ends when the broadcast does (the origin left).
    pub catalog: hang::catalog::Consumer,
    pub listing: Listing,
    pub welcome: Welcome,
    pub clock: MediaClock,
    /// Which of the URLs this is.
    pub index: usize,
    /// The URL, without its token.
    pub shown: String,
    origin: JoinHandle<()>,
}

impl Drop for RelaySession {
    fn drop(&mut self) {
        self.origin.abort();
    }
}

/// Connects to the relays in turn, starting with `start` (modulo their number), until one
/// carries the broadcast; `wish` picks the first rendition.
pub async fn connect(
    opts: &RelayOptions,
    start: usize,
    wish: WishedRendition,
) -> Result<RelaySession, RelayError> {
    let mut last = None;
    for k in 0..opts.urls.len() {
        let index = (start + k) % opts.urls.len();
        match connect_one(opts, index, wish).await {
            Ok(s) => return Ok(s),
            Err(e) if !e.retry() => return Err(e),
            Err(e) => {
                if opts.urls.len() > 1 {
                    tracing::warn!("{e}");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| RelayError::Failed("no relay URL given".into())))
}

async fn connect_one(
    opts: &RelayOptions,
    index: usize,
    wish: WishedRendition,
) -> Result<RelaySession, RelayError> {
    let failed = |e: anyhow::Error| RelayError::Failed(format!("{e:#}"));
    let relay = RelayUrl::parse(&opts.urls[index], opts.token.as_deref()).map_err(failed)?;
    let addr = relay.resolve().await.map_err(failed)?;
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = streamsocket_transport::endpoint::client(bind)
        .map_err(|e| RelayError::Failed(format!("cannot open a UDP socket: {e}")))?;
    let (tls, _) = rustls_config(opts.trust.clone(), None).map_err(failed)?;
    let (origin, driver) = moq_net::origin::Producer::new(Default::default());
    let origin_task = tokio::spawn(async move {
        moq_net::time::run(driver).await;
    });
    let client = moq_net::Client::new().with_subscriber(origin.clone());
    let link = match Link::connect(&endpoint, &relay, &tls, transport(opts.timeout), client).await {
        Ok(l) => l,
        Err(e) => {
            origin_task.abort();
            return Err(match e.downcast::<Refused>() {
                Ok(r) if r.why == Ended::Unauthorized => RelayError::Unauthorized(r),
                Ok(r) => RelayError::Failed(r.to_string()),
                Err(e) => failed(e),
            });
        }
    };
    let found = async {
        let consumer = origin.consume();
        let mut announced = consumer.announced();
        loop {
            let Some(update) = announced.next().await else {
                return Err(format!("the relay {} ended the session", relay.shown));
            };
            if update.prefix.as_str() == opts.broadcast && update.kind.is_active() {
                break;
            }
        }
        consumer
            .request_broadcast(opts.broadcast.as_str())
            .await
            .map_err(|e| format!("the relay {} lost the broadcast: {e}", relay.shown))
    };
    let ended = async { link.closed().await };
    let broadcast = tokio::select! {
        found = tokio::time::timeout(ANNOUNCE_WAIT, found) => match found {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(RelayError::Failed(e)),
            Err(_) => {
                return Err(RelayError::Failed(format!(
                    "the relay {} does not carry the broadcast {:?} (not announced within {} s)",
                    relay.shown,
                    opts.broadcast,
                    ANNOUNCE_WAIT.as_secs()
                )))
            }
        },
        why = ended => {
            return Err(match why {
                Ended::Unauthorized => RelayError::Unauthorized(Refused {
                    relay: relay.shown.clone(),
                    why,
                }),
                Ended::Other(w) => RelayError::Failed(format!("the relay {} ended the session: {w}", relay.shown)),
            })
        }
    };
    let read_catalog = async {
        let mut consumer = hang::Catalog::subscribe(&broadcast).await?;
        let catalog = consumer.next().await?;
        Ok::<_, hang::Error>((consumer, catalog))
    };
    let (catalog, first) = match tokio::time::timeout(CATALOG_WAIT, read_catalog).await {
        Ok(Ok((consumer, Some(c)))) => (consumer, c),
        Ok(Ok((_, None))) => {
            return Err(RelayError::Failed(format!(
                "the broadcast {:?} ended before its catalog arrived",
                opts.broadcast
            )))
        }
        Ok(Err(e)) => {
            return Err(RelayError::Unplayable(format!(
                "the catalog of {:?} cannot be read: {e}",
                opts.broadcast
            )))
        }
        Err(_) => {
            return Err(RelayError::Failed(format!(
                "the catalog of {:?} did not arrive within {} s",
                opts.broadcast,
                CATALOG_WAIT.as_secs()
            )))
        }
    };
    let listing = moq_catalog::listing(&first)
        .map_err(|e| RelayError::Unplayable(format!("{:?}: {e:#}", opts.broadcast)))?;
    for why in &listing.ignored {
        tracing::info!("not playable here: {why}");
    }
    let clock = MediaClock::new(listing.clock_zero_wall_us);
    let welcome = welcome(&listing, wish, clock.now_us().unwrap_or(0));
    tracing::info!(
        "watching {:?} through the relay {} ({})",
        opts.broadcast,
        relay.shown,
        link.version
    );
    Ok(RelaySession {
        endpoint,
        link,
        broadcast,
        catalog,
        listing,
        welcome,
        clock,
        index,
        shown: relay.shown,
        origin: origin_task,
    })
}

/// What a server's welcome would say of this broadcast: its ladder, the rendition `wish`
/// picks (automatic starts at the top), and the highest audio bitrate.
fn welcome(listing: &Listing, wish: WishedRendition, server_time_us: u64) -> Welcome {
    let rendition = match wish {
        WishedRendition::Fixed(id) if usize::from(id) < listing.renditions.len() => id,
        _ => 0,
    };
    Welcome {
        version: streamsocket_proto::PROTOCOL_VERSION,
        session_id: 0,
        server_time_us,
        video: VideoFormat {
            codec: VIDEO_CODEC_AV1,
            renditions: listing.renditions.clone(),
        },
        rendition,
        // Without an Opus track the pipeline still needs a format; nothing will play.
        audio: listing.audio.unwrap_or(AudioFormat {
            codec: AUDIO_CODEC_OPUS,
            sample_rate: 48_000,
            channels: 1,
            frame_duration_us: 20_000,
            bitrate_bps: 0,
        }),
        audio_bitrates: listing.audio_tracks.iter().map(|(b, _)| *b).collect(),
    }
}

/// QUIC towards a relay: MoQ opens bidirectional streams both ways (quinn's defaults allow
/// them); keep-alives four times per `timeout`, and a relay silent for `timeout` is lost,
/// so that a dead relay is left in well under a second.
fn transport(timeout: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(timeout).ok());
    t.keep_alive_interval(Some(timeout / 4));
    Arc::new(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamsocket_proto::control::Rendition;

    fn listing() -> Listing {
        let r = |id: u8, name: &str| Rendition {
            id,
            name: name.into(),
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 800,
        };
        Listing {
            renditions: vec![r(0, "360p"), r(1, "180p")],
            video_tracks: vec!["360p".into(), "180p".into()],
            audio: None,
            audio_tracks: Vec::new(),
            clock_zero_wall_us: None,
            ignored: Vec::new(),
        }
    }

    #[test]
    fn the_welcome_takes_the_wish_when_the_ladder_has_it() {
        let l = listing();
        assert_eq!(welcome(&l, WishedRendition::Fixed(1), 5).rendition, 1);
        assert_eq!(welcome(&l, WishedRendition::Fixed(7), 5).rendition, 0);
        let w = welcome(&l, WishedRendition::Auto, 5);
        assert_eq!((w.rendition, w.server_time_us), (0, 5));
        assert!(w.audio_bitrates.is_empty());
    }

    #[test]
    fn frames_far_from_the_catalog_clock_are_told() {
        let clock = MediaClock::new(Some(moq_catalog::wall_now_us() - 20_000_000));
        // Captured 100 ms ago on this clock: fine.
        assert_eq!(clock.mismatch_us(19_900_000), None);
        // Another origin's capture times, 15 s off either way.
        assert!(clock.mismatch_us(5_000_000).is_some());
        assert!(clock.mismatch_us(35_000_000).is_some());
        assert_eq!(MediaClock::new(None).mismatch_us(1), None);
    }

    #[test]
    fn a_clock_is_learnt_once() {
        let clock = MediaClock::new(None);
        assert_eq!(clock.now_us(), None);
        clock.learn(10_000_000);
        let first = clock.now_us().unwrap();
        assert!((10_000_000..11_000_000).contains(&first), "{first}");
        clock.learn(0);
        assert!(clock.now_us().unwrap() >= first, "the first frame set it");
    }
}
