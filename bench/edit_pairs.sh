#!/usr/bin/env bash
# Writes edit pairs for `celer bench --replay`: for each of a git repository's latest commits,
# every modified source file as it was before (NNNN-NAME.before) and after (NNNN-NAME.after).
# usage: bench/edit_pairs.sh REPO OUT_DIR [COMMITS=200] [MAX_BYTES=32768]
set -euo pipefail
repo=${1:?usage: edit_pairs.sh REPO OUT_DIR [COMMITS] [MAX_BYTES]}
out=${2:?usage: edit_pairs.sh REPO OUT_DIR [COMMITS] [MAX_BYTES]}
commits=${3:-200}
max_bytes=${4:-32768}
mkdir -p "$out"
n=0
git -C "$repo" log --no-merges --format=%H -n "$commits" | while read -r c; do
    git -C "$repo" rev-parse -q --verify "$c^" >/dev/null || continue  # the root commit has no before
    git -C "$repo" diff-tree --no-commit-id -r --diff-filter=M --name-only "$c" |
        { grep -E '\.(c|cc|cpp|h|hpp|cu|py|js|mjs|ts|rs|go|java|sh|cmake|md|txt|json|toml|yaml|yml)$' || true; } |
        while read -r f; do
            before=$(git -C "$repo" cat-file -s "$c^:$f" 2>/dev/null || echo 0)
            after=$(git -C "$repo" cat-file -s "$c:$f" 2>/dev/null || echo 0)
            [ "$before" -gt 0 ] && [ "$before" -le "$max_bytes" ] && [ "$after" -gt 0 ] && [ "$after" -le "$max_bytes" ] || continue
            name=$(printf '%s-%s' "${c:0:10}" "$(echo "$f" | tr '/' '_')")
            git -C "$repo" show "$c^:$f" >"$out/$name.before"
            git -C "$repo" show "$c:$f" >"$out/$name.after"
        done
done
echo "edit_pairs: $(find "$out" -name '*.after' | wc -l) pairs in $out"
