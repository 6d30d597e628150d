#!/usr/bin/env bash
# Every test: set up, build, run the ctest suite, the AArch64 build's tests under qemu
# (scripts/cross_test.sh), then a short fuzzing smoke run of the parsers under ASan/UBSan
# (scripts/fuzz.sh runs it longer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
(cd build && ctest -j "$(nproc)" --output-on-failure --timeout 900)
bash scripts/cross_test.sh
bash scripts/fuzz.sh "${CELER_FUZZ_SECONDS:-30}"
