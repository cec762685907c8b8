//! `streamsocket-client`: watch a StreamSocket server. The command line only; the viewer
//! itself is the library's [`streamsocket_client::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use streamsocket_certs::Fingerprint;
use streamsocket_client::{
    default_ca, list_speakers, parse_script, Command, LatencyBudget, QualityWish, RelayOptions,
    Trust, ViewerIdentity, ViewerOptions,
};

/// Watch a StreamSocket server: live AV1 video in a window, Opus audio on the speakers.
///
/// Or watch through Media over QUIC relays: give one or more relay URLs
/// (https://relay.example:4443/live) and --broadcast. The viewer plays the same way; a
/// quality switch subscribes to another rendition's track, and a relay that dies is left for
/// the next URL within about --relay-timeout.
///
/// The server is verified against a CA file (default certs/ca.pem, as the server generates
/// it) or a pinned certificate fingerprint (printed by the server at start). There is no
/// option to skip verification.
///
/// Keys in the window: 1-9 pick a rendition, Up/Down (or +/-) step quality, A automatic,
/// [ and ] audio bitrate, M mute, Space pause/resume, S stats overlay, H or F1 help, Q or Esc
/// quit. Headless viewers take the same requests from --script or --stdin-commands.
#[derive(Parser, Debug)]
// A later option overrides an earlier one: the demo scripts put their defaults (e.g.
// `--duration 15` under Xvfb) before the options they pass on.
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    args_override_self = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// Server address, host:port (port defaults to 4443). The host is also the name checked
    /// in the server's certificate unless --server-name is given. Or relay URLs,
    /// https://HOST:PORT/PATH, tried in this order (the next one when one is lost).
    #[arg(required = true, value_name = "SERVER|RELAY_URL")]
    server: Vec<String>,
    /// Through relays: the broadcast's name under the relay URL's path (what the origin's
    /// --broadcast says).
    #[arg(long, default_value = "streamsocket.hang", value_name = "NAME")]
    broadcast: String,
    /// Through relays: a relay silent this long is lost and the next one tried (keep-alives
    /// go four times as often).
    #[arg(long, default_value_t = 600, value_name = "MS")]
    relay_timeout: u64,
    /// Name to verify in the server's certificate, when it differs from the host you connect to.
    #[arg(long)]
    server_name: Option<String>,
    /// CA certificate that signed the server's certificate [default: certs/ca.pem].
    #[arg(long, conflicts_with = "fingerprint")]
    ca: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (sha256:<hex>).
    #[arg(long)]
    fingerprint: Option<Fingerprint>,
    /// Your viewer certificate, for a server started with --require-viewer-cert (its operator
    /// issues it with `streamsocket-certs viewer NAME`).
    #[arg(long, value_name = "NAME.pem")]
    cert: Option<PathBuf>,
    /// The key of --cert [default: the --cert file with .key instead of .pem].
    #[arg(long, value_name = "NAME.key", requires = "cert")]
    key: Option<PathBuf>,
    /// Access token, for a server started with --token or --token-file; through relays, the
    /// relays' JWT (sent as ?jwt=).
    #[arg(long, env = "STREAMSOCKET_TOKEN", hide_env_values = true, value_parser = parse_token)]
    token: Option<String>,
    /// Decode without a window or sound output (tests, benchmarks, machines without display).
    #[arg(long)]
    headless: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write the session's statistics as JSON to this file when the viewer ends.
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// End-to-end latency to aim for, in ms (50 to 5000); the server drops frames that cannot
    /// make it, and the sound waits at most this long for the picture.
    #[arg(long, default_value = "300", value_name = "MS")]
    latency_target: LatencyBudget,
    /// Rendition to start with: its position in the server's ladder, 1 = highest (as the keys
    /// 1-9), its name as the server lists it (e.g. 180p), or auto (the default).
    #[arg(long, value_name = "N|NAME|auto")]
    quality: Option<QualityWish>,
    /// The highest rendition automatic quality may pick (1 = highest, as --quality); for a
    /// metered or shared connection.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16), default_value_t = 1)]
    max_quality: u8,
    /// Timed requests for tests and benchmarks: comma-separated SECONDS:COMMAND from the start,
    /// e.g. "2:quality=3,4:up,6:pause,7:resume". Commands: quality=N (1-based), up, down, auto,
    /// audio-up, audio-down, mute, pause, resume, quit.
    #[arg(long, value_name = "STEPS", value_parser = parse_script_arg)]
    script: Option<Script>,
    /// Read the same commands from standard input, one per line.
    #[arg(long)]
    stdin_commands: bool,
    /// Record what arrives, without re-encoding, to this WebM file (AV1 + Opus; plays in
    /// ffmpeg/ffplay, mpv, VLC and browsers). It starts at the first keyframe.
    #[arg(long, value_name = "FILE.webm")]
    record: Option<PathBuf>,
    /// Also write every decoded picture to this Y4M file (for quality measurements); pictures
    /// of another size after a quality switch go to FILE-WxH.y4m beside it.
    #[arg(long, value_name = "FILE.y4m")]
    dump_y4m: Option<PathBuf>,
    /// The audio output to play on: part of its name, as `streamsocket-client devices` lists
    /// them (default: the system's default output).
    #[arg(long, value_name = "NAME")]
    speaker: Option<String>,
    /// Also write the sound as played (48 kHz mono, 16-bit) to this WAV file.
    #[arg(long, value_name = "FILE.wav")]
    dump_wav: Option<PathBuf>,
    /// dav1d decoder threads (0 = one per core).
    #[arg(long, default_value_t = 1, value_name = "N")]
    decoder_threads: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// List the audio outputs (for --speaker), then exit.
    Devices,
}

impl Args {
    /// What the library needs, from what clap read.
    fn into_options(self) -> anyhow::Result<ViewerOptions> {
        let duration = match self.duration {
            Some(d) => {
                anyhow::ensure!(
                    d.is_finite() && d > 0.0,
                    "--duration must be a positive number of seconds"
                );
                Some(Duration::from_secs_f64(d))
            }
            None => None,
        };
        let trust = match (self.fingerprint, self.ca.clone()) {
            (Some(fp), _) => Trust::Pinned(fp),
            (None, Some(ca)) => Trust::Ca(ca),
            (None, None) => Trust::Ca(default_ca()),
        };
        let relays = self.relay_options(trust.clone())?;
        let token = self.token.unwrap_or_default();
        if relays.is_none() {
            anyhow::ensure!(
                token.len() <= streamsocket_proto::control::MAX_TOKEN,
                "a server's access token is at most {} bytes",
                streamsocket_proto::control::MAX_TOKEN
            );
        }
        Ok(ViewerOptions {
            server: match &relays {
                Some(r) => format!("{} ({})", self.server[0], r.broadcast),
                None => self.server[0].clone(),
            },
            relays,
            server_name: self.server_name,
            trust,
            identity: self.cert.map(|cert| ViewerIdentity::new(cert, self.key)),
            token: token.into(),
            headless: self.headless,
            duration,
            stats_json: self.stats_json,
            latency: self.latency_target,
            quality: self.quality.unwrap_or_default(),
            max_quality: self.max_quality,
            script: self.script.map(|s| s.0).unwrap_or_default(),
            stdin_commands: self.stdin_commands,
            record: self.record,
            dump_y4m: self.dump_y4m,
            speaker: self.speaker,
            dump_wav: self.dump_wav,
            decoder_threads: self.decoder_threads,
        })
    }
}

impl Args {
    /// Relay URLs given instead of a server: how to watch through them.
    fn relay_options(&self, trust: Trust) -> anyhow::Result<Option<RelayOptions>> {
        let is_url = |s: &String| s.contains("://");
        if !self.server.iter().any(is_url) {
            anyhow::ensure!(
                self.server.len() == 1,
                "give one server (host:port), or relay URLs (https://HOST:PORT/PATH)"
            );
            return Ok(None);
        }
        anyhow::ensure!(
            self.server.iter().all(is_url),
            "relay URLs (https://HOST:PORT/PATH) and a server address cannot be mixed"
        );
        anyhow::ensure!(
            self.cert.is_none() && self.server_name.is_none(),
            "--cert and --server-name are for StreamSocket servers; relays are verified by their URL's host and take a token (--token)"
        );
        let options = RelayOptions {
            urls: self.server.clone(),
            broadcast: self.broadcast.clone(),
            token: self.token.clone().filter(|t| !t.is_empty()),
            trust,
            timeout: Duration::from_millis(self.relay_timeout),
        };
        options.check()?;
        Ok(Some(options))
    }
}

/// `--script` steps: when, from the start, and what.
#[derive(Debug, Clone)]
struct Script(Vec<(Duration, Command)>);

fn parse_script_arg(text: &str) -> Result<Script, String> {
    parse_script(text).map(Script)
}

/// The longest token taken (a relay's JWT; a server's token is at most
/// [`streamsocket_proto::control::MAX_TOKEN`] bytes, checked once the mode is known).
const MAX_JWT: usize = 8192;

fn parse_token(text: &str) -> Result<String, String> {
    if text.len() > MAX_JWT {
        return Err(format!("a token is at most {MAX_JWT} bytes"));
    }
    Ok(text.to_string())
}

fn main() -> ExitCode {
    streamsocket_transport::init_logging();
    let args = Args::parse();
    if let Some(Subcommand::Devices) = args.command {
        let outputs = list_speakers();
        if outputs.is_empty() {
            println!("audio outputs: none found");
        } else {
            println!("audio outputs:");
            for o in outputs {
                println!("  {o}");
            }
        }
        return ExitCode::SUCCESS;
    }
    match args.into_options().and_then(streamsocket_client::run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: &[&str]) -> Result<ViewerOptions, String> {
        let args = ["streamsocket-client", "localhost:4443"]
            .iter()
            .chain(extra)
            .copied();
        let args = Args::try_parse_from(args).map_err(|e| e.to_string())?;
        args.into_options().map_err(|e| e.to_string())
    }

    #[test]
    fn quality_takes_auto_a_position_or_a_rendition_name() {
        assert_eq!(options(&[]).unwrap().quality, QualityWish::Auto);
        assert_eq!(
            options(&["--quality", "auto"]).unwrap().quality,
            QualityWish::Auto
        );
        assert_eq!(
            options(&["--quality", "2"]).unwrap().quality,
            QualityWish::Position(1)
        );
        assert_eq!(
            options(&["--quality", "180p"]).unwrap().quality,
            QualityWish::Name("180p".into())
        );
        assert!(options(&["--quality", "0"]).is_err());
        assert!(options(&["--quality", "17"]).is_err());
    }

    #[test]
    fn the_latency_target_is_one_budget() {
        assert_eq!(options(&[]).unwrap().latency, LatencyBudget::DEFAULT);
        let o = options(&["--latency-target", "120"]).unwrap();
        assert_eq!(o.latency.as_us(), 120_000);
        assert!(options(&["--latency-target", "20"]).is_err());
        assert!(options(&["--duration", "-1"]).is_err());
    }

    fn parse(args: &[&str]) -> Result<ViewerOptions, String> {
        let args = Args::try_parse_from(
            std::iter::once("streamsocket-client").chain(args.iter().copied()),
        )
        .map_err(|e| e.to_string())?;
        args.into_options().map_err(|e| e.to_string())
    }

    #[test]
    fn a_later_option_overrides_an_earlier_one() {
        let o = options(&["--duration", "15", "--duration", "10"]).unwrap();
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn relay_urls_watch_through_relays() {
        assert!(options(&[]).unwrap().relays.is_none());
        let o = parse(&[
            "https://127.0.0.1:4451/live",
            "https://127.0.0.1:4452/live",
            "--broadcast",
            "demo.hang",
            "--token",
            "a.b.c",
        ])
        .unwrap();
        let r = o.relays.unwrap();
        assert_eq!(r.urls.len(), 2);
        assert_eq!(r.broadcast, "demo.hang");
        assert_eq!(r.token.as_deref(), Some("a.b.c"));
        assert_eq!(r.timeout, Duration::from_millis(600));
        // A relay's JWT may be longer than a server's token.
        let jwt = "x".repeat(1000);
        assert!(parse(&["https://relay.example/live", "--token", &jwt]).is_ok());
        assert!(parse(&["localhost:4443", "--token", &jwt]).is_err());
        assert!(parse(&["localhost:4443", "https://relay.example/live"]).is_err());
        assert!(parse(&["localhost:4443", "localhost:4444"]).is_err());
        assert!(parse(&["http://relay.example/live"]).is_err());
        assert!(parse(&["https://relay.example/live", "--server-name", "x"]).is_err());
    }
}
