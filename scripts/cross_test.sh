#!/usr/bin/env bash
# The AArch64 build, cross-compiled here (cmake/aarch64-linux-gnu.cmake, warnings as errors) and
# run under qemu-user: its kernels (neon and scalar) against their scalar twins, the engine on
# NEON against the double-precision reference forward pass and the stories260K greedy text, and
# the command line's contracts. qemu emulates the instructions, so nothing here
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

# The command-line contracts (tests/cli_test.sh: stdout and stderr, exit codes, bench JSON, the
# stories260K greedy text, errors on truncated files) through a wrapper that runs the binary under
# qemu, and the NEON kernels chosen by default.
printf '#!/bin/sh\nexec qemu-aarch64 "$(dirname "$0")/celer" "$@"\n' > build-arm64/celer-qemu
chmod +x build-arm64/celer-qemu
bash tests/cli_test.sh "$PWD/build-arm64/celer-qemu" ../shared
build-arm64/celer-qemu synth --shape tiny-llama --type q8_0 --layers 1 -o build-arm64/tiny.gguf 2>/dev/null
build-arm64/celer-qemu run -m build-arm64/tiny.gguf -p "hi" -n 1 --temp 0 2> build-arm64/run.err >/dev/null
grep -q "kernels neon" build-arm64/run.err || { cat build-arm64/run.err >&2; echo "cross_test: NEON not chosen" >&2; exit 1; }
echo "cross_test: AArch64 (neon) build passed"
