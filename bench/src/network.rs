//! `streamsocket-bench network`: the bad-network scenarios, each beside a clean run.
//! The release server streams the test source; `streamsocket-netem` impairs the path; a
//! headless viewer watches through it (certificate checked by name) and reports what it saw.

use std::time::Duration;

use serde_json::Value;
use streamsocket_tests::relay::{RelayCerts, RelayOptions, RelayProcess};
use streamsocket_tests::{run_viewer, ServerProcess};

/// Which way the measured viewer watches: straight from the server, or through a moq-relay
/// the server publishes into (the impairment then sits between relay and viewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Server,
    Relay,
}

/// One scenario: netem settings from the start, a schedule, and whether the viewer runs
/// automatic quality (else the top rung).
pub struct Scenario {
    pub name: &'static str,
    pub set: &'static str,
    pub schedule: &'static str,
    pub automatic: bool,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "clean",
        set: "",
        schedule: "",
        automatic: false,
    },
    Scenario {
        name: "1: 5% loss, 40 ms RTT",
        set: "delay=20ms,loss=5%",
        schedule: "",
        automatic: false,
    },
    Scenario {
        name: "2: 2% bursty loss, 30 ms jitter",
        set: "delay=10ms,jitter=30ms,burst=2%/5",
        schedule: "",
        automatic: false,
    },
    Scenario {
        name: "3: capped at 500 kbit/s (auto)",
        set: "rate=500kbit,queue=30kB",
        schedule: "",
        automatic: true,
    },
    Scenario {
        name: "4: cap lifted at 6 s (auto)",
        set: "rate=500kbit,queue=30kB",
        schedule: "6:rate=none",
        automatic: true,
    },
    Scenario {
        name: "5: 2 s outage at 5 s",
        set: "",
        schedule: "5:down;7:up",
        automatic: false,
    },
    Scenario {
        name: "6: 200 ms RTT",
        set: "delay=100ms",
        schedule: "",
        automatic: false,
    },
];

fn get(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// The rendition timeline, compactly: "0.0: 1 (start); 3.2: 3 (4 frames missed ...)".
fn timeline(s: &Value) -> String {
    let Some(changes) = s.pointer("/rendition_timeline").and_then(Value::as_array) else {
        return String::new();
    };
    changes
        .iter()
        .map(|c| {
            format!(
                "{:.1}: {} ({})",
                get(c, "/at_ms") / 1000.0,
                get(c, "/rendition") as u64 + 1,
                c.pointer("/reason").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Who else is in a scenario run: `others` unimpaired viewers, the server's extra options,
/// and which ways the measured viewer watches.
pub struct Beside<'a> {
    pub others: usize,
    pub server_args: &'a [String],
    pub via: &'a [Via],
}

/// Runs the scenarios (those matching `only`, or all) with each congestion controller and
/// each transport variant (`STREAMSOCKET_TRANSPORT` specs, see
/// `streamsocket_transport::settings::Tuning::parse`; empty: the defaults), `repeat` times.
/// `others` more viewers watch the top rung straight from the server, unimpaired, beside the
/// measured one (what one viewer's bad network costs, or not, the viewers sharing its rung).
pub fn run(
    congestion: &[String],
    transports: &[String],
    seconds: u64,
    only: &[String],
    repeat: u32,
    beside: Beside,
) -> anyhow::Result<()> {
    let Beside {
        others,
        server_args,
        via,
    } = beside;
    for spec in transports {
        streamsocket_transport::settings::Tuning::parse(spec)
            .map_err(|e| anyhow::anyhow!("--transport {spec:?}: {e}"))?;
    }
    println!(
        "# Bad-network scenarios: {seconds} s each, test source, its default ladder, netem seed 1, {others} unimpaired viewers beside (server options: {:?})",
        streamsocket_tests::server_options(
            &server_args.iter().map(String::as_str).collect::<Vec<_>>()
        )
    );
    println!();
    println!("| congestion | transport | scenario | latency p50 ms | p95 ms | p99 ms | shown p95 ms | decoded | shown | skipped | reset | too late | longest freeze ms | audio concealed % | audio delay ms | A/V skew p50 / p95 ms | renditions (s: rung, reason) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let variants = congestion
        .iter()
        .flat_map(|cc| transports.iter().map(move |t| (cc, t)));
    for (cc, transport) in variants {
        // The server and viewer processes started below inherit it. Set between runs, when
        // the previous run's threads have been joined.
        std::env::set_var(streamsocket_transport::settings::TUNING_ENV, transport);
        let shown = if transport.is_empty() {
            "default"
        } else {
            transport.as_str()
        };
        for (sc, via) in SCENARIOS
            .iter()
            .flat_map(|sc| std::iter::repeat_n(sc, repeat as usize))
            .flat_map(|sc| via.iter().map(move |v| (sc, *v)))
        {
            if !only.is_empty() && !only.iter().any(|o| sc.name.contains(o.as_str())) {
                continue;
            }
            let certs = RelayCerts::new()?;
            let moq_relay = match via {
                Via::Server => None,
                Via::Relay => Some(RelayProcess::start(
                    RelayOptions::public().with_tls(certs.tls()),
                )?),
            };
            let publish = moq_relay.as_ref().map(|r| r.url("live").to_string());
            let relay_ca = certs.ca().display().to_string();
            let mut args = vec!["--congestion", cc.as_str()];
            if let Some(url) = &publish {
                args.extend(["--publish", url.as_str(), "--publish-ca", relay_ca.as_str()]);
            }
            args.extend(server_args.iter().map(String::as_str));
            let server = ServerProcess::start(&args)?;
            if publish.is_some() {
                server.wait_for_log_where("publishing", Duration::from_secs(30), |log| {
                    log.contains("publishing to the relay")
                });
            }
            // The impairment sits in front of whatever the measured viewer dials.
            let target = moq_relay.as_ref().map_or(server.addr, |r| r.addr);
            let relay = streamsocket_tests::Relay::start(target, sc.set, sc.schedule, 1)?;
            let relay_addr = match via {
                Via::Server => relay.addr.clone(),
                Via::Relay => format!("https://{}/live", relay.addr),
            };
            let viewer_args = |duration: u64, quality: bool, via: Via| {
                let mut args = match via {
                    Via::Server => vec![
                        "--server-name".to_string(),
                        "localhost".into(),
                        "--ca".into(),
                        server.ca().display().to_string(),
                    ],
                    Via::Relay => vec!["--ca".to_string(), relay_ca.clone()],
                };
                args.extend([
                    "--headless".into(),
                    "--duration".into(),
                    duration.to_string(),
                ]);
                if quality {
                    args.extend(["--quality".into(), "1".into()]);
                }
                args
            };
            let args = viewer_args(seconds, !sc.automatic, via);
            // The others outlive the measured viewer, so it never sees one of them leave.
            let beside: Vec<_> = (0..others)
                .map(|_| {
                    let (addr, args) = (
                        server.addr.to_string(),
                        viewer_args(seconds + 1, true, Via::Server),
                    );
                    std::thread::spawn(move || {
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        run_viewer(&addr, &args, &[], Duration::from_secs(seconds + 30))
                    })
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = run_viewer(&relay_addr, &args, &[], Duration::from_secs(seconds + 30))?;
            for b in beside {
                let _ = b.join();
            }
            drop(relay);
            let name = match via {
                Via::Server => sc.name.to_string(),
                Via::Relay => format!("{} (through a moq-relay)", sc.name),
            };
            let Some(s) = run.stats.as_ref() else {
                println!(
                    "| {cc} | {shown} | {name} | viewer failed: {} |",
                    run.stderr().lines().last().unwrap_or("")
                );
                continue;
            };
            let concealed = get(s, "/audio/packets_concealed");
            let played = get(s, "/audio/packets_decoded") + concealed;
            println!(
                "| {cc} | {shown} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {:+.0} / {:+.0} | {} |",
                get(s, "/video/latency_ms/p50"),
                get(s, "/video/latency_ms/p95"),
                get(s, "/video/latency_ms/p99"),
                get(s, "/video/latency_presented_ms/p95"),
                get(s, "/video/frames_decoded"),
                get(s, "/video/frames_presented"),
                get(s, "/video/frames_skipped"),
                get(s, "/video/frames_reset"),
                get(s, "/video/frames_too_late"),
                get(s, "/video/longest_freeze_ms"),
                100.0 * concealed / played.max(1.0),
                get(s, "/audio/playout_delay_ms/p50"),
                get(s, "/av_skew_ms/p50"),
                get(s, "/av_skew_ms/p95"),
                timeline(s),
            );
        }
    }
    Ok(())
}
