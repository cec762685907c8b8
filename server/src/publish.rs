//! Publishing the stream into Media over QUIC relays (`--publish URL`): one broadcast with a
//! `hang` catalog, one AV1 track per rendition and one Opus track per audio bitrate, sent to
//! every relay given (for redundancy). A rendition is encoded only while some relay
//! subscribes to its track (the same lazy encoders as for viewers), and each relay's
//! connection is re-made, with a word in the log, whenever it ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use streamsocket_moq::link::{Ended, Link, Refused, RelayUrl};
use streamsocket_moq::media::{AudioTrackWriter, VideoTrackWriter, AUDIO_PRIORITY, VIDEO_PRIORITY};
use streamsocket_moq::moq_net;
use streamsocket_moq::{catalog, media};
use streamsocket_proto::media::AudioHeader;
use tokio::sync::broadcast::error::RecvError;

use crate::encode::video::EncodedFrame;
use crate::fanout::hub::Hub;
use crate::metrics::{Held, Metrics};
use crate::session::Offer;

/// The first wait before connecting again to a relay, doubled after each failure.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const RETRY_MOST: Duration = Duration::from_secs(5);
/// A session that lasted this long was a working one: the next attempt starts at once and
/// the waits start over. One that ended sooner (a refusal) waits like a failed attempt.
const SESSION_WORKED: Duration = Duration::from_secs(10);

/// The relays' JWT: given, or read from a file at every attempt (a renewed token is used
/// from the next connection on).
#[derive(Debug, Clone)]
pub enum PublishToken {
    Given(String),
    File(PathBuf),
}

impl PublishToken {
    fn current(&self) -> anyhow::Result<String> {
        match self {
            PublishToken::Given(t) => Ok(t.clone()),
            PublishToken::File(path) => Ok(std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the relay token file {}", path.display()))?
                .trim()
                .to_string()),
        }
    }
}

/// How the publisher decides a relay is the right one.
#[derive(Debug, Clone)]
pub enum RelayTrust {
    /// Its certificate chains to this CA (PEM; a bundle of several works) and names its host.
    Ca(PathBuf),
    /// Its certificate has one of these fingerprints (a self-signed one, as
    /// `moq-relay --listen-tls-generate` makes).
    Pinned(Vec<streamsocket_certs::Fingerprint>),
}

/// What `--publish` and its companions said.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Relay URLs (`https://HOST:PORT/PATH`), each published to.
    pub relays: Vec<String>,
    /// The broadcast's name under each relay URL's path.
    pub broadcast: String,
    /// The relays' JWT, if they want one.
    pub token: Option<PublishToken>,
    /// How the relays are recognised.
    pub trust: RelayTrust,
    /// The stream has sound: without it the catalog lists no audio track (a player would
    /// wait for one).
    pub audio: bool,
}

/// Starts publishing: the broadcast is made now, and each relay is connected to on a task
/// of its own, for as long as the server runs. Errors only on options that cannot work.
pub fn start(hub: Arc<Hub>, options: PublishOptions) -> anyhow::Result<Publisher> {
    // Checked now; made again with the current token at each attempt.
    for r in &options.relays {
        RelayUrl::parse(r, None)?;
    }
    if let Some(token) = &options.token {
        token.current()?;
    }
    let tls = relay_tls(&options.trust)?;
    let (origin, driver) = moq_net::origin::Producer::new(Default::default());
    let mut tasks = vec![tokio::spawn(async move {
        moq_net::time::run(driver).await;
    })];
    let broadcast = origin
        .create_broadcast(&options.broadcast)
        .with_context(|| format!("cannot make the broadcast {:?}", options.broadcast))?;

    let offer = Offer::of(&hub);
    // The wall-clock time of the media clock's zero: viewers behind relays put capture
    // times on their own clock with it (they cannot ping the origin).
    let clock_zero = catalog::wall_now_us().saturating_sub(hub.clock().now_us());
    let audio_bitrates: &[u32] = if options.audio {
        &offer.audio_bitrates
    } else {
        &[]
    };
    let catalog = catalog::catalog(
        &offer.renditions,
        &offer.audio,
        audio_bitrates,
        Some(clock_zero),
    )?;
    let catalog_track = broadcast.create_track(
        streamsocket_moq::hang::Catalog::DEFAULT_NAME,
        streamsocket_moq::hang::Catalog::default_track_info(),
    )?;
    let mut group = catalog_track.append_group()?;
    group.write_frame(moq_net::Timestamp::now(), catalog.to_json()?)?;
    group.finish()?;

    for r in &offer.renditions {
        let track =
            broadcast.create_track(catalog::video_track(r), media::track_info(VIDEO_PRIORITY))?;
        tasks.push(tokio::spawn(feed_video(
            hub.clone(),
            r.id,
            VideoTrackWriter::new(track),
        )));
    }
    for &bitrate in audio_bitrates {
        let track = broadcast.create_track(
            catalog::audio_track(bitrate),
            media::track_info(AUDIO_PRIORITY),
        )?;
        tasks.push(tokio::spawn(feed_audio(
            hub.clone(),
            bitrate,
            AudioTrackWriter::new(track),
        )));
    }
    broadcast
        .announce(Default::default())
        .context("cannot announce the broadcast")?;
    for relay in &options.relays {
        tasks.push(tokio::spawn(keep_publishing(
            relay.clone(),
            options.token.clone(),
            tls.clone(),
            origin.clone(),
            options.broadcast.clone(),
            hub.metrics().clone(),
        )));
    }
    Ok(Publisher {
        tasks,
        _broadcast: broadcast,
        _catalog: catalog_track,
    })
}

/// The running publication; dropping it stops publishing.
pub struct Publisher {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _broadcast: moq_net::broadcast::Producer,
    _catalog: moq_net::track::Producer,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// TLS towards relays: TLS 1.3, certificates chaining to the CA and naming the relay's host,
/// or pinned.
fn relay_tls(trust: &RelayTrust) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let config = match trust {
        RelayTrust::Ca(ca) => {
            let roots = streamsocket_certs::load_ca_roots(ca).with_context(|| {
                format!(
                    "--publish-ca {}: the CA relays' certificates must chain to",
                    ca.display()
                )
            })?;
            config.with_root_certificates(roots)
        }
        RelayTrust::Pinned(pins) => config.dangerous().with_custom_certificate_verifier(
            streamsocket_certs::PinnedServerVerifier::new(pins.clone(), provider),
        ),
    };
    Ok(config.with_no_client_auth())
}

/// QUIC towards a relay: MoQ opens bidirectional streams both ways (announcements,
/// subscriptions), which quinn's defaults allow; a relay that dies is given up on after 5 s
/// without a packet (keep-alives every second keep a quiet link open).
fn relay_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(5)).expect("a small timeout"),
    ));
    t.keep_alive_interval(Some(Duration::from_secs(1)));
    Arc::new(t)
}

/// Connects to one relay, publishes, and connects again whenever the session ends.
async fn keep_publishing(
    url: String,
    token: Option<PublishToken>,
    tls: rustls::ClientConfig,
    origin: moq_net::origin::Producer,
    broadcast: String,
    metrics: Arc<Metrics>,
) {
    let counts = &metrics.publishing;
    let shown = RelayUrl::parse(&url, None)
        .map(|r| r.shown)
        .unwrap_or_default();
    let mut wait = RETRY_FIRST;
    loop {
        let attempt = async {
            let token = token.as_ref().map(PublishToken::current).transpose()?;
            let relay = RelayUrl::parse(&url, token.as_deref())?;
            // A socket of the relay's address family (IPv4 or IPv6), per attempt: the
            // relay's name may resolve elsewhere next time.
            let bind = match relay.resolve().await? {
                std::net::SocketAddr::V4(_) => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                std::net::SocketAddr::V6(_) => {
                    std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
                }
            };
            let endpoint = streamsocket_transport::endpoint::client(bind)
                .context("cannot open a UDP socket for the relay")?;
            let client = moq_net::Client::new().with_publisher(&origin);
            Link::connect(&endpoint, &relay, &tls, relay_transport(), client).await
        };
        match attempt.await {
            Ok(link) => {
                tracing::info!(relay = %shown, version = %link.version, %broadcast, "publishing to the relay");
                counts.sessions.inc();
                let since = std::time::Instant::now();
                let why = {
                    let _connected = Held::new(&counts.relays_connected);
                    link.closed().await
                };
                counts.sessions_lost.inc();
                if since.elapsed() >= SESSION_WORKED {
                    wait = RETRY_FIRST;
                    tracing::warn!(relay = %shown, "the relay session ended ({why}); connecting again");
                    continue;
                }
                if why == Ended::Unauthorized {
                    tracing::warn!(relay = %shown, "cannot publish to the relay: {why}; check --publish-token; trying again in {wait:?}");
                } else {
                    tracing::warn!(relay = %shown, "the relay session ended ({why}); connecting again in {wait:?}");
                }
            }
            Err(e) => {
                counts.connect_failures.inc();
                let refused_token = e
                    .downcast_ref::<Refused>()
                    .is_some_and(|r| r.why == Ended::Unauthorized);
                if refused_token {
                    tracing::warn!(relay = %shown, "cannot publish to the relay: {}; check --publish-token; trying again in {wait:?}", Ended::Unauthorized);
                } else {
                    tracing::warn!(relay = %shown, "cannot publish to the relay: {e:#}; trying again in {wait:?}");
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MOST);
    }
}

/// Feeds one rendition's track while a relay subscribes to it, watching the rendition (so
/// its encoder runs) only then.
async fn feed_video(hub: Arc<Hub>, id: u8, mut writer: VideoTrackWriter) {
    let name = writer.track().name().to_string();
    let metrics = hub.metrics().clone();
    let counts = &metrics.publishing;
    loop {
        if writer.track().used().await.is_err() {
            return; // the broadcast is gone
        }
        let Some((watch, mut frames, gop)) = hub.watch(id) else {
            tracing::error!(rendition = %name, "a relay subscribed, but the encoder cannot start");
            tokio::time::sleep(RETRY_MOST).await;
            continue;
        };
        tracing::info!(rendition = %name, "a relay subscribed: publishing this rendition");
        let _subscribed = Held::new(&counts.renditions);
        let write = |writer: &mut VideoTrackWriter, f: &EncodedFrame| {
            let skipped = writer.skipped;
            match writer.write(f.keyframe, f.capture_us, f.payload.clone()) {
                Ok(()) if writer.skipped > skipped => {
                    counts.frames_skipped.inc();
                }
                Ok(()) => {
                    counts.frames.inc();
                }
                Err(e) => tracing::warn!(rendition = %name, "cannot publish a frame: {e:#}"),
            }
        };
        // The group of pictures so far, from its keyframe: a subscriber starts at once.
        for f in &gop {
            write(&mut writer, f);
        }
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Ok(f) => write(&mut writer, &f),
                    Err(RecvError::Lagged(n)) => {
                        counts.frames_lagged.inc_by(n);
                        // Frames lost here break the group: end it, and start the next at a
                        // keyframe, asked for now.
                        tracing::warn!(rendition = %name, "publishing fell {n} frames behind the encoder; asking for a keyframe");
                        let _ = writer.end_group();
                        if let Some(r) = hub.rendition(id) {
                            r.keyframes.request();
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = writer.track().unused() => break,
            }
        }
        let _ = writer.end_group();
        drop(watch);
        // Frames that could not start a group (after a lag, until the keyframe) say how
        // much the relays missed.
        tracing::info!(rendition = %name, frames_skipped = writer.skipped, "no relay subscribes any more: not publishing this rendition");
    }
}

/// Feeds one audio bitrate's track while a relay subscribes to it.
async fn feed_audio(hub: Arc<Hub>, bitrate: u32, mut writer: AudioTrackWriter) {
    let metrics = hub.metrics().clone();
    let counts = &metrics.publishing;
    loop {
        if writer.track().used().await.is_err() {
            return;
        }
        let Some(channel) = hub.audio_channel(bitrate) else {
            return;
        };
        let mut packets = channel.packets.subscribe();
        loop {
            tokio::select! {
                packet = packets.recv() => match packet {
                    Ok(p) => {
                        let opus = p.datagram.slice(AudioHeader::LEN.min(p.datagram.len())..);
                        match writer.write(p.capture_us, opus) {
                            Ok(()) => {
                                counts.audio_packets.inc();
                            }
                            Err(e) => tracing::warn!(bitrate, "cannot publish an audio packet: {e:#}"),
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        counts.audio_lagged.inc_by(n);
                        tracing::warn!(bitrate, "publishing fell {n} audio packets behind");
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = writer.track().unused() => break,
            }
        }
    }
}
