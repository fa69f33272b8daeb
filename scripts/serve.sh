#!/usr/bin/env bash
# Builds the page and serves it at http://127.0.0.1:8080 (set-up included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo fetch --locked
exec trunk --config trunk.toml serve --release --offline "$@"
