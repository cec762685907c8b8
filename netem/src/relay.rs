//! The relay: one listening socket for viewers; for each viewer address, a socket of its own
//! towards the server (so the server sees one peer per viewer). Each direction of each viewer
//! passes through its own [`Link`], seeded from the relay's seed; packets wait in a delivery
//! queue until their time.

use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::model::{Impairment, Link, LinkStats, Verdict};

/// Where a delayed packet goes.
#[derive(Clone)]
enum Sink {
    Server(Arc<UdpSocket>),
    Viewer(Arc<UdpSocket>, SocketAddr),
}

struct Due {
    at: Instant,
    order: u64,
    bytes: Vec<u8>,
    sink: Sink,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

/// Sends packets at their due times.
async fn deliver(mut input: mpsc::UnboundedReceiver<Due>) {
    let mut heap = BinaryHeap::new();
    loop {
        let next = heap.peek().map(|d: &Due| d.at);
        tokio::select! {
            due = input.recv() => match due {
                Some(d) => heap.push(d),
                None => return,
            },
            _ = async { tokio::time::sleep_until(next.expect("guarded")).await }, if next.is_some() => {
                while heap.peek().is_some_and(|d| d.at <= Instant::now()) {
                    let d = heap.pop().expect("peeked");
                    // A send that fails is a loss on the wire, as UDP has it.
                    let _ = match &d.sink {
                        Sink::Server(s) => s.send(&d.bytes).await,
                        Sink::Viewer(s, to) => s.send_to(&d.bytes, to).await,
                    };
                }
            }
        }
    }
}

/// The current settings; every link picks up a change before its next packet.
pub type Settings = watch::Receiver<Impairment>;

/// One direction of one viewer's path.
struct Direction {
    link: Link,
    settings: Settings,
}

impl Direction {
    fn verdict(&mut self, now: Duration, len: usize) -> Verdict {
        if self.settings.has_changed().unwrap_or(false) {
            self.link.impairment = self.settings.borrow_and_update().clone();
        }
        self.link.packet(now, len)
    }
}

/// A viewer silent this long is forgotten.
pub const PATH_IDLE: Duration = Duration::from_secs(60);

/// A spawned task that ends when this handle is dropped (with the relay, or its path).
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One viewer's path: its socket towards the server, the viewer-to-server direction, and the
/// task relaying the other way.
struct Path {
    upstream: Arc<UdpSocket>,
    up: Shared,
    last_seen: Instant,
    _return: Task,
}

/// Every viewer's path: (viewer, to server, to viewer).
#[derive(Clone, Default)]
pub struct PathStats(Arc<Mutex<Vec<(SocketAddr, Shared, Shared)>>>);

type Shared = Arc<Mutex<Direction>>;

impl PathStats {
    /// The counters now: (viewer, to server, to viewer).
    pub fn snapshot(&self) -> Vec<(SocketAddr, LinkStats, LinkStats)> {
        let paths = self.0.lock().expect("not poisoned");
        paths
            .iter()
            .map(|(v, up, down)| {
                let get = |d: &Shared| d.lock().expect("not poisoned").link.stats.clone();
                (*v, get(up), get(down))
            })
            .collect()
    }
}

/// Relays between viewers on `listen` and the server at `server` until the future is dropped
/// (which stops every task it started).
pub async fn run(
    listen: Arc<UdpSocket>,
    server: SocketAddr,
    settings: Settings,
    seed: u64,
    stats: PathStats,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let (due_tx, due_rx) = mpsc::unbounded_channel();
    let _delivery = Task(tokio::spawn(deliver(due_rx)));
    let mut order = 0u64;
    let mut viewers: HashMap<SocketAddr, Path> = HashMap::new();
    let mut paths_opened = 0u64;
    let mut last_sweep = Instant::now();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = listen.recv_from(&mut buf).await?;
        // Forget viewers silent for a while (their tasks end with them); their counters stay
        // in the final report.
        if last_sweep.elapsed() > PATH_IDLE / 4 {
            last_sweep = Instant::now();
            viewers.retain(|viewer, path| {
                let keep = path.last_seen.elapsed() < PATH_IDLE;
                if !keep {
                    tracing::info!(viewer = %viewer, "path idle: forgotten");
                }
                keep
            });
        }
        let path = match viewers.entry(from) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let any: SocketAddr = if server.is_ipv6() {
                    "[::]:0".parse().expect("valid")
                } else {
                    "0.0.0.0:0".parse().expect("valid")
                };
                let upstream = Arc::new(UdpSocket::bind(any).await?);
                upstream.connect(server).await?;
                let index = paths_opened;
                paths_opened += 1;
                let up = Arc::new(Mutex::new(Direction {
                    link: Link::new(settings.borrow().clone(), seed.wrapping_add(2 * index)),
                    settings: settings.clone(),
                }));
                let down = Arc::new(Mutex::new(Direction {
                    link: Link::new(settings.borrow().clone(), seed.wrapping_add(2 * index + 1)),
                    settings: settings.clone(),
                }));
                stats
                    .0
                    .lock()
                    .expect("not poisoned")
                    .push((from, up.clone(), down.clone()));
                tracing::info!(viewer = %from, "new path");
                let task = Task(tokio::spawn(server_to_viewer(
                    upstream.clone(),
                    listen.clone(),
                    from,
                    down,
                    due_tx.clone(),
                    start,
                )));
                vacant.insert(Path {
                    upstream,
                    up,
                    last_seen: Instant::now(),
                    _return: task,
                })
            }
        };
        path.last_seen = Instant::now();
        let sink = Sink::Server(path.upstream.clone());
        pass(&path.up, &buf[..n], sink, start, &mut order, &due_tx);
    }
}

/// Puts a packet through one direction's link and, unless lost, queues it for delivery.
fn pass(
    direction: &Shared,
    packet: &[u8],
    sink: Sink,
    start: Instant,
    order: &mut u64,
    due_tx: &mpsc::UnboundedSender<Due>,
) {
    let verdict = direction
        .lock()
        .expect("not poisoned")
        .verdict(start.elapsed(), packet.len());
    if let Verdict::Deliver(at) = verdict {
        *order += 1;
        let _ = due_tx.send(Due {
            at: start + at,
            order: *order,
            bytes: packet.to_vec(),
            sink,
        });
    }
}

async fn server_to_viewer(
    upstream: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    viewer: SocketAddr,
    down: Shared,
    due_tx: mpsc::UnboundedSender<Due>,
    start: Instant,
) {
    let mut buf = vec![0u8; 65_536];
    // Orders after everything the viewer side sent at the same instant.
    let mut order = u64::MAX / 2;
    loop {
        let n = match upstream.recv(&mut buf).await {
            Ok(n) => n,
            // A connected UDP socket reports an ICMP "port unreachable" as an error on the
            // next receive (the server not started yet, or restarting): keep relaying.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(viewer = %viewer, "return path closed: {e}");
                return;
            }
        };
        let sink = Sink::Viewer(listen.clone(), viewer);
        pass(&down, &buf[..n], sink, start, &mut order, &due_tx);
    }
}
