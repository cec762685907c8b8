//! The StreamSocket wire protocol, sans I/O.
//!
//! Three kinds of data cross a StreamSocket QUIC connection (see `docs/PROTOCOL.md`):
//!
//! - **control messages** on the one bidirectional stream the viewer opens ([`control`]),
//!   each framed by a length prefix;
//! - **video frames**, one per unidirectional stream from the server: a [`FrameHeader`]
//!   followed by one AV1 temporal unit ([`media`]);
//! - **audio packets**, one per QUIC datagram: an [`AudioHeader`] followed by one Opus packet.
//!
//! Everything here is pure: encoding into and decoding from byte slices, with explicit limits
//! and errors. No sockets, no async, no clocks.

pub mod codec;
pub mod control;
pub mod media;
pub mod pixel_clock;

pub use codec::DecodeError;
pub use control::{
    AudioFormat, ControlMessage, ErrorCode, Hello, Ping, Pong, Rendition, RenditionId, VideoFormat,
    Welcome, WishedRendition,
};
pub use media::{AudioHeader, FrameHeader, ServerTiming};

/// The protocol version this crate speaks. A viewer sends it in its hello; a server that does
/// not speak it answers with [`ErrorCode::UnsupportedVersion`] and closes the connection.
pub const PROTOCOL_VERSION: u16 = 3;

/// ALPN identifier negotiated in the TLS handshake. A QUIC peer that does not offer it is
/// refused during the handshake.
pub const ALPN: &[u8] = b"streamsocket/1";

/// Default UDP port of a StreamSocket server.
pub const DEFAULT_PORT: u16 = 4443;
