#!/usr/bin/env bash
# Builds the page and serves it at http://127.0.0.1:8080 (set-up included), with its bundled
# model at model/ (trunk.toml's pre_build hook: `m2ugen default-model`, untrained; for real music
# open the page with ?model=URL of converted official weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo fetch --locked
exec trunk --config trunk.toml serve --release --offline "$@"
