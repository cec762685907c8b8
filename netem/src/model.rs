//! The impairment model, sans I/O: given a packet's arrival time and size, decide whether
//! the link loses it and when it comes out. Reproducible from a seed.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bursty loss (Gilbert-Elliott): a good state without loss and a bad state that loses
/// `loss_in_bad` of its packets; the chances of switching are per packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bursts {
    pub enter_bad: f64,
    pub leave_bad: f64,
    pub loss_in_bad: f64,
}

impl Bursts {
    /// Bursts averaging `mean_len` packets that lose `loss` of all packets overall.
    pub fn with_mean(loss: f64, mean_len: f64) -> Self {
        let leave_bad = 1.0 / mean_len.max(1.0);
        // Stationary share of bad packets = enter / (enter + leave) = loss (all lost in bad).
        let loss = loss.clamp(0.0, 0.99);
        Self {
            enter_bad: leave_bad * loss / (1.0 - loss),
            leave_bad,
            loss_in_bad: 1.0,
        }
    }
}

/// What one direction of the link does to packets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in 0..jitter (packets may overtake each other only through
    /// `reorder`: jitter keeps order, as a real queue does).
    pub jitter: Duration,
    /// Independent random loss, 0..1.
    pub loss: f64,
    pub bursts: Option<Bursts>,
    /// Share of packets held back by `reorder_by`, arriving after later ones.
    pub reorder: f64,
    pub reorder_by: Duration,
    /// Bandwidth cap in bits per second, with a tail-drop queue of `queue_bytes` (0: 100 ms
    /// at the rate).
    pub rate_bps: Option<u64>,
    pub queue_bytes: usize,
    /// Everything is lost while set (an outage).
    pub down: bool,
}

/// What happened to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Comes out at this time (on the same clock as the arrival).
    Deliver(Duration),
    Lost(Loss),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    Random,
    Burst,
    QueueFull,
    Outage,
}

/// Counters of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub packets: u64,
    pub delivered: u64,
    pub lost_random: u64,
    pub lost_burst: u64,
    pub lost_queue_full: u64,
    pub lost_outage: u64,
    pub reordered: u64,
}

/// One direction of the impaired link.
pub struct Link {
    pub impairment: Impairment,
    rng: ChaCha8Rng,
    in_bad_state: bool,
    /// When the cap's transmitter is free again.
    free_at: Duration,
    /// The latest delivery time handed out (jitter never reorders).
    last_delivery: Duration,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        Self {
            impairment,
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_bad_state: false,
            free_at: Duration::ZERO,
            last_delivery: Duration::ZERO,
            stats: LinkStats::default(),
        }
    }

    /// Decides the fate of a packet of `len` bytes arriving at `now`.
    pub fn packet(&mut self, now: Duration, len: usize) -> Verdict {
        let imp = &self.impairment;
        self.stats.packets += 1;
        // Draw every random number for every packet, so a change of one setting does not
        // shift the others' random sequences.
        let (u_loss, u_state, u_bad, u_jitter, u_reorder) = (
            self.rng.random::<f64>(),
            self.rng.random::<f64>(),
            self.rng.random::<f64>(),
            self.rng.random::<f64>(),
            self.rng.random::<f64>(),
        );
        if imp.down {
            self.stats.lost_outage += 1;
            return Verdict::Lost(Loss::Outage);
        }
        if let Some(b) = imp.bursts {
            self.in_bad_state = if self.in_bad_state {
                u_state >= b.leave_bad
            } else {
                u_state < b.enter_bad
            };
            if self.in_bad_state && u_bad < b.loss_in_bad {
                self.stats.lost_burst += 1;
                return Verdict::Lost(Loss::Burst);
            }
        }
        if u_loss < imp.loss {
            self.stats.lost_random += 1;
            return Verdict::Lost(Loss::Random);
        }
        let mut out = now;
        if let Some(rate) = imp.rate_bps.filter(|r| *r > 0) {
            let start = self.free_at.max(now);
            let waiting = start - now;
            let queued_bytes = (waiting.as_secs_f64() * rate as f64 / 8.0) as usize;
            // No queue given: 100 ms at the rate.
            let queue = match imp.queue_bytes {
                0 => (rate / 80) as usize,
                q => q,
            };
            if queued_bytes + len > queue.max(len) {
                self.stats.lost_queue_full += 1;
                return Verdict::Lost(Loss::QueueFull);
            }
            let transmit = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            self.free_at = start + transmit;
            out = self.free_at;
        }
        out += imp.delay + imp.jitter.mul_f64(u_jitter);
        if u_reorder < imp.reorder {
            self.stats.reordered += 1;
            out += imp.reorder_by;
        } else {
            out = out.max(self.last_delivery);
            self.last_delivery = out;
        }
        self.stats.delivered += 1;
        Verdict::Deliver(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let imp = Impairment {
            loss: 0.1,
            jitter: ms(30),
            ..Impairment::default()
        };
        let run = |seed| {
            let mut l = Link::new(imp.clone(), seed);
            (0..500).map(|i| l.packet(ms(i), 1200)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn random_loss_is_near_its_rate_and_delay_is_added() {
        let mut l = Link::new(
            Impairment {
                loss: 0.05,
                delay: ms(20),
                ..Impairment::default()
            },
            1,
        );
        for i in 0..20_000 {
            if let Verdict::Deliver(t) = l.packet(ms(i), 1000) {
                assert_eq!(t, ms(i) + ms(20));
            }
        }
        let rate = l.stats.lost_random as f64 / 20_000.0;
        assert!((rate - 0.05).abs() < 0.006, "{rate}");
    }

    #[test]
    fn bursts_lose_the_asked_share_in_runs() {
        let mut l = Link::new(
            Impairment {
                bursts: Some(Bursts::with_mean(0.02, 5.0)),
                ..Impairment::default()
            },
            3,
        );
        let lost: Vec<bool> = (0..50_000)
            .map(|i| matches!(l.packet(ms(i), 100), Verdict::Lost(_)))
            .collect();
        let share = lost.iter().filter(|&&x| x).count() as f64 / lost.len() as f64;
        assert!((share - 0.02).abs() < 0.006, "{share}");
        let runs = lost.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let mean_run = lost.iter().filter(|&&x| x).count() as f64 / runs;
        assert!((mean_run - 5.0).abs() < 1.0, "mean burst {mean_run}");
    }

    #[test]
    fn a_cap_limits_throughput_and_its_queue_is_bounded() {
        // 1 Mbit/s, 10 KB queue; offered: 1250-byte packets every 5 ms = 2 Mbit/s.
        let mut l = Link::new(
            Impairment {
                rate_bps: Some(1_000_000),
                queue_bytes: 10_000,
                ..Impairment::default()
            },
            5,
        );
        let mut last = Duration::ZERO;
        for i in 0..2000 {
            let now = ms(i * 5);
            if let Verdict::Deliver(t) = l.packet(now, 1250) {
                // Never queued longer than the queue holds: 10 KB at 1 Mbit/s = 80 ms.
                assert!(t - now <= ms(91), "{:?}", t - now);
                last = t;
            }
        }
        let delivered_bits = l.stats.delivered as f64 * 1250.0 * 8.0;
        let throughput = delivered_bits / last.as_secs_f64();
        assert!((throughput - 1_000_000.0).abs() < 30_000.0, "{throughput}");
        assert!(l.stats.lost_queue_full > 900, "{:?}", l.stats);
    }

    #[test]
    fn an_outage_loses_everything_and_jitter_keeps_order() {
        let mut l = Link::new(
            Impairment {
                jitter: ms(30),
                ..Impairment::default()
            },
            9,
        );
        let mut last = Duration::ZERO;
        for i in 0..1000 {
            let Verdict::Deliver(t) = l.packet(ms(i), 100) else {
                panic!("no loss configured")
            };
            assert!(t >= last);
            last = t;
        }
        l.impairment.down = true;
        assert_eq!(l.packet(ms(2000), 100), Verdict::Lost(Loss::Outage));
    }

    #[test]
    fn reordering_holds_some_packets_back() {
        let mut l = Link::new(
            Impairment {
                reorder: 0.1,
                reorder_by: ms(15),
                ..Impairment::default()
            },
            11,
        );
        let times: Vec<Duration> = (0..1000)
            .filter_map(|i| match l.packet(ms(i), 100) {
                Verdict::Deliver(t) => Some(t),
                _ => None,
            })
            .collect();
        let overtaken = times.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(overtaken > 50, "{overtaken}");
    }
}
