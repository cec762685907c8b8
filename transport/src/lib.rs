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
}

impl ReadError {
    /// The code to close the connection with when this error ends a session.
    pub fn close_code(&self) -> ErrorCode {
        match self {
            ReadError::Malformed(DecodeError::UnsupportedVersion { .. }) => {
                ErrorCode::UnsupportedVersion
            }
            ReadError::Malformed(_) | ReadError::Truncated => ErrorCode::MalformedMessage,
            ReadError::Stream(_) => ErrorCode::Internal,
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

/// Reads length-prefixed control messages from the control stream.
///
/// Cancel-safe: bytes are kept in the reader between calls, so `next()` can sit in a
/// `select!` beside other events without losing half a message when another branch wins.
pub struct ControlReader {
    recv: RecvStream,
    /// Received bytes not yet parsed into a message.
    pending: Vec<u8>,
}

impl ControlReader {
    pub fn new(recv: RecvStream) -> Self {
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
            // quinn's `read` is cancel-safe: nothing is consumed unless it completes.
            match self.recv.read(&mut chunk).await? {
                None if self.pending.is_empty() => return Ok(None),
                None | Some(0) => return Err(ReadError::Truncated),
                Some(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Writes control messages on the control stream.
pub struct ControlWriter {
    send: SendStream,
    buf: Vec<u8>,
}

impl ControlWriter {
    pub fn new(send: SendStream) -> Self {
        Self {
            send,
            buf: Vec::with_capacity(256),
        }
    }

    pub async fn send(&mut self, msg: &ControlMessage) -> Result<(), quinn::WriteError> {
        self.buf.clear();
        msg.encode(&mut self.buf);
        self.send.write_all(&self.buf).await
    }

    /// Sends an error or goodbye and finishes the stream; used before closing a connection.
    pub async fn send_and_finish(&mut self, msg: &ControlMessage) {
        // The connection is about to close: failures here change nothing for the caller.
        let _ = self.send(msg).await;
        let _ = self.send.finish();
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

/// Closes a connection with a StreamSocket error code and a reason the peer can show.
pub fn close(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(VarInt::from_u32(code.to_u16() as u32), reason.as_bytes());
}

/// Transport settings. Chosen, not inherited: quinn's defaults buffer seconds of media
/// (10 MB send window, 1 MiB datagram buffer), which turns a slow link into growing delay.
pub mod settings {
    use super::*;

    /// Idle time after which a silent connection is dropped.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Keep-alive interval: well inside the idle timeout, and keeps NAT bindings open.
    pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
    /// Server send window: about 1 s of the top rendition plus a keyframe. Frames that cannot
    /// leave within their deadline are reset rather than queued behind this.
    pub const SEND_WINDOW: u64 = 2 * 1024 * 1024;
    /// Audio datagrams waiting to be sent: ~0.5 s of 64 kbit/s Opus in 20 ms packets.
    pub const DATAGRAM_SEND_BUFFER: usize = 16 * 1024;
    /// Viewer's datagram receive buffer.
    pub const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;
    /// Frame streams the server may have open towards one viewer at once: a second of
    /// video at 60 fps with room to spare; a stream ends when its frame is read or reset.
    pub const MAX_FRAME_STREAMS: u32 = 128;

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

    /// The server's transport, with the given congestion controller: the viewer may open one
    /// bidirectional (control) stream and nothing else.
    pub fn server_with(congestion: Congestion) -> Arc<quinn::TransportConfig> {
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
        t.max_concurrent_bidi_streams(VarInt::from_u32(1))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(Some(SERVER_DATAGRAM_RECEIVE_BUFFER))
            .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
            .send_window(SEND_WINDOW)
            .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("fits")))
            .keep_alive_interval(Some(KEEP_ALIVE));
        Arc::new(t)
    }

    /// The viewer's transport: accepts the server's frame streams and audio datagrams.
    pub fn client() -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(VarInt::from_u32(0))
            .max_concurrent_uni_streams(VarInt::from_u32(MAX_FRAME_STREAMS))
            .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
            .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("fits")))
            .keep_alive_interval(Some(KEEP_ALIVE));
        Arc::new(t)
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
    pub fn server(
        config: quinn::ServerConfig,
        addr: SocketAddr,
    ) -> std::io::Result<(quinn::Endpoint, SocketBuffers)> {
        let (socket, buffers) = bind_udp(addr)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            runtime()?,
        )?;
        Ok((endpoint, buffers))
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
