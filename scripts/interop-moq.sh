#!/usr/bin/env bash
# Interop (issue 16): MoQ's own command-line subscriber, `moq` from moq-cli 0.14.10 (the same
# moq source as moq-relay 0.17.10), watches a StreamSocket broadcast through a moq-relay and
# writes what it receives as WebM; ffprobe (Debian's ffmpeg, libdav1d) then counts and decodes
# the AV1 frames and counts the Opus packets.
#
#   scripts/interop-moq.sh [SECONDS]     (default 8)
#
# moq-cli is built once, like moq-relay, into the tools folder (about 25 min on 2 cores; not
# part of the test suite for that reason). It is run with --no-default-features --features
# noq (QUIC and WebTransport), without --locked: its lock file pins webpki-roots 1.0.11, which
# the registry this machine reaches does not have.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
SECONDS_WATCHED="${1:-8}"

bash scripts/install-deps.sh
# A functional check, not a benchmark: the test suite's build will do.
cargo build --locked --bins
BIN="$ROOT/target/debug"

TOOLS="${STREAMSOCKET_TOOLS:-$HOME/.cache/streamsocket/tools}"
MOQ_RELAY="${STREAMSOCKET_MOQ_RELAY:-$TOOLS/moq-relay-0.17.10/bin/moq-relay}"
MOQ_CLI_VERSION=0.14.10
MOQ_CLI_ROOT="$TOOLS/moq-cli-$MOQ_CLI_VERSION"
MOQ="$MOQ_CLI_ROOT/bin/moq"
if ! { [ -x "$MOQ" ] && [ "$("$MOQ" --version 2>/dev/null)" = "moq $MOQ_CLI_VERSION" ]; }; then
  echo "interop-moq: building moq-cli $MOQ_CLI_VERSION into $MOQ_CLI_ROOT (once; it takes a while)"
  env -u CARGO_TARGET_DIR cargo install moq-cli --version "$MOQ_CLI_VERSION" \
    --no-default-features --features noq --root "$MOQ_CLI_ROOT" --force --quiet
fi
echo "interop-moq: $("$MOQ" --version), $("$MOQ_RELAY" --version)"

WORK="$ROOT/target/interop-moq"
mkdir -p "$WORK"
"$BIN/streamsocket-certs" --dir "$WORK/certs" >/dev/null
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# A free UDP port for the relay (QUIC only: no web listener).
PORT="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(cd "$WORK" && exec env NO_COLOR=1 "$MOQ_RELAY" --listen "127.0.0.1:$PORT" \
  --listen-tls-cert certs/server.pem --listen-tls-key certs/server.key --auth-public '**') \
  >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
"$BIN/streamsocket-server" --listen 127.0.0.1:0 --certs "$WORK/certs" --no-http \
  --video test --audio test --width 640 --height 360 \
  --publish "https://127.0.0.1:$PORT/live" --broadcast interop.hang >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  grep -q "publishing to the relay" "$WORK/origin.log" && break
  kill -0 "${PIDS[1]}" 2>/dev/null || { cat "$WORK/origin.log"; exit 1; }
  sleep 0.1
done
grep -q "publishing to the relay" "$WORK/origin.log" || { echo "interop-moq: the origin never published" >&2; cat "$WORK/origin.log" >&2; exit 1; }

# moq's subscriber: the 180p rendition and the 48 kbit/s audio, as WebM on its stdout, for
# SECONDS_WATCHED seconds (it ends cleanly on SIGINT; the last, unfinished group is not
# written).
OUT="$WORK/interop.webm"
timeout --preserve-status -s INT "$SECONDS_WATCHED" env NO_COLOR=1 "$MOQ" \
  --connect "https://127.0.0.1:$PORT/live" --connect-tls-root "$WORK/certs/ca.pem" --connect-once \
  --broadcast interop.hang \
  export --video-name 180p --audio-name audio-48k mkv --max-age 10s >"$OUT" 2>"$WORK/moq.log" \
  || { echo "interop-moq: moq failed; its log ($WORK/moq.log):" >&2; cat "$WORK/moq.log" >&2; exit 1; }

streams="$(ffprobe -v error -count_packets -show_entries stream=codec_name,width,height,nb_read_packets -of csv=p=0 "$OUT")"
decoded="$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$OUT")"
echo "interop-moq: $OUT ($(stat -c %s "$OUT") bytes):"
echo "$streams" | sed 's/^/  /'
echo "  AV1 frames decoded by ffprobe (libdav1d): $decoded"
video_packets="$(echo "$streams" | awk -F, '$1 == "av1" { print $4 }')"
audio_packets="$(echo "$streams" | awk -F, '$1 == "opus" { print $2 }')"
if [ "${video_packets:-0}" -gt 0 ] && [ "${decoded:-0}" = "$video_packets" ] && [ "${audio_packets:-0}" -gt 0 ]; then
  echo "interop-moq: PASS: moq $MOQ_CLI_VERSION watched the broadcast through moq-relay, every AV1 frame it wrote decodes"
else
  echo "interop-moq: FAIL (logs in $WORK)" >&2
  exit 1
fi
