#!/usr/bin/env bash
# Mutation check of the simulator (docs/testing.md): plants each classic Raft bug in a scratch
# copy of the source tree, builds tern-sim there, and reports whether (and how fast) the
# simulator catches it. The real tree is never modified.
#   tests/sim/mutations/run.sh [runs-per-mutation] [mutation-name-glob]
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
runs=${1:-400}
filter=${2:-*}
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
  for nodes in 3 5; do
    out=$("$work/build/tests/sim/tern-sim" --seed 1 --runs "$runs" --nodes "$nodes" 2>&1 | grep -E "^(FAIL|ok|TERN_ASSERT)" | head -1)
    case "$out" in
      ok*) ;;
      *) caught="$nodes nodes: $out"; break ;;
    esac
  done
  if [ -n "$caught" ]; then echo "CAUGHT  $name — $caught"; else echo "MISSED  $name"; status=1; fi
done
exit $status
