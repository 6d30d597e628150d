#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and fuzzes, N seconds each (default
# 300): the GGUF reader and model loader, from small valid and malformed models; the chat
# template interpreter, from the real templates in ../shared/templates; the server's HTTP and
# OpenAI request parsers, from sample requests (fuzz/requests); celer code's HTTP, SSE and
# WebSocket readers and its transcript loader (fuzz/agent); the safetensors reader of celer
# convert (fuzz/safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
bash scripts/setup.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCELER_FUZZ=ON -DCELER_TESTS=OFF -DCELER_SANITIZE=ON -DCELER_SERVER=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target gguf_fuzz jinja_fuzz request_fuzz agent_fuzz safetensors_fuzz celer
corpus=build-fuzz/corpus
mkdir -p "$corpus"
if [ ! -f "$corpus/micro-llama-q8_0.gguf" ]; then
  for t in f32 q8_0 q4_0 f16; do
    ./build-fuzz/celer synth --shape micro-llama --type "$t" -o "$corpus/micro-llama-$t.gguf" 2>/dev/null
  done
  printf 'GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' >"$corpus/empty-v3.gguf"
fi
mkdir -p build-fuzz/artifacts build-fuzz/jinja-corpus
cp -n ../shared/templates/*.jinja build-fuzz/jinja-corpus/ 2>/dev/null || true

run_fuzzer() {  # run_fuzzer NAME CORPUS [EXTRA FLAGS]
  local name=$1 corpus=$2
  shift 2
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "./build-fuzz/fuzz/$name" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30 \
    -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 "$@" "$corpus" 2>"build-fuzz/$name.log" || {
      tail -n 60 "build-fuzz/$name.log" >&2
      echo "fuzz: $name FAILED (log: build-fuzz/$name.log, reproducer in build-fuzz/artifacts/)" >&2
      exit 1
    }
  grep -E "^stat::number_of_executed_units" "build-fuzz/$name.log" | sed "s/^/fuzz: $name /" >&2 || true
  echo "fuzz: $name ran ${seconds}s under ASan/UBSan, no crash"
}
run_fuzzer gguf_fuzz "$corpus"
run_fuzzer jinja_fuzz build-fuzz/jinja-corpus -max_len=4096
mkdir -p build-fuzz/request-corpus
cp -n fuzz/requests/* build-fuzz/request-corpus/
run_fuzzer request_fuzz build-fuzz/request-corpus -max_len=8192
mkdir -p build-fuzz/agent-corpus
cp -n fuzz/agent/* build-fuzz/agent-corpus/
run_fuzzer agent_fuzz build-fuzz/agent-corpus -max_len=4096
mkdir -p build-fuzz/safetensors-corpus
cp -n fuzz/safetensors/* build-fuzz/safetensors-corpus/
run_fuzzer safetensors_fuzz build-fuzz/safetensors-corpus -max_len=4096
