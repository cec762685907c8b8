//! Real sound devices without a sound card: a private PulseAudio with a null sink stands in
//! for speakers, and the sink's monitor for a microphone. A viewer plays a tone (a WAV file
//! streamed by one server) on the "speakers" through cpal; a second server captures the
//! "microphone" through cpal; a headless viewer of that server records what it hears, which
//! must be the tone, at its pitch and level.

use std::process::Command;
use std::time::Duration;

use streamsocket_tests::{bin, exclusive, num, require_tools, run_with_limit};

fn write_tone(path: &std::path::Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..48_000 {
        let v = 0.5 * (i as f64 * 1000.0 * std::f64::consts::TAU / 48_000.0).sin();
        w.write_sample((v * i16::MAX as f64) as i16).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn a_tone_played_on_speakers_is_heard_through_a_microphone() {
    let _machine = exclusive();
    require_tools(&["xvfb-run", "pulseaudio", "pactl"]);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    write_tone(&path("tone.wav"));
    std::fs::create_dir(path("pulse")).unwrap();
    let script = r#"
wait_for() { until grep -q "$2" "$1"; do kill -0 $3 2>/dev/null || { echo "process gone waiting for $2 in $1"; cat "$1"; exit 1; }; sleep 0.05; done; }
pulseaudio -n --daemonize=no --exit-idle-time=-1 --use-pid-file=no --disable-shm=yes \
  --load="module-native-protocol-unix" --load="module-null-sink sink_name=test_speakers" 2>"$DIR/pulse.log" &
PA=$!
trap 'kill $PA 2>/dev/null' EXIT
until pactl info >/dev/null 2>&1; do kill -0 $PA || { cat "$DIR/pulse.log"; exit 1; }; sleep 0.05; done
pactl set-default-sink test_speakers
pactl set-default-source test_speakers.monitor
"$SERVER_BIN" --listen 127.0.0.1:0 --certs "$DIR/a" --video test --width 640 --height 360 --audio "$DIR/tone.wav" >"$DIR/a.out" 2>"$DIR/a.log" &
A=$!
"$SERVER_BIN" --listen 127.0.0.1:0 --certs "$DIR/b" --video test --width 640 --height 360 --audio mic --microphone pulse >"$DIR/b.out" 2>"$DIR/b.log" &
B=$!
wait_for "$DIR/a.out" "listening on" $A
wait_for "$DIR/b.out" "audio source" $B
"$CLIENT" $(grep "listening on" "$DIR/a.out" | awk '{print $3}') --ca "$DIR/a/ca.pem" --quality 3 \
  --speaker pulse --duration 11 2>"$DIR/player.log" &
P=$!
wait_for "$DIR/player.log" "playing audio on pulse" $P
wait_for "$DIR/player.log" "first frame decoded" $P
"$CLIENT" $(grep "listening on" "$DIR/b.out" | awk '{print $3}') --ca "$DIR/b/ca.pem" --headless \
  --duration 6 --dump-wav "$DIR/heard.wav" --stats-json "$DIR/stats.json" 2>"$DIR/listener.log"
echo "listener exit $?"
wait $P
echo "player exit $?"
kill $A $B
"#;
    let out = run_with_limit(
        Command::new("xvfb-run")
            .args(["-a", "sh", "-c", script])
            .env("SERVER_BIN", bin("streamsocket-server"))
            .env("CLIENT", bin("streamsocket-client"))
            .env("DIR", dir.path())
            .env("XDG_RUNTIME_DIR", path("pulse"))
            .env("HOME", dir.path()),
        Duration::from_secs(90),
    )
    .unwrap();
    let read = |name: &str| std::fs::read_to_string(path(name)).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let logs = format!(
        "{stdout}\n--- server b:\n{}\n--- player:\n{}\n--- listener:\n{}",
        read("b.out") + &read("b.log"),
        read("player.log"),
        read("listener.log")
    );
    assert!(
        stdout.contains("listener exit 0") && stdout.contains("player exit 0"),
        "{logs}"
    );
    assert!(
        read("b.out").contains("audio source: microphone pulse"),
        "{logs}"
    );
    let stats: serde_json::Value = serde_json::from_str(&read("stats.json")).unwrap();
    // Sound flowed for most of the run (playout starts once the jitter buffer's target delay
    // has passed, up to the latency target on a machine this busy).
    assert!(num(&stats, "/audio/packets_decoded") > 150.0, "{stats:#}");

    let _ = std::fs::copy(path("heard.wav"), "/tmp/heard.wav");
    let _ = std::fs::copy(path("player.log"), "/tmp/player.log");
    let _ = std::fs::copy(path("player.json"), "/tmp/player.json");
    let mut r = hound::WavReader::open(path("heard.wav")).unwrap();
    let samples: Vec<f64> = r
        .samples::<i16>()
        .map(|s| s.unwrap() as f64 / i16::MAX as f64)
        .collect();
    // The last two seconds: the player plays throughout them, and PulseAudio's monitor
    // source takes a second or two to start delivering (measured: about 1.6 s here).
    assert!(samples.len() > 48_000 * 4, "only {} samples", samples.len());
    let steady = &samples[samples.len() - 48_000 * 2..];
    let crossings = steady
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    let hz = crossings as f64 * 48_000.0 / steady.len() as f64;
    let rms = (steady.iter().map(|s| s * s).sum::<f64>() / steady.len() as f64).sqrt();
    eprintln!("heard {hz:.1} Hz at RMS {rms:.3}");
    assert!((hz - 1000.0).abs() < 20.0, "heard {hz:.0} Hz\n{logs}");
    // Half scale (RMS 0.354) through speaker, sink, monitor and microphone at unity gain.
    assert!(
        (rms - 0.354).abs() < 0.06,
        "heard RMS {rms:.3}\nlistener's audio: {:#}\n{logs}",
        stats["audio"]
    );
}
