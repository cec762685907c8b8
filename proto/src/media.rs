//! Headers of media data: video frames (one per unidirectional stream) and audio packets
//! (one per QUIC datagram).

use bytes::BufMut;

use crate::codec::{DecodeError, Reader};
use crate::control::RenditionId;

/// Largest encoded video frame a viewer accepts (a 1080p AV1 keyframe is far below this).
pub const MAX_FRAME_PAYLOAD: usize = 4 * 1024 * 1024;
/// Largest Opus packet (RFC 6716 allows 1275 bytes per frame; a 20 ms packet stays far below).
pub const MAX_AUDIO_PAYLOAD: usize = 1275;

/// How long a frame spent on the server before it was sent, so a viewer can split latency
/// into stages. All in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerTiming {
    /// From capture to the encoder taking the frame.
    pub queue_us: u32,
    /// Inside the encoder before the encode call that produced this frame (lookahead).
    pub encoder_wait_us: u32,
    /// The encode call that produced this frame.
    pub encode_us: u32,
}

/// The header at the start of every video frame stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub rendition: RenditionId,
    pub keyframe: bool,
    /// Per rendition, increasing by one per encoded frame; a gap means a lost frame.
    pub seq: u64,
    /// Capture time on the server clock, microseconds.
    pub capture_us: u64,
    /// Length of the AV1 temporal unit that follows the header.
    pub payload_len: u32,
    pub timing: ServerTiming,
}

impl FrameHeader {
    /// First byte of a video frame stream.
    pub const STREAM_TYPE: u8 = 0x56; // 'V'
    /// Length of the header this version writes. Readers accept longer headers (later
    /// versions may append fields) and skip what they do not know.
    pub const LEN: usize = 36;
    const FLAG_KEYFRAME: u8 = 0x01;

    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(Self::STREAM_TYPE);
        out.put_u8(Self::LEN as u8);
        out.put_u8(self.rendition);
        out.put_u8(if self.keyframe {
            Self::FLAG_KEYFRAME
        } else {
            0
        });
        out.put_u64(self.seq);
        out.put_u64(self.capture_us);
        out.put_u32(self.payload_len);
        out.put_u32(self.timing.queue_us);
        out.put_u32(self.timing.encoder_wait_us);
        out.put_u32(self.timing.encode_us);
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        self.encode(&mut &mut out[..]);
        out
    }

    /// How many bytes a reader needs before it knows the header's full length.
    pub const PREFIX: usize = 2;

    /// Reads the stream type and header length from the first [`Self::PREFIX`] bytes.
    pub fn header_len(prefix: [u8; 2]) -> Result<usize, DecodeError> {
        if prefix[0] != Self::STREAM_TYPE {
            return Err(DecodeError::UnknownTag {
                what: "stream type",
                value: prefix[0],
            });
        }
        let len = prefix[1] as usize;
        if len < Self::LEN {
            return Err(DecodeError::Invalid {
                what: "frame header length",
                reason: "shorter than 36 bytes",
            });
        }
        Ok(len)
    }

    /// Decodes a complete header (as long as [`Self::header_len`] said).
    pub fn decode(buf: &[u8]) -> Result<FrameHeader, DecodeError> {
        if buf.len() < Self::PREFIX {
            return Err(DecodeError::Truncated {
                what: "frame header",
                needed: Self::PREFIX - buf.len(),
            });
        }
        let len = Self::header_len([buf[0], buf[1]])?;
        if buf.len() < len {
            return Err(DecodeError::Truncated {
                what: "frame header",
                needed: len - buf.len(),
            });
        }
        let mut r = Reader::new(&buf[Self::PREFIX..len]);
        let rendition = r.u8("frame rendition")?;
        let flags = r.u8("frame flags")?;
        let header = FrameHeader {
            rendition,
            keyframe: flags & Self::FLAG_KEYFRAME != 0,
            seq: r.u64("frame seq")?,
            capture_us: r.u64("frame capture time")?,
            payload_len: r.u32("frame payload length")?,
            timing: ServerTiming {
                queue_us: r.u32("frame queue time")?,
                encoder_wait_us: r.u32("frame encoder wait")?,
                encode_us: r.u32("frame encode time")?,
            },
        };
        if header.payload_len as usize > MAX_FRAME_PAYLOAD {
            return Err(DecodeError::TooLong {
                what: "frame payload",
                len: header.payload_len as usize,
                max: MAX_FRAME_PAYLOAD,
            });
        }
        if header.payload_len == 0 {
            return Err(DecodeError::Invalid {
                what: "frame payload length",
                reason: "zero",
            });
        }
        Ok(header)
    }
}

/// The header at the start of every audio datagram; the Opus packet follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioHeader {
    /// Increasing by one per packet; a gap means a lost packet.
    pub seq: u32,
    /// Capture time of the packet's first sample on the server clock, microseconds.
    pub capture_us: u64,
}

impl AudioHeader {
    /// First byte of an audio datagram.
    pub const DATAGRAM_TYPE: u8 = 0x41; // 'A'
    pub const LEN: usize = 14;

    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(Self::DATAGRAM_TYPE);
        out.put_u8(0); // flags, none defined yet
        out.put_u32(self.seq);
        out.put_u64(self.capture_us);
    }

    /// A whole datagram: header then payload.
    pub fn datagram(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN + payload.len());
        self.encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    /// Splits a datagram into its header and Opus payload.
    pub fn decode(datagram: &[u8]) -> Result<(AudioHeader, &[u8]), DecodeError> {
        let mut r = Reader::new(datagram);
        let kind = r.u8("datagram type")?;
        if kind != Self::DATAGRAM_TYPE {
            return Err(DecodeError::UnknownTag {
                what: "datagram type",
                value: kind,
            });
        }
        let _flags = r.u8("audio flags")?;
        let header = AudioHeader {
            seq: r.u32("audio seq")?,
            capture_us: r.u64("audio capture time")?,
        };
        let payload_len = r.remaining();
        if payload_len == 0 {
            return Err(DecodeError::Invalid {
                what: "audio payload",
                reason: "empty",
            });
        }
        if payload_len > MAX_AUDIO_PAYLOAD {
            return Err(DecodeError::TooLong {
                what: "audio payload",
                len: payload_len,
                max: MAX_AUDIO_PAYLOAD,
            });
        }
        Ok((header, r.rest()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            rendition: 2,
            keyframe: true,
            seq: 1 << 40,
            capture_us: 987_654_321,
            payload_len: 12_345,
            timing: ServerTiming {
                queue_us: 1,
                encoder_wait_us: 2,
                encode_us: 3,
            },
        }
    }

    #[test]
    fn frame_header_round_trips() {
        for keyframe in [false, true] {
            let h = FrameHeader {
                keyframe,
                ..header()
            };
            let bytes = h.to_bytes();
            assert_eq!(FrameHeader::header_len([bytes[0], bytes[1]]), Ok(36));
            assert_eq!(FrameHeader::decode(&bytes), Ok(h));
        }
    }

    #[test]
    fn longer_frame_header_from_a_later_version_is_accepted() {
        let mut bytes = header().to_bytes().to_vec();
        bytes[1] = 40;
        bytes.extend_from_slice(&[9, 9, 9, 9]);
        assert_eq!(FrameHeader::decode(&bytes), Ok(header()));
    }

    #[test]
    fn bad_frame_headers_are_errors() {
        let good = header().to_bytes();
        for cut in 0..good.len() {
            assert!(FrameHeader::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_type = good;
        wrong_type[0] = b'X';
        assert!(FrameHeader::decode(&wrong_type).is_err());
        let mut short = good;
        short[1] = 10;
        assert!(FrameHeader::decode(&short).is_err());
        let huge = FrameHeader {
            payload_len: (MAX_FRAME_PAYLOAD + 1) as u32,
            ..header()
        };
        assert!(matches!(
            FrameHeader::decode(&huge.to_bytes()),
            Err(DecodeError::TooLong { .. })
        ));
        let empty = FrameHeader {
            payload_len: 0,
            ..header()
        };
        assert!(FrameHeader::decode(&empty.to_bytes()).is_err());
    }

    #[test]
    fn audio_datagram_round_trips() {
        let h = AudioHeader {
            seq: u32::MAX,
            capture_us: 5,
        };
        let dg = h.datagram(&[1, 2, 3]);
        assert_eq!(dg.len(), AudioHeader::LEN + 3);
        assert_eq!(AudioHeader::decode(&dg), Ok((h, &[1u8, 2, 3][..])));
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        // docs/PROTOCOL.md: sent as 0, ignored on receipt (a later version may use them).
        let mut frame = header().to_bytes().to_vec();
        frame[3] = 0xFF;
        assert_eq!(FrameHeader::decode(&frame), Ok(header()), "a keyframe");
        frame[3] = 0xFE;
        let inter = FrameHeader {
            keyframe: false,
            ..header()
        };
        assert_eq!(FrameHeader::decode(&frame), Ok(inter), "not a keyframe");
        let h = AudioHeader {
            seq: 3,
            capture_us: 4,
        };
        let mut dg = h.datagram(&[9]).to_vec();
        dg[1] = 0xFF;
        assert_eq!(AudioHeader::decode(&dg), Ok((h, &[9u8][..])));
    }

    #[test]
    fn bad_audio_datagrams_are_errors() {
        let h = AudioHeader {
            seq: 1,
            capture_us: 2,
        };
        let dg = h.datagram(&[7]);
        for cut in 0..dg.len() {
            assert!(AudioHeader::decode(&dg[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = dg.clone();
        wrong[0] = 0;
        assert!(AudioHeader::decode(&wrong).is_err());
        let big = h.datagram(&vec![0; MAX_AUDIO_PAYLOAD + 1]);
        assert!(matches!(
            AudioHeader::decode(&big),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0x2545_f491_4f6c_dd1du64);
        for len in 0..128usize {
            for _ in 0..64 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| rand::Rng::random::<u8>(&mut rng))
                    .collect();
                let _ = FrameHeader::decode(&buf);
                let _ = AudioHeader::decode(&buf);
            }
        }
    }
}
