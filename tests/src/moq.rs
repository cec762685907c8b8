//! A small Media over QUIC client for tests (not product code): `moq-net` (the protocol
//! moq-relay 0.17.10 speaks) over our quinn, as a WebTransport session
//! (web-transport-quinn 0.12, which speaks the transport trait moq-net 0.3 expects).
//!
//! [`connect`] opens a session to a relay URL (`https://127.0.0.1:PORT/ROOT?jwt=TOKEN`) as a
//! publisher, a subscriber or both; [`MoqSession::publish`] announces a broadcast with one
//! track and writes groups of frames into it; [`MoqSession::subscribe`] waits until a
//! broadcast is announced, subscribes to one of its tracks and reads frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use moq_net::bytes::Bytes;
use web_transport_quinn_012 as wtq;

/// What the session does; the relay checks it against the token's grant (a token that may
/// only subscribe is refused for a session that would publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publish,
    Subscribe,
    Both,
}

/// An open MoQ session to a relay; closed when dropped.
pub struct MoqSession {
    session: moq_net::Session,
    /// What we publish: broadcasts created here are announced to the relay.
    publish: moq_net::origin::Producer,
    /// What the relay announces to us.
    subscribe: moq_net::origin::Producer,
    _endpoint: quinn::Endpoint,
}

/// Opens a session to `url` (its path is the session's root, e.g. `/live`; its query may
/// carry `jwt=`), verifying the relay's certificate with `trust` (by name: the URL's host).
/// A relay that refuses the session (a wrong token, a grant that does not cover `role`)
/// gives an error that says so.
pub async fn connect(
    url: &url::Url,
    trust: streamsocket_client::Trust,
    role: Role,
) -> anyhow::Result<MoqSession> {
    let host = url
        .host_str()
        .context("a relay URL names its host")?
        .to_string();
    let port = url.port().unwrap_or(443);
    // Our client endpoint is IPv4 (as the relays in tests listen on 127.0.0.1).
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{host} has no IPv4 address"))?;
    let (mut config, _) =
        streamsocket_client::client_config_with_alpn(trust, None, wtq::ALPN.as_bytes())?;
    // MoQ opens bidirectional streams both ways (announce, subscribe): quinn's defaults,
    // not the native viewer's (which accepts none).
    config.transport_config(Arc::new(quinn::TransportConfig::default()));
    let endpoint = streamsocket_transport::endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint
        .connect_with(
            config,
            addr,
            host.trim_start_matches('[').trim_end_matches(']'),
        )?
        .await
        .with_context(|| format!("QUIC handshake with the relay at {addr}"))?;
    let mut request = wtq::proto::ConnectRequest::new(url.clone());
    for alpn in moq_net::ALPNS {
        request = request.with_protocol(alpn.to_string());
    }
    let transport = wtq::Session::connect(conn, request)
        .await
        .map_err(|e| anyhow::anyhow!("WebTransport CONNECT to {} refused: {e}", redact(url)))?;

    let publish = spawn_origin();
    let subscribe = spawn_origin();
    let mut client = moq_net::Client::new();
    if role != Role::Subscribe {
        client = client.with_publisher(&publish);
    }
    if role != Role::Publish {
        client = client.with_subscriber(subscribe.clone());
    }
    let (session, driver) = client
        .connect(std::time::Instant::now(), transport)
        .await
        .map_err(|e| refused(url, e))?;
    tokio::spawn(moq_net::time::run(driver));
    Ok(MoqSession {
        session,
        publish,
        subscribe,
        _endpoint: endpoint,
    })
}

fn spawn_origin() -> moq_net::origin::Producer {
    let (origin, driver) = moq_net::origin::Producer::new(moq_net::origin::Config::default());
    tokio::spawn(moq_net::time::run(driver));
    origin
}

/// The URL without its query (a token is a secret).
fn redact(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// The error for a session the relay ended, worded for the person reading the test.
fn refused(url: &url::Url, err: moq_net::Error) -> anyhow::Error {
    match err {
        moq_net::Error::Unauthorized
        | moq_net::Error::Session(moq_net::SessionError::Unauthorized) => anyhow::anyhow!(
            "the relay at {} refused the session: unauthorized (MoQ close code 2: no token, \
             or one that is wrong, expired, or does not grant this path and role)",
            redact(url)
        ),
        other => anyhow::anyhow!("MoQ session with {} failed: {other}", redact(url)),
    }
}

impl MoqSession {
    /// Waits until the relay (or the network) ends the session, and says why.
    pub async fn closed(&self, url: &url::Url) -> anyhow::Error {
        refused(url, self.session.closed().await)
    }

    /// The negotiated MoQ version (e.g. `moq-lite-06`).
    pub fn version(&self) -> String {
        self.session.version().to_string()
    }

    /// Announces broadcast `name` (under the session's root) with one track, `track`.
    pub fn publish(&self, name: &str, track: &str) -> anyhow::Result<Publication> {
        self.publish_tracks(name, &[track])
    }

    /// Announces broadcast `name` with these tracks (the first is the one
    /// [`Publication::write_group`] writes to).
    pub fn publish_tracks(&self, name: &str, tracks: &[&str]) -> anyhow::Result<Publication> {
        let broadcast = self
            .publish
            .create_broadcast(name)
            .with_context(|| format!("creating broadcast {name}"))?;
        let tracks = tracks
            .iter()
            .map(|t| Ok((t.to_string(), broadcast.create_track(*t, None)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        broadcast.announce(Default::default())?;
        Ok(Publication { broadcast, tracks })
    }

    /// Waits until the relay announces broadcast `name` (relative to the session's root),
    /// then subscribes to its track `track`, starting at the newest group.
    pub async fn subscribe(&self, name: &str, track: &str) -> anyhow::Result<TrackReader> {
        let consumer = self.subscribe.consume();
        let mut announced = consumer.announced();
        loop {
            let update = announced
                .next()
                .await
                .context("the session ended before the broadcast was announced")?;
            if update.prefix.as_str() == name && update.kind.is_active() {
                break;
            }
        }
        let broadcast = consumer
            .request_broadcast(name)
            .await
            .with_context(|| format!("requesting broadcast {name}"))?;
        let subscriber = broadcast
            .track(track)?
            .subscribe(None)
            .await
            .with_context(|| format!("subscribing to {name}/{track}"))?;
        Ok(TrackReader {
            subscriber,
            group: None,
        })
    }
}

/// A broadcast being published; unannounced when dropped.
pub struct Publication {
    broadcast: moq_net::broadcast::Producer,
    tracks: Vec<(String, moq_net::track::Producer)>,
}

impl Publication {
    /// Writes one group (a new QUIC stream to each subscriber) holding `frames` to the
    /// first track.
    pub fn write_group<B: AsRef<[u8]>>(&self, frames: &[B]) -> anyhow::Result<()> {
        let first = self.tracks[0].0.clone();
        self.write_group_to(&first, frames)
    }

    /// Writes one group holding `frames` to the track `track`.
    pub fn write_group_to<B: AsRef<[u8]>>(&self, track: &str, frames: &[B]) -> anyhow::Result<()> {
        let (_, track) = self
            .tracks
            .iter()
            .find(|(name, _)| name == track)
            .with_context(|| format!("no track {track} in this publication"))?;
        let mut group = track.append_group()?;
        for frame in frames {
            group.write_frame(
                moq_net::Timestamp::now(),
                Bytes::copy_from_slice(frame.as_ref()),
            )?;
        }
        group.finish()?;
        Ok(())
    }

    /// Keeps writing a one-frame group every `period`, frames `prefix` + a counter, until
    /// the returned task is aborted (or the publication dropped): a live track for
    /// subscribers that join at any time.
    pub fn keep_writing(self, prefix: &str, period: Duration) -> tokio::task::JoinHandle<()> {
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            for n in 0u64.. {
                tick.tick().await;
                if self.write_group(&[format!("{prefix}{n}")]).is_err() {
                    return;
                }
            }
        })
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        self.broadcast.close();
    }
}

/// Frames of a subscribed track, group after group.
pub struct TrackReader {
    subscriber: moq_net::track::Subscriber,
    group: Option<moq_net::group::Consumer>,
}

impl TrackReader {
    /// The sequence of the group being read (that of the frame [`Self::next_frame`] gave).
    pub fn group_sequence(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.sequence)
    }

    /// The next frame's payload, or an error when the track or session ends.
    pub async fn next_frame(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(group) = self.group.as_mut() {
                match group.read_frame().await? {
                    Some(frame) => return Ok(frame.payload),
                    None => self.group = None,
                }
            }
            match self.subscriber.recv_group().await? {
                Some(group) => self.group = Some(group),
                None => bail!("the track ended"),
            }
        }
    }
}
