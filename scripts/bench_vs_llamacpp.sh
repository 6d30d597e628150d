#!/usr/bin/env bash
# Side-by-side throughput of celer, llama.cpp and (optionally) ik_llama.cpp, each built outside
# this repository, on the same synthetic GGUF files, alternating the engines file by file in one
# run. Prints a Markdown table of llama-bench averages and celer medians.
# usage: LLAMA_BENCH=/path/to/llama-bench [IK_BENCH=/path/to/ik/llama-bench] \
#        [LLAMA_ARGS="..."] [IK_ARGS="-rtr 1"] [CELER_ARGS="..."] scripts/bench_vs_llamacpp.sh [THREADS] [REPS] [PROMPT] [GEN]
# IK_ARGS defaults to "-rtr 1" (run-time repacking, ik_llama.cpp's fastest CPU setting; its
# flash attention is on by default). CELER_ARGS go to every celer bench (e.g. --f16-as-bf16).
# Run it on an idle machine: a build or test beside it ruins the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
reps=${2:-3}
prompt=${3:-512}
gen=${4:-128}
llama_bench=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}
ik_bench=${IK_BENCH:-}
llama_args=${LLAMA_ARGS:-}
ik_args=${IK_ARGS:--rtr 1}
celer=${CELER:-./build/celer}
celer_args=${CELER_ARGS:-}
dir=${CELER_BENCH_DIR:-/tmp/celer-bench}
specs=${CELER_BENCH_FILES:-"qwen2.5-coder-0.5b:q8_0 qwen2.5-coder-0.5b:q4_0 qwen2.5-coder-0.5b:q4_k_m qwen2.5-coder-0.5b:f16 qwen2.5-coder-1.5b:q8_0"}
mkdir -p "$dir"
vocab=../shared/tokenizers/ggml-vocab-qwen2.gguf
[ -f "$vocab" ] || vocab=""
files=()
for spec in $specs; do
  shape=${spec%%:*} type=${spec##*:}
  f="$dir/$shape-$type.gguf"
  [ -f "$f" ] || "$celer" synth --shape "$shape" --type "$type" ${vocab:+--vocab "$vocab"} -o "$f" 2>/dev/null
  files+=("$f")
done
peer() {  # llama-bench JSON for one file, or "null" when that engine is not given: BENCH FILE ARGS
  [ -n "$1" ] || { echo null; return; }
  # shellcheck disable=SC2086
  "$1" -m "$2" -t "$threads" -p "$prompt" -n "$gen" -r "$reps" $3 -o json 2>/dev/null || echo null
}
echo "threads $threads, prompt $prompt, decode $gen tokens, $reps reps; tok/s (celer: median; llama-bench: mean)"
echo "llama.cpp args: '$llama_args'; ik_llama.cpp args: '$ik_args'; celer args: '$celer_args'; celer: $("$celer" bench -m "${files[0]}" --prompt 1 --gen 1 --reps 1 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("kernels", d["kernels"], "KV", d["kv_type"])')"
echo
echo "| file | celer prefill | llama.cpp | ik_llama.cpp | celer/llama | celer/ik | celer decode | llama.cpp | ik_llama.cpp | celer/llama | celer/ik | celer % of roofline |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for f in "${files[@]}"; do
  # shellcheck disable=SC2086
  c=$("$celer" bench -m "$f" -t "$threads" --prompt "$prompt" --gen "$gen" --reps "$reps" $celer_args --json 2>/dev/null)
  l=$(peer "$llama_bench" "$f" "$llama_args")
  k=$(peer "$ik_bench" "$f" "$ik_args")
  python3 - "$f" "$c" "$l" "$k" <<'PY'
import json, os, sys
name, c, l, k = os.path.basename(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
def pick(runs, key):
    if not runs: return None
    return next((r["avg_ts"] for r in runs if r[key] > 0 and r["n_gen" if key == "n_prompt" else "n_prompt"] == 0), None)
def fmt(v): return "-" if v is None else f"{v:.1f}"
def ratio(a, b): return "-" if b is None else f"{a / b:.2f}x"
cp, cd = c["prefill_tok_s"], c["decode_tok_s"]
lp, ld, kp, kd = pick(l, "n_prompt"), pick(l, "n_gen"), pick(k, "n_prompt"), pick(k, "n_gen")
print(f"| {name} | {cp:.1f} | {fmt(lp)} | {fmt(kp)} | {ratio(cp, lp)} | {ratio(cp, kp)} | {cd:.1f} | {fmt(ld)} | {fmt(kd)} | {ratio(cd, ld)} | {ratio(cd, kd)} | {c['decode_roofline_pct']:.0f}% of {c['decode_roofline_tok_s']:.0f} |")
PY
done
