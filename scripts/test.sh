#!/usr/bin/env bash
# The whole test run, from a fresh machine: set-up, native suites (kernels on lavapipe, f32 and
# f16), browser suites (headless Chromium, f32), then the built page end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

echo "== native: unit tests, naga validation, GPU kernels (lavapipe or your GPU), the CLI"
cargo test --locked

echo "== browser: every library crate builds for wasm32; the GPU suite and the page's components in headless Chromium"
cargo build --locked --target wasm32-unknown-unknown -p m2ugen-core -p m2ugen-gpu -p m2ugen-models -p m2ugen-weights -p m2ugen-pipeline
cargo test --locked --target wasm32-unknown-unknown -p m2ugen-tests -p m2ugen-app

echo "== page: trunk build, then the built page end to end"
cargo fetch --locked
trunk --config trunk.toml build --release --offline
node tests/e2e/page.mjs "$PWD/dist"
