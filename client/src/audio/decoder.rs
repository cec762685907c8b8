//! The audio stage: an adaptive jitter buffer (see `playout`) that plays packets out, one per
//! packet duration (10 or 20 ms, as each Opus packet says), at their capture time plus a
//! target delay, Opus decoding with in-band FEC and loss
//! concealment for what is missing, and output to the speakers with cpal (or nowhere,
//! headless or without a sound device). The delay audio plays at is the clock video follows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::audio::output::{AudioOutput, NullOutput, WavTee, SAMPLE_RATE};
use crate::audio::playout::{self, AvSync, JitterBuffer, NetAudio, Playout, PlayoutTarget};
use crate::control::clock::{ServerClock, ViewerClock};
use crate::control::latency_budget::LatencyBudget;
use crate::metrics::{AudioStats, AvSkew};

/// The longest packet the viewer decodes: 120 ms, Opus's longest (a StreamSocket server sends
/// 10 or 20 ms), with room to lengthen it (see `playout::retime`).
const MAX_PACKET_SAMPLES: usize = 5760 + 256;

pub struct AudioContext {
    pub clock: ViewerClock,
    /// The server's clock, which capture times are on.
    pub server_clock: ServerClock,
    /// The audio thread's counters (its share of the audio stats), written by it only.
    pub counters: Arc<Mutex<AudioStats>>,
    /// Where the test source's clicks pair with the presenter's flashes (once a second).
    pub av_skew: Arc<Mutex<AvSkew>>,
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
    /// The clock video follows: audio publishes its playout delay here.
    pub sync: Arc<AvSync>,
    /// The most playout delay to aim for: the viewer's latency budget.
    pub budget: LatencyBudget,
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
            match crate::audio::speakers::Speakers::open(ctx.speaker.as_deref()) {
                Ok(s) => {
                    ctx.counters.lock().expect("not poisoned").output_device =
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
            Some(path) => match WavTee::create(path, output, ctx.counters.clone()) {
                Ok(tee) => Box::new(tee),
                Err(e) => {
                    tracing::error!("--dump-wav: {e:#}");
                    ctx.counters.lock().expect("not poisoned").dump_errors += 1;
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
    let ceiling_us = ctx.budget.as_us();
    ctx.sync.set_ceiling(ceiling_us);
    let mut jitter = JitterBuffer::new(ceiling_us);
    let mut nudger = playout::Nudger::default();
    let mut recent_queued_us = RecentMax::default();
    let mut target = PlayoutTarget::new(ceiling_us);
    let mut pcm = vec![0i16; MAX_PACKET_SAMPLES];
    let silence = vec![0i16; MAX_PACKET_SAMPLES];
    // Samples per packet, as the packets say (10 or 20 ms from a StreamSocket server); what
    // a missing packet is concealed as.
    let mut packet_samples = playout::DEFAULT_PACKET_US as usize * SAMPLE_RATE as usize / 1_000_000;
    // Ticks run only while something is buffered or playing.
    let mut next_tick: Option<Instant> = None;
    let mut last_click_second = None;
    // The target moves slowly (its windows span seconds): recomputing it (two sorts) every
    // 10 ticks, 200 ms, is enough.
    let mut target_us = target.target_us(None, 0);
    let mut jitter_us = 0;
    let mut ticks = 0u64;
    loop {
        let wait = next_tick
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        match input.recv_timeout(wait) {
            Ok(p) => {
                if let Ok(n) = opus::packet::get_nb_samples(&p.payload, SAMPLE_RATE) {
                    if n != packet_samples && (120..=5760).contains(&n) {
                        tracing::debug!("audio packets of {n} samples");
                        packet_samples = n;
                        let us = n as u64 * 1_000_000 / SAMPLE_RATE as u64;
                        jitter.set_packet_us(us);
                        ctx.sync.set_packet_us(us);
                    }
                }
                target.on_audio(
                    p.header.capture_us,
                    ctx.server_clock.to_server_us(ctx.clock.now_us()),
                );
                let overflowed = jitter.dropped_overflow;
                jitter.insert(p);
                if jitter.dropped_overflow != overflowed {
                    // Packets skipped: the smoothed delay error no longer applies.
                    nudger.reset();
                }
                next_tick.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Some(t) = next_tick.filter(|t| *t <= Instant::now()) {
            if ticks % 10 == 0 {
                // Heard times include the output's queue: the audio's own need does too.
                let queued = recent_queued_us.max();
                target_us = target.target_us(ctx.sync.video_need_us(), queued);
                jitter_us = target.jitter_us();
            }
            ticks += 1;
            // How long this tick's samples last: a packet, unless it was nudged.
            let mut tick_us = jitter.packet_us();
            // When this tick's samples will be heard, on the server's clock.
            // A sound card takes what waits for it in bursts (its own buffer is not visible),
            // so the queue reads low right after a burst: the most it held lately is what a
            // sample waits before it is heard.
            recent_queued_us.push(Instant::now(), output.queued_us());
            let queued_us = recent_queued_us.max();
            let heard_at = ctx.clock.now_us() + queued_us;
            let dropped_before = jitter.dropped_catch_up;
            let playout = jitter.tick(ctx.server_clock.to_server_us(heard_at), target_us);
            if jitter.dropped_catch_up != dropped_before {
                // A whole packet's jump: the smoothed error no longer applies.
                nudger.reset();
            }
            // Before taking the stats lock: a full recording queue counts there.
            if let (Playout::Packet(header, payload), Some(r)) = (&playout, &ctx.recorder) {
                r.audio(payload, header.capture_us);
            }
            let mut s = ctx.counters.lock().expect("not poisoned");
            s.target_delay_ms = target_us as f64 / 1000.0;
            s.jitter_ms = jitter_us as f64 / 1000.0;
            let muted = ctx.muted.load(Ordering::Relaxed);
            match playout {
                Playout::Packet(header, payload) => {
                    let delay = ctx
                        .server_clock
                        .to_server_us(heard_at)
                        .saturating_sub(header.capture_us);
                    ctx.sync.set_audio_delay(Some(delay.max(1)));
                    match decoder.decode(&payload, &mut pcm, false) {
                        Ok(n) => {
                            let pcm = &pcm[..n];
                            s.packets_decoded += 1;
                            s.latency.record_us(delay);
                            s.playout_delay.record_us(delay);
                            // Hold the delay within a millisecond or so of its target: this
                            // packet plays a little shorter (or longer), and the next tick
                            // comes as much sooner (or later).
                            // The target covers the audio's own need (its transit and the
                            // output's queue), so hurrying towards it never outruns arrivals.
                            let change = nudger.samples(delay, target_us, SAMPLE_RATE);
                            let played = playout::retime(pcm, change);
                            let done = played.len() as i32 - pcm.len() as i32;
                            nudger.applied(done, SAMPLE_RATE);
                            s.playout_nudged_us +=
                                done.unsigned_abs() as u64 * 1_000_000 / SAMPLE_RATE as u64;
                            tick_us = played.len() as u64 * 1_000_000 / SAMPLE_RATE as u64;
                            // The test source's click, for the A/V skew.
                            if let Some(i) = click_onset(&played) {
                                let at_us =
                                    header.capture_us + i as u64 * 1_000_000 / SAMPLE_RATE as u64;
                                let second = (at_us + 500_000) / 1_000_000;
                                if last_click_second.replace(second) != Some(second) {
                                    let heard =
                                        heard_at + i as u64 * 1_000_000 / SAMPLE_RATE as u64;
                                    ctx.av_skew
                                        .lock()
                                        .expect("not poisoned")
                                        .on_click(second, heard);
                                }
                            }
                            drop(s);
                            if muted {
                                output.play(&silence[..played.len()]);
                            } else {
                                output.play(&played);
                            }
                        }
                        Err(e) => {
                            s.decode_errors += 1;
                            drop(s);
                            tracing::debug!("Opus packet {} undecodable: {e}", header.seq);
                            output.play(&silence[..packet_samples]);
                        }
                    }
                }
                Playout::Missing { seq, next } => {
                    s.packets_concealed += 1;
                    // FEC: the next packet carries a coarse copy of this one.
                    // Concealment and FEC rebuild exactly the missing packet's duration.
                    let pcm = &mut pcm[..packet_samples];
                    let result = match &next {
                        Some(n) => decoder.decode(n, pcm, true),
                        None => decoder.decode(&[], pcm, false),
                    };
                    if next.is_some() && result.is_ok() {
                        s.packets_recovered_fec += 1;
                    }
                    drop(s);
                    tracing::trace!("audio packet {seq} concealed");
                    if result.is_err() || muted {
                        pcm.fill(0);
                    }
                    output.play(pcm);
                }
                Playout::Stretch => {
                    drop(s);
                    nudger.reset();
                    // Concealment continues the sound more smoothly than silence would.
                    let pcm = &mut pcm[..packet_samples];
                    if decoder.decode(&[], pcm, false).is_err() || muted {
                        pcm.fill(0);
                    }
                    output.play(pcm);
                }
                Playout::Idle => {
                    drop(s);
                    nudger.reset();
                    ctx.sync.set_audio_delay(None);
                    if jitter.depth() == 0 {
                        // Nothing to wait for: stop ticking until packets come.
                        next_tick = None;
                        break;
                    }
                    // Otherwise buffering: the first packet is not due yet.
                }
            }
            next_tick = Some(t + Duration::from_micros(tick_us));
        }
        let mut s = ctx.counters.lock().expect("not poisoned");
        s.packets_late = jitter.late;
        s.packets_dropped_overflow = jitter.dropped_overflow;
        s.packets_dropped_catch_up = jitter.dropped_catch_up;
        s.packets_stretched = jitter.stretched;
    }
}

/// How long the output queue's largest reading is kept.
const QUEUE_WINDOW: Duration = Duration::from_millis(300);

/// The largest of the readings of the last [`QUEUE_WINDOW`].
#[derive(Default)]
struct RecentMax {
    readings: std::collections::VecDeque<(Instant, u64)>,
}

impl RecentMax {
    fn push(&mut self, at: Instant, value: u64) {
        while self
            .readings
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > QUEUE_WINDOW)
        {
            self.readings.pop_front();
        }
        self.readings.push_back((at, value));
    }

    fn max(&self) -> u64 {
        self.readings.iter().map(|&(_, v)| v).max().unwrap_or(0)
    }
}

/// Where the test source's click starts in a packet: the first sample far louder than its
/// tone (the tone peaks at a quarter of full scale, the click at 0.8).
pub fn click_onset(pcm: &[i16]) -> Option<usize> {
    pcm.iter()
        .position(|s| s.unsigned_abs() > i16::MAX as u16 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_click_is_found_and_the_tone_is_not() {
        let mut pcm: Vec<i16> = (0..960)
            .map(|i| ((i as f32 * 0.0576).sin() * 0.25 * 32767.0) as i16)
            .collect();
        assert_eq!(click_onset(&pcm), None);
        for (i, s) in pcm[100..340].iter_mut().enumerate() {
            *s = ((i as f32 * 0.2618 + 0.1).sin() * 0.8 * 32767.0) as i16;
        }
        let at = click_onset(&pcm).expect("found");
        assert!((100..110).contains(&at), "{at}");
    }
}
