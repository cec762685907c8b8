//! The embedded test source as inputs: the pattern and the tone of [`crate::capture::test_source`],
//! paced by the media clock.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{
    AudioInput, ChunkPacer, NextFrame, Pacer, PictureFormat, SourceStats, VideoInput, Wanted,
};
use crate::capture::clock::MediaClock;
use crate::capture::frame::RawFrame;
use crate::capture::test_source::{is_flash_frame, AudioTone, VideoPattern};
use crate::encode::audio::SAMPLE_RATE;

/// The moving test pattern at a fixed size and frame rate.
pub struct TestPattern {
    pattern: VideoPattern,
    width: usize,
    height: usize,
    fps: u32,
    pacer: Option<Pacer>,
}

impl TestPattern {
    pub fn new(width: usize, height: usize, fps: u32) -> Self {
        Self {
            pattern: VideoPattern::new(width, height),
            width,
            height,
            fps,
            pacer: None,
        }
    }
}

impl VideoInput for TestPattern {
    fn describe(&self) -> String {
        format!(
            "test pattern {}x{} @ {} fps",
            self.width, self.height, self.fps
        )
    }

    fn format(&self) -> PictureFormat {
        PictureFormat {
            width: self.width,
            height: self.height,
            fps: self.fps,
        }
    }

    fn next_frame(&mut self, clock: &MediaClock, wanted: Wanted, stats: &SourceStats) -> NextFrame {
        let fps = self.fps as u64;
        let pacer = self.pacer.get_or_insert_with(|| Pacer::new(clock, fps, 1));
        let (index, capture_us) = pacer.wait(clock, &stats.skipped_late);
        if !wanted() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let rgb = self
            .pattern
            .render(index, capture_us, is_flash_frame(index, self.fps));
        let frame = RawFrame::from_rgb(rgb, self.width, self.height, capture_us)?;
        stats
            .render_us_total
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(Some(frame))
    }
}

/// The test tone with its click on every whole second of the media clock.
pub struct TestTone {
    tone: AudioTone,
    chunks: ChunkPacer,
}

impl TestTone {
    pub fn new() -> Self {
        Self {
            tone: AudioTone::new(SAMPLE_RATE),
            chunks: ChunkPacer::default(),
        }
    }
}

impl Default for TestTone {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioInput for TestTone {
    fn describe(&self) -> String {
        "test tone (440 Hz, a click every second)".into()
    }

    fn counters(&self) -> Option<String> {
        self.chunks.counters()
    }

    fn next_chunk(&mut self, clock: &MediaClock, pcm: &mut [i16]) -> anyhow::Result<u64> {
        let (n, capture_us) = self.chunks.wait(clock, pcm.len());
        self.tone.fill(n * pcm.len() as u64, pcm);
        Ok(capture_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn whether_a_picture_is_wanted_is_asked_once_it_is_due() {
        // An encoder that starts while the source waits for a slot must get that slot's
        // picture: the question comes after the wait, not before it.
        let clock = MediaClock::start();
        let stats = SourceStats::default();
        let mut input = TestPattern::new(64, 64, 30);
        for _ in 0..3 {
            let asked_at = Cell::new(None);
            let wanted = || {
                asked_at.set(Some(Instant::now()));
                true
            };
            let frame = input
                .next_frame(&clock, &wanted, &stats)
                .unwrap()
                .expect("wanted, so made");
            let asked_at = asked_at.get().expect("asked");
            assert!(
                asked_at >= clock.instant_at(frame.capture_us),
                "asked before the picture was due"
            );
        }
        // Not wanted: time is kept, nothing is made.
        assert!(input
            .next_frame(&clock, &|| false, &stats)
            .unwrap()
            .is_none());
    }
}
