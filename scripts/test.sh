#!/usr/bin/env bash
# Runs StreamSocket's whole test suite on a fresh Debian 12 machine: installs the system
# packages it needs, checks formatting and lints, builds the binaries the end-to-end tests
# start, and runs every test (unit, protocol, end-to-end on loopback, windowed under Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== format"
cargo fmt --all -- --check
echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --all-targets --locked
echo "== web viewer (type check, unit tests, the committed bundle matches its source)"
(cd web && npm ci --no-audit --no-fund && npm run check && npm test && npm run build)
git diff --exit-code -- web/dist
echo "== tests"
cargo test --workspace --locked
