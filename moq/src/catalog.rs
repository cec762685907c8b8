//! A StreamSocket broadcast described in the `hang` catalog format, so that unmodified MoQ
//! players find its tracks: one AV1 track per rendition of the ladder, one Opus track per
//! audio bitrate. The catalog is the track `catalog.json` of the broadcast.

use hang::catalog::{AudioCodec, AudioConfig, Catalog, Container, VideoConfig, AV1};
use streamsocket_proto::control::{AudioFormat, Rendition};

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

/// The catalog of a broadcast with these renditions (highest first) and audio bitrates, in
/// the audio format given (its bitrate is replaced by each track's).
pub fn catalog(
    renditions: &[Rendition],
    audio: &AudioFormat,
    audio_bitrates: &[u32],
) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::default();
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
        let c = catalog(&renditions, &audio, &[24_000, 48_000]).unwrap();
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
