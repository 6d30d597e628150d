#!/usr/bin/env bash
# The AArch64 build, cross-compiled here (cmake/aarch64-linux-gnu.cmake, warnings as errors) and
# run under qemu-user: its kernels (neon and scalar) against their scalar twins, the engine on
# NEON against the double-precision reference forward pass and the stories260K greedy text, and
# `celer run` giving the native build's text. qemu emulates the instructions, so nothing here
# times anything. Needs ../shared (the models and tokenizer vectors), as the native tests do.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --arm64
cmake -S . -B build-arm64 -G Ninja -DCMAKE_BUILD_TYPE=Release -DCELER_WERROR=ON --no-warn-unused-cli \
      -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
cmake --build build-arm64 -j "$(nproc)" --target celer celer_tests

# The arm64 C library of the multiarch packages (/lib/ld-linux-aarch64.so.1), not the cross
# compiler's copy under /usr/aarch64-linux-gnu: with that one (qemu -L) the forward tests ran 8x
# slower under emulation.
run() { qemu-aarch64 "$@"; }

# Kernel suites run every target the (emulated) CPU has; the engine suites run NEON by default;
# the per-target forward and speculation suites keep their NEON instances (scalar runs natively).
# Left out for time under emulation: the suites that loop over every KV type or every target
# with long sequences (SplitDecode, LongContext, Speculative's bit-for-bit check).
suites='Fp16.*:Bf16.*:Quant.*:Dequant.*:Types*:Kernels.*:Int8.*:Attention.*:ToHalf.*:Swiglu.*'
suites+=':EveryTargetEveryType/*:PackedTypes/*:FloatTypes/*'
suites+=':Forward.*:Stories.*:Rope.*:ThreadPool.*'
suites+=':AllArchsAllTypes/ForwardMatchesReference.*_neon:AllArchsAllTypes/GreedySpeculation.*_q8_0_neon'
run build-arm64/tests/celer_tests --gtest_filter="$suites" --gtest_brief=1

# The command line: the NEON kernels chosen by default, and the native build's greedy text.
model=../shared/models/stories260K.gguf
if [ ! -f "$model" ]; then
  echo "cross_test: $model not found; the command-line check skipped"
  exit 0
fi
arm_text=$(run build-arm64/celer run -m "$model" -p "Once upon a time" -n 48 --temp 0 -t 2 2> build-arm64/run.err)
grep -q "kernels neon" build-arm64/run.err || { cat build-arm64/run.err >&2; echo "cross_test: NEON not chosen" >&2; exit 1; }
if [ -x build/celer ]; then
  native_text=$(build/celer run -m "$model" -p "Once upon a time" -n 48 --temp 0 -t 2 2>/dev/null)
  [ "$arm_text" = "$native_text" ] || { printf 'cross_test: AArch64 text differs:\n%s\n%s\n' "$arm_text" "$native_text" >&2; exit 1; }
fi
echo "cross_test: AArch64 (neon) build passed"
