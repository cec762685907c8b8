//! `streamsocket-bench fanout`: how many viewers one server feeds with every frame on time.
//!
//! Light viewers run in this process: each is a real QUIC connection that says hello, keeps a
//! clock estimate with pings, and reads every frame stream and audio datagram, but does not
//! decode (decoding is the viewer's cost, not the server's). They speak either binding: the
//! native one, or WebTransport as a browser does (HTTP/3, the CONNECT with the page's
//! origin, the certificate by its hash); both run through the same client code, so the
//! difference measured is the server's. The server is the release binary, measured from
//! /proc: CPU time and resident memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use streamsocket_client::ViewerClock;
use streamsocket_client::{client_config, Trust};
use streamsocket_client::{ClockSync, Exchange};
use streamsocket_proto::control::{ControlMessage, Hello, Ping, Rendition, WishedRendition};
use streamsocket_proto::media::FrameHeader;
use streamsocket_proto::PROTOCOL_VERSION;
use streamsocket_tests::web::{web_certificate_hash, WebSession};
use streamsocket_tests::ServerProcess;
use streamsocket_transport::{ControlReader, ControlWriter};

/// Which binding light viewers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// QUIC, ALPN streamsocket/1 (as `streamsocket-client`).
    Native,
    /// WebTransport over HTTP/3 (as the browser page).
    Web,
}

/// How a light viewer reaches the server.
#[derive(Clone)]
pub enum Dial {
    Native(quinn::ClientConfig),
    Web {
        config: quinn::ClientConfig,
        session: WebSession,
    },
}

impl Dial {
    async fn open(
        &self,
        endpoint: &quinn::Endpoint,
        addr: std::net::SocketAddr,
    ) -> Option<web_transport_quinn::Session> {
        match self {
            Dial::Native(config) => {
                let conn = endpoint
                    .connect_with(config.clone(), addr, "localhost")
                    .ok()?
                    .await
                    .ok()?;
                Some(web_transport_quinn::Session::raw(conn))
            }
            Dial::Web { config, session } => {
                session.open(endpoint, config.clone(), addr).await.ok()
            }
        }
    }
}

/// What one light viewer saw.
#[derive(Default)]
pub struct Seen {
    pub frames: u64,
    /// Sequence numbers that never arrived (between the first and the last received).
    pub missing: u64,
    pub audio: u64,
    pub latency_us: Vec<u64>,
    /// Encoder output to the frame fully received: the server's and QUIC's part only.
    pub delivery_us: Vec<u64>,
    /// The encoder's time on each frame (from the frame header).
    pub encode_us: Vec<u64>,
    pub connected: bool,
    /// The rendition the server sent.
    pub rendition: Option<Rendition>,
}

/// A light viewer of `rendition` for `watch`. Each has its own socket, as viewers on
/// different machines would: one shared socket would see every viewer's burst at once and
/// overflow.
pub async fn light_viewer(
    dial: Dial,
    addr: std::net::SocketAddr,
    watch: Duration,
    rendition: WishedRendition,
) -> Seen {
    let mut seen = Seen::default();
    let endpoint =
        match streamsocket_transport::endpoint::client("127.0.0.1:0".parse().expect("address")) {
            Ok(e) => e,
            Err(e) => {
                // Out of file descriptors, most likely: said, and counted as not connected.
                eprintln!("light viewer: cannot open a socket: {e}");
                return seen;
            }
        };
    let Some(conn) = dial.open(&endpoint, addr).await else {
        return seen;
    };
    let Ok((send, recv)) = conn.open_bi().await else {
        return seen;
    };
    let (mut writer, mut reader) = (ControlWriter::new(send), ControlReader::new(recv));
    let hello = ControlMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        rendition,
        latency_target_ms: 300,
        client_name: "bench light viewer".into(),
        token: Default::default(),
    });
    if writer.send(&hello).await.is_err() {
        return seen;
    }
    let clock = ViewerClock::start();
    let sync = Arc::new(std::sync::Mutex::new(ClockSync::default()));
    match reader.next().await {
        Ok(Some(ControlMessage::Welcome(w))) => {
            sync.lock()
                .unwrap()
                .set_coarse(w.server_time_us, clock.now_us());
            seen.rendition = w.video.renditions.into_iter().find(|r| r.id == w.rendition);
        }
        _ => return seen,
    }
    seen.connected = true;
    // Control: pings like the viewer's (five quick ones for a first estimate, then one a
    // second) keep the clock estimate fresh.
    let sync_c = sync.clone();
    let control = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut seq = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    seq += 1;
                    if seq == 5 {
                        tick = tokio::time::interval_at(
                            tokio::time::Instant::now() + Duration::from_secs(1),
                            Duration::from_secs(1),
                        );
                    }
                    let ping = ControlMessage::Ping(Ping { seq, client_time_us: clock.now_us() });
                    if writer.send(&ping).await.is_err() { return; }
                }
                msg = reader.next() => match msg {
                    Ok(Some(ControlMessage::Pong(p))) => sync_c.lock().unwrap().add(Exchange {
                        client_send: p.client_time_us,
                        server_receive: p.server_receive_us,
                        server_send: p.server_send_us,
                        client_receive: clock.now_us(),
                    }),
                    Ok(Some(_)) => {}
                    _ => return,
                }
            }
        }
    });
    let audio_conn = conn.clone();
    let audio = tokio::spawn(async move {
        let mut n = 0u64;
        while audio_conn.read_datagram().await.is_ok() {
            n += 1;
        }
        n
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let frames_conn = conn.clone();
    let receiver = tokio::spawn(async move {
        while let Ok(mut recv) = frames_conn.accept_uni().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let header = recv
                    .read_to_end(4 << 20)
                    .await
                    .ok()
                    .and_then(|bytes: Vec<u8>| FrameHeader::decode(&bytes).ok());
                if let Some(header) = header {
                    let t = header.timing;
                    let encoded = header.capture_us
                        + t.queue_us as u64
                        + t.encoder_wait_us as u64
                        + t.encode_us as u64;
                    let _ = tx.send((
                        header.seq,
                        header.capture_us,
                        encoded,
                        t.encode_us as u64,
                        clock.now_us(),
                    ));
                }
            });
        }
    });
    let until = tokio::time::Instant::now() + watch;
    let mut seqs = Vec::new();
    while let Ok(Some((seq, capture_us, encoded_us, encode_us, at_us))) =
        tokio::time::timeout_at(until, rx.recv()).await
    {
        seen.frames += 1;
        seqs.push(seq);
        seen.encode_us.push(encode_us);
        if let Some(server_now) = sync.lock().unwrap().to_server(at_us) {
            seen.latency_us.push(server_now.saturating_sub(capture_us));
            seen.delivery_us.push(server_now.saturating_sub(encoded_us));
        }
    }
    // Missing: sequence numbers never received between the first and the last, leaving out
    // the last half second (frames still in flight, possibly out of order, when watching ended).
    if let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) {
        let end = last.saturating_sub(15).max(first);
        let got = seqs.iter().filter(|&&s| s <= end).count() as u64;
        seen.missing = (end - first + 1).saturating_sub(got);
    }
    conn.close(0, b"done");
    control.abort();
    receiver.abort();
    seen.audio = audio.await.unwrap_or(0);
    seen
}

pub fn proc_field(pid: u32, file: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One run: a fresh server, `n` light viewers for `seconds`.
pub struct FanoutResult {
    pub connected: usize,
    pub frames_min: u64,
    pub frames_median: u64,
    pub missing: u64,
    pub expected_frames: u64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub delivery_p50_ms: f64,
    pub delivery_p95_ms: f64,
    pub cpu_percent: f64,
    pub rss_mb: f64,
    /// Frames the server reset at their deadline, and lost to a full hub queue (all sessions).
    pub server_reset: u64,
    pub server_lagged: u64,
}

/// Light viewers against one server process: the runtime they run on, their client
/// configuration, and the server's CPU time when they started.
pub struct LightRun {
    pub runtime: tokio::runtime::Runtime,
    pub dial: Dial,
    pub addr: std::net::SocketAddr,
    pid: u32,
    cpu_before: Option<f64>,
    started: Instant,
}

impl LightRun {
    pub fn new(server: &ServerProcess, threads: usize, kind: Kind) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?;
        let dial = match kind {
            Kind::Native => Dial::Native(client_config(Trust::Ca(server.ca()), None)?.0),
            Kind::Web => {
                // As the page does: the hash from /session.json, then WebTransport.
                let hash = runtime.block_on(web_certificate_hash(server))?;
                Dial::Web {
                    config: WebSession::client_config(hash)?,
                    session: WebSession::own_page(server),
                }
            }
        };
        let pid = server.pid();
        Ok(Self {
            runtime,
            dial,
            addr: server.addr,
            pid,
            cpu_before: crate::cpu_seconds(pid),
            started: Instant::now(),
        })
    }

    /// The server's CPU use since [`LightRun::new`], percent of one core.
    pub fn server_cpu_percent(&self) -> f64 {
        let wall = self.started.elapsed().as_secs_f64();
        match (self.cpu_before, crate::cpu_seconds(self.pid)) {
            (Some(a), Some(b)) => (b - a) / wall * 100.0,
            _ => f64::NAN,
        }
    }
}

pub fn run(
    n: usize,
    kind: Kind,
    seconds: u64,
    join_over: Duration,
    server_args: &[&str],
) -> anyhow::Result<FanoutResult> {
    let server = ServerProcess::start(server_args)?;
    let pid = server.pid();
    let threads = std::env::var("FANOUT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let light = LightRun::new(&server, threads, kind)?;
    let (dial, addr) = (light.dial.clone(), light.addr);
    let watch = Duration::from_secs(seconds);
    let (seen, rss) = light.runtime.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let arrival = join_over * i as u32 / n as u32;
                let dial = dial.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(arrival).await;
                    light_viewer(dial, addr, watch, WishedRendition::Fixed(0)).await
                })
            })
            .collect();
        // Resident memory while everybody watches.
        tokio::time::sleep(join_over + watch / 2 + Duration::from_millis(500)).await;
        let rss = proc_field(pid, "status", "VmRSS:").unwrap_or(0.0) / 1024.0;
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap_or_default());
        }
        (seen, rss)
    });
    let cpu = light.server_cpu_percent();
    // The sessions log why frames did not go out when they end.
    let log = server.log();
    let sum = |key: &str| -> u64 {
        log.split_whitespace()
            .filter_map(|w| w.strip_prefix(key))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    let (reset, lagged) = (sum("frames_reset="), sum("frames_lagged="));
    let mut latency = Histogram::<u64>::new(3)?;
    let mut delivery = Histogram::<u64>::new(3)?;
    for s in &seen {
        for l in &s.latency_us {
            latency.record((*l).max(1))?;
        }
        for d in &s.delivery_us {
            delivery.record((*d).max(1))?;
        }
    }
    let mut frames: Vec<u64> = seen.iter().map(|s| s.frames).collect();
    frames.sort_unstable();
    Ok(FanoutResult {
        connected: seen.iter().filter(|s| s.connected).count(),
        frames_min: frames.first().copied().unwrap_or(0),
        frames_median: frames.get(frames.len() / 2).copied().unwrap_or(0),
        missing: seen.iter().map(|s| s.missing).sum(),
        expected_frames: seconds * 30,
        latency_p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency_p95_ms: latency.value_at_quantile(0.95) as f64 / 1000.0,
        delivery_p50_ms: delivery.value_at_quantile(0.5) as f64 / 1000.0,
        delivery_p95_ms: delivery.value_at_quantile(0.95) as f64 / 1000.0,
        cpu_percent: cpu,
        rss_mb: rss,
        server_reset: reset,
        server_lagged: lagged,
    })
}
