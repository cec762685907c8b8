//! The Opus encoder stage: 48 kHz mono, one packet per 10 ms (or 20 ms), each packet
//! becoming one datagram (header built once, shared by every viewer).

use std::sync::OnceLock;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use streamsocket_proto::control::{AudioFormat, AUDIO_CODEC_OPUS};
use streamsocket_proto::media::{AudioHeader, MAX_AUDIO_PAYLOAD};

pub const SAMPLE_RATE: u32 = 48_000;
pub const CHANNELS: u8 = 1;
/// Packet durations on offer: 10 ms halves the wait for a packet's last sample (the audio
/// clock, which pictures follow, waits for it: about 9 ms less glass to glass); 20 ms halves
/// the packets, and with them the per-packet cost of sending to many viewers (one server
/// keeps 400 viewers on time with 20 ms packets, about 300 with 10 ms: docs/BENCHMARKS.md).
pub const FRAME_DURATIONS_MS: [u32; 2] = [10, 20];
pub const DEFAULT_FRAME_MS: u32 = 20;

/// Samples in one packet of `frame_ms` at 48 kHz.
pub const fn samples_per_frame(frame_ms: u32) -> usize {
    (SAMPLE_RATE * frame_ms / 1000) as usize
}

/// Opus settings for the stream.
#[derive(Debug, Clone, Copy)]
pub struct OpusSettings {
    pub bitrate_bps: u32,
    /// In-band forward error correction: each packet carries a low-rate copy of the previous
    /// one, so a single lost packet can be rebuilt from the next.
    pub inband_fec: bool,
    /// The loss rate FEC is sized for, in percent.
    pub expected_loss_percent: u8,
    /// One packet's duration: 10 or 20 ms.
    pub frame_ms: u32,
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 48_000,
            inband_fec: true,
            expected_loss_percent: 5,
            frame_ms: DEFAULT_FRAME_MS,
        }
    }
}

impl OpusSettings {
    pub fn format(&self) -> AudioFormat {
        AudioFormat {
            codec: AUDIO_CODEC_OPUS,
            sample_rate: SAMPLE_RATE,
            channels: CHANNELS,
            frame_duration_us: self.frame_ms * 1000,
            bitrate_bps: self.bitrate_bps,
        }
    }
}

/// One encoded audio packet, ready to go out as a datagram.
#[derive(Debug)]
pub struct AudioPacket {
    pub seq: u32,
    pub capture_us: u64,
    /// Header and Opus payload: the whole datagram.
    pub datagram: Bytes,
    /// The datagram framed for WebTransport, made by the first browser session that sends
    /// it and shared by the rest (`web::framing`).
    pub framed: OnceLock<Bytes>,
}

pub struct AudioEncoder {
    opus: opus::Encoder,
    bitrate_bps: u32,
    expected_loss_percent: u8,
    out: Vec<u8>,
    frame_samples: usize,
}

impl AudioEncoder {
    pub fn new(settings: OpusSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            FRAME_DURATIONS_MS.contains(&settings.frame_ms),
            "an Opus packet of {} ms: StreamSocket sends 10 or 20 ms",
            settings.frame_ms
        );
        let mut opus = opus::Encoder::new(
            SAMPLE_RATE,
            opus::Channels::Mono,
            opus::Application::LowDelay,
        )
        .context("creating the Opus encoder")?;
        opus.set_bitrate(opus::Bitrate::Bits(settings.bitrate_bps as i32))
            .context("setting the Opus bitrate")?;
        opus.set_inband_fec(settings.inband_fec)
            .context("enabling Opus FEC")?;
        opus.set_packet_loss_perc(settings.expected_loss_percent as i32)
            .context("setting Opus expected loss")?;
        Ok(Self {
            opus,
            bitrate_bps: settings.bitrate_bps,
            expected_loss_percent: settings.expected_loss_percent,
            out: vec![0; MAX_AUDIO_PAYLOAD],
            frame_samples: samples_per_frame(settings.frame_ms),
        })
    }

    /// Samples each [`AudioEncoder::encode`] takes.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    pub fn bitrate_bps(&self) -> u32 {
        self.bitrate_bps
    }

    pub fn expected_loss_percent(&self) -> u8 {
        self.expected_loss_percent
    }

    /// Sizes in-band FEC for this loss rate (the viewers' reports, see `audio_loss`).
    pub fn set_expected_loss(&mut self, percent: u8) -> anyhow::Result<()> {
        if percent != self.expected_loss_percent {
            self.opus
                .set_packet_loss_perc(percent.min(100) as i32)
                .context("setting Opus expected loss")?;
            self.expected_loss_percent = percent;
        }
        Ok(())
    }

    /// Encodes one frame (10 or 20 ms) of mono samples captured at `capture_us`. `seq` is the packet's
    /// number on the capture clock, the same in every bitrate, so a viewer switching bitrate
    /// sees one continuous sequence.
    pub fn encode(
        &mut self,
        pcm: &[i16],
        seq: u32,
        capture_us: u64,
    ) -> anyhow::Result<AudioPacket> {
        anyhow::ensure!(
            pcm.len() == self.frame_samples,
            "an Opus frame is {} samples, got {}",
            self.frame_samples,
            pcm.len()
        );
        let n = self
            .opus
            .encode(pcm, &mut self.out)
            .map_err(|e| anyhow!("Opus encoding failed: {e}"))?;
        let header = AudioHeader { seq, capture_us };
        Ok(AudioPacket {
            seq: header.seq,
            capture_us,
            datagram: Bytes::from(header.datagram(&self.out[..n])),
            framed: OnceLock::new(),
        })
    }
}
