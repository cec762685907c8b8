#!/usr/bin/env bash
# More viewers than one machine (issue 16): three Media over QUIC relays (moq-relay, installed
# by scripts/install-deps.sh) clustered on loopback, with the configurations in relays/:
#
#   origin --publishes--> R1 (127.0.0.1:4451) <--dials-- R2 (:4452) <--dials-- R3 (:4453) <-- viewer
#
# R2 and R3 are the viewers' relays; R3 is two hops from R1.
#
# The origin (streamsocket-server on the test source) publishes into R1; the script checks
# that R3, two hops away, knows the broadcast, then opens a viewer window on R3 (with R2 to
# move to if R3 goes away). Without a display the window runs on Xvfb for 15 s and the viewer
# prints what it measured. STREAMSOCKET_CLUSTER_HOLD=1 keeps the origin and relays up after
# the viewer ends, until Ctrl-C.
#
#   scripts/cluster-demo.sh [extra viewer options, e.g. --duration 10 --stats-json stats.json]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

bash scripts/install-deps.sh
cargo build --release --locked --bins

MOQ_RELAY_VERSION=0.17.10
TOOLS="${STREAMSOCKET_TOOLS:-$HOME/.cache/streamsocket/tools}"
MOQ_RELAY="${STREAMSOCKET_MOQ_RELAY:-$TOOLS/moq-relay-$MOQ_RELAY_VERSION/bin/moq-relay}"

# The relays' working directory: the configurations' certs/ (our own CA and a certificate
# for localhost and 127.0.0.1, which the relays verify each other with) and their logs.
DEMO="$ROOT/target/cluster-demo"
mkdir -p "$DEMO"
./target/release/streamsocket-certs --dir "$DEMO/certs" >/dev/null

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# `http_get PORT PATH`: the body of a plain HTTP GET on loopback (bash's /dev/tcp, no curl).
http_get() {
  local response
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  response="$(cat <&3)"
  exec 3<&-
  case "$response" in "HTTP/1.1 200"*) printf '%s\n' "${response#*$'\r\n\r\n'}" ;; *) return 1 ;; esac
}

# `wait_for WHAT LOG PID CONDITION...`: polls CONDITION for up to 30 s while PID lives.
wait_for() {
  local what="$1" log="$2" pid="$3"
  shift 3
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "cluster-demo: the relay stopped before $what; its log ($log):" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "cluster-demo: $what did not happen within 30 s; log ($log):" >&2
  cat "$log" >&2
  exit 1
}

for i in 1 2 3; do
  log="$DEMO/relay$i.log"
  : >"$log"
  # No MOQ_* settings from the environment: the relay refuses to start on removed ones.
  (cd "$DEMO" && exec env $(env | grep -o '^MOQ_[A-Za-z0-9_]*' | sed 's/^/-u /') NO_COLOR=1 \
    "$MOQ_RELAY" "$ROOT/relays/relay$i.toml") >"$log" 2>&1 &
  PIDS+=($!)
  port="445$i"
  wait_for "R$i served on port $port" "$log" "${PIDS[-1]}" http_get "$port" /certificate.sha256
  echo "R$i: https://127.0.0.1:$port/ (fingerprint sha256:$(http_get "$port" /certificate.sha256)), log $log"
done

# The cluster formed when each relay accepted its dialer's session.
wait_for "R2 joining R1" "$DEMO/relay1.log" "${PIDS[0]}" grep -q "session accepted" "$DEMO/relay1.log"
wait_for "R3 joining R2" "$DEMO/relay2.log" "${PIDS[1]}" grep -q "session accepted" "$DEMO/relay2.log"
echo "cluster: R3 -> R2 -> R1 formed"

# The origin, on the test source, publishing into R1 (its own QUIC port for direct viewers
# is 4443).
origin_log="$DEMO/origin.log"
./target/release/streamsocket-server --listen 127.0.0.1:4443 --certs "$DEMO/certs" --no-http \
  --video test --audio test --publish https://127.0.0.1:4451/live --broadcast demo.hang \
  >"$origin_log" 2>&1 &
PIDS+=($!)
wait_for "the origin publishing into R1" "$origin_log" "${PIDS[-1]}" grep -q "publishing to the relay" "$origin_log"
echo "origin: publishing demo.hang into R1 (log $origin_log)"
# R3 learns of the broadcast through R2 from R1.
r3_knows_demo() { http_get 4453 /announced/live | grep -q demo.hang; }
wait_for "R3 knowing demo.hang" "$DEMO/relay3.log" "${PIDS[2]}" r3_knows_demo
echo "R3 (two hops from the origin) announces live/demo.hang"

# The viewer on the far relay, R3, two hops from the origin; R2 is where it goes if R3 dies.
VIEWER=(./target/release/streamsocket-client https://127.0.0.1:4453/live https://127.0.0.1:4452/live
  --broadcast demo.hang --ca "$DEMO/certs/ca.pem")
echo "viewer: ${VIEWER[*]} $*"
if [ -n "${DISPLAY:-}" ]; then
  "${VIEWER[@]}" "$@"
else
  echo "no DISPLAY: showing the window on a virtual display (xvfb-run) for 15 s"
  xvfb-run -a -s "-screen 0 1280x800x24" "${VIEWER[@]}" --duration 15 "$@"
fi

if [ "${STREAMSOCKET_CLUSTER_HOLD:-0}" = 1 ]; then
  echo "relays up until Ctrl-C (CA: $DEMO/certs/ca.pem)"
  wait "${PIDS[0]}"
fi
