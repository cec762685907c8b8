#!/usr/bin/env bash
# The main job: a StreamSocket server streaming the embedded test source, and a viewer
# window showing it with sound. Without a display the window opens under Xvfb (virtual
# display) for 15 seconds and the viewer prints what it measured.
#
#   scripts/demo.sh [extra viewer options, e.g. --stats-json stats.json]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --locked --bins

PORT="${STREAMSOCKET_PORT:-4443}"
LOG="$(mktemp -t streamsocket-server.XXXXXX.log)"
./target/release/streamsocket-server --listen "127.0.0.1:${PORT}" --certs certs --video test --audio test >"${LOG}.out" 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT

# Wait for the server to say where it listens (it generates certificates on first start).
for _ in $(seq 1 100); do
  grep -q "^listening on" "${LOG}.out" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
cat "${LOG}.out"
echo "server log: $LOG"
echo "watch in a browser too: https://localhost:${PORT}/ (a Chromium-based browser; the page's"
echo "  certificate is signed by certs/ca.pem: import it, or accept the browser's warning once)"

VIEWER=(./target/release/streamsocket-client "localhost:${PORT}" --ca certs/ca.pem)
if [ -n "${DISPLAY:-}" ]; then
  "${VIEWER[@]}" "$@"
else
  echo "no DISPLAY: showing the window on a virtual display (xvfb-run) for 15 s"
  xvfb-run -a -s "-screen 0 1280x800x24" "${VIEWER[@]}" --duration 15 "$@"
fi
