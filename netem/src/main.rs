//! `streamsocket-netem`: relays UDP between viewers and a server, impairing it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use streamsocket_netem::model::Impairment;
use streamsocket_netem::{relay, schedule};

/// Relay UDP (QUIC) between StreamSocket viewers and a server, adding delay, jitter, loss
/// (random and bursty), reordering, a bandwidth cap with a bounded queue, and outages; the
/// same in both directions, reproducible from --seed, changeable on a schedule.
///
/// Point viewers at the relay's address and keep the certificate check with --server-name:
///   streamsocket-netem --to 127.0.0.1:4443 --listen 127.0.0.1:5443 --set "delay=20ms,loss=5%"
///   streamsocket-client 127.0.0.1:5443 --server-name localhost
/// Settings: delay=20ms (one way), jitter=5ms, loss=5%, burst=2%/5 (loss share / mean burst
/// length in packets), reorder=1%, reorder-by=10ms, rate=300kbit (or none), queue=30kB,
/// down, up. With a rate and no queue, the queue holds 100 ms at that rate.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The server's address.
    #[arg(long)]
    to: SocketAddr,
    /// Where viewers connect.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Settings from the start, e.g. "delay=20ms,loss=5%".
    #[arg(long, default_value = "")]
    set: String,
    /// Changes over time: "SECONDS:settings; ...", e.g. "10:rate=300kbit; 20:down; 22:up".
    #[arg(long, default_value = "")]
    schedule: String,
    /// Seed of the random choices: the same seed and traffic give the same losses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<f64>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1e6).contains(&s) => Ok(s),
        _ => Err(format!("{text:?}: give seconds, 0 to 1000000")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMSOCKET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut initial = Impairment::default();
    schedule::apply(&mut initial, &args.set)?;
    let steps = schedule::parse_schedule(&args.schedule)?;
    let listen = Arc::new(tokio::net::UdpSocket::bind(args.listen).await?);
    println!("relaying {} -> {}", listen.local_addr()?, args.to);
    println!("settings {initial:?}");
    let (settings_tx, settings_rx) = tokio::sync::watch::channel(initial);
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        for (at, changes) in steps {
            tokio::time::sleep_until(started + at).await;
            settings_tx.send_modify(|imp| {
                // Checked when parsed.
                let _ = schedule::apply(imp, &changes);
            });
            tracing::info!("at {:.1} s: {changes}", at.as_secs_f64());
        }
        // Keep the sender alive so links keep their last settings.
        std::future::pending::<()>().await;
    });
    let stats = relay::PathStats::default();
    let relay = relay::run(listen, args.to, settings_rx, args.seed, stats.clone());
    let stop = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        r = relay => r?,
        _ = stop => {}
    }
    for (viewer, up, down) in stats.snapshot() {
        println!("path {viewer}: to server {up:?}; to viewer {down:?}");
    }
    Ok(())
}
