#!/usr/bin/env bash
# Installs the Debian packages StreamSocket needs to build and test, only those missing.
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

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} system packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
