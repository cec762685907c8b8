#!/usr/bin/env bash
# Installs the Debian packages StreamSocket needs to build and test, only those missing, and
# the Media over QUIC relay (moq-relay) the relay tests and scripts/cluster-demo.sh run.
# Uses sudo only when not already root. Safe to run repeatedly.
set -euo pipefail

PACKAGES=(
  pkg-config      # finds libdav1d
  cmake           # builds the bundled libopus (opus crate)
  nasm            # rav1e's x86 assembly
  libdav1d-dev    # AV1 decoder (dav1d 0.9 links Debian's libdav1d 1.0.0)
  libasound2-dev  # cpal's ALSA backend
  libclang-dev    # bindgen for -sys crates
  libaom-dev      # the real-time AV1 encoder (aom-sys links Debian's libaom 3.6)
  clang           # bindgen for -sys crates
  libxkbcommon-dev # minifb's X11 keyboard handling
  libx11-dev      # minifb's X11 window
  libxcursor-dev
  libxrandr-dev
  libxi-dev
  xvfb            # windowed tests without a display
  xauth           # xvfb-run needs it
  xdotool         # drives the viewer window's keyboard in tests; finds it for the glass benchmark
  ffmpeg          # reads recordings back in tests; films the screen (glass) and runs other encoders (benchmarks)
  dav1d           # the reference AV1 decoder's tool, an independent check of recordings
  pulseaudio      # a virtual sound card for tests: a null sink and its monitor as microphone
  pulseaudio-utils
  libasound2-plugins # ALSA's "pulse" device, through which cpal reaches it
  chromium        # the browser viewer's end-to-end tests (headless, driven by puppeteer-core)
  nodejs          # builds and tests the web viewer (web/: esbuild, tsc, node --test, puppeteer-core); 18 or later
  build-essential
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# npm is Debian's own package beside Debian's nodejs, but comes inside NodeSource's nodejs:
# asked for only when the command is missing.
command -v npm >/dev/null 2>&1 || missing+=(npm)

install_packages() {
  if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} system packages present"
    return
  fi

  local SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi

  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "install-deps: done"
}

# moq-relay, pinned (the moq crates the tests speak to it with are pinned to the same
# release), built once with cargo into a folder of the project's own that outlives the
# repository's target/: $STREAMSOCKET_TOOLS, else ~/.cache/streamsocket/tools. The tests find
# it there (or at $STREAMSOCKET_MOQ_RELAY). Not --locked: its lock file pins webpki-roots
# 1.0.11, which the registry may not have. Without iroh and mDNS LAN discovery (neither is
# used here): fewer crates to build (it still builds aws-lc-sys, a C library).
MOQ_RELAY_VERSION=0.17.10
MOQ_RELAY_FEATURES=noq,websocket
TOOLS="${STREAMSOCKET_TOOLS:-$HOME/.cache/streamsocket/tools}"
MOQ_RELAY_ROOT="$TOOLS/moq-relay-$MOQ_RELAY_VERSION"
MOQ_RELAY="$MOQ_RELAY_ROOT/bin/moq-relay"

install_moq_relay() {
  if [ -x "$MOQ_RELAY" ] && [ "$("$MOQ_RELAY" --version 2>/dev/null)" = "moq-relay $MOQ_RELAY_VERSION" ]; then
    echo "install-deps: moq-relay $MOQ_RELAY_VERSION present"
    return
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: cargo is needed to build moq-relay $MOQ_RELAY_VERSION: install Rust (https://rustup.rs)" >&2
    exit 1
  fi
  echo "install-deps: building moq-relay $MOQ_RELAY_VERSION (features $MOQ_RELAY_FEATURES) into $MOQ_RELAY_ROOT"
  echo "install-deps: this is done once and takes several minutes on 2 cores"
  mkdir -p "$TOOLS"
  # Its own temporary target directory, whatever the caller's CARGO_TARGET_DIR.
  env -u CARGO_TARGET_DIR cargo install moq-relay --version "$MOQ_RELAY_VERSION" \
    --no-default-features --features "$MOQ_RELAY_FEATURES" \
    --root "$MOQ_RELAY_ROOT" --force --quiet
  echo "install-deps: installed $("$MOQ_RELAY" --version) at $MOQ_RELAY"
}

install_packages
install_moq_relay
