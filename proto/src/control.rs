//! Control messages: the viewer's hello, the server's welcome, errors, clock pings and requests.
//!
//! On the wire each message is `u32 length` (big-endian, counting the type byte and the body),
//! `u8 type`, then the body. Decoding enforces [`MAX_CONTROL_MESSAGE`] before reading a body,
//! so a hostile length prefix cannot make a peer allocate.

use bytes::BufMut;

use crate::codec::{put_string, DecodeError, Reader};
use crate::PROTOCOL_VERSION;

/// Largest control message (type byte plus body) a peer accepts.
pub const MAX_CONTROL_MESSAGE: usize = 16 * 1024;
/// Most renditions a welcome may list.
pub const MAX_RENDITIONS: usize = 16;
/// Longest rendition name, in bytes.
pub const MAX_NAME: usize = 64;
/// The longest access token a hello may carry, in bytes.
pub const MAX_TOKEN: usize = 256;
/// Longest human-readable error or goodbye text, in bytes.
pub const MAX_REASON: usize = 1024;

/// Index of a rendition in the server's ladder.
pub type RenditionId = u8;

/// Error codes carried in [`ControlMessage::Error`] and as the QUIC application close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Normal close, nothing went wrong.
    NoError,
    /// The hello's protocol version is not one the server speaks.
    UnsupportedVersion,
    /// A message could not be decoded (bad length, unknown type, truncated, garbage).
    MalformedMessage,
    /// A well-formed message arrived where it makes no sense (e.g. a second hello).
    UnexpectedMessage,
    /// The viewer asked for a rendition that is not on offer.
    UnknownRendition,
    /// The viewer sent requests faster than allowed.
    RateLimited,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The server failed internally; the viewer may retry.
    Internal,
    /// The peer did not say what it had to in time.
    Timeout,
    /// The server admits only viewers with a token, and the hello carried none.
    TokenRequired,
    /// The hello's token is not one the server accepts.
    TokenInvalid,
    /// The server has as many viewers as it admits.
    ServerFull,
    /// The viewer's access (its token or certificate) was withdrawn while it watched.
    AccessRevoked,
    /// A code this implementation does not know; kept so it can be reported.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::NoError => 0,
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::MalformedMessage => 2,
            ErrorCode::UnexpectedMessage => 3,
            ErrorCode::UnknownRendition => 4,
            ErrorCode::RateLimited => 5,
            ErrorCode::ServerShuttingDown => 6,
            ErrorCode::Internal => 7,
            ErrorCode::Timeout => 8,
            ErrorCode::TokenRequired => 9,
            ErrorCode::TokenInvalid => 10,
            ErrorCode::ServerFull => 11,
            ErrorCode::AccessRevoked => 12,
            ErrorCode::Other(v) => v,
        }
    }

    pub fn from_u16(v: u16) -> Self {
        match v {
            0 => ErrorCode::NoError,
            1 => ErrorCode::UnsupportedVersion,
            2 => ErrorCode::MalformedMessage,
            3 => ErrorCode::UnexpectedMessage,
            4 => ErrorCode::UnknownRendition,
            5 => ErrorCode::RateLimited,
            6 => ErrorCode::ServerShuttingDown,
            7 => ErrorCode::Internal,
            8 => ErrorCode::Timeout,
            9 => ErrorCode::TokenRequired,
            10 => ErrorCode::TokenInvalid,
            11 => ErrorCode::ServerFull,
            12 => ErrorCode::AccessRevoked,
            v => ErrorCode::Other(v),
        }
    }

    /// A short phrase for logs and user-facing messages.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::NoError => "closed normally",
            ErrorCode::UnsupportedVersion => "unsupported protocol version",
            ErrorCode::MalformedMessage => "malformed message",
            ErrorCode::UnexpectedMessage => "unexpected message",
            ErrorCode::UnknownRendition => "unknown rendition",
            ErrorCode::RateLimited => "too many requests",
            ErrorCode::ServerShuttingDown => "server shutting down",
            ErrorCode::Internal => "internal server error",
            ErrorCode::Timeout => "timed out",
            ErrorCode::TokenRequired => {
                "this server needs a token: pass --token (or set STREAMSOCKET_TOKEN)"
            }
            ErrorCode::TokenInvalid => "the server did not accept the token",
            ErrorCode::ServerFull => "the server is full",
            ErrorCode::AccessRevoked => {
                "your access was revoked (token withdrawn or certificate revoked): ask the server's operator"
            }
            ErrorCode::Other(_) => "unknown error code",
        }
    }
}

/// Which rendition a viewer wants: a fixed one, or automatic choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WishedRendition {
    Auto,
    Fixed(RenditionId),
}

impl WishedRendition {
    const AUTO: u8 = 0xFF;

    fn to_u8(self) -> u8 {
        match self {
            WishedRendition::Auto => Self::AUTO,
            WishedRendition::Fixed(id) => id,
        }
    }

    fn from_u8(v: u8) -> Self {
        if v == Self::AUTO {
            WishedRendition::Auto
        } else {
            WishedRendition::Fixed(v)
        }
    }
}

/// The first message on the control stream, from the viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub rendition: WishedRendition,
    /// The end-to-end latency the viewer aims for; the server derives frame deadlines from it.
    pub latency_target_ms: u16,
    /// Free text naming the viewer, for the server's logs.
    pub client_name: String,
    /// The access token, empty for none (a server may require one).
    pub token: AccessToken,
}

/// An access token. Its debug output says whether there is one, never the token (debug
/// output ends up in logs), so anything holding one can derive `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the wire and for checking it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for AccessToken {
    fn from(token: String) -> Self {
        Self(token)
    }
}

impl From<&str> for AccessToken {
    fn from(token: &str) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "none"
        } else {
            "(hidden)"
        })
    }
}

/// Video codec identifiers.
pub const VIDEO_CODEC_AV1: u8 = 1;
/// Audio codec identifiers.
pub const AUDIO_CODEC_OPUS: u8 = 1;

/// One rung of the server's quality ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub id: RenditionId,
    pub name: String,
    pub width: u16,
    pub height: u16,
    pub fps: u16,
    pub bitrate_kbps: u32,
}

/// The video format of a session: codec and the renditions on offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFormat {
    pub codec: u8,
    pub renditions: Vec<Rendition>,
}

/// The audio format of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub codec: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// Duration of one packet, in microseconds (20 000 for 20 ms).
    pub frame_duration_us: u32,
    pub bitrate_bps: u32,
}

/// The server's answer to a hello: what this session will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub session_id: u64,
    /// The server clock (µs) when the welcome was written; a first, coarse clock sample.
    pub server_time_us: u64,
    pub video: VideoFormat,
    /// The rendition this viewer will receive first.
    pub rendition: RenditionId,
    /// The audio format; `bitrate_bps` is this viewer's audio bitrate.
    pub audio: AudioFormat,
    /// The audio bitrates on offer, lowest first (at most 16).
    pub audio_bitrates: Vec<u32>,
}

/// A clock probe from the viewer. The server answers with a [`Pong`] at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub seq: u32,
    /// The viewer's clock when it sent the ping (µs, viewer's own epoch).
    pub client_time_us: u64,
}

/// The server's answer to a [`Ping`], NTP style: with the four instants the viewer can
/// estimate the offset between the two clocks and the round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    pub seq: u32,
    pub client_time_us: u64,
    pub server_receive_us: u64,
    pub server_send_us: u64,
}

/// Every control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    Hello(Hello),
    Welcome(Welcome),
    Error {
        code: ErrorCode,
        message: String,
    },
    Ping(Ping),
    Pong(Pong),
    /// The viewer lost a frame and waits for a keyframe of this rendition.
    KeyframeRequest {
        rendition: RenditionId,
    },
    /// Either side is closing the session on purpose.
    Goodbye {
        code: ErrorCode,
        message: String,
    },
    /// The viewer asks for another rendition (or automatic choice).
    SelectRendition {
        rendition: WishedRendition,
    },
    /// The server confirms which rendition the viewer gets from now on; its frames follow,
    /// starting with a keyframe. `automatic` echoes whether the viewer asked for automatic.
    RenditionChanged {
        rendition: RenditionId,
        automatic: bool,
    },
    /// The viewer pauses (true) or resumes (false) the stream; the server stops sending media
    /// to it while paused and resumes on a keyframe.
    SetPaused {
        paused: bool,
    },
    /// The viewer asks for one of the audio bitrates the welcome offers.
    SetAudioBitrate {
        bitrate_bps: u32,
    },
    /// The server confirms the viewer's audio bitrate.
    AudioBitrateChanged {
        bitrate_bps: u32,
    },
    /// The broadcaster paused (true) or resumed (false) the whole stream: no media flows to
    /// anyone while paused, and it resumes on a keyframe.
    BroadcastPaused {
        paused: bool,
    },
    /// The viewer's reception report, sent every few seconds: the share of audio packets it
    /// had to conceal, so that the server sizes Opus in-band FEC for the loss viewers see.
    ReceiverReport {
        /// Audio packets lost (concealed or late) per thousand, over the last report period.
        audio_loss_permille: u16,
    },
}

mod tag {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const ERROR: u8 = 0x03;
    pub const PING: u8 = 0x04;
    pub const PONG: u8 = 0x05;
    pub const KEYFRAME_REQUEST: u8 = 0x06;
    pub const GOODBYE: u8 = 0x07;
    pub const SELECT_RENDITION: u8 = 0x08;
    pub const RENDITION_CHANGED: u8 = 0x09;
    pub const SET_PAUSED: u8 = 0x0A;
    pub const SET_AUDIO_BITRATE: u8 = 0x0B;
    pub const AUDIO_BITRATE_CHANGED: u8 = 0x0C;
    pub const BROADCAST_PAUSED: u8 = 0x0D;
    pub const RECEIVER_REPORT: u8 = 0x0E;
}

impl ControlMessage {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ControlMessage::Hello(_) => "hello",
            ControlMessage::Welcome(_) => "welcome",
            ControlMessage::Error { .. } => "error",
            ControlMessage::Ping(_) => "ping",
            ControlMessage::Pong(_) => "pong",
            ControlMessage::KeyframeRequest { .. } => "keyframe-request",
            ControlMessage::Goodbye { .. } => "goodbye",
            ControlMessage::SelectRendition { .. } => "select-rendition",
            ControlMessage::RenditionChanged { .. } => "rendition-changed",
            ControlMessage::SetPaused { .. } => "set-paused",
            ControlMessage::SetAudioBitrate { .. } => "set-audio-bitrate",
            ControlMessage::AudioBitrateChanged { .. } => "audio-bitrate-changed",
            ControlMessage::BroadcastPaused { .. } => "broadcast-paused",
            ControlMessage::ReceiverReport { .. } => "receiver-report",
        }
    }

    /// Appends the framed message (length prefix, type, body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u32(0); // patched below
        match self {
            ControlMessage::Hello(h) => {
                out.put_u8(tag::HELLO);
                out.put_u16(h.version);
                out.put_u8(h.rendition.to_u8());
                out.put_u16(h.latency_target_ms);
                put_string(out, &h.client_name, MAX_NAME);
                put_string(out, h.token.expose(), MAX_TOKEN);
            }
            ControlMessage::Welcome(w) => {
                out.put_u8(tag::WELCOME);
                out.put_u16(w.version);
                out.put_u64(w.session_id);
                out.put_u64(w.server_time_us);
                out.put_u8(w.video.codec);
                let renditions =
                    &w.video.renditions[..w.video.renditions.len().min(MAX_RENDITIONS)];
                out.put_u8(renditions.len() as u8);
                for r in renditions {
                    out.put_u8(r.id);
                    put_string(out, &r.name, MAX_NAME);
                    out.put_u16(r.width);
                    out.put_u16(r.height);
                    out.put_u16(r.fps);
                    out.put_u32(r.bitrate_kbps);
                }
                out.put_u8(w.rendition);
                out.put_u8(w.audio.codec);
                out.put_u32(w.audio.sample_rate);
                out.put_u8(w.audio.channels);
                out.put_u32(w.audio.frame_duration_us);
                out.put_u32(w.audio.bitrate_bps);
                let rates = &w.audio_bitrates[..w.audio_bitrates.len().min(MAX_RENDITIONS)];
                out.put_u8(rates.len() as u8);
                for b in rates {
                    out.put_u32(*b);
                }
            }
            ControlMessage::Error { code, message } => {
                out.put_u8(tag::ERROR);
                out.put_u16(code.to_u16());
                put_string(out, message, MAX_REASON);
            }
            ControlMessage::Ping(p) => {
                out.put_u8(tag::PING);
                out.put_u32(p.seq);
                out.put_u64(p.client_time_us);
            }
            ControlMessage::Pong(p) => {
                out.put_u8(tag::PONG);
                out.put_u32(p.seq);
                out.put_u64(p.client_time_us);
                out.put_u64(p.server_receive_us);
                out.put_u64(p.server_send_us);
            }
            ControlMessage::KeyframeRequest { rendition } => {
                out.put_u8(tag::KEYFRAME_REQUEST);
                out.put_u8(*rendition);
            }
            ControlMessage::Goodbye { code, message } => {
                out.put_u8(tag::GOODBYE);
                out.put_u16(code.to_u16());
                put_string(out, message, MAX_REASON);
            }
            ControlMessage::SelectRendition { rendition } => {
                out.put_u8(tag::SELECT_RENDITION);
                out.put_u8(rendition.to_u8());
            }
            ControlMessage::RenditionChanged {
                rendition,
                automatic,
            } => {
                out.put_u8(tag::RENDITION_CHANGED);
                out.put_u8(*rendition);
                out.put_u8(*automatic as u8);
            }
            ControlMessage::SetPaused { paused } => {
                out.put_u8(tag::SET_PAUSED);
                out.put_u8(*paused as u8);
            }
            ControlMessage::SetAudioBitrate { bitrate_bps } => {
                out.put_u8(tag::SET_AUDIO_BITRATE);
                out.put_u32(*bitrate_bps);
            }
            ControlMessage::AudioBitrateChanged { bitrate_bps } => {
                out.put_u8(tag::AUDIO_BITRATE_CHANGED);
                out.put_u32(*bitrate_bps);
            }
            ControlMessage::BroadcastPaused { paused } => {
                out.put_u8(tag::BROADCAST_PAUSED);
                out.put_u8(*paused as u8);
            }
            ControlMessage::ReceiverReport {
                audio_loss_permille,
            } => {
                out.put_u8(tag::RECEIVER_REPORT);
                out.put_u16(*audio_loss_permille);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The framed message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }

    /// Checks a length prefix before the body is read, so a reader can refuse an oversized
    /// message without buffering it. Returns the body length (type byte included).
    pub fn check_length(prefix: [u8; 4]) -> Result<usize, DecodeError> {
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Err(DecodeError::Invalid {
                what: "control message length",
                reason: "zero",
            });
        }
        if len > MAX_CONTROL_MESSAGE {
            return Err(DecodeError::TooLong {
                what: "control message",
                len,
                max: MAX_CONTROL_MESSAGE,
            });
        }
        Ok(len)
    }

    /// Decodes one framed message from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a message (read more and call again),
    /// or the message and the number of bytes it used.
    pub fn decode_framed(buf: &[u8]) -> Result<Option<(ControlMessage, usize)>, DecodeError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = Self::check_length([buf[0], buf[1], buf[2], buf[3]])?;
        if buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = Self::decode_body(&buf[4..4 + len])?;
        Ok(Some((msg, 4 + len)))
    }

    /// Decodes a message body: the type byte and what follows it, without the length prefix.
    pub fn decode_body(body: &[u8]) -> Result<ControlMessage, DecodeError> {
        if body.len() > MAX_CONTROL_MESSAGE {
            return Err(DecodeError::TooLong {
                what: "control message",
                len: body.len(),
                max: MAX_CONTROL_MESSAGE,
            });
        }
        let mut r = Reader::new(body);
        let msg = match r.u8("message type")? {
            tag::HELLO => {
                let version = r.u16("hello version")?;
                if version != PROTOCOL_VERSION {
                    // Later versions may lay the rest out differently: stop here.
                    return Err(DecodeError::UnsupportedVersion { got: version });
                }
                ControlMessage::Hello(Hello {
                    version,
                    rendition: WishedRendition::from_u8(r.u8("hello rendition")?),
                    latency_target_ms: r.u16("hello latency target")?,
                    client_name: r.string(MAX_NAME, "hello client name")?,
                    token: r.string(MAX_TOKEN, "hello token")?.into(),
                })
            }
            tag::WELCOME => {
                let version = r.u16("welcome version")?;
                let session_id = r.u64("welcome session id")?;
                let server_time_us = r.u64("welcome server time")?;
                let codec = r.u8("video codec")?;
                let count = r.u8("rendition count")? as usize;
                if count == 0 || count > MAX_RENDITIONS {
                    return Err(DecodeError::Invalid {
                        what: "rendition count",
                        reason: "must be 1 to 16",
                    });
                }
                let mut renditions = Vec::with_capacity(count);
                for _ in 0..count {
                    renditions.push(Rendition {
                        id: r.u8("rendition id")?,
                        name: r.string(MAX_NAME, "rendition name")?,
                        width: r.u16("rendition width")?,
                        height: r.u16("rendition height")?,
                        fps: r.u16("rendition fps")?,
                        bitrate_kbps: r.u32("rendition bitrate")?,
                    });
                }
                let rendition = r.u8("welcome rendition")?;
                if !renditions.iter().any(|x| x.id == rendition) {
                    return Err(DecodeError::Invalid {
                        what: "welcome rendition",
                        reason: "not among the renditions listed",
                    });
                }
                let audio = AudioFormat {
                    codec: r.u8("audio codec")?,
                    sample_rate: r.u32("audio sample rate")?,
                    channels: r.u8("audio channels")?,
                    frame_duration_us: r.u32("audio frame duration")?,
                    bitrate_bps: r.u32("audio bitrate")?,
                };
                let rate_count = r.u8("audio bitrate count")? as usize;
                if rate_count > MAX_RENDITIONS {
                    return Err(DecodeError::Invalid {
                        what: "audio bitrate count",
                        reason: "at most 16",
                    });
                }
                let mut audio_bitrates = Vec::with_capacity(rate_count);
                for _ in 0..rate_count {
                    audio_bitrates.push(r.u32("audio bitrate on offer")?);
                }
                ControlMessage::Welcome(Welcome {
                    version,
                    session_id,
                    server_time_us,
                    video: VideoFormat { codec, renditions },
                    rendition,
                    audio,
                    audio_bitrates,
                })
            }
            tag::ERROR => ControlMessage::Error {
                code: ErrorCode::from_u16(r.u16("error code")?),
                message: r.string(MAX_REASON, "error message")?,
            },
            tag::PING => ControlMessage::Ping(Ping {
                seq: r.u32("ping seq")?,
                client_time_us: r.u64("ping client time")?,
            }),
            tag::PONG => ControlMessage::Pong(Pong {
                seq: r.u32("pong seq")?,
                client_time_us: r.u64("pong client time")?,
                server_receive_us: r.u64("pong server receive time")?,
                server_send_us: r.u64("pong server send time")?,
            }),
            tag::KEYFRAME_REQUEST => ControlMessage::KeyframeRequest {
                rendition: r.u8("keyframe request rendition")?,
            },
            tag::GOODBYE => ControlMessage::Goodbye {
                code: ErrorCode::from_u16(r.u16("goodbye code")?),
                message: r.string(MAX_REASON, "goodbye message")?,
            },
            tag::SELECT_RENDITION => ControlMessage::SelectRendition {
                rendition: WishedRendition::from_u8(r.u8("selected rendition")?),
            },
            tag::RENDITION_CHANGED => ControlMessage::RenditionChanged {
                rendition: r.u8("changed rendition")?,
                automatic: bool_field(r.u8("automatic flag")?, "automatic flag")?,
            },
            tag::SET_PAUSED => ControlMessage::SetPaused {
                paused: bool_field(r.u8("paused flag")?, "paused flag")?,
            },
            tag::SET_AUDIO_BITRATE => ControlMessage::SetAudioBitrate {
                bitrate_bps: r.u32("audio bitrate")?,
            },
            tag::AUDIO_BITRATE_CHANGED => ControlMessage::AudioBitrateChanged {
                bitrate_bps: r.u32("audio bitrate")?,
            },
            tag::BROADCAST_PAUSED => ControlMessage::BroadcastPaused {
                paused: bool_field(r.u8("broadcast paused flag")?, "broadcast paused flag")?,
            },
            tag::RECEIVER_REPORT => {
                let audio_loss_permille = r.u16("audio loss")?;
                if audio_loss_permille > 1000 {
                    return Err(DecodeError::Invalid {
                        what: "audio loss",
                        reason: "more than 1000 per thousand",
                    });
                }
                ControlMessage::ReceiverReport {
                    audio_loss_permille,
                }
            }
            other => {
                return Err(DecodeError::UnknownTag {
                    what: "message type",
                    value: other,
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

fn bool_field(v: u8, what: &'static str) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid {
            what,
            reason: "must be 0 or 1",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_messages() -> Vec<ControlMessage> {
        vec![
            ControlMessage::Hello(Hello {
                version: PROTOCOL_VERSION,
                rendition: WishedRendition::Auto,
                latency_target_ms: 150,
                client_name: "viewer on héllo".into(),
                token: "s3cr3t".into(),
            }),
            ControlMessage::Hello(Hello {
                version: PROTOCOL_VERSION,
                rendition: WishedRendition::Fixed(2),
                latency_target_ms: 0,
                client_name: String::new(),
                token: AccessToken::default(),
            }),
            ControlMessage::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                session_id: u64::MAX - 3,
                server_time_us: 123_456_789,
                video: VideoFormat {
                    codec: VIDEO_CODEC_AV1,
                    renditions: vec![
                        Rendition {
                            id: 0,
                            name: "360p".into(),
                            width: 640,
                            height: 360,
                            fps: 30,
                            bitrate_kbps: 800,
                        },
                        Rendition {
                            id: 1,
                            name: "180p".into(),
                            width: 320,
                            height: 180,
                            fps: 30,
                            bitrate_kbps: 250,
                        },
                    ],
                },
                rendition: 1,
                audio: AudioFormat {
                    codec: AUDIO_CODEC_OPUS,
                    sample_rate: 48_000,
                    channels: 1,
                    frame_duration_us: 20_000,
                    bitrate_bps: 64_000,
                },
                audio_bitrates: vec![24_000, 64_000],
            }),
            ControlMessage::Error {
                code: ErrorCode::UnknownRendition,
                message: "no rendition 9".into(),
            },
            ControlMessage::Error {
                code: ErrorCode::Other(999),
                message: String::new(),
            },
            ControlMessage::Ping(Ping {
                seq: 7,
                client_time_us: 42,
            }),
            ControlMessage::Pong(Pong {
                seq: 7,
                client_time_us: 42,
                server_receive_us: 1_000,
                server_send_us: 1_001,
            }),
            ControlMessage::KeyframeRequest { rendition: 3 },
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Fixed(1),
            },
            ControlMessage::SelectRendition {
                rendition: WishedRendition::Auto,
            },
            ControlMessage::RenditionChanged {
                rendition: 2,
                automatic: true,
            },
            ControlMessage::SetPaused { paused: true },
            ControlMessage::SetPaused { paused: false },
            ControlMessage::BroadcastPaused { paused: true },
            ControlMessage::BroadcastPaused { paused: false },
            ControlMessage::ReceiverReport {
                audio_loss_permille: 0,
            },
            ControlMessage::ReceiverReport {
                audio_loss_permille: 1000,
            },
            ControlMessage::SetAudioBitrate {
                bitrate_bps: 96_000,
            },
            ControlMessage::AudioBitrateChanged {
                bitrate_bps: 24_000,
            },
            ControlMessage::Goodbye {
                code: ErrorCode::ServerShuttingDown,
                message: "bye".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in sample_messages() {
            let bytes = msg.to_bytes();
            let (decoded, used) = ControlMessage::decode_framed(&bytes)
                .unwrap_or_else(|e| panic!("{} failed: {e}", msg.name()))
                .expect("complete");
            assert_eq!(decoded, msg);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn back_to_back_messages_decode_in_order() {
        let msgs = sample_messages();
        let mut buf = Vec::new();
        for m in &msgs {
            m.encode(&mut buf);
        }
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((m, used)) = ControlMessage::decode_framed(&buf[at..]).unwrap() {
            out.push(m);
            at += used;
        }
        assert_eq!(out, msgs);
        assert_eq!(at, buf.len());
    }

    #[test]
    fn every_truncation_is_incomplete_or_an_error() {
        for msg in sample_messages() {
            let bytes = msg.to_bytes();
            for cut in 0..bytes.len() {
                // A cut framed message is incomplete, never a wrong message.
                assert_eq!(ControlMessage::decode_framed(&bytes[..cut]), Ok(None));
                // A body cut short with a length that claims it complete is an error.
                if cut > 4 {
                    assert!(ControlMessage::decode_body(&bytes[4..cut]).is_err());
                }
            }
        }
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading() {
        let mut buf = ((MAX_CONTROL_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        buf.push(tag::PING);
        assert!(matches!(
            ControlMessage::decode_framed(&buf),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(ControlMessage::check_length(u32::MAX.to_be_bytes()).is_err());
        assert!(ControlMessage::check_length([0; 4]).is_err());
    }

    #[test]
    fn unknown_type_and_trailing_bytes_are_errors() {
        assert_eq!(
            ControlMessage::decode_body(&[0x7f, 1, 2]),
            Err(DecodeError::UnknownTag {
                what: "message type",
                value: 0x7f
            })
        );
        let mut body = ControlMessage::KeyframeRequest { rendition: 1 }.to_bytes()[4..].to_vec();
        body.push(0);
        assert_eq!(
            ControlMessage::decode_body(&body),
            Err(DecodeError::Trailing(1))
        );
    }

    #[test]
    fn other_hello_version_is_reported_as_such() {
        let body = [tag::HELLO, 0x00, 0x09, 0xde, 0xad];
        assert_eq!(
            ControlMessage::decode_body(&body),
            Err(DecodeError::UnsupportedVersion { got: 9 })
        );
    }

    #[test]
    fn invalid_utf8_and_bad_welcome_are_errors() {
        let mut body = vec![tag::ERROR, 0, 2, 0, 2, 0xff, 0xfe];
        assert!(matches!(
            ControlMessage::decode_body(&body),
            Err(DecodeError::Invalid { .. })
        ));
        body = vec![tag::WELCOME, 0, 1];
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&[VIDEO_CODEC_AV1, 0]); // zero renditions
        assert!(matches!(
            ControlMessage::decode_body(&body),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random walk over short inputs: decoding may fail, never panic.
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0x9e37_79b9_7f4a_7c15u64);
        for len in 0..256usize {
            for _ in 0..64 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| rand::Rng::random::<u8>(&mut rng))
                    .collect();
                let _ = ControlMessage::decode_framed(&buf);
                let _ = ControlMessage::decode_body(&buf);
            }
        }
    }

    #[test]
    fn long_strings_are_cut_to_the_limit_on_a_char_boundary() {
        let msg = ControlMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            rendition: WishedRendition::Auto,
            latency_target_ms: 1,
            client_name: "é".repeat(100),
            token: AccessToken::default(),
        });
        let (decoded, _) = ControlMessage::decode_framed(&msg.to_bytes())
            .unwrap()
            .unwrap();
        let ControlMessage::Hello(h) = decoded else {
            panic!("not a hello")
        };
        assert_eq!(h.client_name, "é".repeat(MAX_NAME / 2));
    }

    #[test]
    fn flags_other_than_0_or_1_are_errors() {
        assert!(ControlMessage::decode_body(&[tag::SET_PAUSED, 2]).is_err());
        assert!(ControlMessage::decode_body(&[tag::BROADCAST_PAUSED, 7]).is_err());
        assert!(ControlMessage::decode_body(&[tag::RENDITION_CHANGED, 0, 7]).is_err());
    }

    #[test]
    fn a_loss_above_one_thousand_per_thousand_is_an_error() {
        let body = [tag::RECEIVER_REPORT, 0x03, 0xE9]; // 1001
        assert_eq!(
            ControlMessage::decode_body(&body),
            Err(DecodeError::Invalid {
                what: "audio loss",
                reason: "more than 1000 per thousand"
            })
        );
        assert!(ControlMessage::decode_body(&[tag::RECEIVER_REPORT, 0x03]).is_err());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            rendition: WishedRendition::Auto,
            latency_target_ms: 300,
            client_name: "v".into(),
            token: "sup3r-s3cret".into(),
        };
        let shown = format!("{:?}", ControlMessage::Hello(hello));
        assert!(
            !shown.contains("sup3r") && shown.contains("hidden"),
            "{shown}"
        );
    }

    #[test]
    fn error_codes_round_trip() {
        for v in 0..20u16 {
            assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
        }
    }
}
