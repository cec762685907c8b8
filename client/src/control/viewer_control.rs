//! The viewer's decisions, without I/O: which rendition to ask for (the one place on the
//! viewer that decides it: at connect, on a key, by automatic quality, after a reconnection),
//! pause, audio bitrate, clock pings, loss reports, keyframe requests, and when and how to
//! reconnect. The QUIC tasks are thin drivers: they turn what happens into [`Event`]s, call
//! [`ViewerControl::handle`] with the time, and carry out the [`Action`]s it returns; they
//! wake it at [`ViewerControl::next_timer_us`].

use std::collections::HashMap;

use streamsocket_proto::control::{ControlMessage, Ping, Rendition, Welcome, WishedRendition};
use streamsocket_proto::ErrorCode;

use super::auto_quality::{AutoQuality, Observation};
use super::backoff::Backoff;
use super::clock_sync::{ClockSync, Exchange};
use super::commands::{CoreCommand, QualityWish};
use super::latency_budget::LatencyBudget;

/// Pings 0 to 4 go this far apart (a first good clock estimate) ...
const FIRST_PINGS_EVERY_US: u64 = 50_000;
const FIRST_PINGS: u32 = 5;
/// ... then one a second.
const PINGS_EVERY_US: u64 = 1_000_000;
/// Pings whose pong may still count.
const PINGS_KEPT: u32 = 16;
/// How often automatic quality looks at the path.
const AUTO_EVERY_US: u64 = 1_000_000;
/// How often the viewer reports its audio loss to the server (which sizes FEC by it).
const REPORT_EVERY_US: u64 = 2_000_000;
/// Rendition requests closer together than this are coalesced: after a flood of keys, the
/// server hears the first and the last.
pub const SELECT_SPACING_US: u64 = 100_000;
/// Keyframe requests for one rendition closer together than this are one request.
pub const KEYFRAME_SPACING_US: u64 = 50_000;

/// Why a running session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// We closed it (duration over, window closed).
    Local,
    /// The server closed it, with its reason.
    Server { code: ErrorCode, message: String },
    /// The connection was lost.
    Lost(String),
}

/// What the viewer wants, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct ControlOptions {
    /// `--quality`.
    pub quality: QualityWish,
    /// `--max-quality`, as a ladder position (0 = the top: no cap).
    pub auto_cap: usize,
    pub budget: LatencyBudget,
    /// Seeds the reconnection back-off (tests); random when `None`.
    pub backoff_seed: Option<u64>,
    /// There is somewhere else to go (several relays): the first attempt after a loss is
    /// made at once, the back-off applies from the second.
    pub failover: bool,
}

/// What happened, as the drivers tell it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A (re)connection was welcomed.
    Connected(Welcome),
    /// A request from the keyboard, a script or standard input (those the core acts on).
    Command(CoreCommand),
    /// A message on the control stream (after the welcome).
    Server(ControlMessage),
    /// The decoder needs a keyframe of this rendition.
    KeyframeWanted(u8),
    /// The readings asked for by [`Action::Sample`].
    Sampled(Readings),
    /// The connection was lost (neither side closed it on purpose).
    Lost(String),
    /// A reconnection attempt failed; `retry`: whether trying again may help.
    ConnectFailed { error: String, retry: bool },
    /// [`ViewerControl::next_timer_us`] was reached.
    Timer,
}

/// What the drivers read from the pipeline when asked ([`Action::Sample`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    /// For automatic quality.
    pub observation: Observation,
    /// Audio packets played and lost (concealed or late) since the start.
    pub audio_played: u64,
    pub audio_lost: u64,
}

/// What the decoder must know, in order with the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderEvent {
    /// The server confirmed this rendition: switch to it at its first keyframe.
    Target(u8),
    /// Start over at the next keyframe without counting the gap as loss (the broadcaster
    /// paused, or a reconnection: the numbering may start over).
    Resync,
    /// Another rendition was asked for at this time (viewer clock): the switch time runs
    /// until its first decoded frame.
    SwitchAsked { at_us: u64 },
    /// The server refused it: no switch is coming.
    SwitchAbandoned,
}

/// What the viewer shows and reports of the decisions (the drivers write it to the stats).
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Automatic quality on or off, paused or not.
    Choices {
        auto: bool,
        paused: bool,
    },
    /// A rendition was asked for, and why.
    SwitchRequested {
        reason: String,
    },
    /// The server confirmed a rendition (the timeline).
    RenditionConfirmed {
        rendition: u8,
        reason: String,
    },
    Clock {
        offset_us: Option<i64>,
        min_rtt_us: Option<u64>,
    },
    AudioBitrate(u32),
    BroadcastPaused(bool),
    /// The connection was lost at `since_us`; reconnecting.
    Lost {
        reason: String,
        since_us: u64,
    },
    /// Reconnection attempt number `n` starts.
    Attempt(u32),
    /// Connected again after losing the connection at `since_us`.
    Reconnected {
        since_us: u64,
    },
    /// No more attempts.
    GaveUp,
}

/// What the drivers must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this on the control stream.
    Send(ControlMessage),
    /// Connect again, with a hello asking for this rendition; answer with
    /// [`Event::Connected`] or [`Event::ConnectFailed`].
    Connect { rendition: WishedRendition },
    /// Tell the decoder, in order with the frames.
    Decoder(DecoderEvent),
    /// Read the pipeline's counters and answer with [`Event::Sampled`]; `auto`: automatic
    /// quality looks now (the last-second latency window starts over).
    Sample { auto: bool },
    /// For the stats.
    Note(Note),
    /// The session is over.
    End(Ended),
}

/// The state of the connection, as far as decisions go.
#[derive(Debug)]
enum Link {
    /// Before the first welcome.
    Starting,
    Up,
    /// Lost: waiting `retry_at_us` for the next attempt (`None` while one runs).
    Down {
        reason: String,
        since_us: u64,
        attempt: u32,
        retry_at_us: Option<u64>,
    },
    Over,
}

/// Clock pings of this connection.
#[derive(Debug, Default)]
struct Pings {
    seq: u32,
    sent_at: HashMap<u32, u64>,
    next_us: u64,
}

/// Audio loss over one report period, from the running totals.
#[derive(Debug, Default)]
struct LossWindow {
    played: u64,
    lost: u64,
}

impl LossWindow {
    /// Lost per thousand since the last call; `None` when too few packets were due to tell.
    fn permille(&mut self, played: u64, lost: u64) -> Option<u16> {
        let (dp, dl) = (
            played.saturating_sub(self.played),
            lost.saturating_sub(self.lost),
        );
        (self.played, self.lost) = (played, lost);
        (dp + dl >= 20).then(|| (1000 * dl / (dp + dl)) as u16)
    }
}

/// The viewer's control core. See the module's documentation.
#[derive(Debug)]
pub struct ViewerControl {
    opts: ControlOptions,
    link: Link,
    ladder: Vec<Rendition>,
    /// The ladder position asked for last (or confirmed since).
    index: usize,
    /// The rendition the server last confirmed.
    confirmed: Option<u8>,
    auto: bool,
    auto_quality: Option<AutoQuality>,
    /// Why the rendition was last asked for (the timeline's reason).
    reason: Option<String>,
    paused: bool,
    audio_bitrates: Vec<u32>,
    audio_bitrate: u32,
    sync: ClockSync,
    pings: Pings,
    auto_next_us: Option<u64>,
    report_next_us: Option<u64>,
    /// `None` until the first reading of a connection sets its baseline.
    loss: Option<LossWindow>,
    /// What the outstanding [`Action::Sample`] is for: (automatic quality, loss report).
    sampling: (bool, bool),
    /// When the last rendition request went out, and a later one held back until spacing
    /// allows.
    last_select_us: Option<u64>,
    held_select: Option<WishedRendition>,
    last_keyframe_request: Option<(u8, u64)>,
    backoff: Backoff,
}

impl ViewerControl {
    pub fn new(opts: ControlOptions) -> Self {
        let auto = opts.quality == QualityWish::Auto;
        let backoff = opts
            .backoff_seed
            .map_or_else(Backoff::new, Backoff::with_seed);
        let index = match opts.quality {
            QualityWish::Position(p) => p as usize,
            _ => opts.auto_cap,
        };
        Self {
            opts,
            link: Link::Starting,
            ladder: Vec::new(),
            index,
            confirmed: None,
            auto,
            auto_quality: None,
            reason: None,
            paused: false,
            audio_bitrates: Vec::new(),
            audio_bitrate: 0,
            sync: ClockSync::default(),
            pings: Pings::default(),
            auto_next_us: None,
            report_next_us: None,
            loss: None,
            sampling: (false, false),
            last_select_us: None,
            held_select: None,
            last_keyframe_request: None,
            backoff,
        }
    }

    /// The rendition a hello asks for, first or after a reconnection: what plays (or the
    /// automatic choice, at the cap when there is one). Before the first welcome the ladder
    /// is unknown: positions are the server's rendition ids (PROTOCOL.md), and a rendition
    /// named on the command line is resolved from the welcome.
    pub fn hello_rendition(&self) -> WishedRendition {
        let unresolved_name =
            matches!(self.opts.quality, QualityWish::Name(_)) && self.ladder.is_empty();
        if self.auto || unresolved_name {
            return if self.opts.auto_cap > 0 {
                WishedRendition::Fixed(self.id_at(self.opts.auto_cap))
            } else {
                WishedRendition::Auto
            };
        }
        WishedRendition::Fixed(self.id_at(self.index))
    }

    #[cfg(test)]
    pub fn auto(&self) -> bool {
        self.auto
    }

    #[cfg(test)]
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The ladder position asked for last.
    #[cfg(test)]
    pub fn index(&self) -> usize {
        self.index
    }

    #[cfg(test)]
    pub fn clock(&self) -> &ClockSync {
        &self.sync
    }

    /// When [`Event::Timer`] is due next, on the viewer clock.
    pub fn next_timer_us(&self) -> Option<u64> {
        match &self.link {
            Link::Up => {
                let held = self
                    .held_select
                    .and(self.last_select_us)
                    .map(|t| t + SELECT_SPACING_US);
                [
                    Some(self.pings.next_us),
                    self.report_next_us,
                    self.auto_next_us.filter(|_| self.auto),
                    held,
                ]
                .into_iter()
                .flatten()
                .min()
            }
            Link::Down { retry_at_us, .. } => *retry_at_us,
            Link::Starting | Link::Over => None,
        }
    }

    pub fn handle(&mut self, now_us: u64, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.link, Link::Over) {
            return out;
        }
        match event {
            Event::Connected(w) => self.connected(now_us, w, &mut out),
            Event::Command(cmd) => self.command(now_us, cmd, &mut out),
            Event::Server(msg) => self.server(now_us, msg, &mut out),
            Event::KeyframeWanted(r) => self.keyframe_wanted(now_us, r, &mut out),
            Event::Sampled(r) => self.sampled(now_us, r, &mut out),
            Event::Lost(reason) => self.lost(now_us, reason, &mut out),
            Event::ConnectFailed { error, retry } => {
                self.connect_failed(now_us, error, retry, &mut out)
            }
            Event::Timer => self.timer(now_us, &mut out),
        }
        out
    }

    fn id_at(&self, index: usize) -> u8 {
        self.ladder.get(index).map_or(index as u8, |r| r.id)
    }

    fn position_of(&self, id: u8) -> Option<usize> {
        self.ladder.iter().position(|r| r.id == id)
    }

    fn choices(&self) -> Action {
        Action::Note(Note::Choices {
            auto: self.auto,
            paused: self.paused,
        })
    }

    fn restart_auto(&mut self, now_us: u64) {
        self.auto_quality = Some(AutoQuality::new(
            self.ladder.iter().map(|r| r.bitrate_kbps).collect(),
            self.opts.auto_cap,
            self.opts.budget,
        ));
        self.auto_next_us = Some(now_us + AUTO_EVERY_US);
    }

    fn connected(&mut self, now_us: u64, w: Welcome, out: &mut Vec<Action>) {
        let first = matches!(self.link, Link::Starting);
        // A restarted server has another clock: measure the offset afresh.
        self.sync = ClockSync::default();
        self.sync.set_coarse(w.server_time_us, now_us);
        self.ladder = w.video.renditions.clone();
        self.audio_bitrates = w.audio_bitrates.clone();
        self.audio_bitrate = w.audio.bitrate_bps;
        self.confirmed = Some(w.rendition);
        let wanted = self.index;
        self.index = self.position_of(w.rendition).unwrap_or(0);
        self.pings = Pings {
            next_us: now_us,
            ..Pings::default()
        };
        self.report_next_us = Some(now_us);
        self.loss = None;
        self.sampling = (false, false);
        self.held_select = None;
        self.last_select_us = None;
        self.last_keyframe_request = None;
        let reason = if first {
            let reason = match &self.opts.quality {
                QualityWish::Auto => "the server's first choice",
                _ => "--quality",
            };
            self.link = Link::Up;
            reason.to_string()
        } else {
            if let Link::Down {
                since_us, attempt, ..
            } = std::mem::replace(&mut self.link, Link::Up)
            {
                tracing::info!(
                    "reconnected (session {}) after {attempt} attempt(s)",
                    w.session_id
                );
                out.push(Action::Note(Note::Reconnected { since_us }));
            }
            // The numbering may start over (a restarted server): the decoder waits for a
            // keyframe without counting the gap as loss.
            out.push(Action::Decoder(DecoderEvent::Resync));
            "reconnected".to_string()
        };
        out.push(Action::Decoder(DecoderEvent::Target(w.rendition)));
        out.push(Action::Note(Note::Clock {
            offset_us: self.sync.offset_us(),
            min_rtt_us: None,
        }));
        out.push(Action::Note(Note::RenditionConfirmed {
            rendition: w.rendition,
            reason,
        }));
        out.push(Action::Note(Note::AudioBitrate(self.audio_bitrate)));
        if first {
            self.resolve_wish(now_us, out);
        } else if !self.auto && wanted != self.index && wanted < self.ladder.len() {
            // The server could not give what was asked: leave it at what it gave.
            tracing::warn!(
                "after reconnecting the server plays {} instead of {}",
                self.ladder[self.index].name,
                self.ladder[wanted].name
            );
        }
        if self.auto {
            let reason = "automatic: starting from the top".to_string();
            self.reason = Some(reason.clone());
            out.push(Action::Note(Note::SwitchRequested { reason }));
            self.restart_auto(now_us);
        }
        if self.paused {
            out.push(Action::Send(ControlMessage::SetPaused { paused: true }));
        }
        out.push(self.choices());
    }

    /// The first welcome: what `--quality` asked for, now that the ladder is known.
    fn resolve_wish(&mut self, now_us: u64, out: &mut Vec<Action>) {
        match self.opts.quality.clone() {
            QualityWish::Auto => {}
            QualityWish::Position(p) => {
                if p as usize >= self.ladder.len() {
                    tracing::warn!(
                        "no rendition {}: the server offers {}",
                        p + 1,
                        self.ladder.len()
                    );
                }
            }
            QualityWish::Name(name) => {
                match self
                    .ladder
                    .iter()
                    .position(|r| r.name.eq_ignore_ascii_case(&name))
                {
                    Some(i) => {
                        if i != self.index {
                            self.reason = Some(format!("--quality {name}"));
                            self.select(now_us, i, out);
                        }
                    }
                    None => {
                        let names: Vec<&str> =
                            self.ladder.iter().map(|r| r.name.as_str()).collect();
                        tracing::warn!(
                            "no rendition named {name:?}: the server offers {}; automatic quality instead",
                            names.join(", ")
                        );
                        self.auto = true;
                    }
                }
            }
        }
    }

    /// Asks for the rendition at ladder position `index` (spaced: see [`SELECT_SPACING_US`]).
    fn select(&mut self, now_us: u64, index: usize, out: &mut Vec<Action>) {
        let Some(r) = self.ladder.get(index) else {
            return;
        };
        self.index = index;
        self.request(now_us, WishedRendition::Fixed(r.id), out);
    }

    fn request(&mut self, now_us: u64, rendition: WishedRendition, out: &mut Vec<Action>) {
        out.push(Action::Note(Note::SwitchRequested {
            reason: self
                .reason
                .clone()
                .unwrap_or_else(|| "chosen by the viewer".into()),
        }));
        if !matches!(self.link, Link::Up) {
            // Asked for by the hello when the viewer is connected again.
            return;
        }
        out.push(Action::Decoder(DecoderEvent::SwitchAsked { at_us: now_us }));
        match self.last_select_us {
            Some(t) if now_us < t + SELECT_SPACING_US => self.held_select = Some(rendition),
            _ => {
                self.last_select_us = Some(now_us);
                self.held_select = None;
                out.push(Action::Send(ControlMessage::SelectRendition { rendition }));
            }
        }
    }

    fn command(&mut self, now_us: u64, cmd: CoreCommand, out: &mut Vec<Action>) {
        let up = matches!(self.link, Link::Up);
        match cmd {
            CoreCommand::Quality(i) => {
                if (i as usize) >= self.ladder.len() {
                    tracing::warn!(
                        "no rendition {}: the server offers {}",
                        i + 1,
                        self.ladder.len()
                    );
                    return;
                }
                self.manual(now_us, Some(i as usize), out);
            }
            CoreCommand::QualityUp => {
                let to = self.index.checked_sub(1);
                self.manual(now_us, to, out);
            }
            CoreCommand::QualityDown => {
                let to = (self.index + 1 < self.ladder.len()).then_some(self.index + 1);
                self.manual(now_us, to, out);
            }
            CoreCommand::Auto => {
                self.auto = true;
                self.reason = Some("automatic: starting from the top".into());
                self.restart_auto(now_us);
                if self.opts.auto_cap > 0 {
                    // Start at the cap (or where we are, if lower).
                    let at = self
                        .index
                        .max(self.opts.auto_cap)
                        .min(self.ladder.len().saturating_sub(1));
                    self.select(now_us, at, out);
                } else {
                    self.request(now_us, WishedRendition::Auto, out);
                }
                out.push(self.choices());
            }
            CoreCommand::AudioBitrateUp | CoreCommand::AudioBitrateDown => {
                let Some(at) = self
                    .audio_bitrates
                    .iter()
                    .position(|b| *b == self.audio_bitrate)
                else {
                    return;
                };
                let to = if cmd == CoreCommand::AudioBitrateUp {
                    Some(at + 1)
                } else {
                    at.checked_sub(1)
                };
                if let (true, Some(&bitrate_bps)) =
                    (up, to.and_then(|t| self.audio_bitrates.get(t)))
                {
                    out.push(Action::Send(ControlMessage::SetAudioBitrate {
                        bitrate_bps,
                    }));
                }
            }
            CoreCommand::TogglePause | CoreCommand::Pause | CoreCommand::Resume => {
                let paused = match cmd {
                    CoreCommand::Pause => true,
                    CoreCommand::Resume => false,
                    _ => !self.paused,
                };
                if paused == self.paused {
                    return;
                }
                self.paused = paused;
                if up {
                    out.push(Action::Send(ControlMessage::SetPaused { paused }));
                }
                out.push(self.choices());
            }
        }
    }

    /// A rendition chosen by the viewer (`None`: none to go to, but automatic quality is off).
    fn manual(&mut self, now_us: u64, to: Option<usize>, out: &mut Vec<Action>) {
        let was_auto = std::mem::replace(&mut self.auto, false);
        self.auto_next_us = None;
        self.reason = Some("chosen by the viewer".into());
        // Leaving automatic quality pins what plays, even with nowhere to go.
        if let Some(i) = to.or(was_auto.then_some(self.index)) {
            if was_auto || i != self.index || self.held_select.is_some() {
                self.select(now_us, i, out);
            }
        }
        out.push(self.choices());
    }

    fn server(&mut self, now_us: u64, msg: ControlMessage, out: &mut Vec<Action>) {
        match msg {
            ControlMessage::Pong(p) => {
                if self
                    .pings
                    .sent_at
                    .remove(&p.seq)
                    .is_some_and(|sent| sent == p.client_time_us)
                {
                    self.sync.add(Exchange {
                        client_send: p.client_time_us,
                        server_receive: p.server_receive_us,
                        server_send: p.server_send_us,
                        client_receive: now_us,
                    });
                    out.push(Action::Note(Note::Clock {
                        offset_us: self.sync.offset_us(),
                        min_rtt_us: self.sync.min_rtt_us(),
                    }));
                }
            }
            ControlMessage::RenditionChanged { rendition, .. } => {
                out.push(Action::Decoder(DecoderEvent::Target(rendition)));
                self.confirmed = Some(rendition);
                if self.held_select.is_none() {
                    if let Some(i) = self.position_of(rendition) {
                        self.index = i;
                    }
                }
                out.push(Action::Note(Note::RenditionConfirmed {
                    rendition,
                    reason: self
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the server's choice".into()),
                }));
            }
            ControlMessage::BroadcastPaused { paused } => {
                tracing::info!(
                    "the broadcaster {} the stream",
                    if paused { "paused" } else { "resumed" }
                );
                if paused {
                    out.push(Action::Decoder(DecoderEvent::Resync));
                }
                if let Some(a) = self.auto_quality.as_mut() {
                    a.restart();
                }
                out.push(Action::Note(Note::BroadcastPaused(paused)));
            }
            ControlMessage::AudioBitrateChanged { bitrate_bps } => {
                self.audio_bitrate = bitrate_bps;
                out.push(Action::Note(Note::AudioBitrate(bitrate_bps)));
            }
            ControlMessage::Error { code, message } => {
                tracing::warn!("server: {} ({message})", code.describe());
                if code == ErrorCode::UnknownRendition {
                    // Back to what plays.
                    if let Some(i) = self.confirmed.and_then(|r| self.position_of(r)) {
                        self.index = i;
                    }
                    self.held_select = None;
                    out.push(Action::Decoder(DecoderEvent::SwitchAbandoned));
                }
            }
            ControlMessage::Goodbye { code, message } => {
                self.link = Link::Over;
                out.push(Action::End(Ended::Server { code, message }));
            }
            other => tracing::debug!("ignoring {} from the server", other.name()),
        }
    }

    fn keyframe_wanted(&mut self, now_us: u64, rendition: u8, out: &mut Vec<Action>) {
        if !matches!(self.link, Link::Up) {
            return;
        }
        if let Some((r, at)) = self.last_keyframe_request {
            if r == rendition && now_us < at + KEYFRAME_SPACING_US {
                return;
            }
        }
        self.last_keyframe_request = Some((rendition, now_us));
        out.push(Action::Send(ControlMessage::KeyframeRequest { rendition }));
    }

    fn timer(&mut self, now_us: u64, out: &mut Vec<Action>) {
        let rendition = self.hello_rendition();
        match &mut self.link {
            Link::Up => {}
            Link::Down {
                attempt,
                retry_at_us,
                ..
            } => {
                if retry_at_us.is_some_and(|t| now_us >= t) {
                    *retry_at_us = None;
                    *attempt += 1;
                    out.push(Action::Note(Note::Attempt(*attempt)));
                    out.push(Action::Connect { rendition });
                }
                return;
            }
            Link::Starting | Link::Over => return,
        }
        if now_us >= self.pings.next_us {
            let seq = self.pings.seq;
            self.pings.sent_at.insert(seq, now_us);
            self.pings
                .sent_at
                .retain(|s, _| seq.wrapping_sub(*s) < PINGS_KEPT);
            self.pings.seq = seq.wrapping_add(1);
            self.pings.next_us = now_us
                + if seq + 1 < FIRST_PINGS {
                    FIRST_PINGS_EVERY_US
                } else {
                    PINGS_EVERY_US
                };
            out.push(Action::Send(ControlMessage::Ping(Ping {
                seq,
                client_time_us: now_us,
            })));
        }
        if let (Some(held), Some(t)) = (self.held_select, self.last_select_us) {
            if now_us >= t + SELECT_SPACING_US {
                self.held_select = None;
                self.last_select_us = Some(now_us);
                out.push(Action::Send(ControlMessage::SelectRendition {
                    rendition: held,
                }));
            }
        }
        let auto_due = self.auto && self.auto_next_us.is_some_and(|t| now_us >= t);
        let report_due = self.report_next_us.is_some_and(|t| now_us >= t);
        if auto_due {
            self.auto_next_us = Some(now_us + AUTO_EVERY_US);
        }
        if report_due {
            self.report_next_us = Some(now_us + REPORT_EVERY_US);
        }
        if auto_due || report_due {
            self.sampling = (auto_due, report_due);
            out.push(Action::Sample { auto: auto_due });
        }
    }

    fn sampled(&mut self, now_us: u64, r: Readings, out: &mut Vec<Action>) {
        let (auto_due, report_due) = std::mem::take(&mut self.sampling);
        if !matches!(self.link, Link::Up) {
            return;
        }
        if report_due {
            // Reports cover this connection's periods only, not what came before.
            match self.loss.as_mut() {
                None => {
                    self.loss = Some(LossWindow {
                        played: r.audio_played,
                        lost: r.audio_lost,
                    })
                }
                Some(w) => {
                    if let Some(audio_loss_permille) = w.permille(r.audio_played, r.audio_lost) {
                        out.push(Action::Send(ControlMessage::ReceiverReport {
                            audio_loss_permille,
                        }));
                    }
                }
            }
        }
        if !(auto_due && self.auto) {
            return;
        }
        let Some(d) = self
            .auto_quality
            .as_mut()
            .and_then(|a| a.tick(r.observation, self.index))
        else {
            return;
        };
        let Some(to) = self.ladder.get(d.to) else {
            return;
        };
        let direction = if d.to > self.index { "down" } else { "up" };
        let why = format!("{direction} to {}: {}", to.name, d.reason);
        tracing::info!(
            "automatic quality: {why} ({} kbit/s came through)",
            d.throughput_kbps
        );
        self.reason = Some(why);
        self.select(now_us, d.to, out);
    }

    fn lost(&mut self, now_us: u64, reason: String, out: &mut Vec<Action>) {
        if !matches!(self.link, Link::Up) {
            return;
        }
        tracing::warn!("connection lost ({reason}); reconnecting");
        out.push(Action::Note(Note::Lost {
            reason: reason.clone(),
            since_us: now_us,
        }));
        self.auto_next_us = None;
        self.report_next_us = None;
        self.held_select = None;
        self.backoff.reset();
        self.link = Link::Down {
            reason,
            since_us: now_us,
            attempt: 0,
            retry_at_us: Some(if self.opts.failover {
                now_us
            } else {
                now_us + self.backoff.next_wait().as_micros() as u64
            }),
        };
    }

    fn connect_failed(&mut self, now_us: u64, error: String, retry: bool, out: &mut Vec<Action>) {
        let Link::Down {
            reason,
            retry_at_us,
            ..
        } = &mut self.link
        else {
            return;
        };
        if retry {
            tracing::info!("reconnecting: {error}");
            *retry_at_us = Some(now_us + self.backoff.next_wait().as_micros() as u64);
            return;
        }
        let ended = Ended::Lost(format!("{reason}; reconnecting failed: {error}"));
        self.link = Link::Over;
        out.push(Action::Note(Note::GaveUp));
        out.push(Action::End(ended));
    }
}

#[cfg(test)]
mod tests;
