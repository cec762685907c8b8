//! `streamsocket-bench scrape`: what `/metrics` costs the server (issue 15's target: scraped
//! every second, under 1% of a core).
//!
//! One release server with `viewers` light viewers (see `fanout`), its metrics on a
//! `--metrics-listen` listener (plain HTTP on loopback, one kept-alive connection per phase,
//! as a Prometheus scraper keeps it; the server ends connections idle for 10 s). In the same run, phases of `seconds` each: without
//! scraping, scraping every second, without again; then a burst of back-to-back scrapes,
//! whose CPU over the baseline gives the cost of one scrape precisely (the once-a-second
//! difference is within the noise of the encoder's own CPU). Also each scrape's time seen by
//! the scraper (request to whole body), p50 and p95, and the body's size.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use streamsocket_proto::control::WishedRendition;
use streamsocket_tests::ServerProcess;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::fanout::{light_viewer, Kind, LightRun};

/// A kept-alive HTTP/1.1 connection to the metrics listener.
struct Scraper {
    stream: BufReader<TcpStream>,
}

impl Scraper {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(tcp),
        })
    }

    /// GETs `/metrics`; the body's length.
    async fn scrape(&mut self) -> anyhow::Result<usize> {
        self.stream
            .get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("/metrics answered {line:?}");
        }
        let mut length = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
            }
        }
        let length = length.context("no content-length")?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(length)
    }
}

/// The server's CPU over a span of wall time, percent of one core.
struct CpuSpan {
    pid: u32,
    cpu: f64,
    at: Instant,
}

impl CpuSpan {
    fn start(pid: u32) -> Self {
        Self {
            pid,
            cpu: crate::cpu_seconds(pid).unwrap_or(f64::NAN),
            at: Instant::now(),
        }
    }

    /// (CPU seconds, wall seconds) since the start.
    fn end(&self) -> (f64, f64) {
        (
            crate::cpu_seconds(self.pid).unwrap_or(f64::NAN) - self.cpu,
            self.at.elapsed().as_secs_f64(),
        )
    }
}

pub fn run(viewers: usize, seconds: u64, burst: u32, server_args: &[String]) -> anyhow::Result<()> {
    let mut args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let server = ServerProcess::start(&args)?;
    let line = server.wait_for_stdout_line("metrics http://", Duration::from_secs(10));
    let metrics: SocketAddr = line["metrics http://".len()..]
        .trim_end_matches("/metrics")
        .parse()
        .with_context(|| format!("metrics address in {line:?}"))?;
    let light = LightRun::new(&server, 1, Kind::Native)?;
    let warmup = 3;
    let watch = Duration::from_secs(warmup + 3 * seconds + 30);
    let handles: Vec<_> = (0..viewers)
        .map(|_| {
            light.runtime.spawn(light_viewer(
                light.dial.clone(),
                light.addr,
                watch,
                WishedRendition::Fixed(0),
            ))
        })
        .collect();
    let pid = server.pid();
    println!(
        "server {:?}, {viewers} light viewer(s); phases of {seconds} s: no scraping, a scrape every second, no scraping; then {burst} scrapes back to back",
        streamsocket_tests::server_options(&args)
    );
    let report = light.runtime.block_on(async {
        // The viewers join and the encoder starts.
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        let mut scraper = Scraper::connect(metrics).await?;
        let size = scraper.scrape().await?;
        let quiet = |s: u64| async move {
            let span = CpuSpan::start(pid);
            tokio::time::sleep(Duration::from_secs(s)).await;
            span.end()
        };
        let before = quiet(seconds).await;
        // Anew: the server ends a connection idle for 10 s (docs/SECURITY.md).
        let mut scraper = Scraper::connect(metrics).await?;
        let mut times = Histogram::<u64>::new(3)?;
        let span = CpuSpan::start(pid);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for _ in 0..seconds {
            tick.tick().await;
            let t = Instant::now();
            scraper.scrape().await?;
            times.record(t.elapsed().as_micros() as u64)?;
        }
        // The last interval, so the phase lasts `seconds` like the others.
        tick.tick().await;
        let scraping = span.end();
        let after = quiet(seconds).await;
        let mut scraper = Scraper::connect(metrics).await?;
        let span = CpuSpan::start(pid);
        let mut burst_times = Histogram::<u64>::new(3)?;
        for _ in 0..burst {
            let t = Instant::now();
            scraper.scrape().await?;
            burst_times.record(t.elapsed().as_micros() as u64)?;
        }
        let bursting = span.end();
        anyhow::Ok((size, before, scraping, after, bursting, times, burst_times))
    })?;
    let (size, before, scraping, after, bursting, times, burst_times) = report;
    for h in handles {
        h.abort();
    }
    let pct = |(cpu, wall): (f64, f64)| cpu / wall * 100.0;
    let baseline = (before.0 + after.0) / (before.1 + after.1) * 100.0;
    let per_scrape_ms = (bursting.0 - baseline / 100.0 * bursting.1) / f64::from(burst) * 1000.0;
    println!("/metrics body: {size} bytes");
    println!(
        "server CPU without scraping: {:.2}% then {:.2}% of a core (mean {baseline:.2}%)",
        pct(before),
        pct(after)
    );
    println!(
        "server CPU scraped every second: {:.2}% of a core (ratio to without: {:.3}; difference {:+.2} points, against {:.2} points between the two phases without)",
        pct(scraping),
        pct(scraping) / baseline,
        pct(scraping) - baseline,
        (pct(after) - pct(before)).abs()
    );
    println!(
        "one scrape, server CPU: {per_scrape_ms:.3} ms ({burst} back to back in {:.2} s, over the baseline), so once a second: {:.3}% of a core",
        bursting.1,
        per_scrape_ms / 10.0
    );
    println!(
        "scrape time seen by the scraper: p50 {:.3} ms, p95 {:.3} ms (once a second); back to back p50 {:.3} ms, p95 {:.3} ms",
        times.value_at_quantile(0.5) as f64 / 1000.0,
        times.value_at_quantile(0.95) as f64 / 1000.0,
        burst_times.value_at_quantile(0.5) as f64 / 1000.0,
        burst_times.value_at_quantile(0.95) as f64 / 1000.0,
    );
    Ok(())
}
