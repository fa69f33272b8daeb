#!/usr/bin/env bash
# The whole test run, from a fresh machine: set-up, native suites (kernels on lavapipe, f32 and
# f16), browser suites (headless Chromium, f32), then the built page end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

echo "== [${SECONDS}s] native: unit tests, naga validation, GPU kernels (lavapipe or your GPU), the CLI"
cargo test --locked

echo "== [${SECONDS}s] browser: every library crate builds for wasm32; the GPU suite, parity and the page's components in headless Chromium"
cargo build --locked --target wasm32-unknown-unknown -p m2ugen-core -p m2ugen-gpu -p m2ugen-models -p m2ugen-weights -p m2ugen-pipeline -p m2ugen-media
# The browser reads the reference fixture as the page reads a CDN: converted, then served over
# HTTP (Range, CORS) by `m2ugen serve`, whose URL the browser parity tests are compiled with.
fixture=${M2UGEN_REFERENCE_FIXTURE:-tests/data/reference-m2ugen}
params=$fixture/params.json; [ -f "$params" ] || params=$fixture/llama/params.json
served="$CARGO_TARGET_DIR/web-fixture"
rm -rf "$served"
cargo run --locked -q -p m2ugen-cli -- convert --checkpoint "$fixture/checkpoint.pth" --params "$params" --tokenizer tests/data/tokenizer/tokenizer.model --dtype f32 --shard-mib 1 --model fixture --out "$served" \
  --config mert="$fixture/mert/config.json" --config vit="$fixture/vit/config.json" --config vivit="$fixture/vivit/config.json"
cp "$fixture/io.safetensors" "$served/"
# The MusicGen fixture beside it, for the browser music suite.
musicgen=${M2UGEN_MUSICGEN_FIXTURE:-tests/data/musicgen}
cargo run --locked -q -p m2ugen-cli -- convert --hf musicgen="$musicgen/musicgen" --dtype f32 --shard-mib 1 --model musicgen-fixture --out "$served/musicgen"
cp "$musicgen/io.safetensors" "$served/musicgen/"
# And the AudioLDM 2 fixture, for the browser AudioLDM 2 suite.
audioldm2=${M2UGEN_AUDIOLDM2_FIXTURE:-tests/data/audioldm2}
cargo run --locked -q -p m2ugen-cli -- convert --diffusers audioldm2="$audioldm2" --dtype f32 --shard-mib 1 --model audioldm2-fixture --out "$served/audioldm2"
cp "$audioldm2/io.safetensors" "$served/audioldm2/"
port=${M2UGEN_FIXTURE_PORT:-18737}
"$CARGO_TARGET_DIR/debug/m2ugen" serve "$served" --addr "127.0.0.1:$port" --test-faults >"$served.url" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$served.url" ] && break; kill -0 $server 2>/dev/null || break; sleep 0.2; done
[ -s "$served.url" ] || { echo "m2ugen serve did not start on port $port (set M2UGEN_FIXTURE_PORT to a free one)"; exit 1; }
export M2UGEN_FIXTURE_URL=$(head -n1 "$served.url")
cargo test --locked --target wasm32-unknown-unknown -p m2ugen-tests -p m2ugen-app

echo "== [${SECONDS}s] page: trunk build, then the built page end to end"
cargo fetch --locked
trunk --config trunk.toml build --release --offline
node tests/e2e/page.mjs "$PWD/dist"
echo "== [${SECONDS}s] done"
