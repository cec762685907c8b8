//! How StreamSocket's media becomes MoQ groups and frames, as `hang` players expect them:
//! each frame is the `hang` legacy container (the capture time in microseconds as a QUIC
//! varint, then the codec's bytes); a video group starts at a keyframe and holds the frames
//! up to the next one (a player joins or switches at a group's start); an audio group is one
//! Opus packet (a late joiner gets nothing stale, and a lost packet holds back no other).

use bytes::Bytes;
use hang::container::{Frame, Timestamp};
use moq_net::{group, track};

/// Priorities of the tracks (higher first), as `hang` sets them: audio before video, so a
/// congested path loses pictures before sound.
pub const AUDIO_PRIORITY: u8 = hang::catalog::PRIORITY.audio;
pub const VIDEO_PRIORITY: u8 = hang::catalog::PRIORITY.video;

/// Track info for a video or audio track: microsecond timestamps, `hang`'s cache age.
pub fn track_info(priority: u8) -> track::Info {
    hang::container::track_info(priority)
}

fn frame(capture_us: u64, payload: Bytes) -> anyhow::Result<Frame> {
    Ok(Frame {
        timestamp: Timestamp::from_micros(capture_us)?,
        payload,
    })
}

/// Writes one rendition's frames into its track.
pub struct VideoTrackWriter {
    track: track::Producer,
    group: Option<group::Producer>,
    /// Frames dropped while waiting for the first keyframe.
    pub skipped: u64,
}

impl VideoTrackWriter {
    pub fn new(track: track::Producer) -> Self {
        Self {
            track,
            group: None,
            skipped: 0,
        }
    }

    /// Adds a frame: a keyframe ends the group before it and starts the next. Frames before
    /// the first keyframe cannot be decoded by anyone and are skipped (counted).
    pub fn write(&mut self, keyframe: bool, capture_us: u64, payload: Bytes) -> anyhow::Result<()> {
        if keyframe {
            if let Some(g) = self.group.take() {
                g.finish()?;
            }
            self.group = Some(self.track.append_group()?);
        }
        match &mut self.group {
            Some(g) => frame(capture_us, payload)?.write_to(g)?,
            None => self.skipped += 1,
        }
        Ok(())
    }

    /// Ends the group being written (the encoder stopped: the next frame is a keyframe).
    pub fn end_group(&mut self) -> anyhow::Result<()> {
        if let Some(g) = self.group.take() {
            g.finish()?;
        }
        Ok(())
    }

    pub fn track(&self) -> &track::Producer {
        &self.track
    }
}

/// Writes one audio bitrate's packets into its track, a group each.
pub struct AudioTrackWriter {
    track: track::Producer,
}

impl AudioTrackWriter {
    pub fn new(track: track::Producer) -> Self {
        Self { track }
    }

    pub fn write(&mut self, capture_us: u64, opus: Bytes) -> anyhow::Result<()> {
        let mut g = self.track.append_group()?;
        frame(capture_us, opus)?.write_to(&mut g)?;
        g.finish()?;
        Ok(())
    }

    pub fn track(&self) -> &track::Producer {
        &self.track
    }
}

/// Reads a `hang` frame back: capture time (µs) and the codec's bytes.
pub fn decode_frame(payload: Bytes) -> anyhow::Result<(u64, Bytes)> {
    let f = Frame::decode(payload)?;
    Ok((f.timestamp.as_micros() as u64, f.payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn video_groups_start_at_keyframes_and_audio_packets_are_groups() {
        let broadcast = moq_net::broadcast::Producer::new(Default::default());
        let video = broadcast
            .create_track("360p", track_info(VIDEO_PRIORITY))
            .unwrap();
        let audio = broadcast
            .create_track("audio-48k", track_info(AUDIO_PRIORITY))
            .unwrap();
        // Everything kept, from the first group.
        let all = moq_net::track::Subscription::default().with_max_age(Duration::from_secs(60));
        let mut video_in = video.subscribe(all.clone());
        let mut audio_in = audio.subscribe(all);

        let mut writer = VideoTrackWriter::new(video);
        // Before any keyframe: nothing a player could decode.
        writer
            .write(false, 1_000, Bytes::from_static(b"p0"))
            .unwrap();
        for (i, key) in [true, false, false, true, false].into_iter().enumerate() {
            let at = 2_000 + i as u64 * 33_333;
            writer.write(key, at, Bytes::from(format!("f{i}"))).unwrap();
        }
        writer.end_group().unwrap();
        assert_eq!(writer.skipped, 1);

        let mut groups = Vec::new();
        for _ in 0..2 {
            let mut g = video_in.recv_group().await.unwrap().unwrap();
            let mut frames = Vec::new();
            while let Some(f) = g.read_frame().await.unwrap() {
                frames.push(decode_frame(f.payload).unwrap());
            }
            groups.push(frames);
        }
        let names = |g: &Vec<(u64, Bytes)>| g.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>();
        assert_eq!(names(&groups[0]), ["f0", "f1", "f2"]);
        assert_eq!(names(&groups[1]), ["f3", "f4"]);
        assert_eq!(
            groups[0][0].0, 2_000,
            "the capture time travels in the frame"
        );

        let mut writer = AudioTrackWriter::new(audio);
        writer.write(5_000, Bytes::from_static(b"opus1")).unwrap();
        writer.write(25_000, Bytes::from_static(b"opus2")).unwrap();
        for (at, payload) in [(5_000, "opus1"), (25_000, "opus2")] {
            let mut g = audio_in.recv_group().await.unwrap().unwrap();
            let f = g.read_frame().await.unwrap().unwrap();
            assert_eq!(decode_frame(f.payload).unwrap(), (at, Bytes::from(payload)));
            assert!(
                g.read_frame().await.unwrap().is_none(),
                "one packet per group"
            );
        }
    }
}
