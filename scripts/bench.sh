#!/usr/bin/env bash
# Reproduces the figures in docs/BENCHMARKS.md: builds in release mode, sweeps the AV1
# encoders' settings, then runs the server and a headless viewer on loopback.
#   scripts/bench.sh            # everything
#   scripts/bench.sh encoder    # one part (encoder | ffmpeg-encoders | e2e | glass | browser | scrape | fanout | ladder | capture | quality | network | soak | relay-hops | relay-failover | relay-fanout), extra options passed on
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins
B="${CARGO_TARGET_DIR:-./target}/release/streamsocket-bench"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
case "${1:-all}" in
  encoder) shift; $B encoder "$@" 2>/dev/null ;;
  ffmpeg-encoders) shift; $B ffmpeg-encoders "$@" 2>/dev/null ;;
  e2e) shift; $B e2e "$@" 2>/dev/null ;;
  glass) shift; $B glass "$@" 2>/dev/null ;;
  browser) shift; (cd web && npm ci --no-audit --no-fund >/dev/null); $B browser "$@" 2>/dev/null ;;
  fanout) shift; $B fanout "$@" 2>/dev/null ;;
  scrape) shift; $B scrape "$@" 2>/dev/null ;;
  ladder) shift; $B ladder "$@" 2>/dev/null ;;
  capture) shift; $B capture "$@" 2>/dev/null ;;
  quality) shift; $B quality "$@" 2>/dev/null ;;
  network) shift; $B network "$@" 2>/dev/null ;;
  soak) shift; $B soak "$@" 2>/dev/null ;;
  relay-hops) shift; $B relay-hops "$@" 2>/dev/null ;;
  relay-failover) shift; $B relay-failover "$@" 2>/dev/null ;;
  relay-fanout) shift; $B relay-fanout "$@" 2>/dev/null ;;
  all)
    $B encoder --content testsrc2 2>/dev/null
    $B encoder 2>/dev/null
    $B encoder --content busy --default-only 2>/dev/null
    $B encoder --width 1280 --height 720 --frames 90 --default-only --content testsrc2 2>/dev/null
    $B ffmpeg-encoders 2>/dev/null
    $B e2e 2>/dev/null
    $B e2e --server-arg=--encoder --server-arg=rav1e 2>/dev/null
    $B glass 2>/dev/null
    $B ladder 2>/dev/null
    $B ladder --server-arg=--width --server-arg=640 --server-arg=--height --server-arg=360 2>/dev/null
    $B e2e --server-arg=--width --server-arg=1280 --server-arg=--height --server-arg=720 2>/dev/null
    $B glass --encoder aom --server-arg=--width --server-arg=1280 --server-arg=--height --server-arg=720 2>/dev/null
    $B fanout --viewers 1,8,10,100,200,300,400 2>/dev/null
    $B fanout --viewers 1,8,100,200,300,400,500,600 --server-arg=--ladder --server-arg=180p:320x180@30:500 2>/dev/null
    $B fanout --viewers 500,600 --join-over-ms 1000 --server-arg=--ladder --server-arg=180p:320x180@30:500 2>/dev/null
    $B capture 2>/dev/null
    $B quality --content pattern 2>/dev/null
    $B quality --content busy 2>/dev/null
    $B network --congestion cubic,bbr,newreno 2>/dev/null
    $B soak --minutes 10 --sample-seconds 60 2>/dev/null
    ;;
  *) echo "usage: scripts/bench.sh [all|encoder|ffmpeg-encoders|e2e|glass|ladder|fanout|capture|quality|network|soak] [options]" >&2; exit 2 ;;
esac
