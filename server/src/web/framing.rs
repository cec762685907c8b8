//! How media is framed on a viewer's QUIC connection, per binding: bare streams and datagrams
//! for a native viewer; for a browser, the WebTransport stream header before each frame and
//! the session's quarter stream ID before each datagram (draft-ietf-webtrans-http3, RFC 9297).
//!
//! The session driver writes media on the QUIC connection itself, not through
//! `web_transport_quinn`'s per-stream calls. Those write the stream header as a write of its
//! own between two priority changes, which wakes the connection's driver before the frame is
//! queued (a packet with the header alone, under load); and they copy every datagram to put
//! the session ID in front. Here the header goes out in the frame's own write, and a packet's
//! framed datagram is made once for all browsers (see [`MediaFraming::datagram`]).

use std::sync::OnceLock;

use bytes::{BufMut as _, Bytes, BytesMut};
use web_transport_quinn::proto::{error_to_http3, StreamUni, VarInt};

/// The WebTransport session ID of every browser session this server accepts.
///
/// A session's ID is the stream ID of its CONNECT request, and `web_transport_quinn` takes the
/// first bidirectional stream the browser opens as that request (`Request::accept`). quinn
/// hands out a peer's streams in order of ID, and opening any bidirectional stream opens the
/// lower ones with it, so the first one is always client bidirectional stream 0.
const SESSION_ID: u32 = 0;

/// Media framing for one binding of the protocol.
#[derive(Debug, Clone)]
pub struct MediaFraming {
    /// Written before each frame's header on its unidirectional stream.
    stream_prefix: Bytes,
    /// Written before each audio datagram.
    datagram_prefix: Bytes,
    web: bool,
}

impl MediaFraming {
    /// The native binding: nothing added.
    pub fn native() -> Self {
        Self {
            stream_prefix: Bytes::new(),
            datagram_prefix: Bytes::new(),
            web: false,
        }
    }

    /// The WebTransport binding.
    pub fn web() -> Self {
        let mut stream = BytesMut::new();
        StreamUni::WEBTRANSPORT.encode(&mut stream);
        VarInt::from_u32(SESSION_ID).encode(&mut stream);
        let mut datagram = BytesMut::new();
        // The quarter stream ID (RFC 9297 section 2.1).
        VarInt::from_u32(SESSION_ID / 4).encode(&mut datagram);
        Self {
            stream_prefix: stream.freeze(),
            datagram_prefix: datagram.freeze(),
            web: true,
        }
    }

    /// What goes on a frame's stream before the frame's own header.
    pub fn stream_prefix(&self) -> &Bytes {
        &self.stream_prefix
    }

    /// The bytes a datagram of this binding adds to the payload.
    pub fn datagram_overhead(&self) -> usize {
        self.datagram_prefix.len()
    }

    /// The QUIC datagram that carries `payload`: the payload itself natively; for browsers,
    /// made once in `framed` and shared by every browser session.
    pub fn datagram(&self, payload: &Bytes, framed: &OnceLock<Bytes>) -> Bytes {
        if !self.web {
            return payload.clone();
        }
        framed
            .get_or_init(|| {
                let mut d = BytesMut::with_capacity(self.datagram_prefix.len() + payload.len());
                d.put_slice(&self.datagram_prefix);
                d.put_slice(payload);
                d.freeze()
            })
            .clone()
    }

    /// The QUIC error code of a stream reset with application code `code`: the code itself
    /// natively; WebTransport's codes live in HTTP/3's reserved error space.
    pub fn reset_code(&self, code: u32) -> quinn::VarInt {
        if self.web {
            quinn::VarInt::from_u64(error_to_http3(code)).expect("HTTP/3 error codes are varints")
        } else {
            quinn::VarInt::from_u32(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_framing_matches_web_transport_quinn() {
        let web = MediaFraming::web();
        // StreamUni::WEBTRANSPORT (0x54, a 2-byte varint) then session ID 0.
        assert_eq!(&web.stream_prefix()[..], &[0x40, 0x54, 0x00]);
        let framed = OnceLock::new();
        let payload = Bytes::from_static(b"opus");
        assert_eq!(&web.datagram(&payload, &framed)[..], b"\x00opus");
        // Made once.
        assert_eq!(
            web.datagram(&payload, &framed).as_ptr(),
            web.datagram(&payload, &framed).as_ptr()
        );
        assert_eq!(web.datagram_overhead(), 1);
        assert_eq!(
            web.reset_code(1).into_inner(),
            web_transport_quinn::proto::error_to_http3(1)
        );
    }

    #[test]
    fn native_framing_adds_nothing() {
        let native = MediaFraming::native();
        assert!(native.stream_prefix().is_empty());
        let payload = Bytes::from_static(b"opus");
        assert_eq!(native.datagram(&payload, &OnceLock::new()), payload);
        assert_eq!(native.reset_code(1).into_inner(), 1);
    }
}
