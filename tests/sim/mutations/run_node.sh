#!/usr/bin/env bash
# Mutation check of the whole-node simulator (docs/testing.md): plants each node bug
# (tests/sim/mutations/node_*.py: holes 1, 2, 4 of issue 10 and the node's guarantees) in a
# scratch copy of the tree, builds tern-sim there and runs the CI campaigns of `tern-sim --node`
# (the node_sim_* tests) until one fails. The real tree is never modified.
#   tests/sim/mutations/run_node.sh [mutation-name-glob]
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
filter=${1:-node_*}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for m in "$root"/tests/sim/mutations/$filter.py; do
  name=$(basename "$m" .py)
  rm -rf "$work/src" && mkdir -p "$work/src"
  (cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work/src")
  python3 "$m" "$work/src" || { echo "$name: mutation did not apply"; status=1; continue; }
  cmake -S "$work/src" -B "$work/build" -G Ninja -DTERN_WERROR=OFF -DTERN_BUILD_BENCH=OFF >/dev/null &&
    cmake --build "$work/build" --target tern-sim >/dev/null 2>&1 || { echo "$name: build failed"; status=1; continue; }
  caught=""
  for cfg in "--runs 60 --voters 1 --spares 1" "--runs 25 --voters 3 --snapshot-entries 8" "--runs 5 --voters 5 --spares 2"; do
    out=$("$work/build/tests/sim/tern-sim" --node --seed 1 $cfg 2>&1 | grep -E "^(FAIL|ok|TERN_ASSERT)" | head -1)
    case "$out" in
      ok*) ;;
      *) caught="$cfg: $out"; break ;;
    esac
  done
  if [ -n "$caught" ]; then echo "CAUGHT  $name — $caught"; else echo "MISSED  $name"; status=1; fi
done
exit $status
