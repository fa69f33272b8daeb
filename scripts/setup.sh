#!/usr/bin/env bash
# Installs what the tests and the page need on a fresh Debian 12 machine, skipping whatever is
# already there at the right version. Everything comes from the package registries (Debian,
# crates.io, npm); versions are pinned here and in Cargo.lock / trunk.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132.0.0
PUPPETEER_VERSION=24.43.0
AXE_VERSION=4.11.0
# wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)

say() { printf '[setup] %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: Mesa's CPU Vulkan driver (lavapipe), Chromium and its driver, Node for npm tools.
missing=()
for pkg in mesa-vulkan-drivers libvulkan1 chromium chromium-driver nodejs npm; do
  if [ "$pkg" = nodejs ] || [ "$pkg" = npm ]; then
    command -v "${pkg/nodejs/node}" >/dev/null 2>&1 && continue
  fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# ffmpeg, without what it merely recommends (55 MB): the CLI reads video files through it, and
# its tests run the real one.
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  say "apt-get install ffmpeg"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$WASM_BINDGEN_VERSION" ]; then
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 4 minutes)"
  # No --locked: its lockfile names a crate version the registry no longer serves.
  cargo install --quiet --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if [ "$(trunk --version 2>/dev/null | cut -d' ' -f2)" != "$TRUNK_VERSION" ]; then
  say "cargo install trunk $TRUNK_VERSION (about 10 minutes)"
  cargo install --quiet --force --locked trunk --version "$TRUNK_VERSION"
fi

# wasm-opt from npm: Debian's binaryen 108 produces pages that crash at load.
npm_pkg_version() { node -e "try{console.log(require('$M2UGEN_TOOLS/node_modules/$1/package.json').version)}catch(e){}"; }
# axe-core: the page's accessibility audit in the end-to-end run.
if [ "$(npm_pkg_version binaryen)" != "$BINARYEN_VERSION" ] || [ "$(npm_pkg_version puppeteer-core)" != "$PUPPETEER_VERSION" ] || [ "$(npm_pkg_version axe-core)" != "$AXE_VERSION" ]; then
  say "npm install binaryen@$BINARYEN_VERSION puppeteer-core@$PUPPETEER_VERSION axe-core@$AXE_VERSION"
  (cd "$M2UGEN_TOOLS" && npm install --silent --no-audit --no-fund "binaryen@$BINARYEN_VERSION" "puppeteer-core@$PUPPETEER_VERSION" "axe-core@$AXE_VERSION" >/dev/null)
fi

say "tools ready: wasm-bindgen $WASM_BINDGEN_VERSION, trunk $TRUNK_VERSION, $(wasm-opt --version), chromium $(chromium --version 2>/dev/null | cut -d' ' -f2)"
