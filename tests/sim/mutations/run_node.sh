#!/usr/bin/env bash
# Mutation check of the whole-node simulator (docs/testing.md): plants each node bug
# (tests/sim/mutations/node_*.py: holes 1-4 of issue 10 and the node's guarantees) in a scratch
# copy of the tree, builds tern-sim there and runs the CI campaigns of `tern-sim --node` (the
# node_sim_* tests labelled fast, same arguments) until one fails. The real tree is never
# modified. The scratch copy is a git repository: each plant is undone with a checkout, so only
# the planted file and the simulator are rebuilt between plants.
#   tests/sim/mutations/run_node.sh [mutation-name-glob]
# TERN_MUTANTS=DIR keeps the scratch tree and each mutant's tern-sim as DIR/bin/<name> (reused by
# the next run: only what changed is rebuilt).
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
filter=${1:-node_*}
work=${TERN_MUTANTS:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/src" "$work/bin"
# Sync the tree into the scratch repository, rewriting only files whose content changed.
(cd "$root" && git ls-files -z) | while IFS= read -r -d '' f; do
  if ! cmp -s "$root/$f" "$work/src/$f"; then mkdir -p "$work/src/$(dirname "$f")" && cp "$root/$f" "$work/src/$f"; fi
done
cd "$work/src" || exit 2
if [ ! -d .git ]; then git init -q && git add -A && git -c user.name=m -c user.email=m@m commit -qm base; else
  git add -A && git -c user.name=m -c user.email=m@m commit -qm sync --allow-empty; fi
cmake -S . -B "$work/build" -G Ninja -DTERN_WERROR=OFF -DTERN_BUILD_BENCH=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null || exit 2
# The CI campaigns: the node_sim_* tests labelled fast in tests/sim/CMakeLists.txt.
mapfile -t configs < <(python3 - tests/sim/CMakeLists.txt <<'PY'
import re, sys
text = open(sys.argv[1]).read()
runs = dict(re.findall(r'math\(EXPR (node_sim_\d+_runs) "(\d+) /', text))
for args in re.findall(r'add_test\(NAME node_sim_\d+ COMMAND tern-sim --node --seed 1 (.*)\)', text):
    print(re.sub(r'\$\{(\w+)\}', lambda m: runs[m.group(1)], args))
PY
)
[ ${#configs[@]} -gt 0 ] || { echo "no node_sim CI campaigns found"; exit 2; }
status=0
for m in "$root"/tests/sim/mutations/$filter.py; do
  name=$(basename "$m" .py)
  git checkout -q -- .
  python3 "$m" "$work/src" || { echo "$name: mutation did not apply"; status=1; continue; }
  cmake --build "$work/build" --target tern-sim >/dev/null 2>&1 || { echo "$name: build failed"; status=1; continue; }
  cp "$work/build/tests/sim/tern-sim" "$work/bin/$name"
  caught=""
  for cfg in "${configs[@]}"; do
    t0=$(date +%s.%N)
    out=$("$work/bin/$name" --node --seed 1 $cfg 2>&1 | grep -E "^(FAIL|ok)" | head -1)
    t=$(echo "$(date +%s.%N) - $t0" | bc)
    case "$out" in
      ok*) ;;
      *) caught="$cfg: $out (${t}s)"; break ;;
    esac
  done
  if [ -n "$caught" ]; then echo "CAUGHT  $name — $caught"; else echo "MISSED  $name"; status=1; fi
done
git checkout -q -- .
exit $status
