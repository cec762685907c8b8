//! The audio stage: a small jitter buffer that plays packets out every 20 ms in sequence
//! order, Opus decoding with in-band FEC and loss concealment for what is missing, and output
//! to the speakers with cpal (or nowhere, headless or without a sound device).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use streamsocket_proto::media::AudioHeader;

use crate::clock::ViewerClock;
use crate::stats::Stats;

pub const SAMPLE_RATE: u32 = 48_000;
pub const PACKET: Duration = Duration::from_millis(20);
pub const SAMPLES_PER_PACKET: usize = 960;

/// Packets buffered before playout starts (and restarts after a stall): 40 ms.
const START_DEPTH: usize = 2;
/// Above this many packets (160 ms) the oldest are dropped to get back to live.
const MAX_DEPTH: usize = 8;
/// After this many packets in a row with nothing to play (100 ms), stop and re-buffer rather
/// than conceal an outage.
const MAX_CONCEALED_RUN: u32 = 5;

/// An audio packet as it came off the network.
#[derive(Debug)]
pub struct NetAudio {
    pub header: AudioHeader,
    pub payload: Bytes,
}

/// What to play at the next 20 ms tick.
#[derive(Debug, PartialEq)]
pub enum Playout {
    /// Decode this packet.
    Packet(AudioHeader, Bytes),
    /// The packet is missing; rebuild it from the next one's FEC data if given, else conceal.
    Missing { seq: u32, next: Option<Bytes> },
    /// Buffering: play silence.
    Idle,
}

/// Orders packets by sequence number and decides what plays at each tick.
#[derive(Debug, Default)]
pub struct JitterBuffer {
    pending: BTreeMap<u32, NetAudio>,
    next_seq: Option<u32>,
    concealed_run: u32,
    pub late: u64,
    pub dropped_overflow: u64,
}

impl JitterBuffer {
    pub fn insert(&mut self, packet: NetAudio) {
        let seq = packet.header.seq;
        if self.next_seq.is_some_and(|n| seq < n) {
            self.late += 1;
            return;
        }
        self.pending.insert(seq, packet);
        while self.pending.len() > MAX_DEPTH {
            self.pending.pop_first();
            self.dropped_overflow += 1;
            if let (Some(n), Some(first)) = (self.next_seq, self.pending.keys().next()) {
                self.next_seq = Some(n.max(*first));
            }
        }
    }

    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    pub fn playing(&self) -> bool {
        self.next_seq.is_some()
    }

    /// Called every 20 ms.
    pub fn tick(&mut self) -> Playout {
        let Some(seq) = self.next_seq else {
            if self.pending.len() >= START_DEPTH {
                let first = *self.pending.keys().next().expect("not empty");
                self.next_seq = Some(first);
                return self.tick();
            }
            return Playout::Idle;
        };
        self.next_seq = Some(seq.wrapping_add(1));
        if let Some(p) = self.pending.remove(&seq) {
            self.concealed_run = 0;
            return Playout::Packet(p.header, p.payload);
        }
        if self.pending.is_empty() {
            self.concealed_run += 1;
            if self.concealed_run > MAX_CONCEALED_RUN {
                // An outage, not a loss: stop and re-buffer from whatever comes next.
                self.next_seq = None;
                self.concealed_run = 0;
                return Playout::Idle;
            }
        }
        let next = self
            .pending
            .get(&seq.wrapping_add(1))
            .map(|p| p.payload.clone());
        Playout::Missing { seq, next }
    }
}

/// Where decoded samples go.
pub trait AudioOutput {
    fn play(&mut self, samples: &[i16]);
}

/// Discards samples (headless).
pub struct NullOutput;

impl AudioOutput for NullOutput {
    fn play(&mut self, _samples: &[i16]) {}
}

/// Plays to another output and writes the same samples to a WAV file (`--dump-wav`): 48 kHz
/// mono 16-bit, exactly what was played, concealment and silence included.
pub struct WavTee {
    inner: Box<dyn AudioOutput>,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    stats: Arc<Mutex<Stats>>,
}

impl WavTee {
    pub fn create(
        path: &std::path::Path,
        inner: Box<dyn AudioOutput>,
        stats: Arc<Mutex<Stats>>,
    ) -> anyhow::Result<Self> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(Self {
            inner,
            writer: Some(writer),
            stats,
        })
    }
}

impl AudioOutput for WavTee {
    fn play(&mut self, samples: &[i16]) {
        self.inner.play(samples);
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let mut i16_writer = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            i16_writer.write_sample(s);
        }
        if let Err(e) = i16_writer.flush() {
            tracing::error!("--dump-wav: {e}; no more samples are written");
            self.stats.lock().expect("not poisoned").audio.dump_errors += 1;
            self.writer = None;
        }
    }
}

impl Drop for WavTee {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::error!("--dump-wav: finishing the file failed: {e}");
            }
        }
    }
}

pub struct AudioContext {
    pub clock: ViewerClock,
    pub stats: Arc<Mutex<Stats>>,
    /// Try to open the default speakers (false: headless).
    pub speakers: bool,
    /// Play silence instead of the stream (the M key).
    pub muted: Arc<AtomicBool>,
    /// Also write what is played to this WAV file.
    pub dump_wav: Option<std::path::PathBuf>,
    /// The output device to use (part of its name); the default when `None`.
    pub speaker: Option<String>,
    /// `--record`: every packet played also goes to the recording.
    pub recorder: Option<crate::record::Recorder>,
}

pub fn spawn(
    input: Receiver<NetAudio>,
    ctx: AudioContext,
) -> anyhow::Result<thread::JoinHandle<()>> {
    let decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
        .map_err(|e| anyhow::anyhow!("cannot start the Opus decoder: {e}"))?;
    Ok(thread::Builder::new().name("audio".into()).spawn(move || {
        // The cpal stream must live on the thread that made it.
        let output: Box<dyn AudioOutput> = if ctx.speakers {
            match crate::speakers::Speakers::open(ctx.speaker.as_deref()) {
                Ok(s) => {
                    ctx.stats.lock().expect("not poisoned").audio.output_device =
                        Some(s.name().to_string());
                    Box::new(s)
                }
                Err(e) => {
                    tracing::warn!("no audio output, video goes on without sound: {e:#}");
                    Box::new(NullOutput)
                }
            }
        } else {
            Box::new(NullOutput)
        };
        let output = match &ctx.dump_wav {
            Some(path) => match WavTee::create(path, output, ctx.stats.clone()) {
                Ok(tee) => Box::new(tee),
                Err(e) => {
                    tracing::error!("--dump-wav: {e:#}");
                    ctx.stats.lock().expect("not poisoned").audio.dump_errors += 1;
                    return;
                }
            },
            None => output,
        };
        run(decoder, input, ctx, output)
    })?)
}

fn run(
    mut decoder: opus::Decoder,
    input: Receiver<NetAudio>,
    ctx: AudioContext,
    mut output: Box<dyn AudioOutput>,
) {
    let mut jitter = JitterBuffer::default();
    let mut pcm = vec![0i16; SAMPLES_PER_PACKET];
    let silence = vec![0i16; SAMPLES_PER_PACKET];
    let mut next_tick: Option<Instant> = None;
    loop {
        let wait = next_tick
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        match input.recv_timeout(wait) {
            Ok(p) => {
                jitter.insert(p);
                if next_tick.is_none() && jitter.depth() >= START_DEPTH {
                    next_tick = Some(Instant::now());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Some(t) = next_tick.filter(|t| *t <= Instant::now()) {
            let playout = jitter.tick();
            // Before taking the stats lock: a full recording queue counts there.
            if let (Playout::Packet(header, payload), Some(r)) = (&playout, &ctx.recorder) {
                r.audio(payload, header.capture_us);
            }
            let mut s = ctx.stats.lock().expect("not poisoned");
            let a = &mut s.audio;
            match playout {
                Playout::Packet(header, payload) => match decoder.decode(&payload, &mut pcm, false)
                {
                    Ok(_) => {
                        a.packets_decoded += 1;
                        if let Some(off) = s.clock_offset_us {
                            let now_server = (ctx.clock.now_us() as i64 + off).max(0) as u64;
                            s.audio
                                .latency
                                .record_us(now_server.saturating_sub(header.capture_us));
                        }
                        drop(s);
                        output.play(if ctx.muted.load(Ordering::Relaxed) {
                            &silence
                        } else {
                            &pcm
                        });
                    }
                    Err(e) => {
                        a.decode_errors += 1;
                        drop(s);
                        tracing::debug!("Opus packet {} undecodable: {e}", header.seq);
                        output.play(&silence);
                    }
                },
                Playout::Missing { seq, next } => {
                    a.packets_concealed += 1;
                    // FEC: the next packet carries a coarse copy of this one.
                    let result = match &next {
                        Some(n) => decoder.decode(n, &mut pcm, true),
                        None => decoder.decode(&[], &mut pcm, false),
                    };
                    if next.is_some() && result.is_ok() {
                        a.packets_recovered_fec += 1;
                    }
                    drop(s);
                    tracing::trace!("audio packet {seq} concealed");
                    if result.is_err() || ctx.muted.load(Ordering::Relaxed) {
                        pcm.fill(0);
                    }
                    output.play(&pcm);
                }
                Playout::Idle => {
                    drop(s);
                    next_tick = None;
                    break;
                }
            }
            next_tick = Some(t + PACKET);
        }
        let mut s = ctx.stats.lock().expect("not poisoned");
        s.audio.packets_late = jitter.late;
        s.audio.packets_dropped_overflow = jitter.dropped_overflow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u32) -> NetAudio {
        NetAudio {
            header: AudioHeader {
                seq,
                capture_us: seq as u64 * 20_000,
            },
            payload: Bytes::from(vec![seq as u8]),
        }
    }

    #[test]
    fn buffers_then_plays_in_order() {
        let mut j = JitterBuffer::default();
        assert_eq!(j.tick(), Playout::Idle);
        j.insert(pkt(11));
        assert_eq!(j.tick(), Playout::Idle, "one packet is not enough to start");
        j.insert(pkt(10));
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 10));
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 11));
    }

    #[test]
    fn a_missing_packet_is_concealed_with_fec_from_the_next() {
        let mut j = JitterBuffer::default();
        for s in [0, 1, 3] {
            j.insert(pkt(s));
        }
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 0));
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 1));
        assert_eq!(
            j.tick(),
            Playout::Missing {
                seq: 2,
                next: Some(Bytes::from(vec![3u8]))
            }
        );
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 3));
        // Packet 2 arriving now is late.
        j.insert(pkt(2));
        assert_eq!(j.late, 1);
    }

    #[test]
    fn an_outage_stops_playout_instead_of_concealing_forever() {
        let mut j = JitterBuffer::default();
        j.insert(pkt(0));
        j.insert(pkt(1));
        j.tick();
        j.tick();
        let mut concealed = 0;
        while let Playout::Missing { .. } = j.tick() {
            concealed += 1;
        }
        assert_eq!(concealed, MAX_CONCEALED_RUN);
        assert!(!j.playing());
        // Playout resumes at what arrives after the outage, not at the backlog's start.
        j.insert(pkt(100));
        j.insert(pkt(101));
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 100));
    }

    #[test]
    fn the_buffer_never_grows_past_its_ceiling() {
        let mut j = JitterBuffer::default();
        for s in 0..50 {
            j.insert(pkt(s));
        }
        assert_eq!(j.depth(), MAX_DEPTH);
        assert_eq!(j.dropped_overflow, 50 - MAX_DEPTH as u64);
        assert!(matches!(j.tick(), Playout::Packet(h, _) if h.seq == 42));
    }
}
