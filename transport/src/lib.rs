//! The async shell between `streamsocket-proto` and quinn, shared by server and viewer:
//! reading and writing control messages on the control stream, reading a video frame from a
//! unidirectional stream, and the QUIC transport settings both ends use.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream, VarInt};
use streamsocket_proto::control::ControlMessage;
use streamsocket_proto::media::FrameHeader;
use streamsocket_proto::{DecodeError, ErrorCode};
use thiserror::Error;

/// Why reading from a stream failed.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("the peer sent a malformed message: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the stream ended in the middle of a message")]
    Truncated,
    #[error("stream error: {0}")]
    Stream(#[from] quinn::ReadError),
    #[error("stream error: {0}")]
    WebTransport(#[from] web_transport_quinn::ReadError),
}

impl ReadError {
    /// The code to close the connection with when this error ends a session.
    pub fn close_code(&self) -> ErrorCode {
        match self {
            ReadError::Malformed(DecodeError::UnsupportedVersion { .. }) => {
                ErrorCode::UnsupportedVersion
            }
            ReadError::Malformed(_) | ReadError::Truncated => ErrorCode::MalformedMessage,
            ReadError::Stream(_) | ReadError::WebTransport(_) => ErrorCode::Internal,
        }
    }
}

impl From<quinn::ReadExactError> for ReadError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(_) => ReadError::Truncated,
            quinn::ReadExactError::ReadError(e) => ReadError::Stream(e),
        }
    }
}

/// Reads length-prefixed control messages from the control stream: a QUIC stream of the
/// native protocol, or a WebTransport stream (`web_transport_quinn::RecvStream`).
///
/// Cancel-safe: bytes are kept in the reader between calls, so `next()` can sit in a
/// `select!` beside other events without losing half a message when another branch wins.
pub struct ControlReader<R = RecvStream> {
    recv: R,
    /// Received bytes not yet parsed into a message.
    pending: Vec<u8>,
}

/// The receiving half of a control stream.
pub trait ControlRecvStream {
    /// Reads what has arrived into `buf`: its length, or `None` at the end of the stream.
    /// Cancel-safe: nothing is consumed unless it completes.
    fn read_some(
        &mut self,
        buf: &mut [u8],
    ) -> impl std::future::Future<Output = Result<Option<usize>, ReadError>> + Send;
}

impl ControlRecvStream for RecvStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        Ok(self.read(buf).await?)
    }
}

impl ControlRecvStream for web_transport_quinn::RecvStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        Ok(self.read(buf).await?)
    }
}

impl<R: ControlRecvStream> ControlReader<R> {
    pub fn new(recv: R) -> Self {
        Self {
            recv,
            pending: Vec::new(),
        }
    }

    /// A complete message from `pending`, if it holds one.
    fn parse(&mut self) -> Result<Option<ControlMessage>, ReadError> {
        let Some((msg, used)) = ControlMessage::decode_framed(&self.pending)? else {
            return Ok(None);
        };
        self.pending.drain(..used);
        Ok(Some(msg))
    }

    /// The next message, or `None` when the peer finished the stream cleanly between messages.
    pub async fn next(&mut self) -> Result<Option<ControlMessage>, ReadError> {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(msg) = self.parse()? {
                return Ok(Some(msg));
            }
            match self.recv.read_some(&mut chunk).await? {
                None if self.pending.is_empty() => return Ok(None),
                None | Some(0) => return Err(ReadError::Truncated),
                Some(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// The sending half of a control stream.
pub trait ControlSendStream {
    type Error: std::error::Error + Send + Sync + 'static;

    fn write_all_bytes(
        &mut self,
        buf: &[u8],
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;

    /// Ends the stream (FIN) and waits until the peer has acknowledged all of it, or has
    /// stopped it, or the connection is gone. False when the stream could not be finished.
    fn finish_and_wait(&mut self) -> impl std::future::Future<Output = bool> + Send;
}

impl ControlSendStream for SendStream {
    type Error = quinn::WriteError;

    async fn write_all_bytes(&mut self, buf: &[u8]) -> Result<(), quinn::WriteError> {
        self.write_all(buf).await
    }

    async fn finish_and_wait(&mut self) -> bool {
        if self.finish().is_err() {
            return false;
        }
        self.stopped().await.is_ok()
    }
}

impl ControlSendStream for web_transport_quinn::SendStream {
    type Error = web_transport_quinn::WriteError;

    async fn write_all_bytes(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.write_all(buf).await
    }

    async fn finish_and_wait(&mut self) -> bool {
        if self.finish().is_err() {
            return false;
        }
        self.stopped().await.is_ok()
    }
}

/// Writes control messages on the control stream (native or WebTransport).
pub struct ControlWriter<W = SendStream> {
    send: W,
    buf: Vec<u8>,
}

impl<W: ControlSendStream + Send> ControlWriter<W> {
    pub fn new(send: W) -> Self {
        Self {
            send,
            buf: Vec::with_capacity(256),
        }
    }

    /// The stream underneath, for bytes that are not a message (tests of malformed input).
    pub fn stream(&mut self) -> &mut W {
        &mut self.send
    }

    pub async fn send(&mut self, msg: &ControlMessage) -> Result<(), W::Error> {
        self.buf.clear();
        msg.encode(&mut self.buf);
        self.send.write_all_bytes(&self.buf).await
    }

    /// Sends an error or goodbye, finishes the stream and waits, at most `limit`, until the
    /// peer has acknowledged it; used before closing a connection, which would otherwise
    /// discard what is still unsent or unacknowledged (so the peer would see the close
    /// without the message that explains it).
    pub async fn send_and_finish(&mut self, msg: &ControlMessage, limit: std::time::Duration) {
        // The connection is about to close: failures here change nothing for the caller.
        if self.send(msg).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(limit, self.send.finish_and_wait()).await;
    }
}

/// A complete video frame read from its stream.
#[derive(Debug)]
pub struct ReceivedFrame {
    pub header: FrameHeader,
    pub payload: Bytes,
}

/// Reads one video frame (header, then exactly `payload_len` bytes) from a unidirectional stream.
pub async fn read_frame(recv: &mut RecvStream) -> Result<ReceivedFrame, ReadError> {
    let mut prefix = [0u8; FrameHeader::PREFIX];
    recv.read_exact(&mut prefix).await?;
    let header_len = FrameHeader::header_len(prefix)?;
    let mut header_buf = vec![0u8; header_len];
    header_buf[..FrameHeader::PREFIX].copy_from_slice(&prefix);
    recv.read_exact(&mut header_buf[FrameHeader::PREFIX..])
        .await?;
    let header = FrameHeader::decode(&header_buf)?;
    let mut payload = vec![0u8; header.payload_len as usize];
    recv.read_exact(&mut payload).await?;
    Ok(ReceivedFrame {
        header,
        payload: payload.into(),
    })
}

/// Transport settings. Chosen, not inherited: quinn's defaults buffer seconds of media
/// (10 MB send window, 1 MiB datagram buffer), which turns a slow link into growing delay.
/// Each value below is justified by `streamsocket-bench network --transport ...` runs,
/// recorded in docs/BENCHMARKS.md, section 5, "Transport settings".
/// Logging for the project's programs: to stderr, coloured on a terminal, filtered by
/// `STREAMSOCKET_LOG` (tracing's `EnvFilter` syntax, e.g. `debug` or
/// `streamsocket_server=debug`), `info` when unset.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // moq-net logs every subscription at info and a closing session's streams as warnings:
    // what matters of it, our own code says.
    let filter = EnvFilter::try_from_env("STREAMSOCKET_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,moq_net=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

pub mod settings {
    use super::*;

    /// Idle time after which a silent connection is dropped: the longest outage a session
    /// survives. Measured: with 1 s a 2 s outage ends the session, with 3 s it recovers as
    /// with 10 s. 10 s rides out the outages a person would wait through (a train tunnel, a
    /// Wi-Fi handover) without holding a dead viewer's state for long.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Keep-alive interval: only sent when nothing else is (a paused broadcast), well inside
    /// the idle timeout and the shortest common NAT binding lifetimes (~30 s). Not measurable
    /// on loopback (no NAT); its cost is one small packet per 2 s.
    pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
    /// Server send window (unacknowledged stream bytes per viewer). Measured from 32 KiB to
    /// 10 MiB with a 500 kbit/s cap and at 200 ms RTT: no difference, because each frame is
    /// reset at its deadline (300 ms), which bounds what is in flight far below any of these.
    /// So it is a memory bound, not a latency lever: 256 KiB is 15 times the largest frame
    /// of the default top rung (a 17 KB keyframe) and about 1 s of a 2 Mbit/s rung, and caps
    /// 500 viewers at 128 MiB where 2 MiB allowed 1 GiB.
    pub const SEND_WINDOW: u64 = 256 * 1024;
    /// Viewer's receive window per frame stream. Measured at 200 ms RTT: 16 KiB, smaller
    /// than a keyframe, costs that frame a round trip per window (freezes of 0.6 s, 15 to 47
    /// frames skipped); 64 KiB and more are the same as quinn's 1.25 MB. 256 KiB leaves
    /// room for the keyframes of larger rungs.
    pub const STREAM_RECEIVE_WINDOW: u32 = 256 * 1024;
    /// Audio datagrams waiting to be sent (quinn drops the oldest beyond it). Measured from
    /// 2 KiB to 1 MiB under a 500 kbit/s cap: no difference, as BBR lets datagrams out and
    /// the queue builds at the bottleneck, not here. It is the bound for when the congestion
    /// window does hold them: 4 KiB is ~340 ms of the highest Opus bitrate (96 kbit/s in
    /// 20 ms packets), 0.6 s of the default 48 kbit/s; older audio is useless to the viewer.
    pub const DATAGRAM_SEND_BUFFER: usize = 4 * 1024;
    /// Viewer's datagram receive buffer.
    pub const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;
    /// Frame streams the server may have open towards one viewer at once (a stream ends
    /// when its frame is acknowledged or reset). Measured at 200 ms RTT, 30 fps: 4 stalls
    /// the stream (53 frames of 342 decoded), 8 is just enough (p95 +10 ms), 16 and more
    /// are the same as 128; the outage is the same from 4 up. 64 covers a 60 fps rung whose
    /// frames all live to their 300 ms deadline on a 200 ms RTT path, twice over.
    pub const MAX_FRAME_STREAMS: u32 = 64;
    /// Path MTU discovery (quinn's default: on, probing up to 1452 bytes).
    pub const MTU_DISCOVERY: bool = true;

    /// Datagrams a viewer may send the server. quinn only sends datagrams on a connection
    /// whose own receive buffer is enabled, so the server keeps a token one; it never reads
    /// it, and quinn drops what overflows.
    pub const SERVER_DATAGRAM_RECEIVE_BUFFER: usize = 1500;

    /// The congestion controllers quinn offers. BBR is StreamSocket's default, chosen by
    /// measurement (docs/BENCHMARKS.md, section 5): at 5% random loss and 40 ms RTT, Cubic
    /// (quinn's default) and NewReno shrink their window on every loss and the stream stops
    /// (1 frame decoded in 12 s); BBR keeps every frame with latency p95 223 ms against 161 ms
    /// clean. Under a tight bandwidth cap BBR queues more (p95 508 ms against Cubic's 280).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Congestion {
        /// quinn's default.
        Cubic,
        NewReno,
        #[default]
        Bbr,
    }

    impl std::str::FromStr for Congestion {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            match s {
                "cubic" => Ok(Self::Cubic),
                "newreno" => Ok(Self::NewReno),
                "bbr" => Ok(Self::Bbr),
                other => Err(format!("{other:?}: expected cubic, newreno or bbr")),
            }
        }
    }

    impl std::fmt::Display for Congestion {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Self::Cubic => "cubic",
                Self::NewReno => "newreno",
                Self::Bbr => "bbr",
            })
        }
    }

    /// The settings in force: the constants above, except where a benchmark overrides them
    /// through the `STREAMSOCKET_TRANSPORT` environment variable (see [`Tuning::parse`]).
    /// Only for measuring alternatives (`streamsocket-bench network --transport ...`); the
    /// binaries log a warning when it is set.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Tuning {
        pub send_window: u64,
        pub stream_receive_window: u32,
        pub datagram_send_buffer: usize,
        pub max_frame_streams: u32,
        pub mtu_discovery: bool,
        pub keep_alive: Duration,
        pub idle_timeout: Duration,
    }

    /// The environment variable a benchmark sets to override transport settings.
    pub const TUNING_ENV: &str = "STREAMSOCKET_TRANSPORT";

    impl Default for Tuning {
        fn default() -> Self {
            Self {
                send_window: SEND_WINDOW,
                stream_receive_window: STREAM_RECEIVE_WINDOW,
                datagram_send_buffer: DATAGRAM_SEND_BUFFER,
                max_frame_streams: MAX_FRAME_STREAMS,
                mtu_discovery: MTU_DISCOVERY,
                keep_alive: KEEP_ALIVE,
                idle_timeout: IDLE_TIMEOUT,
            }
        }
    }

    impl Tuning {
        /// The defaults with `spec`'s changes: comma-separated `key=value` pairs among
        /// `send_window`, `stream_receive_window`, `datagram_send_buffer` (bytes, or with a
        /// `k`/`M` suffix for KiB/MiB), `max_frame_streams` (a count), `mtu_discovery`
        /// (`on`/`off`), `keep_alive`, `idle_timeout` (`ms` or `s`). Empty: the defaults.
        pub fn parse(spec: &str) -> Result<Self, String> {
            let mut t = Self::default();
            for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (key, value) = item
                    .split_once('=')
                    .ok_or_else(|| format!("{item:?}: expected key=value"))?;
                let (key, value) = (key.trim(), value.trim());
                let bad = |what: &str| format!("{key}={value:?}: expected {what}");
                match key {
                    "send_window" => t.send_window = bytes(value).ok_or_else(|| bad("bytes"))?,
                    "stream_receive_window" => {
                        let b = bytes(value).filter(|&b| b <= u32::MAX as u64);
                        t.stream_receive_window = b.ok_or_else(|| bad("bytes"))? as u32;
                    }
                    "datagram_send_buffer" => {
                        t.datagram_send_buffer = bytes(value).ok_or_else(|| bad("bytes"))? as usize
                    }
                    "max_frame_streams" => {
                        t.max_frame_streams = value.parse().map_err(|_| bad("a count"))?
                    }
                    "mtu_discovery" => {
                        t.mtu_discovery = match value {
                            "on" => true,
                            "off" => false,
                            _ => return Err(bad("on or off")),
                        }
                    }
                    "keep_alive" => {
                        t.keep_alive = duration(value).ok_or_else(|| bad("a duration"))?
                    }
                    "idle_timeout" => {
                        t.idle_timeout = duration(value).ok_or_else(|| bad("a duration"))?
                    }
                    other => return Err(format!("unknown transport setting {other:?}")),
                }
            }
            // Settings that would hold dead viewers forever or flood the path are refused,
            // whoever sets them.
            if t.idle_timeout < Duration::from_millis(500)
                || t.idle_timeout > Duration::from_secs(600)
            {
                return Err("idle_timeout must be 500ms to 600s".into());
            }
            if t.keep_alive < Duration::from_millis(100) {
                return Err("keep_alive must be at least 100ms".into());
            }
            // A keep-alive must come before the idle timeout to keep anything alive.
            t.keep_alive = t.keep_alive.min(t.idle_timeout / 2);
            if t.max_frame_streams == 0 || t.send_window == 0 || t.stream_receive_window == 0 {
                return Err(
                    "max_frame_streams, send_window and stream_receive_window must be above 0"
                        .into(),
                );
            }
            Ok(t)
        }

        /// The settings in force in this process: [`TUNING_ENV`]'s overrides when it is set
        /// (a malformed value is logged and ignored), else the defaults.
        pub fn current() -> Self {
            match std::env::var(TUNING_ENV) {
                Ok(spec) => match Self::parse(&spec) {
                    Ok(t) => {
                        tracing::warn!("{TUNING_ENV} overrides the transport settings: {t:?}");
                        t
                    }
                    Err(e) => {
                        tracing::error!("{TUNING_ENV} ignored: {e}");
                        Self::default()
                    }
                },
                Err(_) => Self::default(),
            }
        }

        fn apply_common(&self, t: &mut quinn::TransportConfig) {
            t.max_idle_timeout(Some(
                self.idle_timeout
                    .try_into()
                    .unwrap_or(quinn::IdleTimeout::from(VarInt::MAX)),
            ))
            .keep_alive_interval(Some(self.keep_alive));
            if !self.mtu_discovery {
                t.mtu_discovery_config(None);
            }
            t.stream_receive_window(VarInt::from_u32(self.stream_receive_window));
        }
    }

    /// `1500`, `64k` (KiB) or `2M` (MiB).
    fn bytes(s: &str) -> Option<u64> {
        let (digits, unit) = match s.strip_suffix(['k', 'K']) {
            Some(d) => (d, 1024),
            None => match s.strip_suffix('M') {
                Some(d) => (d, 1024 * 1024),
                None => (s, 1),
            },
        };
        digits.parse::<u64>().ok()?.checked_mul(unit)
    }

    /// `250ms` or `10s`.
    fn duration(s: &str) -> Option<Duration> {
        if let Some(ms) = s.strip_suffix("ms") {
            return ms.parse().ok().map(Duration::from_millis);
        }
        s.strip_suffix('s')?.parse().ok().map(Duration::from_secs)
    }

    /// Bidirectional streams a viewer may have open: a browser's CONNECT request and the
    /// control stream.
    pub const H3_BIDI_STREAMS: u32 = 2;
    /// Unidirectional streams a viewer may have open: a browser's HTTP/3 control stream and
    /// QPACK's encoder and decoder streams (RFC 9114, section 6.2).
    pub const H3_UNI_STREAMS: u32 = 3;

    /// The server's transport, with the given congestion controller: the viewer may open
    /// [`H3_BIDI_STREAMS`] bidirectional and [`H3_UNI_STREAMS`] unidirectional streams.
    pub fn server_with(congestion: Congestion) -> Arc<quinn::TransportConfig> {
        server_tuned(congestion, &Tuning::current())
    }

    /// [`server_with`] with explicit settings.
    fn server_tuned(congestion: Congestion, tuning: &Tuning) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        match congestion {
            Congestion::Cubic => {}
            Congestion::NewReno => {
                t.congestion_controller_factory(Arc::new(
                    quinn::congestion::NewRenoConfig::default(),
                ));
            }
            Congestion::Bbr => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
            }
        }
        // A viewer needs one bidirectional stream (control). A browser's HTTP/3 needs a
        // second (its CONNECT request) and three unidirectional ones (its control stream and
        // QPACK's), and refuses a server that grants fewer in the handshake; the endpoint
        // serves both, so it grants these to all, and a session ends a viewer that opens a
        // stream it has no use for (`Session::stream_opened`).
        t.max_concurrent_bidi_streams(VarInt::from_u32(H3_BIDI_STREAMS))
            .max_concurrent_uni_streams(VarInt::from_u32(H3_UNI_STREAMS))
            .datagram_receive_buffer_size(Some(SERVER_DATAGRAM_RECEIVE_BUFFER))
            .datagram_send_buffer_size(tuning.datagram_send_buffer)
            .send_window(tuning.send_window);
        tuning.apply_common(&mut t);
        Arc::new(t)
    }

    /// The viewer's transport: accepts the server's frame streams and audio datagrams.
    pub fn client() -> Arc<quinn::TransportConfig> {
        client_tuned(&Tuning::current())
    }

    /// [`client`] with explicit settings.
    fn client_tuned(tuning: &Tuning) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(VarInt::from_u32(0))
            .max_concurrent_uni_streams(VarInt::from_u32(tuning.max_frame_streams))
            .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
        tuning.apply_common(&mut t);
        Arc::new(t)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tuning_parses_overrides_and_keeps_the_rest() {
            assert_eq!(Tuning::parse("").unwrap(), Tuning::default());
            let t = Tuning::parse(
                "send_window=512k, max_frame_streams=32,mtu_discovery=off,idle_timeout=30s,\
                 keep_alive=500ms,stream_receive_window=1M,datagram_send_buffer=4000",
            )
            .unwrap();
            assert_eq!(t.send_window, 512 * 1024);
            assert_eq!(t.max_frame_streams, 32);
            assert!(!t.mtu_discovery);
            assert_eq!(t.idle_timeout, Duration::from_secs(30));
            assert_eq!(t.keep_alive, Duration::from_millis(500));
            assert_eq!(t.stream_receive_window, 1024 * 1024);
            assert_eq!(t.datagram_send_buffer, 4000);
            for bad in [
                "send_window",
                "send_window=lots",
                "mtu_discovery=maybe",
                "colour=red",
                "idle_timeout=0s",
                "keep_alive=0ms",
                "max_frame_streams=0",
            ] {
                assert!(Tuning::parse(bad).is_err(), "{bad}");
            }
            let short = Tuning::parse("idle_timeout=1s").unwrap();
            assert_eq!(
                short.keep_alive,
                Duration::from_millis(500),
                "before the timeout"
            );
        }
    }
}

/// QUIC endpoints on UDP sockets with buffers sized for many viewers.
pub mod endpoint {
    use std::net::SocketAddr;

    use socket2::{Domain, Protocol, Socket, Type};

    /// UDP socket buffers both ends ask the kernel for. The server sends each frame to every
    /// viewer at once: at 500 viewers a 2 KB frame is a 1 MB burst, five times the kernel's
    /// default buffer (212 KB), and whatever overflows is lost and retransmitted late.
    /// Linux caps the request at `net.core.rmem_max` / `wmem_max`.
    pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

    /// The buffers the kernel granted. (Linux reports twice the size it grants, the other
    /// half being its bookkeeping; these are the granted sizes.)
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SocketBuffers {
        pub receive: usize,
        pub send: usize,
    }

    /// Binds a UDP socket at `addr` with [`SOCKET_BUFFER`]-sized buffers (as far as the
    /// kernel allows; a smaller grant is logged as a warning, not an error).
    pub fn bind_udp(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, SocketBuffers)> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Failing to enlarge a buffer leaves the default: slower at scale, still correct.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        let granted = |reported: usize| {
            if cfg!(target_os = "linux") {
                reported / 2
            } else {
                reported
            }
        };
        let buffers = SocketBuffers {
            receive: granted(socket.recv_buffer_size().unwrap_or(0)),
            send: granted(socket.send_buffer_size().unwrap_or(0)),
        };
        if buffers.receive < SOCKET_BUFFER || buffers.send < SOCKET_BUFFER {
            tracing::warn!(
                receive_bytes = buffers.receive,
                send_bytes = buffers.send,
                wanted_bytes = SOCKET_BUFFER,
                "the kernel granted smaller UDP buffers than asked; with many viewers packets \
                 may be dropped (raise net.core.rmem_max and net.core.wmem_max)"
            );
        }
        Ok((socket.into(), buffers))
    }

    /// A server endpoint listening at `addr`. Call inside a tokio runtime.
    ///
    /// `reset_secret` keys the stateless resets the endpoint sends for connections it does
    /// not know. Derived from something that survives a restart (the server's private key),
    /// it lets a restarted server tell viewers of its previous run at their first packet that
    /// their connection is gone, so they reconnect in a round trip instead of waiting out the
    /// idle timeout. (A random key, quinn's default, makes those resets unverifiable.)
    pub fn server(
        config: quinn::ServerConfig,
        addr: SocketAddr,
        reset_secret: &[u8],
    ) -> std::io::Result<(quinn::Endpoint, SocketBuffers)> {
        let (socket, buffers) = bind_udp(addr)?;
        let derive = |label: &[u8]| {
            let mut material = label.to_vec();
            material.extend_from_slice(reset_secret);
            ring::digest::digest(&ring::digest::SHA256, &material)
        };
        let reset_key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            derive(b"streamsocket stateless reset v1").as_ref(),
        );
        let mut endpoint_config = quinn::EndpointConfig::new(std::sync::Arc::new(reset_key));
        // The connection IDs carry a keyed check too: with a random key a restarted server
        // drops its predecessor's packets as invalid instead of resetting them.
        let cid_key = u64::from_be_bytes(
            derive(b"streamsocket connection ids v1").as_ref()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let endpoint = quinn::Endpoint::new(endpoint_config, Some(config), socket, runtime()?)?;
        Ok((endpoint, buffers))
    }

    /// A random key for the server's address-validation (Retry) tokens. Make one per server run
    /// and keep it across certificate reloads: a new key would invalidate the tokens of
    /// viewers that are answering a Retry at that moment.
    pub fn retry_token_key() -> std::sync::Arc<dyn quinn::crypto::HandshakeTokenKey> {
        let mut secret = [0u8; 64];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the system's random number generator works");
        std::sync::Arc::new(ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&secret))
    }

    /// A client endpoint on an ephemeral port of `addr`'s family. Call inside a tokio runtime.
    pub fn client(addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
        let (socket, _) = bind_udp(addr)?;
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime()?)
    }

    fn runtime() -> std::io::Result<std::sync::Arc<dyn quinn::Runtime>> {
        quinn::default_runtime().ok_or_else(|| {
            std::io::Error::other("no async runtime: QUIC endpoints must be made inside tokio")
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn kernel_max(name: &str) -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        }

        #[test]
        fn buffers_are_as_large_as_the_kernel_allows() {
            let (socket, buffers) = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
            assert!(socket.local_addr().unwrap().port() != 0);
            // Linux grants min(request, limit); on a kernel with the default 212 KB limit
            // this checks that the request was made at all (the default is smaller still).
            let wanted = |limit: usize| SOCKET_BUFFER.min(limit);
            assert!(
                buffers.receive >= wanted(kernel_max("rmem_max")),
                "{buffers:?}"
            );
            assert!(
                buffers.send >= wanted(kernel_max("wmem_max")),
                "{buffers:?}"
            );
        }
    }
}
