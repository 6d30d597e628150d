#!/usr/bin/env bash
# Configures and builds celer into build/ (Release, warnings as errors).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCELER_WERROR=ON >/dev/null
cmake --build build -j "$(nproc)"
