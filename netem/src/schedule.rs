//! Impairment settings in text: `delay=20ms,jitter=5ms,loss=5%,burst=2%/5,reorder=1%,
//! reorder-by=10ms,rate=300kbit,queue=30kB,down,up`, and schedules of them:
//! `0:loss=5%; 10:rate=300kbit; 20:down; 22:up` (seconds from the start; each step changes
//! the settings it names and keeps the others).

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use crate::model::{Bursts, Impairment};

fn duration(v: &str) -> anyhow::Result<Duration> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("{v:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "us" => n / 1e6,
        _ => bail!("{v:?}: give a unit, ms, s or us"),
    };
    if !(0.0..=3600.0).contains(&secs) {
        bail!("{v:?} is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn share(v: &str) -> anyhow::Result<f64> {
    let n: f64 = v
        .strip_suffix('%')
        .with_context(|| format!("{v:?}: give a percentage, e.g. 5%"))?
        .parse()
        .with_context(|| format!("{v:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&n) {
        bail!("{v:?} is not between 0% and 100%");
    }
    Ok(n / 100.0)
}

fn bits_per_second(v: &str) -> anyhow::Result<Option<u64>> {
    if v == "none" {
        return Ok(None);
    }
    let lower = v.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = lower.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = lower.strip_suffix("bit") {
        (n, 1.0)
    } else {
        bail!("{v:?}: give a rate with a unit, e.g. 300kbit or 2mbit, or none")
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{v:?} is not a rate"))?;
    if !n.is_finite() || n * mult < 1.0 || n * mult > 1e12 {
        bail!("{v:?}: a rate is 1 bit/s to 1000 Gbit/s");
    }
    Ok(Some((n * mult) as u64))
}

fn bytes(v: &str) -> anyhow::Result<usize> {
    let lower = v.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("kb") {
        (n, 1000.0)
    } else if let Some(n) = lower.strip_suffix("mb") {
        (n, 1e6)
    } else if let Some(n) = lower.strip_suffix('b') {
        (n, 1.0)
    } else {
        bail!("{v:?}: give a size with a unit, e.g. 30kB")
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{v:?} is not a size"))?;
    if !n.is_finite() || n < 0.0 || n * mult > 1e10 {
        bail!("{v:?}: a size is 0 to 10 GB");
    }
    Ok((n * mult) as usize)
}

/// Applies `key=value,...` changes to `imp`.
pub fn apply(imp: &mut Impairment, text: &str) -> anyhow::Result<()> {
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        match key {
            "delay" => imp.delay = duration(value)?,
            "jitter" => imp.jitter = duration(value)?,
            "loss" => imp.loss = share(value)?,
            "burst" => {
                imp.bursts = if value == "none" {
                    None
                } else {
                    let (loss, len) = value
                        .split_once('/')
                        .with_context(|| format!("burst={value}: give LOSS%/MEAN_LENGTH, e.g. 2%/5"))?;
                    let len: f64 = len.parse().with_context(|| format!("burst length {len:?}"))?;
                    Some(Bursts::with_mean(share(loss)?, len))
                }
            }
            "reorder" => imp.reorder = share(value)?,
            "reorder-by" => imp.reorder_by = duration(value)?,
            "rate" => imp.rate_bps = bits_per_second(value)?,
            "queue" => imp.queue_bytes = bytes(value)?,
            "down" => imp.down = true,
            "up" => imp.down = false,
            other => bail!(
                "unknown setting {other:?}: delay, jitter, loss, burst, reorder, reorder-by, rate, queue, down, up"
            ),
        }
    }
    Ok(())
}

/// A schedule: (seconds from start, changes).
pub fn parse_schedule(text: &str) -> anyhow::Result<Vec<(Duration, String)>> {
    let mut steps = Vec::new();
    for step in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (at, changes) = step
            .split_once(':')
            .ok_or_else(|| anyhow!("{step:?}: give SECONDS:changes"))?;
        let at: f64 = at
            .trim()
            .parse()
            .with_context(|| format!("{at:?} is not a time in seconds"))?;
        if !(0.0..=86_400.0).contains(&at) {
            bail!("{at} s is out of range");
        }
        // Check the changes now, not when the step comes.
        apply(&mut Impairment::default(), changes)?;
        steps.push((Duration::from_secs_f64(at), changes.trim().to_string()));
    }
    steps.sort_by_key(|s| s.0);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_mistakes_are_explained() {
        let mut imp = Impairment::default();
        apply(
            &mut imp,
            "delay=20ms, jitter=5ms,loss=5%,rate=300kbit,queue=30kB,reorder=1%,reorder-by=10ms",
        )
        .unwrap();
        assert_eq!(imp.delay, Duration::from_millis(20));
        assert_eq!(imp.loss, 0.05);
        assert_eq!(imp.rate_bps, Some(300_000));
        assert_eq!(imp.queue_bytes, 30_000);
        apply(&mut imp, "down").unwrap();
        assert!(imp.down);
        apply(&mut imp, "up,rate=none,burst=2%/5").unwrap();
        assert!(!imp.down && imp.rate_bps.is_none() && imp.bursts.is_some());
        for bad in [
            "loss=5",
            "delay=20",
            "rate=fast",
            "colour=red",
            "loss=150%",
            "burst=2%",
            "rate=nanbit",
            "rate=0.5bit",
            "queue=-3kB",
            "queue=NaNkB",
        ] {
            assert!(apply(&mut imp, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_are_sorted_and_checked() {
        let s = parse_schedule("10:rate=300kbit; 0:loss=5%;20:down").unwrap();
        assert_eq!(s[0].0, Duration::ZERO);
        assert_eq!(s[2].1, "down");
        assert!(parse_schedule("x:down").is_err());
        assert!(parse_schedule("5:warp=9").is_err());
    }
}
