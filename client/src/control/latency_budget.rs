//! The end-to-end latency the viewer aims for, built once from `--latency-target`: the hello
//! asks the server for it, automatic quality steps down when frames come later, the decoder
//! counts a frame as live within it, and the sound waits at most this long for the picture.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Capture-to-shown latency the viewer aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LatencyBudget {
    ms: u16,
}

impl LatencyBudget {
    pub const MIN_MS: u16 = 50;
    pub const MAX_MS: u16 = 5000;
    pub const DEFAULT: LatencyBudget = LatencyBudget { ms: 300 };

    /// A budget of `ms` milliseconds, within [`Self::MIN_MS`] and [`Self::MAX_MS`].
    pub fn from_ms(ms: u16) -> Result<Self, String> {
        if (Self::MIN_MS..=Self::MAX_MS).contains(&ms) {
            Ok(Self { ms })
        } else {
            Err(format!(
                "the latency target is {} to {} ms, not {ms}",
                Self::MIN_MS,
                Self::MAX_MS
            ))
        }
    }

    /// As the hello carries it.
    pub fn as_ms(self) -> u16 {
        self.ms
    }

    pub fn as_us(self) -> u64 {
        u64::from(self.ms) * 1000
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.ms))
    }
}

impl Default for LatencyBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for LatencyBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.ms)
    }
}

impl FromStr for LatencyBudget {
    type Err = String;

    /// Milliseconds, as `--latency-target` takes them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms: u16 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number of milliseconds"))?;
        Self::from_ms(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_in_every_unit() {
        let b: LatencyBudget = "250".parse().unwrap();
        assert_eq!(b.as_ms(), 250);
        assert_eq!(b.as_us(), 250_000);
        assert_eq!(b.as_duration(), Duration::from_millis(250));
        assert_eq!(LatencyBudget::default().as_ms(), 300);
    }

    #[test]
    fn out_of_range_is_refused() {
        assert!("49".parse::<LatencyBudget>().is_err());
        assert!("5001".parse::<LatencyBudget>().is_err());
        assert!("fast".parse::<LatencyBudget>().is_err());
        assert!("5000".parse::<LatencyBudget>().is_ok());
    }
}
