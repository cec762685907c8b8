//! The control core's driver for a relay session. The core is the one it uses with a
//! server (the same keys, automatic quality, pause, reconnection); this driver answers for
//! the server it cannot reach:
//! - a rendition request is a subscription to that rendition's track, confirmed at once;
//!   the old track keeps playing until the new one's first frame (its newest group's
//!   keyframe, from which the decoder catches up) arrives;
//! - an audio bitrate is another audio track; a pause drops the subscriptions, a resume
//!   takes them again at their newest group;
//! - clock pings are answered from the catalog's wall clock;
//! - keyframe requests cannot reach the origin through relays: the next group brings one;
//! - a lost relay (silent for `--relay-timeout`, or its session closed) or a broadcast that
//!   ended is a lost connection: the core reconnects, and the next relay URL is tried first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use streamsocket_proto::control::{ControlMessage, Pong, WishedRendition};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connect::{connect, RelayOptions, RelaySession};
use super::tracks::{
    read_audio, read_video, AudioNumbering, Sequencer, Standing, TrackContext, VideoTrack,
};
use crate::control::clock::ViewerClock;
use crate::control::viewer_control::{Action, DecoderEvent, Ended, Event, ViewerControl};
use crate::metrics::Metrics;
use crate::net::control_stream::{apply_note, read, sleep_until, tell_decoder, Pipes};
use crate::net::reconnect::CurrentConnection;

/// A track reader's task, stopped when dropped, and its standing (see [`Standing`]).
struct Reader {
    task: JoinHandle<()>,
    standing: Arc<Standing>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reader being replaced, if any: stepped aside for the new one, which stops it when it
/// delivers.
fn leave(reader: Option<Reader>) -> (Option<Reader>, Option<tokio::task::AbortHandle>) {
    let handle = reader.as_ref().map(|r| {
        r.standing.step_aside();
        r.task.abort_handle()
    });
    (reader, handle)
}

/// How a rendition switch replaces the track being left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    /// The old track plays, stepped aside, until the new one's first frame.
    MakeBeforeBreak,
    /// The old track is dropped at once.
    BreakBeforeMake,
}

/// Why a reader of session `generation` stopped.
type Stopped = (u64, String);

/// The relay session in use and its subscriptions.
struct Live {
    session: RelaySession,
    /// Tells this session's readers from those of sessions before it.
    generation: u64,
    rendition: u8,
    audio_bitrate: u32,
    paused: bool,
    /// The rendition's reader; the one it replaces stops itself when the new one delivers.
    video: Option<Reader>,
    leaving: Option<Reader>,
    audio: Option<Reader>,
    audio_leaving: Option<Reader>,
    /// Each rendition's frame numbering, kept from one of its readers to the next.
    sequencers: HashMap<u8, Arc<Mutex<Sequencer>>>,
    /// The packet numbering, kept from one audio track to the next.
    audio_seq: Arc<Mutex<AudioNumbering>>,
    /// Media starts once the core has taken the welcome (the clock is then known).
    started: bool,
}

impl Live {
    fn new(
        session: RelaySession,
        generation: u64,
        current: &CurrentConnection,
        queue: &mut VecDeque<Event>,
    ) -> Self {
        current.set_parts(&session.endpoint, &session.link.conn);
        queue.push_back(Event::Connected(session.welcome.clone()));
        let packet_us = session.welcome.audio.frame_duration_us;
        Self {
            rendition: session.welcome.rendition,
            audio_bitrate: session.welcome.audio.bitrate_bps,
            session,
            generation,
            paused: false,
            video: None,
            leaving: None,
            audio: None,
            audio_leaving: None,
            sequencers: HashMap::new(),
            audio_seq: Arc::new(Mutex::new(AudioNumbering::new(packet_us))),
            started: false,
        }
    }

    fn spawn(
        &self,
        stopped: &mpsc::UnboundedSender<Stopped>,
        standing: Arc<Standing>,
        reader: impl std::future::Future<Output = String> + Send + 'static,
    ) -> Reader {
        let (stopped, generation) = (stopped.clone(), self.generation);
        Reader {
            task: tokio::spawn(async move {
                let why = reader.await;
                let _ = stopped.send((generation, why));
            }),
            standing,
        }
    }

    /// Subscribes to the current rendition's track (the reader before it, if any, keeps
    /// delivering until the new one has a frame).
    fn watch_video(
        &mut self,
        ctx: &TrackContext,
        stopped: &mpsc::UnboundedSender<Stopped>,
        switch: Switch,
    ) {
        let l = &self.session.listing;
        let i = usize::from(self.rendition);
        let (Some(name), Some(r)) = (l.video_tracks.get(i), l.renditions.get(i)) else {
            return;
        };
        let track = VideoTrack {
            rendition: self.rendition,
            name: name.clone(),
        };
        let seq = self
            .sequencers
            .entry(self.rendition)
            .or_insert_with(|| Arc::new(Mutex::new(Sequencer::new(r.fps))))
            .clone();
        let old = self.video.take();
        let (leaving, replaces) = match switch {
            Switch::MakeBeforeBreak => leave(old),
            Switch::BreakBeforeMake => {
                drop(old);
                (None, None)
            }
        };
        let standing = Arc::new(Standing::default());
        let reader = read_video(
            self.session.broadcast.clone(),
            track,
            ctx.clone(),
            replaces,
            seq,
            standing.clone(),
        );
        self.video = Some(self.spawn(stopped, standing, reader));
        self.leaving = leaving;
    }

    fn listen_audio(&mut self, ctx: &TrackContext, stopped: &mpsc::UnboundedSender<Stopped>) {
        let Some(name) = self.session.listing.audio_track(self.audio_bitrate) else {
            return;
        };
        // The bitrate being left plays until the new one delivers.
        let (leaving, replaces) = leave(self.audio.take());
        let standing = Arc::new(Standing::default());
        let reader = read_audio(
            self.session.broadcast.clone(),
            name.to_string(),
            ctx.clone(),
            self.audio_seq.clone(),
            replaces,
            standing.clone(),
        );
        self.audio = Some(self.spawn(stopped, standing, reader));
        self.audio_leaving = leaving;
    }

    fn start_media(&mut self, ctx: &TrackContext, stopped: &mpsc::UnboundedSender<Stopped>) {
        self.started = true;
        if !self.paused {
            self.watch_video(ctx, stopped, Switch::MakeBeforeBreak);
            self.listen_audio(ctx, stopped);
        }
    }

    /// What the core asked of the server, done with subscriptions; the server's answer,
    /// if it would give one, goes back to the core.
    fn carry_out(
        &mut self,
        msg: ControlMessage,
        ctx: &TrackContext,
        stopped: &mpsc::UnboundedSender<Stopped>,
        queue: &mut VecDeque<Event>,
    ) {
        match msg {
            ControlMessage::SelectRendition { rendition } => {
                let (id, automatic) = match rendition {
                    WishedRendition::Fixed(id) => (id, false),
                    WishedRendition::Auto => (0, true),
                };
                if usize::from(id) >= self.session.listing.renditions.len() {
                    queue.push_back(Event::Server(ControlMessage::Error {
                        code: streamsocket_proto::ErrorCode::UnknownRendition,
                        message: format!("the broadcast has no rendition {id}"),
                    }));
                    return;
                }
                let changed = id != self.rendition;
                // A step down (automatic quality's answer to a path that cannot carry the
                // track being left): keeping the old track until the new one delivers would
                // queue the new one's first group behind the old one's backlog on that
                // path, so the old one goes first and the last picture stays meanwhile. A
                // step up plays the old track until the new one comes.
                let switch = if id > self.rendition {
                    Switch::BreakBeforeMake
                } else {
                    Switch::MakeBeforeBreak
                };
                self.rendition = id;
                queue.push_back(Event::Server(ControlMessage::RenditionChanged {
                    rendition: id,
                    automatic,
                }));
                if changed && self.started && !self.paused {
                    tracing::info!(
                        "switching to {}: subscribing to its track (from its newest group's keyframe)",
                        self.session.listing.video_tracks[usize::from(id)]
                    );
                    self.watch_video(ctx, stopped, switch);
                }
            }
            ControlMessage::SetAudioBitrate { bitrate_bps } => {
                if self.session.listing.audio_track(bitrate_bps).is_none() {
                    tracing::warn!("the broadcast has no audio track at {bitrate_bps} bit/s");
                    return;
                }
                self.audio_bitrate = bitrate_bps;
                if self.started && !self.paused {
                    self.listen_audio(ctx, stopped);
                }
                queue.push_back(Event::Server(ControlMessage::AudioBitrateChanged {
                    bitrate_bps,
                }));
            }
            ControlMessage::SetPaused { paused } => {
                if paused == self.paused {
                    return;
                }
                self.paused = paused;
                if paused {
                    (self.video, self.leaving) = (None, None);
                    (self.audio, self.audio_leaving) = (None, None);
                } else if self.started {
                    // The frames in between were never sent: not losses. The new
                    // subscription starts at a group, so with a keyframe.
                    tell_decoder(&ctx.decoder, DecoderEvent::Resync);
                    self.watch_video(ctx, stopped, Switch::MakeBeforeBreak);
                    self.listen_audio(ctx, stopped);
                }
            }
            ControlMessage::Ping(p) => {
                // The broadcast's clock, read from the wall clock: no round trip to time.
                if let Some(now) = self.session.clock.now_us() {
                    queue.push_back(Event::Server(ControlMessage::Pong(Pong {
                        seq: p.seq,
                        client_time_us: p.client_time_us,
                        server_receive_us: now,
                        server_send_us: now,
                    })));
                }
            }
            ControlMessage::KeyframeRequest { rendition } => tracing::debug!(
                "a keyframe of rendition {rendition} cannot be asked for through relays: the next group brings one"
            ),
            // Loss reports size the origin's FEC; relays carry no reports back.
            other => tracing::debug!("not for relays: {}", other.name()),
        }
    }

    /// Waits until the relay session ends or the broadcast does (the origin left).
    async fn lost(&mut self) -> String {
        let session = &mut self.session;
        tokio::select! {
            why = session.link.closed() => format!("the relay {} ended the session: {why}", session.shown),
            update = session.catalog.next() => match update {
                Ok(Some(_)) => {
                    // A new catalog (a restarted origin's ladder may differ): start over.
                    "the broadcast's catalog changed".to_string()
                }
                Ok(None) => format!("the broadcast ended on {}", session.shown),
                Err(e) => format!("the broadcast broke off on {}: {e}", session.shown),
            },
        }
    }
}

/// What woke the driver.
enum Wake {
    Command(crate::control::commands::CoreCommand),
    Keyframe(u8),
    Lost(String),
    Timer,
}

/// Runs the viewing through relays, reconnections included, until it ends for good.
pub async fn run(
    mut control: ViewerControl,
    first: RelaySession,
    opts: RelayOptions,
    mut pipes: Pipes,
    current: CurrentConnection,
    clock: ViewerClock,
    metrics: Arc<Metrics>,
) -> Ended {
    let (stopped_tx, mut stopped_rx) = mpsc::unbounded_channel::<Stopped>();
    let mut queue = VecDeque::new();
    let mut generation = 0;
    let mut ctx = TrackContext {
        decoder: pipes.decoder.clone(),
        audio: pipes.audio.clone(),
        clock,
        counters: metrics.receive.clone(),
        media_clock: first.clock.clone(),
    };
    // The relay to try first when connecting again: the one after the last in use.
    let mut next_relay = first.index + 1;
    let mut live = Some(Live::new(first, generation, &current, &mut queue));
    loop {
        while let Some(event) = queue.pop_front() {
            for action in control.handle(clock.now_us(), event) {
                match action {
                    Action::Send(msg) => {
                        if let Some(l) = live.as_mut() {
                            l.carry_out(msg, &ctx, &stopped_tx, &mut queue);
                        }
                    }
                    Action::Connect { rendition } => {
                        match connect(&opts, next_relay, rendition).await {
                            Ok(s) => {
                                generation += 1;
                                next_relay = s.index + 1;
                                ctx.media_clock = s.clock.clone();
                                live = Some(Live::new(s, generation, &current, &mut queue));
                            }
                            Err(e) => queue.push_back(Event::ConnectFailed {
                                retry: e.retry(),
                                error: e.to_string(),
                            }),
                        }
                    }
                    Action::Decoder(e) => tell_decoder(&pipes.decoder, e),
                    Action::Sample { auto } => {
                        let rtt = live.as_ref().map(|l| l.session.link.conn.rtt());
                        queue.push_back(Event::Sampled(read(&metrics, rtt, auto)));
                    }
                    Action::Note(n) => apply_note(&pipes, &metrics, n, clock),
                    Action::End(ended) => return ended,
                }
            }
        }
        if let Some(l) = live.as_mut().filter(|l| !l.started) {
            l.start_media(&ctx, &stopped_tx);
        }
        let deadline = control.next_timer_us().map(|t| clock.instant_at(t));
        let wake = tokio::select! {
            Some(cmd) = pipes.commands.recv() => Wake::Command(cmd),
            Some(r) = pipes.keyframe_requests.recv() => Wake::Keyframe(r),
            why = lost(live.as_mut()) => Wake::Lost(why),
            Some((g, why)) = stopped_rx.recv() => {
                // A reader of this session stopped on its own: its track (so the
                // broadcast) is gone. Readers stopped on purpose say nothing.
                if g == generation && live.is_some() {
                    Wake::Lost(why)
                } else {
                    continue;
                }
            }
            _ = sleep_until(deadline) => Wake::Timer,
        };
        queue.push_back(match wake {
            Wake::Command(cmd) => Event::Command(cmd),
            Wake::Keyframe(r) => Event::KeyframeWanted(r),
            Wake::Timer => Event::Timer,
            Wake::Lost(why) => {
                if let Some(l) = live.take() {
                    next_relay = l.session.index + 1;
                }
                Event::Lost(why)
            }
        });
    }
}

async fn lost(live: Option<&mut Live>) -> String {
    match live {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}
