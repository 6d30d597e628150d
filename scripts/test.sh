#!/usr/bin/env bash
# Every test: set up, build, run the ctest suite, then a short fuzzing smoke run of the GGUF
# parser under ASan/UBSan (scripts/fuzz.sh runs it longer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
(cd build && ctest -j "$(nproc)" --output-on-failure --timeout 900)
bash scripts/fuzz.sh "${CELER_FUZZ_SECONDS:-30}"
