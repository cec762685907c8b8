//! A StreamSocket broadcast described in the `hang` catalog format, so that unmodified MoQ
//! players find its tracks: one AV1 track per rendition of the ladder, one Opus track per
//! audio bitrate. The catalog is the track `catalog.json` of the broadcast. Its root `clock`
//! says when, in wall-clock time, the media clock read zero: a viewer behind relays cannot
//! ask the origin for its time, and reads capture times on the wall clock instead.
//!
//! [`listing`] reads a catalog back as a viewer needs it (the ladder, the audio tracks, the
//! clock), from our origin or any other `hang` publisher.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use hang::catalog::{
    AudioCodec, AudioConfig, Catalog, Clock, Container, VideoCodec, VideoConfig, AV1,
    MOQ_EPOCH_UNIX_MILLIS,
};
use streamsocket_proto::control::{AudioFormat, Rendition, AUDIO_CODEC_OPUS};

/// The track that carries a rendition's frames: its name in the ladder ("360p").
pub fn video_track(rendition: &Rendition) -> String {
    rendition.name.clone()
}

/// The track that carries the audio at one bitrate ("audio-48k").
pub fn audio_track(bitrate_bps: u32) -> String {
    format!("audio-{}k", bitrate_bps / 1000)
}

/// The AV1 level for a picture size, as WebCodecs' codec strings name it (the smallest level
/// whose maximum picture size holds it; AV1 spec annex A): the web viewer's rule too.
fn av1_level(width: u16, height: u16) -> u8 {
    let pixels = u32::from(width) * u32::from(height);
    match pixels {
        0..=147_456 => 1,
        147_457..=665_856 => 4,
        665_857..=1_065_024 => 5,
        1_065_025..=2_359_296 => 8,
        _ => 12,
    }
}

/// Now, in microseconds since the MoQ epoch (2020-01-01 UTC), the wall clock `hang`
/// catalogs use.
pub fn wall_now_us() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (since_unix.as_micros() as u64).saturating_sub(MOQ_EPOCH_UNIX_MILLIS * 1000)
}

/// The catalog of a broadcast with these renditions (highest first) and audio bitrates, in
/// the audio format given (its bitrate is replaced by each track's). `clock_zero_wall_us`:
/// the wall-clock time (µs since the MoQ epoch) at which the media clock read zero.
pub fn catalog(
    renditions: &[Rendition],
    audio: &AudioFormat,
    audio_bitrates: &[u32],
    clock_zero_wall_us: Option<u64>,
) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::default();
    if let Some(wall) = clock_zero_wall_us {
        catalog.clock = Some(Clock::new(moq_net::Timestamp::from_micros(wall)?)?);
    }
    for r in renditions {
        let mut config = VideoConfig::new(AV1 {
            profile: 0,
            level: av1_level(r.width, r.height),
            tier: 'M',
            bitdepth: 8,
            ..Default::default()
        });
        config.coded_width = Some(r.width.into());
        config.coded_height = Some(r.height.into());
        config.bitrate = Some(u64::from(r.bitrate_kbps) * 1000);
        config.framerate = Some(r.fps.into());
        config.optimize_for_latency = Some(true);
        config.container = Container::Legacy;
        catalog.video.insert(&video_track(r), config)?;
    }
    for &bitrate in audio_bitrates {
        let mut config = AudioConfig::new(
            AudioCodec::Opus,
            audio.sample_rate,
            u32::from(audio.channels),
        );
        config.bitrate = Some(bitrate.into());
        config.container = Container::Legacy;
        catalog.audio.insert(&audio_track(bitrate), config)?;
    }
    Ok(catalog)
}

/// The most renditions a viewer takes from a catalog (as many as a server's ladder may have);
/// a catalog listing more is read up to this many, the highest first.
pub const MAX_RENDITIONS: usize = 16;
/// The most audio tracks taken, likewise (the protocol's limit on audio bitrates).
pub const MAX_AUDIO_TRACKS: usize = 16;
/// Packet duration assumed for Opus tracks (a `hang` catalog does not say it; our origin and
/// `hang`'s publishers use 20 ms).
const OPUS_PACKET_US: u32 = 20_000;

/// What a viewer needs of a broadcast's catalog: the AV1 renditions it can play, highest
/// first, each with the track carrying it; the Opus tracks, lowest bitrate first; and the
/// broadcast's clock. Renditions get ids in ladder order (0 = the highest).
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub renditions: Vec<Rendition>,
    /// The track of each rendition, in the same order.
    pub video_tracks: Vec<String>,
    /// The audio format (its bitrate: the middle track's, as a server's default); `None`
    /// without an Opus track.
    pub audio: Option<AudioFormat>,
    /// (bitrate in bit/s, track), lowest first.
    pub audio_tracks: Vec<(u32, String)>,
    /// The wall-clock time (µs since the MoQ epoch) at which the media clock read zero.
    pub clock_zero_wall_us: Option<u64>,
    /// Tracks listed that this viewer cannot play, with why (for the log).
    pub ignored: Vec<String>,
}

impl Listing {
    /// The audio track at `bitrate_bps`.
    pub fn audio_track(&self, bitrate_bps: u32) -> Option<&str> {
        self.audio_tracks
            .iter()
            .find(|(b, _)| *b == bitrate_bps)
            .map(|(_, t)| t.as_str())
    }
}

/// Reads a catalog as a viewer needs it. A broadcast with no AV1 video this viewer can play
/// is an error that lists what it has.
pub fn listing(catalog: &Catalog) -> anyhow::Result<Listing> {
    let mut ignored = Vec::new();
    let mut video: Vec<(String, Rendition)> = Vec::new();
    for (track, config) in &catalog.video.renditions {
        if !matches!(config.codec, VideoCodec::AV1(_)) {
            ignored.push(format!("{track}: {} (only AV1 plays here)", config.codec));
            continue;
        }
        if !matches!(config.container, Container::Legacy) {
            ignored.push(format!("{track}: not in hang's legacy container"));
            continue;
        }
        let size = |v: Option<u32>| v.and_then(|v| u16::try_from(v).ok()).unwrap_or(0);
        video.push((
            track.clone(),
            Rendition {
                id: 0,
                name: track.chars().take(32).collect(),
                width: size(config.coded_width),
                height: size(config.coded_height),
                fps: config
                    .framerate
                    .filter(|f| f.is_finite() && *f >= 1.0 && *f <= 240.0)
                    .map_or(30, |f| f.round() as u16),
                bitrate_kbps: config
                    .bitrate
                    .map_or(0, |b| (b / 1000).min(u64::from(u32::MAX)) as u32),
            },
        ));
    }
    if video.is_empty() {
        let listed: Vec<String> = catalog
            .video
            .renditions
            .iter()
            .map(|(t, c)| format!("{t} ({})", c.codec))
            .collect();
        bail!(
            "the broadcast has no AV1 video this viewer can play (video tracks: {})",
            if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            }
        );
    }
    // Highest first: by picture size, then bitrate.
    video.sort_by_key(|(_, r)| {
        std::cmp::Reverse((u32::from(r.width) * u32::from(r.height), r.bitrate_kbps))
    });
    for (track, _) in video.iter().skip(MAX_RENDITIONS) {
        ignored.push(format!("{track}: more than {MAX_RENDITIONS} renditions"));
    }
    video.truncate(MAX_RENDITIONS);
    let (video_tracks, renditions) = video
        .into_iter()
        .enumerate()
        .map(|(i, (track, r))| (track, Rendition { id: i as u8, ..r }))
        .unzip();

    let mut audio: Vec<(u32, String, &AudioConfig)> = Vec::new();
    for (track, config) in &catalog.audio.renditions {
        if config.codec != AudioCodec::Opus || !matches!(config.container, Container::Legacy) {
            ignored.push(format!(
                "{track}: {} (only Opus in hang's legacy container plays here)",
                config.codec
            ));
            continue;
        }
        let bitrate = config
            .bitrate
            .map_or(0, |b| b.min(u64::from(u32::MAX)) as u32);
        audio.push((bitrate, track.clone(), config));
    }
    audio.sort_by_key(|(b, _, _)| *b);
    audio.truncate(MAX_AUDIO_TRACKS);
    let format = match audio.get(audio.len() / 2) {
        Some((bitrate, _, config)) => Some(AudioFormat {
            codec: AUDIO_CODEC_OPUS,
            sample_rate: config.sample_rate,
            channels: u8::try_from(config.channel_count)
                .context("an audio track lists more than 255 channels")?,
            frame_duration_us: OPUS_PACKET_US,
            bitrate_bps: *bitrate,
        }),
        None => None,
    };
    Ok(Listing {
        renditions,
        video_tracks,
        audio: format,
        audio_tracks: audio.into_iter().map(|(b, t, _)| (b, t)).collect(),
        clock_zero_wall_us: catalog
            .clock
            .and_then(|c| u64::try_from(c.wall.as_micros()).ok()),
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendition(id: u8, name: &str, width: u16, height: u16, kbps: u32) -> Rendition {
        Rendition {
            id,
            name: name.into(),
            width,
            height,
            fps: 30,
            bitrate_kbps: kbps,
        }
    }

    #[test]
    fn every_rendition_and_bitrate_is_a_track_in_hang_json() {
        let renditions = [
            rendition(0, "720p", 1280, 720, 2000),
            rendition(1, "360p", 640, 360, 800),
        ];
        let audio = AudioFormat {
            codec: streamsocket_proto::control::AUDIO_CODEC_OPUS,
            sample_rate: 48_000,
            channels: 1,
            frame_duration_us: 20_000,
            bitrate_bps: 48_000,
        };
        let c = catalog(&renditions, &audio, &[24_000, 48_000], Some(123_456_789)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&c.to_json().unwrap()).unwrap();
        let v720 = &json["video"]["renditions"]["720p"];
        assert_eq!(v720["codec"], "av01.0.05M.08");
        assert_eq!(v720["codedWidth"], 1280);
        assert_eq!(v720["codedHeight"], 720);
        assert_eq!(v720["bitrate"], 2_000_000);
        assert_eq!(v720["framerate"], 30.0);
        assert_eq!(
            json["video"]["renditions"]["360p"]["codec"],
            "av01.0.04M.08"
        );
        let a48 = &json["audio"]["renditions"]["audio-48k"];
        assert_eq!(a48["codec"], "opus");
        assert_eq!(a48["sampleRate"], 48_000);
        assert_eq!(a48["numberOfChannels"], 1);
        assert_eq!(a48["bitrate"], 48_000);
        assert!(json["audio"]["renditions"]["audio-24k"].is_object());
        // And hang reads it back as it wrote it.
        let back = hang::catalog::Catalog::from_str(&c.to_json().unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(json["clock"]["wall"], 123_456_789);

        // A viewer reads back the same ladder, ids in ladder order, and the clock.
        let l = listing(&back).unwrap();
        assert_eq!(l.renditions, renditions);
        assert_eq!(l.video_tracks, ["720p", "360p"]);
        assert_eq!(
            l.audio_tracks,
            [
                (24_000, "audio-24k".to_string()),
                (48_000, "audio-48k".into())
            ]
        );
        assert_eq!(l.audio, Some(audio));
        assert_eq!(l.audio_track(24_000), Some("audio-24k"));
        assert_eq!(l.clock_zero_wall_us, Some(123_456_789));
        assert!(l.ignored.is_empty());
    }

    #[test]
    fn a_listing_orders_by_size_and_skips_what_cannot_play() {
        let json = r#"{
            "video": { "renditions": {
                "small": { "codec": "av01.0.01M.08", "codedWidth": 320, "codedHeight": 180 },
                "h264": { "codec": "avc1.64001f", "codedWidth": 1920, "codedHeight": 1080 },
                "big": { "codec": "av01.0.05M.08", "codedWidth": 1280, "codedHeight": 720, "framerate": 60 }
            } },
            "audio": { "renditions": {
                "aac": { "codec": "mp4a.40.2", "sampleRate": 48000, "numberOfChannels": 2 }
            } }
        }"#;
        let l = listing(&Catalog::from_str(json).unwrap()).unwrap();
        assert_eq!(l.video_tracks, ["big", "small"]);
        assert_eq!(l.renditions[0].fps, 60);
        assert_eq!(
            l.renditions[1].fps, 30,
            "an unknown frame rate is taken as 30"
        );
        assert_eq!((l.renditions[1].id, l.renditions[1].width), (1, 320));
        assert_eq!(l.audio, None, "no Opus: no sound");
        assert_eq!(l.clock_zero_wall_us, None);
        assert_eq!(l.ignored.len(), 2, "{:?}", l.ignored);

        let no_av1 = r#"{ "video": { "renditions": {
            "h264": { "codec": "avc1.64001f", "codedWidth": 1920, "codedHeight": 1080 } } } }"#;
        let e = listing(&Catalog::from_str(no_av1).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no AV1 video") && e.contains("h264 (avc1.64001f)"),
            "{e}"
        );
    }

    #[test]
    fn levels_follow_the_picture_size() {
        assert_eq!(av1_level(320, 180), 1);
        assert_eq!(av1_level(640, 360), 4);
        assert_eq!(av1_level(1280, 720), 5);
        assert_eq!(av1_level(1920, 1080), 8);
        assert_eq!(av1_level(3840, 2160), 12);
    }
}
