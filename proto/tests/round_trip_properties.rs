//! Property tests: every message and header the protocol can carry, generated at random
//! within the protocol's limits, decodes back to itself; a message cut short is incomplete,
//! never wrong; and arbitrary bytes never make a decoder panic. (The fuzz targets in `fuzz/`
//! push the last property much further.)

use proptest::prelude::*;
use streamsocket_proto::control::{
    AudioFormat, ControlMessage, Hello, Ping, Pong, Rendition, VideoFormat, Welcome,
    WishedRendition, AUDIO_CODEC_OPUS, VIDEO_CODEC_AV1,
};
use streamsocket_proto::media::{AudioHeader, FrameHeader, ServerTiming, MAX_FRAME_PAYLOAD};
use streamsocket_proto::{ErrorCode, PROTOCOL_VERSION};

fn error_code() -> impl Strategy<Value = ErrorCode> {
    any::<u16>().prop_map(ErrorCode::from_u16)
}

fn wished() -> impl Strategy<Value = WishedRendition> {
    prop_oneof![
        Just(WishedRendition::Auto),
        (0u8..0xFF).prop_map(WishedRendition::Fixed)
    ]
}

/// Text of at most `chars` characters (up to 4 bytes each), so within a limit of bytes.
fn text(chars: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=chars).prop_map(|c| c.into_iter().collect())
}

fn welcome() -> impl Strategy<Value = Welcome> {
    let rung = (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        text(16),
    );
    (
        (any::<u64>(), any::<u64>()),
        proptest::collection::vec(rung, 1..=16),
        any::<prop::sample::Index>(),
        (any::<u32>(), any::<u8>(), any::<u32>(), any::<u32>()),
        proptest::collection::vec(any::<u32>(), 0..=16),
    )
        .prop_map(
            |((session_id, server_time_us), rungs, first, audio, rates)| {
                let renditions: Vec<Rendition> = rungs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (width, height, fps, bitrate_kbps, name))| Rendition {
                        id: i as u8,
                        name,
                        width,
                        height,
                        fps,
                        bitrate_kbps,
                    })
                    .collect();
                Welcome {
                    version: PROTOCOL_VERSION,
                    session_id,
                    server_time_us,
                    rendition: renditions[first.index(renditions.len())].id,
                    video: VideoFormat {
                        codec: VIDEO_CODEC_AV1,
                        renditions,
                    },
                    audio: AudioFormat {
                        codec: AUDIO_CODEC_OPUS,
                        sample_rate: audio.0,
                        channels: audio.1,
                        frame_duration_us: audio.2,
                        bitrate_bps: audio.3,
                    },
                    audio_bitrates: rates,
                }
            },
        )
}

fn message() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![
        (wished(), any::<u16>(), text(16), "[!-~]{0,256}").prop_map(
            |(rendition, latency_target_ms, client_name, token)| {
                ControlMessage::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    rendition,
                    latency_target_ms,
                    client_name,
                    token: token.into(),
                })
            }
        ),
        welcome().prop_map(ControlMessage::Welcome),
        (error_code(), text(256))
            .prop_map(|(code, message)| ControlMessage::Error { code, message }),
        (any::<u32>(), any::<u64>()).prop_map(|(seq, client_time_us)| {
            ControlMessage::Ping(Ping {
                seq,
                client_time_us,
            })
        }),
        (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(seq, a, b, c)| {
            ControlMessage::Pong(Pong {
                seq,
                client_time_us: a,
                server_receive_us: b,
                server_send_us: c,
            })
        }),
        any::<u8>().prop_map(|rendition| ControlMessage::KeyframeRequest { rendition }),
        (error_code(), text(256))
            .prop_map(|(code, message)| ControlMessage::Goodbye { code, message }),
        wished().prop_map(|rendition| ControlMessage::SelectRendition { rendition }),
        (any::<u8>(), any::<bool>()).prop_map(|(rendition, automatic)| {
            ControlMessage::RenditionChanged {
                rendition,
                automatic,
            }
        }),
        any::<bool>().prop_map(|paused| ControlMessage::SetPaused { paused }),
        any::<u32>().prop_map(|bitrate_bps| ControlMessage::SetAudioBitrate { bitrate_bps }),
        any::<u32>().prop_map(|bitrate_bps| ControlMessage::AudioBitrateChanged { bitrate_bps }),
        any::<bool>().prop_map(|paused| ControlMessage::BroadcastPaused { paused }),
        (0u16..=1000).prop_map(|audio_loss_permille| ControlMessage::ReceiverReport {
            audio_loss_permille
        }),
    ]
}

fn frame_header() -> impl Strategy<Value = FrameHeader> {
    (
        (any::<u8>(), any::<bool>(), any::<u64>(), any::<u64>()),
        0..=MAX_FRAME_PAYLOAD as u32,
        (any::<u32>(), any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |((rendition, keyframe, seq, capture_us), payload_len, timing)| FrameHeader {
                rendition,
                keyframe,
                seq,
                capture_us,
                payload_len,
                timing: ServerTiming {
                    queue_us: timing.0,
                    encoder_wait_us: timing.1,
                    encode_us: timing.2,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_control_message_round_trips(msg in message()) {
        let bytes = msg.to_bytes();
        let (decoded, used) = ControlMessage::decode_framed(&bytes)
            .expect("decodes")
            .expect("complete");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decoded, msg);
    }

    #[test]
    fn a_message_cut_short_is_incomplete_not_wrong(
        msg in message(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = msg.to_bytes();
        let at = cut.index(bytes.len());
        prop_assert_eq!(ControlMessage::decode_framed(&bytes[..at]), Ok(None));
    }

    #[test]
    fn frame_headers_round_trip(header in frame_header()) {
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        prop_assert_eq!(FrameHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn audio_headers_round_trip(
        seq in any::<u32>(),
        capture_us in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 1..1275),
    ) {
        let header = AudioHeader { seq, capture_us };
        let datagram = header.datagram(&payload);
        let (decoded, rest) = AudioHeader::decode(&datagram).expect("decodes");
        prop_assert_eq!(decoded, header);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = ControlMessage::decode_framed(&bytes);
        let _ = ControlMessage::decode_body(&bytes);
        let _ = FrameHeader::decode(&bytes);
        let _ = AudioHeader::decode(&bytes);
    }
}
