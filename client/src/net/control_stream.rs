//! The driver of the control core: turns the control stream, the viewer's commands, the
//! decoder's keyframe requests and the core's timer into [`Event`]s, and carries out the
//! [`Action`]s (messages, reconnection attempts, decoder events, stats).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use streamsocket_proto::control::ControlMessage;
use streamsocket_proto::ErrorCode;
use streamsocket_transport::{ControlReader, ControlWriter, ReadError};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::audio::NetAudio;
use crate::control::auto_quality::Observation;
use crate::control::clock::{ServerClock, ViewerClock};
use crate::control::commands::CoreCommand;
use crate::control::viewer_control::{
    Action, DecoderEvent, Ended, Event, Note, Readings, ViewerControl,
};
use crate::metrics::{ClockStats, ConnectionStats, Metrics, Reconnecting, RenditionChange};
use crate::net::connect::{ConnectOptions, Session};
use crate::net::receive::{receive_audio, receive_frames, ReceiveCounters};
use crate::net::reconnect::{self, CurrentConnection};
use crate::video::decoder::DecoderInput;

/// What the receivers feed, and what the viewer's side asks.
pub struct Pipes {
    pub decoder: Sender<DecoderInput>,
    pub audio: Sender<NetAudio>,
    pub keyframe_requests: UnboundedReceiver<u8>,
    /// Requests from the keyboard or a script (those the server must hear of).
    pub commands: UnboundedReceiver<CoreCommand>,
    /// Where the clock offset the core estimates is published for the pipeline.
    pub server_clock: ServerClock,
}

/// What the control core noted, kept by its driver: the session's part of the stats.
#[derive(Debug, Default, Clone)]
pub struct SessionStats {
    /// The rendition the server last confirmed.
    pub rendition: Option<u8>,
    pub auto: bool,
    pub auto_reason: Option<String>,
    pub rendition_timeline: Vec<RenditionChange>,
    pub paused: bool,
    pub clock: ClockStats,
    pub connection: ConnectionStats,
    /// The viewer's current audio bitrate.
    pub audio_bitrate_bps: u32,
}

/// One connection in use: its control stream and its receive tasks (started once the core
/// has taken the welcome: the pipeline knows the clock offset and the rendition before any
/// media reaches it).
struct Live {
    conn: quinn::Connection,
    writer: ControlWriter,
    reader: ControlReader,
    receivers: Option<[JoinHandle<()>; 2]>,
}

impl Drop for Live {
    fn drop(&mut self) {
        for r in self.receivers.iter().flatten() {
            r.abort();
        }
    }
}

/// What woke the driver.
enum Wake {
    Command(CoreCommand),
    Keyframe(u8),
    Message(Result<Option<ControlMessage>, ReadError>),
    Timer,
}

/// Runs the session, reconnections included, until it ends for good.
pub async fn run(
    mut control: ViewerControl,
    first: Session,
    opts: ConnectOptions,
    mut pipes: Pipes,
    current: CurrentConnection,
    clock: ViewerClock,
    metrics: Arc<Metrics>,
) -> Ended {
    let mut queue = VecDeque::new();
    let mut live = Some(start(first, &current, &mut queue));
    loop {
        while let Some(event) = queue.pop_front() {
            for action in control.handle(clock.now_us(), event) {
                match action {
                    Action::Send(msg) => {
                        let Some(l) = live.as_mut() else { continue };
                        if let Err(e) = l.writer.send(&msg).await {
                            match ended_by(&l.conn, e.to_string()) {
                                Ended::Lost(reason) => {
                                    live = None;
                                    queue.push_back(Event::Lost(reason));
                                }
                                other => return other,
                            }
                        }
                    }
                    Action::Connect { rendition } => {
                        match reconnect::attempt(&opts, rendition).await {
                            Ok(s) => live = Some(start(s, &current, &mut queue)),
                            Err(failed) => queue.push_back(failed),
                        }
                    }
                    Action::Decoder(e) => tell_decoder(&pipes.decoder, e),
                    Action::Sample { auto } => {
                        let rtt = live.as_ref().map(|l| l.conn.rtt());
                        let readings = read(&metrics, rtt, auto);
                        queue.push_back(Event::Sampled(readings));
                    }
                    Action::Note(n) => apply_note(&pipes, &metrics, n, clock),
                    Action::End(ended) => return ended,
                }
            }
        }
        if let Some(l) = live.as_mut().filter(|l| l.receivers.is_none()) {
            l.receivers = Some(receive(&l.conn, &pipes, clock, &metrics.receive));
        }
        let deadline = control.next_timer_us().map(|t| clock.instant_at(t));
        let wake = tokio::select! {
            Some(cmd) = pipes.commands.recv() => Wake::Command(cmd),
            Some(r) = pipes.keyframe_requests.recv() => Wake::Keyframe(r),
            msg = next_message(live.as_mut()) => Wake::Message(msg),
            _ = sleep_until(deadline) => Wake::Timer,
        };
        queue.push_back(match wake {
            Wake::Command(cmd) => Event::Command(cmd),
            Wake::Keyframe(r) => Event::KeyframeWanted(r),
            Wake::Timer => Event::Timer,
            Wake::Message(Ok(Some(msg))) => Event::Server(msg),
            Wake::Message(end) => {
                let l = live.take().expect("only a live connection has messages");
                let fallback = match end {
                    Ok(_) => "the server closed the control stream".to_string(),
                    Err(e) => e.to_string(),
                };
                match ended_by(&l.conn, fallback) {
                    Ended::Lost(reason) => Event::Lost(reason),
                    other => return other,
                }
            }
        });
    }
}

/// A welcomed connection: the welcome goes to the core.
fn start(session: Session, current: &CurrentConnection, queue: &mut VecDeque<Event>) -> Live {
    current.set(&session);
    queue.push_back(Event::Connected(session.welcome));
    Live {
        conn: session.conn,
        writer: session.writer,
        reader: session.reader,
        receivers: None,
    }
}

/// Receives the connection's frame streams and audio datagrams.
fn receive(
    conn: &quinn::Connection,
    pipes: &Pipes,
    clock: ViewerClock,
    counters: &Arc<ReceiveCounters>,
) -> [JoinHandle<()>; 2] {
    [
        tokio::spawn(receive_frames(
            conn.clone(),
            pipes.decoder.clone(),
            clock,
            counters.clone(),
        )),
        tokio::spawn(receive_audio(
            conn.clone(),
            pipes.audio.clone(),
            counters.clone(),
        )),
    ]
}

async fn next_message(live: Option<&mut Live>) -> Result<Option<ControlMessage>, ReadError> {
    match live {
        Some(l) => l.reader.next().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn tell_decoder(decoder: &Sender<DecoderInput>, e: DecoderEvent) {
    if decoder.try_send(DecoderInput::Event(e)).is_err() {
        tracing::warn!("the decoder's queue is full: {e:?} is lost");
    }
}

/// What the core asked to read: the audio totals, and what automatic quality sees this second
/// (whose last-second latency window it empties).
pub(crate) fn read(metrics: &Metrics, rtt: Option<std::time::Duration>, auto: bool) -> Readings {
    let s = metrics.snapshot();
    let mut observation = Observation {
        frames_reset: s.video.frames_reset,
        frames_skipped: s.video.frames_skipped,
        frames_dropped_busy: s.video.frames_dropped_decoder_busy,
        video_bytes: s.video.bytes,
        audio_played: s.audio.packets_decoded,
        audio_concealed: s.audio.packets_concealed,
        rtt_us: rtt.map(|r| r.as_micros() as u64),
        ..Observation::default()
    };
    if auto {
        (observation.latency_p50_us, observation.latency_p90_us) =
            metrics.with_recent_latency(|recent| {
                let quantile = |q: f64| {
                    (recent.count() > 0).then(|| (recent.percentile_ms(q) * 1000.0) as u64)
                };
                let quantiles = (quantile(0.5), quantile(0.9));
                recent.reset();
                quantiles
            });
    }
    Readings {
        observation,
        audio_played: s.audio.packets_decoded,
        audio_lost: s.audio.packets_concealed + s.audio.packets_late,
    }
}

/// Carries out what the core noted: a clock estimate goes to the pipeline, everything to the
/// stats.
pub(crate) fn apply_note(pipes: &Pipes, metrics: &Metrics, n: Note, clock: ViewerClock) {
    if let Note::Clock { offset_us, .. } = n {
        pipes.server_clock.set_offset_us(offset_us);
    }
    note(&metrics.session, &metrics.receive, n, clock)
}

/// Writes what the core noted to the session's stats (a pause also to the receive path's).
fn note(session: &Mutex<SessionStats>, receive: &ReceiveCounters, n: Note, clock: ViewerClock) {
    let now_us = clock.now_us();
    let mut s = session.lock().expect("not poisoned");
    match n {
        Note::Choices { auto, paused } => (s.auto, s.paused) = (auto, paused),
        Note::SwitchRequested { reason } => s.auto_reason = Some(reason),
        Note::RenditionConfirmed { rendition, reason } => {
            s.rendition = Some(rendition);
            s.rendition_timeline.push(RenditionChange {
                at_us: now_us,
                rendition,
                reason,
            });
        }
        Note::Clock {
            offset_us,
            min_rtt_us,
        } => {
            s.clock.offset_us = offset_us;
            if min_rtt_us.is_some() {
                s.clock.rtt_us = min_rtt_us;
            }
        }
        Note::AudioBitrate(b) => s.audio_bitrate_bps = b,
        Note::BroadcastPaused(paused) => receive
            .broadcast
            .lock()
            .expect("not poisoned")
            .on_message(paused),
        Note::Lost { reason, since_us } => {
            s.connection.lost += 1;
            s.connection.reconnecting = Some(Reconnecting {
                reason,
                attempt: 0,
                since_us,
            });
        }
        Note::Attempt(n) => {
            if let Some(r) = s.connection.reconnecting.as_mut() {
                r.attempt = n;
            }
        }
        Note::Reconnected { since_us } => {
            s.connection.reconnecting = None;
            s.connection.reconnects += 1;
            s.connection
                .reconnect_time
                .record_us(now_us.saturating_sub(since_us));
        }
        Note::GaveUp => s.connection.reconnecting = None,
    }
}

/// Classifies the end of a connection from its close reason.
fn ended_by(conn: &quinn::Connection, fallback: String) -> Ended {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => Ended::Server {
            code: ErrorCode::from_u16(c.error_code.into_inner().min(u16::MAX as u64) as u16),
            message: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        Some(quinn::ConnectionError::LocallyClosed) => Ended::Local,
        Some(e) => Ended::Lost(e.to_string()),
        None => Ended::Lost(fallback),
    }
}
