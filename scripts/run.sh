#!/usr/bin/env bash
# The main job: set up, build, then run celer. With no arguments it generates text with the
# tiny trained model in ../shared if present, else with the built-in demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
if [ $# -gt 0 ]; then
  exec ./build/celer "$@"
fi
if [ -f ../shared/models/stories260K.gguf ]; then
  exec ./build/celer run -m ../shared/models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0
fi
exec ./build/celer run -p "Once upon a time" -n 32 --temp 0
