#!/usr/bin/env bash
# Side-by-side throughput of celer and a llama.cpp build (outside this repository) on the same
# synthetic GGUF files, alternating the two engines in one run. Prints a Markdown table of
# medians. usage: LLAMA_BENCH=/path/to/llama-bench scripts/bench_vs_llamacpp.sh [THREADS] [REPS]
# Run it on an idle machine: a build or test beside it ruins the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
reps=${2:-3}
llama_bench=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}
celer=${CELER:-./build/celer}
dir=${CELER_BENCH_DIR:-/tmp/celer-bench}
mkdir -p "$dir"
vocab=../shared/tokenizers/ggml-vocab-qwen2.gguf
[ -f "$vocab" ] || vocab=""
files=()
for spec in qwen2.5-coder-0.5b:q8_0 qwen2.5-coder-0.5b:q4_0 qwen2.5-coder-0.5b:q4_k_m qwen2.5-coder-0.5b:f16 qwen2.5-coder-1.5b:q8_0; do
  shape=${spec%%:*} type=${spec##*:}
  f="$dir/$shape-$type.gguf"
  [ -f "$f" ] || "$celer" synth --shape "$shape" --type "$type" ${vocab:+--vocab "$vocab"} -o "$f" 2>/dev/null
  files+=("$f")
done
echo "| file | celer prefill 128 | llama.cpp prefill 128 | ratio | celer decode 32 | llama.cpp decode 32 | ratio | celer % of roofline |"
echo "|---|---|---|---|---|---|---|---|"
for f in "${files[@]}"; do
  c=$("$celer" bench -m "$f" -t "$threads" --prompt 128 --gen 32 --reps "$reps" --json 2>/dev/null)
  l=$("$llama_bench" -m "$f" -t "$threads" -p 128 -n 32 -r "$reps" -o json 2>/dev/null)
  python3 - "$f" "$c" "$l" <<'PY'
import json, os, sys
name, c, l = os.path.basename(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
lp = next(r["avg_ts"] for r in l if r["n_prompt"] > 0)
ld = next(r["avg_ts"] for r in l if r["n_gen"] > 0)
cp, cd = c["prefill_tok_s"], c["decode_tok_s"]
print(f"| {name} | {cp:.1f} | {lp:.1f} | {cp/lp:.2f}x | {cd:.1f} | {ld:.1f} | {cd/ld:.2f}x | {c['decode_roofline_pct']:.0f}% of {c['decode_roofline_tok_s']:.0f} |")
PY
done
