# Sourced by the other scripts: where tools and build caches live (outside the clone, so that a
# fresh clone on the same machine reuses them), and what the browser tests need.
M2UGEN_CACHE=${M2UGEN_CACHE:-$HOME/.cache/m2ugen-web}
export M2UGEN_TOOLS=${M2UGEN_TOOLS:-$M2UGEN_CACHE/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$M2UGEN_CACHE/target}
export PATH="$HOME/.cargo/bin:$M2UGEN_TOOLS/node_modules/.bin:$PATH"
# Mesa and Chromium write caches and sockets: keep them in scratch space.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$M2UGEN_CACHE/runtime}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$M2UGEN_CACHE/xdg-cache}
mkdir -p "$M2UGEN_TOOLS" "$XDG_RUNTIME_DIR" "$XDG_CACHE_HOME" && chmod 700 "$XDG_RUNTIME_DIR"
# Browser suites: wasm-bindgen-test-runner drives Chromium through chromedriver.
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export WASM_BINDGEN_TEST_WEBDRIVER_JSON=${WASM_BINDGEN_TEST_WEBDRIVER_JSON:-$PWD/webdriver.json}
# Per browser test binary; the parity suite has taken 669 to 827 s on two shared cores.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-1200}
