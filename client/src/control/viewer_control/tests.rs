//! The control core with injected time: no sockets, no runtime.

use streamsocket_proto::control::{AudioFormat, Pong, VideoFormat};

use super::*;

const MS: u64 = 1000;

fn ladder() -> Vec<Rendition> {
    [
        ("720p", 1280, 720, 1500),
        ("360p", 640, 360, 600),
        ("180p", 320, 180, 200),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(name, w, h, kbps))| Rendition {
        id: i as u8,
        name: name.into(),
        width: w,
        height: h,
        fps: 30,
        bitrate_kbps: kbps,
    })
    .collect()
}

fn welcome(rendition: u8) -> Welcome {
    Welcome {
        version: streamsocket_proto::PROTOCOL_VERSION,
        session_id: 7,
        server_time_us: 5_000_000,
        video: VideoFormat {
            codec: 0,
            renditions: ladder(),
        },
        rendition,
        audio: AudioFormat {
            codec: 0,
            sample_rate: 48_000,
            channels: 1,
            frame_duration_us: 20_000,
            bitrate_bps: 32_000,
        },
        audio_bitrates: vec![16_000, 32_000, 64_000],
    }
}

fn control(quality: QualityWish) -> ViewerControl {
    ViewerControl::new(ControlOptions {
        quality,
        auto_cap: 0,
        budget: LatencyBudget::DEFAULT,
        backoff_seed: Some(1),
        failover: false,
    })
}

fn sent(actions: &[Action]) -> Vec<ControlMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn selects(actions: &[Action]) -> Vec<WishedRendition> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m {
            ControlMessage::SelectRendition { rendition } => Some(rendition),
            _ => None,
        })
        .collect()
}

fn select(id: u8) -> Vec<WishedRendition> {
    vec![WishedRendition::Fixed(id)]
}

fn confirm(c: &mut ViewerControl, now: u64, rendition: u8) -> Vec<Action> {
    c.handle(
        now,
        Event::Server(ControlMessage::RenditionChanged {
            rendition,
            automatic: false,
        }),
    )
}

/// Runs the timers from `from` to `to` (as a driver would), answering samples with `readings`.
fn run_until(c: &mut ViewerControl, from: u64, to: u64, readings: Readings) -> Vec<Action> {
    let mut all = Vec::new();
    let mut now = from;
    while let Some(t) = c.next_timer_us() {
        if t > to {
            break;
        }
        now = now.max(t);
        let actions = c.handle(now, Event::Timer);
        let sample = actions.iter().any(|a| matches!(a, Action::Sample { .. }));
        all.extend(actions);
        if sample {
            all.extend(c.handle(now, Event::Sampled(readings)));
        }
    }
    all
}

#[test]
fn join_asks_as_told_and_pings_quickly_then_each_second() {
    let c = control(QualityWish::Position(1));
    assert_eq!(c.hello_rendition(), WishedRendition::Fixed(1));
    assert_eq!(
        control(QualityWish::Auto).hello_rendition(),
        WishedRendition::Auto
    );
    assert_eq!(c.next_timer_us(), None, "nothing to do before the welcome");

    let mut c = control(QualityWish::Auto);
    let a = c.handle(10 * MS, Event::Connected(welcome(0)));
    assert!(a.contains(&Action::Decoder(DecoderEvent::Target(0))));
    assert!(a.contains(&Action::Note(Note::RenditionConfirmed {
        rendition: 0,
        reason: "the server's first choice".into()
    })));
    assert!(
        selects(&a).is_empty(),
        "the hello already asked for automatic quality"
    );
    assert!(c.auto());
    assert_eq!(c.clock().offset_us(), Some(5_000_000 - 10_000));

    let a = run_until(&mut c, 10 * MS, 1_300 * MS, Readings::default());
    let pings: Vec<u64> = sent(&a)
        .iter()
        .filter_map(|m| match m {
            ControlMessage::Ping(p) => Some(p.client_time_us),
            _ => None,
        })
        .collect();
    assert_eq!(pings, [10, 60, 110, 160, 210, 1210].map(|t| t * MS));

    // A pong of a ping it sent refines the clock; a forged one does not.
    let before = c.clock().samples();
    c.handle(
        1_300 * MS,
        Event::Server(ControlMessage::Pong(Pong {
            seq: 99,
            client_time_us: 1,
            server_receive_us: 2,
            server_send_us: 3,
        })),
    );
    assert_eq!(c.clock().samples(), before);
    let a = c.handle(
        1_220 * MS,
        Event::Server(ControlMessage::Pong(Pong {
            seq: 5,
            client_time_us: 1_210 * MS,
            server_receive_us: 6_210 * MS,
            server_send_us: 6_210 * MS,
        })),
    );
    assert_eq!(c.clock().samples(), before + 1);
    assert!(matches!(a[..], [Action::Note(Note::Clock { .. })]));
}

#[test]
fn quality_by_name_is_resolved_from_the_ladder() {
    let mut c = control(QualityWish::Name("180P".into()));
    assert_eq!(c.hello_rendition(), WishedRendition::Auto);
    let a = c.handle(0, Event::Connected(welcome(0)));
    assert_eq!(selects(&a), select(2));
    assert!(!c.auto());
    let a = confirm(&mut c, 40 * MS, 2);
    assert!(a.contains(&Action::Note(Note::RenditionConfirmed {
        rendition: 2,
        reason: "--quality 180P".into()
    })));

    let mut c = control(QualityWish::Name("4k".into()));
    let a = c.handle(0, Event::Connected(welcome(0)));
    assert!(selects(&a).is_empty());
    assert!(c.auto(), "an unknown name falls back to automatic quality");
}

#[test]
fn switching_asks_once_and_follows_the_confirmation() {
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    let a = c.handle(500 * MS, Event::Command(CoreCommand::QualityDown));
    assert_eq!(selects(&a), select(1));
    assert!(a.contains(&Action::Note(Note::SwitchRequested {
        reason: "chosen by the viewer".into()
    })));
    let a = confirm(&mut c, 560 * MS, 1);
    assert_eq!(a[0], Action::Decoder(DecoderEvent::Target(1)));
    assert_eq!(c.index(), 1);
    // Up from there is the top again; up from the top asks nothing.
    let a = c.handle(800 * MS, Event::Command(CoreCommand::QualityUp));
    assert_eq!(selects(&a), select(0));
    confirm(&mut c, 850 * MS, 0);
    assert!(selects(&c.handle(1_000 * MS, Event::Command(CoreCommand::QualityUp))).is_empty());
    // A position the ladder lacks is refused here.
    assert!(selects(&c.handle(1_200 * MS, Event::Command(CoreCommand::Quality(7)))).is_empty());
    // So is one the server refuses: back to what plays.
    c.handle(1_400 * MS, Event::Command(CoreCommand::Quality(2)));
    let a = c.handle(
        1_410 * MS,
        Event::Server(ControlMessage::Error {
            code: ErrorCode::UnknownRendition,
            message: "no such rendition".into(),
        }),
    );
    assert_eq!(a, [Action::Decoder(DecoderEvent::SwitchAbandoned)]);
    assert_eq!(c.index(), 0);
}

#[test]
fn a_flood_of_keys_sends_the_first_and_the_last() {
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    let mut asked = Vec::new();
    for i in 0..40u64 {
        let cmd = if i % 2 == 0 {
            CoreCommand::QualityDown
        } else {
            CoreCommand::Quality(2)
        };
        asked.extend(selects(&c.handle(1_000 * MS + i * MS, Event::Command(cmd))));
    }
    assert_eq!(asked, select(1), "only the first goes at once");
    let a = run_until(&mut c, 1_040 * MS, 1_200 * MS, Readings::default());
    assert_eq!(selects(&a), select(2), "then the last, once");
    assert_eq!(c.index(), 2);
    // Many keyframe requests for one rendition are one.
    let kf = (0..10)
        .flat_map(|i| c.handle(2_000 * MS + i * MS, Event::KeyframeWanted(2)))
        .count();
    assert_eq!(kf, 1);
}

#[test]
fn pause_and_resume_are_sent_once_each_and_survive_a_reconnection() {
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    let a = c.handle(MS, Event::Command(CoreCommand::TogglePause));
    assert_eq!(sent(&a), [ControlMessage::SetPaused { paused: true }]);
    assert!(sent(&c.handle(2 * MS, Event::Command(CoreCommand::Pause))).is_empty());
    assert!(c.paused());
    c.handle(3 * MS, Event::Lost("timed out".into()));
    let t = c.next_timer_us().unwrap();
    c.handle(t, Event::Timer);
    let a = c.handle(t + MS, Event::Connected(welcome(0)));
    assert!(sent(&a).contains(&ControlMessage::SetPaused { paused: true }));
    let a = c.handle(t + 2 * MS, Event::Command(CoreCommand::Resume));
    assert_eq!(sent(&a), [ControlMessage::SetPaused { paused: false }]);

    // The broadcaster's pause restarts the decoder at the next keyframe.
    let a = c.handle(
        t + 3 * MS,
        Event::Server(ControlMessage::BroadcastPaused { paused: true }),
    );
    assert!(a.contains(&Action::Decoder(DecoderEvent::Resync)));
}

#[test]
fn an_outage_reconnects_with_backoff_to_what_played() {
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    c.handle(100 * MS, Event::Command(CoreCommand::Quality(1)));
    confirm(&mut c, 150 * MS, 1);

    let a = c.handle(1_000 * MS, Event::Lost("timed out".into()));
    assert!(
        matches!(&a[..], [Action::Note(Note::Lost { since_us, .. })] if *since_us == 1_000 * MS)
    );
    // Nothing is sent while down; commands still count.
    assert!(c
        .handle(1_001 * MS, Event::Command(CoreCommand::QualityDown))
        .iter()
        .all(|a| !matches!(a, Action::Send(_))));
    assert_eq!(c.hello_rendition(), WishedRendition::Fixed(2));
    c.handle(1_002 * MS, Event::Command(CoreCommand::Quality(1)));

    let mut waits = Vec::new();
    let mut last = 1_000 * MS;
    for _ in 0..4 {
        let t = c.next_timer_us().expect("an attempt is due");
        waits.push(t - last);
        let a = c.handle(t, Event::Timer);
        assert!(a.contains(&Action::Connect {
            rendition: WishedRendition::Fixed(1)
        }));
        assert_eq!(c.next_timer_us(), None, "one attempt at a time");
        last = t + 5_000 * MS;
        c.handle(
            last,
            Event::ConnectFailed {
                error: "no answer".into(),
                retry: true,
            },
        );
    }
    for (w, nominal) in waits.iter().zip([250, 500, 1000, 2000]) {
        assert!(*w >= nominal * 800 && *w <= nominal * 1200, "{waits:?}");
    }
    let t = c.next_timer_us().unwrap();
    c.handle(t, Event::Timer);
    let a = c.handle(t + 10 * MS, Event::Connected(welcome(1)));
    assert_eq!(
        a[0],
        Action::Note(Note::Reconnected {
            since_us: 1_000 * MS
        })
    );
    assert_eq!(a[1], Action::Decoder(DecoderEvent::Resync));
    assert!(a.contains(&Action::Note(Note::RenditionConfirmed {
        rendition: 1,
        reason: "reconnected".into()
    })));
    // Pings start over at once.
    assert_eq!(c.next_timer_us(), Some(t + 10 * MS));
}

#[test]
fn automatic_quality_reasks_automatic_after_an_outage_at_its_cap() {
    let mut c = ViewerControl::new(ControlOptions {
        quality: QualityWish::Auto,
        auto_cap: 1,
        budget: LatencyBudget::DEFAULT,
        backoff_seed: Some(3),
        failover: false,
    });
    assert_eq!(c.hello_rendition(), WishedRendition::Fixed(1));
    c.handle(0, Event::Connected(welcome(1)));
    c.handle(10 * MS, Event::Lost("reset".into()));
    assert_eq!(c.hello_rendition(), WishedRendition::Fixed(1));
    // Choosing by hand turns automatic quality off, and A back on (at the cap).
    let mut c = control(QualityWish::Auto);
    c.handle(0, Event::Connected(welcome(0)));
    c.handle(10 * MS, Event::Command(CoreCommand::QualityDown));
    assert!(!c.auto());
    let a = c.handle(20 * MS, Event::Command(CoreCommand::Auto));
    assert!(c.auto());
    assert_eq!(selects(&a), [], "spaced after the last request");
    let a = run_until(&mut c, 20 * MS, 200 * MS, Readings::default());
    assert_eq!(selects(&a), [WishedRendition::Auto]);
}

#[test]
fn automatic_quality_steps_down_on_trouble() {
    let mut c = control(QualityWish::Auto);
    c.handle(0, Event::Connected(welcome(0)));
    let mut readings = Readings::default();
    let mut now = 0;
    let mut asked = Vec::new();
    for second in 1..=6u64 {
        readings.observation.video_bytes += 200_000;
        readings.observation.audio_played += 50;
        readings.audio_played += 50;
        if second >= 4 {
            readings.observation.frames_reset += 10;
        }
        asked.extend(selects(&run_until(
            &mut c,
            now,
            second * 1_000_000,
            readings,
        )));
        now = second * 1_000_000;
    }
    assert!(!asked.is_empty(), "missed deadlines move down");
    assert!(
        matches!(asked[0], WishedRendition::Fixed(r) if r > 0),
        "{asked:?}"
    );
}

#[test]
fn losses_are_reported_per_period_from_this_connection_only() {
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    let old = Readings {
        audio_played: 10_000,
        audio_lost: 9_000,
        ..Readings::default()
    };
    let a = run_until(&mut c, 0, 100 * MS, old);
    assert!(!sent(&a)
        .iter()
        .any(|m| matches!(m, ControlMessage::ReceiverReport { .. })));
    let later = Readings {
        audio_played: 10_095,
        audio_lost: 9_005,
        ..Readings::default()
    };
    let a = run_until(&mut c, 100 * MS, 2_100 * MS, later);
    assert!(sent(&a).contains(&ControlMessage::ReceiverReport {
        audio_loss_permille: 50
    }));
}

#[test]
fn refusals_end_or_retry_as_they_deserve() {
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    c.handle(10 * MS, Event::Lost("timed out".into()));
    let t = c.next_timer_us().unwrap();
    c.handle(t, Event::Timer);
    let a = c.handle(
        t + MS,
        Event::ConnectFailed {
            error: "the server refused the session".into(),
            retry: false,
        },
    );
    assert_eq!(
        a,
        [
            Action::Note(Note::GaveUp),
            Action::End(Ended::Lost(
                "timed out; reconnecting failed: the server refused the session".into()
            ))
        ]
    );
    assert_eq!(c.next_timer_us(), None);
    assert!(
        c.handle(t + 2 * MS, Event::Timer).is_empty(),
        "over is over"
    );

    // The server's goodbye ends the session without reconnecting.
    let mut c = control(QualityWish::Position(0));
    c.handle(0, Event::Connected(welcome(0)));
    let a = c.handle(
        MS,
        Event::Server(ControlMessage::Goodbye {
            code: ErrorCode::ServerShuttingDown,
            message: "bye".into(),
        }),
    );
    assert!(matches!(&a[..], [Action::End(Ended::Server { .. })]));
    assert!(c.handle(2 * MS, Event::Lost("closed".into())).is_empty());
}

#[test]
fn loss_window_needs_enough_packets() {
    let mut w = LossWindow::default();
    assert_eq!(w.permille(95, 5), Some(50));
    assert_eq!(w.permille(100, 5), None, "5 packets are too few to tell");
    assert_eq!(w.permille(200, 5), Some(0));
    assert_eq!(w.permille(200, 105), Some(1000));
}

#[test]
fn with_another_relay_to_go_to_the_first_attempt_is_at_once() {
    let mut c = ViewerControl::new(ControlOptions {
        quality: QualityWish::Auto,
        backoff_seed: Some(1),
        failover: true,
        ..ControlOptions::default()
    });
    c.handle(0, Event::Connected(welcome(0)));
    c.handle(10 * MS, Event::Lost("the relay went silent".into()));
    assert_eq!(c.next_timer_us(), Some(10 * MS));
    let actions = c.handle(10 * MS, Event::Timer);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Connect { .. })),
        "{actions:?}"
    );
    // A failed attempt waits as any other does.
    c.handle(
        20 * MS,
        Event::ConnectFailed {
            error: "no relay answers".into(),
            retry: true,
        },
    );
    assert!(c.next_timer_us().unwrap() >= 20 * MS + 200 * MS);
}
