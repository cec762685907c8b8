//! docs/PROTOCOL.md against the code: the version, every control message's type byte and
//! name, every close code, and the stream limit the reference viewer grants. Another viewer
//! is written from that document; where the two differ, one of them is wrong.

use streamsocket_proto::control::*;
use streamsocket_proto::PROTOCOL_VERSION;

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md")
}

/// The rows of the first table after `heading`: each row's cells, trimmed.
fn table_after(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no {heading:?}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The variant's name, as the document's message table writes it. Exhaustive: a new message
/// does not compile until it is named here, and then fails until the document has it.
fn variant_name(m: &ControlMessage) -> &'static str {
    match m {
        ControlMessage::Hello(_) => "Hello",
        ControlMessage::Welcome(_) => "Welcome",
        ControlMessage::Error { .. } => "Error",
        ControlMessage::Ping(_) => "Ping",
        ControlMessage::Pong(_) => "Pong",
        ControlMessage::KeyframeRequest { .. } => "KeyframeRequest",
        ControlMessage::Goodbye { .. } => "Goodbye",
        ControlMessage::SelectRendition { .. } => "SelectRendition",
        ControlMessage::RenditionChanged { .. } => "RenditionChanged",
        ControlMessage::SetPaused { .. } => "SetPaused",
        ControlMessage::SetAudioBitrate { .. } => "SetAudioBitrate",
        ControlMessage::AudioBitrateChanged { .. } => "AudioBitrateChanged",
        ControlMessage::BroadcastPaused { .. } => "BroadcastPaused",
        ControlMessage::ReceiverReport { .. } => "ReceiverReport",
    }
}

/// One message of every kind.
fn every_message() -> Vec<ControlMessage> {
    vec![
        ControlMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            rendition: WishedRendition::Auto,
            latency_target_ms: 0,
            client_name: String::new(),
            token: Default::default(),
        }),
        ControlMessage::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session_id: 1,
            server_time_us: 2,
            video: VideoFormat {
                codec: VIDEO_CODEC_AV1,
                renditions: vec![Rendition {
                    id: 0,
                    name: "720p".into(),
                    width: 1280,
                    height: 720,
                    fps: 30,
                    bitrate_kbps: 2000,
                }],
            },
            rendition: 0,
            audio: AudioFormat {
                codec: AUDIO_CODEC_OPUS,
                sample_rate: 48_000,
                channels: 1,
                frame_duration_us: 20_000,
                bitrate_bps: 48_000,
            },
            audio_bitrates: vec![48_000],
        }),
        ControlMessage::Error {
            code: ErrorCode::UnknownRendition,
            message: String::new(),
        },
        ControlMessage::Ping(Ping {
            seq: 0,
            client_time_us: 0,
        }),
        ControlMessage::Pong(Pong {
            seq: 0,
            client_time_us: 0,
            server_receive_us: 0,
            server_send_us: 0,
        }),
        ControlMessage::KeyframeRequest { rendition: 0 },
        ControlMessage::Goodbye {
            code: ErrorCode::NoError,
            message: String::new(),
        },
        ControlMessage::SelectRendition {
            rendition: WishedRendition::Fixed(0),
        },
        ControlMessage::RenditionChanged {
            rendition: 0,
            automatic: false,
        },
        ControlMessage::SetPaused { paused: true },
        ControlMessage::SetAudioBitrate {
            bitrate_bps: 48_000,
        },
        ControlMessage::AudioBitrateChanged {
            bitrate_bps: 48_000,
        },
        ControlMessage::BroadcastPaused { paused: true },
        ControlMessage::ReceiverReport {
            audio_loss_permille: 0,
        },
    ]
}

#[test]
fn the_document_speaks_the_codes_version() {
    let doc = protocol_md();
    let title = doc.lines().next().unwrap_or_default();
    assert_eq!(
        title,
        format!("# StreamSocket protocol, version {PROTOCOL_VERSION}"),
        "PROTOCOL.md's title"
    );
    assert!(
        doc.contains(&format!("`version: u16` (= {PROTOCOL_VERSION})")),
        "the Hello row names version {PROTOCOL_VERSION}"
    );
    assert!(
        doc.contains(&format!("- **{PROTOCOL_VERSION}** (")),
        "the version history has version {PROTOCOL_VERSION}"
    );
}

#[test]
fn every_control_message_is_in_the_document_with_its_type_byte() {
    let doc = protocol_md();
    let rows = table_after(&doc, "### Messages");
    let messages = every_message();
    assert_eq!(
        rows.len(),
        messages.len(),
        "PROTOCOL.md lists {} messages, the code has {}",
        rows.len(),
        messages.len()
    );
    for m in &messages {
        // Framing: length (u32), then the type byte.
        let type_byte = m.to_bytes()[4];
        let name = variant_name(m);
        let row = rows
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("PROTOCOL.md's message table has no {name}"));
        assert_eq!(
            row[0],
            format!("0x{type_byte:02X}"),
            "{name}'s type byte in PROTOCOL.md"
        );
    }
}

#[test]
fn every_close_code_is_in_the_document_with_its_number() {
    let doc = protocol_md();
    let rows = table_after(&doc, "### Close codes");
    let mut known = 0;
    for code in 0..=u16::MAX {
        let c = ErrorCode::from_u16(code);
        if matches!(c, ErrorCode::Other(_)) {
            continue;
        }
        known += 1;
        let name = format!("{c:?}");
        let row = rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(&code.to_string()))
            .unwrap_or_else(|| panic!("PROTOCOL.md has no close code {code} ({name})"));
        assert_eq!(row[1], name, "close code {code}'s name in PROTOCOL.md");
    }
    assert_eq!(
        rows.len(),
        known,
        "PROTOCOL.md lists {} close codes, the code knows {known}",
        rows.len()
    );
}

#[test]
fn the_stream_limit_the_document_states_is_the_viewers() {
    let doc = protocol_md();
    let limit = streamsocket_transport::settings::MAX_FRAME_STREAMS;
    assert!(
        doc.contains(&format!("(the reference viewer allows {limit})")),
        "PROTOCOL.md states the reference viewer's stream limit, {limit}"
    );
}
