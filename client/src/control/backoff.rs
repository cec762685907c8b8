//! How long the viewer waits between reconnection attempts.

use std::time::Duration;

/// Waits between reconnection attempts: 250 ms, doubling up to 5 s, each ±20% at random so
/// that the viewers of a restarted server do not all come back at the same instant.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    rng: rand_chacha::ChaCha8Rng,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// Repeatable waits, for tests.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            next: Self::FIRST,
            rng: rand::SeedableRng::seed_from_u64(seed),
        }
    }

    /// Starts over from [`Self::FIRST`] (a new outage).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub fn next_wait(&mut self) -> Duration {
        let spread = rand::Rng::random_range(&mut self.rng, 0.8..1.2);
        let wait = self.next.mul_f64(spread);
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_spread() {
        let mut b = Backoff::with_seed(42);
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        let nominal = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000];
        for (w, n) in waits.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(
                *w >= n.mul_f64(0.8) && *w <= n.mul_f64(1.2),
                "{w:?} for {n:?}"
            );
        }
        // Two viewers do not wait alike.
        let mut other = Backoff::with_seed(7);
        assert_ne!(other.next_wait(), Backoff::with_seed(42).next_wait());
    }
}
