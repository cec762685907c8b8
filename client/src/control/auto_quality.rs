//! Automatic quality (the `A` key, and the default): which rendition the path and this viewer
//! can carry. Sans-I/O: the control task feeds it one [`Observation`] a second and sends what
//! it decides.
//!
//! Down fast: any sign that frames do not make it (reset at the server's deadline, skipped,
//! dropped by a busy decoder), that a queue is building (latency or round trip growing well
//! above their usual), or heavy loss moves down at once, straight to the rung the measured
//! throughput carries when the path is the limit. Up cautiously: only after a clean spell,
//! one rung at a time, and a rung that failed soon after being tried waits twice as long
//! before the next try (hysteresis), so a capped path is not probed every few seconds.

use std::collections::VecDeque;
use std::fmt;

use super::latency_budget::LatencyBudget;

/// Seconds without trouble before trying the next rung up.
pub const FIRST_PROBE_WAIT_S: u32 = 5;
/// The longest wait between tries of a rung that failed.
pub const MAX_PROBE_WAIT_S: u32 = 60;
/// A rung that holds this long after an up-step counts as good: the wait starts over.
const PROBE_SETTLED_S: u32 = 20;
/// Growth over the usual latency (or round trip) that means a queue is building.
const QUEUE_GROWTH_US: u64 = 150_000;
/// Growth that blocks stepping up (hysteresis against the step-down threshold).
const UP_BLOCKING_GROWTH_US: u64 = 60_000;
/// Loss of audio datagrams (the one loss the viewer sees directly) that steps down.
const HEAVY_LOSS: f64 = 0.10;
/// How many seconds the usual latency and round trip are the minimum of.
const BASELINE_WINDOW_S: usize = 20;
/// When the path is the limit, aim this far below the throughput it carried.
const THROUGHPUT_HEADROOM: f64 = 0.85;
/// Seconds after a switch during which latency and round-trip growth are not held against
/// the new rung: its encoder starts with a keyframe and fills its lookahead, a passing spike.
const SWITCH_GRACE_S: u32 = 2;

/// What the viewer saw in the last second. Counters are totals since the start; the module
/// takes differences itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    pub frames_reset: u64,
    pub frames_skipped: u64,
    pub frames_dropped_busy: u64,
    pub video_bytes: u64,
    pub audio_played: u64,
    pub audio_concealed: u64,
    /// Median and 90th percentile capture-to-decoded latency of the frames decoded in the
    /// last second (`None` if none were).
    pub latency_p50_us: Option<u64>,
    pub latency_p90_us: Option<u64>,
    /// QUIC's smoothed round trip now.
    pub rtt_us: Option<u64>,
}

/// Why automatic quality moved.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    FramesReset(u64),
    FramesSkipped(u64),
    DecoderBusy(u64),
    LatencyGrowing { now_ms: u64, usual_ms: u64 },
    LatencyOverTarget { now_ms: u64, target_ms: u64 },
    RoundTripGrowing { now_ms: u64, min_ms: u64 },
    HeavyLoss { percent: f64 },
    Clean { seconds: u32 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FramesReset(n) => write!(f, "{n} frames missed their deadline"),
            Reason::FramesSkipped(n) => write!(f, "{n} frames skipped"),
            Reason::DecoderBusy(n) => write!(f, "decoder behind ({n} frames dropped)"),
            Reason::LatencyGrowing { now_ms, usual_ms } => {
                write!(f, "latency {now_ms} ms, usually {usual_ms} ms")
            }
            Reason::LatencyOverTarget { now_ms, target_ms } => {
                write!(f, "latency {now_ms} ms, over the {target_ms} ms target")
            }
            Reason::RoundTripGrowing { now_ms, min_ms } => {
                write!(f, "round trip {now_ms} ms, at least {min_ms} ms")
            }
            Reason::HeavyLoss { percent } => write!(f, "{percent:.0}% packet loss"),
            Reason::Clean { seconds } => write!(f, "{seconds} s without trouble"),
        }
    }
}

/// A move to another rung of the ladder (0 = highest).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub to: usize,
    pub reason: Reason,
    /// Video throughput over the last second, kbit/s (for the log and the timeline).
    pub throughput_kbps: u64,
}

/// The state between ticks.
#[derive(Debug)]
pub struct AutoQuality {
    /// Bitrates of the ladder's rungs, kbit/s, highest first.
    ladder_kbps: Vec<u32>,
    /// The highest rung allowed (the user's cap).
    top: usize,
    /// The viewer's latency target: frames later than this miss the server's deadline.
    target: LatencyBudget,
    last: Option<Observation>,
    latency_p50s: VecDeque<u64>,
    rtts: VecDeque<u64>,
    clean_seconds: u32,
    probe_wait_s: u32,
    /// The last up-step: the rung it went to and how long ago.
    probing: Option<(usize, u32)>,
    /// Seconds in a row with heavy loss.
    lossy_seconds: u32,
    /// Seconds left of the grace after a switch.
    grace_s: u32,
}

impl AutoQuality {
    /// `ladder_kbps`: the rungs' bitrates, highest first; `cap`: the highest rung allowed;
    /// `target`: the viewer's latency budget.
    pub fn new(ladder_kbps: Vec<u32>, cap: usize, target: LatencyBudget) -> Self {
        let top = cap.min(ladder_kbps.len().saturating_sub(1));
        Self {
            ladder_kbps,
            top,
            target,
            last: None,
            latency_p50s: VecDeque::new(),
            rtts: VecDeque::new(),
            clean_seconds: 0,
            probe_wait_s: FIRST_PROBE_WAIT_S,
            probing: None,
            lossy_seconds: 0,
            grace_s: 0,
        }
    }

    /// Forgets the counters' last values (after a pause or a reconnection, whose gaps are
    /// not trouble).
    pub fn restart(&mut self) {
        self.last = None;
        self.clean_seconds = 0;
    }

    /// Called once a second with what the viewer saw; `index` is the rung playing now.
    pub fn tick(&mut self, obs: Observation, index: usize) -> Option<Decision> {
        let decision = self.decide(obs, index);
        if decision.is_some() {
            self.grace_s = SWITCH_GRACE_S;
        }
        decision
    }

    fn decide(&mut self, obs: Observation, index: usize) -> Option<Decision> {
        let in_grace = self.grace_s > 0;
        self.grace_s = self.grace_s.saturating_sub(1);
        let usual_latency = self.latency_p50s.iter().min().copied();
        let min_rtt = self.rtts.iter().min().copied();
        push_window(&mut self.latency_p50s, obs.latency_p50_us);
        push_window(&mut self.rtts, obs.rtt_us);
        // The first observation only sets the baseline for the differences.
        let last = self.last.replace(obs)?;
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        let throughput_kbps = delta(obs.video_bytes, last.video_bytes) * 8 / 1000;

        let played = delta(obs.audio_played, last.audio_played);
        let concealed = delta(obs.audio_concealed, last.audio_concealed);
        let loss = if played + concealed >= 10 {
            concealed as f64 / (played + concealed) as f64
        } else {
            0.0
        };
        self.lossy_seconds = if loss >= HEAVY_LOSS {
            self.lossy_seconds + 1
        } else {
            0
        };

        // Trouble, most telling first. `congestion` marks signs that the path is the limit.
        let reset = delta(obs.frames_reset, last.frames_reset);
        let skipped = delta(obs.frames_skipped, last.frames_skipped);
        let busy = delta(obs.frames_dropped_busy, last.frames_dropped_busy);
        let latency_growth = match (obs.latency_p90_us, usual_latency) {
            (Some(now), Some(usual)) if !in_grace => Some((now, usual, now.saturating_sub(usual))),
            _ => None,
        };
        let rtt_growth = match (obs.rtt_us, min_rtt) {
            (Some(now), Some(min)) if !in_grace => Some((now, min, now.saturating_sub(min))),
            _ => None,
        };
        let over_target = obs
            .latency_p90_us
            .filter(|l| !in_grace && *l > self.target.as_us());
        let trouble = if reset >= 2 {
            Some((Reason::FramesReset(reset), true))
        } else if let Some(now) = over_target {
            let reason = Reason::LatencyOverTarget {
                now_ms: now / 1000,
                target_ms: u64::from(self.target.as_ms()),
            };
            Some((reason, true))
        } else if let Some((now, usual, _)) =
            latency_growth.filter(|(_, _, g)| *g > QUEUE_GROWTH_US)
        {
            let reason = Reason::LatencyGrowing {
                now_ms: now / 1000,
                usual_ms: usual / 1000,
            };
            Some((reason, true))
        } else if let Some((now, min, _)) = rtt_growth.filter(|(_, _, g)| *g > QUEUE_GROWTH_US) {
            let reason = Reason::RoundTripGrowing {
                now_ms: now / 1000,
                min_ms: min / 1000,
            };
            Some((reason, true))
        } else if skipped > 2 {
            Some((Reason::FramesSkipped(skipped), false))
        } else if busy > 2 {
            Some((Reason::DecoderBusy(busy), false))
        } else if self.lossy_seconds >= 2 {
            Some((
                Reason::HeavyLoss {
                    percent: loss * 100.0,
                },
                false,
            ))
        } else {
            None
        };

        if let Some((reason, congestion)) = trouble {
            self.clean_seconds = 0;
            self.lossy_seconds = 0;
            // A rung that failed soon after it was tried waits longer for the next try.
            if let Some((rung, _)) = self.probing.take() {
                if rung == index {
                    self.probe_wait_s = (self.probe_wait_s * 2).min(MAX_PROBE_WAIT_S);
                }
            }
            let mut to = index + 1;
            if congestion {
                // Straight to the rung the path carried, when that is lower still.
                let fits = (throughput_kbps as f64 * THROUGHPUT_HEADROOM) as u32;
                while to + 1 < self.ladder_kbps.len() && self.ladder_kbps[to] > fits {
                    to += 1;
                }
            }
            let to = to.min(self.ladder_kbps.len() - 1).max(self.top);
            return (to != index).then_some(Decision {
                to,
                reason,
                throughput_kbps,
            });
        }

        if let Some((rung, age)) = self.probing.as_mut() {
            *age += 1;
            if *age >= PROBE_SETTLED_S && *rung == index {
                self.probing = None;
                self.probe_wait_s = FIRST_PROBE_WAIT_S;
            }
        }
        // Above the cap (the user lowered it): move down now.
        if index < self.top {
            return Some(Decision {
                to: self.top,
                reason: Reason::Clean { seconds: 0 },
                throughput_kbps,
            });
        }
        // A queue that is starting to build blocks an up-step without causing a down-step.
        let settling = latency_growth.is_some_and(|(_, _, g)| g > UP_BLOCKING_GROWTH_US)
            || rtt_growth.is_some_and(|(_, _, g)| g > UP_BLOCKING_GROWTH_US)
            || reset > 0
            || skipped > 0;
        if settling {
            self.clean_seconds = 0;
            return None;
        }
        self.clean_seconds += 1;
        if self.clean_seconds >= self.probe_wait_s && index > self.top {
            let seconds = self.clean_seconds;
            self.clean_seconds = 0;
            self.probing = Some((index - 1, 0));
            return Some(Decision {
                to: index - 1,
                reason: Reason::Clean { seconds },
                throughput_kbps,
            });
        }
        None
    }
}

fn push_window(window: &mut VecDeque<u64>, value: Option<u64>) {
    if let Some(v) = value {
        window.push_back(v);
        if window.len() > BASELINE_WINDOW_S {
            window.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [u32; 3] = [1500, 1000, 500];

    /// Feeds `seconds` of clean observations at `kbps`, returning the decisions made.
    struct Run {
        auto: AutoQuality,
        obs: Observation,
        index: usize,
        decisions: Vec<Decision>,
    }

    impl Run {
        fn new(index: usize) -> Self {
            let mut run = Self {
                auto: AutoQuality::new(LADDER.to_vec(), 0, LatencyBudget::DEFAULT),
                obs: Observation {
                    latency_p50_us: Some(100_000),
                    latency_p90_us: Some(110_000),
                    rtt_us: Some(20_000),
                    ..Observation::default()
                },
                index,
                decisions: Vec::new(),
            };
            assert_eq!(
                run.auto.tick(run.obs, index),
                None,
                "the first tick only records"
            );
            run
        }

        fn second(&mut self, change: impl FnOnce(&mut Observation)) -> Option<Decision> {
            self.obs.video_bytes += 1_000_000 / 8 * LADDER[self.index] as u64 / 1000;
            self.obs.audio_played += 50;
            change(&mut self.obs);
            let d = self.auto.tick(self.obs, self.index);
            if let Some(d) = &d {
                self.index = d.to;
                self.decisions.push(d.clone());
            }
            d
        }

        fn clean(&mut self, seconds: u32) {
            for _ in 0..seconds {
                self.second(|_| {});
            }
        }
    }

    #[test]
    fn resets_step_down_at_once() {
        let mut run = Run::new(0);
        run.clean(3);
        let d = run.second(|o| o.frames_reset += 3).expect("steps down");
        assert_eq!(d.reason, Reason::FramesReset(3));
        assert!(d.to >= 1);
        assert_eq!(d.reason.to_string(), "3 frames missed their deadline");
    }

    #[test]
    fn a_growing_queue_steps_down_to_what_the_path_carried() {
        let mut run = Run::new(0);
        run.clean(3);
        // Latency 170 ms above its usual (still under the target), while only 450 kbit/s
        // got through.
        let d = run
            .second(|o| {
                o.latency_p90_us = Some(270_000);
                o.video_bytes -= 1_500_000 / 8;
                o.video_bytes += 450_000 / 8;
            })
            .expect("steps down");
        assert!(matches!(
            d.reason,
            Reason::LatencyGrowing { usual_ms: 100, .. }
        ));
        assert_eq!(d.to, 2, "skips the rung that would not fit either");
    }

    #[test]
    fn latency_over_the_target_steps_down_even_without_a_baseline() {
        let mut auto = AutoQuality::new(LADDER.to_vec(), 0, LatencyBudget::DEFAULT);
        let mut obs = Observation {
            latency_p50_us: Some(400_000),
            latency_p90_us: Some(450_000),
            ..Observation::default()
        };
        assert_eq!(auto.tick(obs, 0), None, "the first tick only records");
        obs.video_bytes += 100_000;
        let d = auto.tick(obs, 0).expect("steps down");
        assert_eq!(
            d.reason,
            Reason::LatencyOverTarget {
                now_ms: 450,
                target_ms: 300
            }
        );
    }

    #[test]
    fn a_growing_round_trip_steps_down() {
        let mut run = Run::new(0);
        run.clean(3);
        let d = run
            .second(|o| o.rtt_us = Some(300_000))
            .expect("steps down");
        assert_eq!(
            d.reason,
            Reason::RoundTripGrowing {
                now_ms: 300,
                min_ms: 20
            }
        );
    }

    #[test]
    fn one_reset_or_one_lossy_second_is_not_enough() {
        let mut run = Run::new(0);
        run.clean(2);
        assert_eq!(run.second(|o| o.frames_reset += 1), None);
        assert_eq!(run.second(|o| o.audio_concealed += 10), None);
        assert_eq!(run.second(|_| {}), None);
        // Two lossy seconds in a row are.
        assert_eq!(run.second(|o| o.audio_concealed += 10), None);
        let d = run.second(|o| o.audio_concealed += 10).expect("steps down");
        assert!(matches!(d.reason, Reason::HeavyLoss { .. }), "{d:?}");
    }

    #[test]
    fn steps_up_after_a_clean_spell_one_rung_at_a_time() {
        let mut run = Run::new(2);
        run.clean(FIRST_PROBE_WAIT_S);
        assert_eq!(run.index, 1);
        assert_eq!(
            run.decisions[0].reason,
            Reason::Clean {
                seconds: FIRST_PROBE_WAIT_S
            }
        );
        run.clean(FIRST_PROBE_WAIT_S);
        assert_eq!(run.index, 0);
        run.clean(30);
        assert_eq!(run.decisions.len(), 2, "nothing above the top");
    }

    #[test]
    fn a_rung_that_fails_again_waits_longer_each_time() {
        let mut run = Run::new(1);
        let mut waits = Vec::new();
        for _ in 0..4 {
            // Clean until it tries the rung above, then that rung fails at once.
            let mut waited = 0;
            while run.index == 1 {
                run.second(|_| {});
                waited += 1;
            }
            waits.push(waited);
            run.second(|o| o.frames_reset += 5).expect("steps down");
            assert_eq!(run.index, 1);
        }
        assert_eq!(waits, [5, 10, 20, 40]);
    }

    #[test]
    fn the_users_cap_is_honoured() {
        let mut auto = AutoQuality::new(LADDER.to_vec(), 1, LatencyBudget::DEFAULT);
        let obs = Observation {
            latency_p50_us: Some(100_000),
            latency_p90_us: Some(100_000),
            ..Observation::default()
        };
        assert_eq!(auto.tick(obs, 0), None, "the first tick only records");
        let d = auto.tick(obs, 0).expect("moves under the cap");
        assert_eq!(d.to, 1);
        for _ in 0..100 {
            assert_eq!(auto.tick(obs, 1), None, "never above the cap");
        }
    }

    #[test]
    fn a_latency_spike_right_after_a_switch_is_not_held_against_the_new_rung() {
        let mut run = Run::new(1);
        run.clean(FIRST_PROBE_WAIT_S);
        assert_eq!(run.index, 0, "tried the rung above");
        // The new encoder's first keyframe: a spike for a second.
        assert_eq!(run.second(|o| o.latency_p90_us = Some(280_000)), None);
        run.obs.latency_p90_us = Some(110_000);
        run.clean(1);
        // After the grace, the same spike counts.
        let d = run
            .second(|o| o.latency_p90_us = Some(280_000))
            .expect("steps down");
        assert!(matches!(d.reason, Reason::LatencyGrowing { .. }));
        // Resets count even in the grace.
        let mut run = Run::new(1);
        run.clean(FIRST_PROBE_WAIT_S);
        assert!(run.second(|o| o.frames_reset += 4).is_some());
    }

    #[test]
    fn the_bottom_rung_stays_put_whatever_happens() {
        let mut run = Run::new(2);
        run.clean(1);
        assert_eq!(run.second(|o| o.frames_reset += 10), None);
    }

    #[test]
    fn a_restart_does_not_count_a_gap_as_trouble() {
        let mut run = Run::new(0);
        run.clean(3);
        run.auto.restart();
        assert_eq!(run.second(|o| o.frames_skipped += 100), None);
        assert_eq!(run.second(|_| {}), None);
    }
}
