#!/usr/bin/env bash
# Runs the README's quickstart (the lines between <!-- quickstart --> and <!-- /quickstart -->)
# exactly as written, against a 3-node cluster started by scripts/cluster.sh — in a private
# network namespace (unshare -rn), so its fixed ports 7201-7203 are free whatever else runs on the
# machine and the quickstart's `fuser -k` can only reach this cluster's nodes.
# Usage: quickstart_test.sh SOURCE_DIR BUILD_DIR. Exit 77 (skipped) if user namespaces are off.
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
if [ "${TERN_QUICKSTART_INNER:-0}" != 1 ]; then
  unshare -rn true 2>/dev/null || { echo "quickstart: no user namespaces here: skipped"; exit 77; }
  exec env TERN_QUICKSTART_INNER=1 timeout 120 unshare -rn bash "$0" "$@"
fi
ip link set lo up
work=$(mktemp -d /tmp/tern-quickstart.XXXXXX)
data=$work/cluster
cluster_pid=
cleanup() {
  [ -n "$cluster_pid" ] && kill -TERM "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The lines, as written (4-space indented in README.md).
sed -n '/^<!-- quickstart/,/^<!-- \/quickstart/p' "$src/README.md" | sed -n 's/^    //p' >"$work/quickstart.sh"
[ "$(wc -l <"$work/quickstart.sh")" -ge 10 ] || { echo "quickstart: no lines found in README.md"; exit 1; }
# The README's commands run at the repository root with build/ there: a root whose build/ is the
# build under test (so the ASan build tests its own tern).
mkdir -p "$work/root/scripts"
ln -s "$build" "$work/root/build"
ln -s "$src/scripts/"* "$work/root/scripts/"
cd "$work/root"
bash scripts/cluster.sh build "$data" >"$work/cluster.out" 2>&1 &
cluster_pid=$!
export TERN_CLUSTER_DIR=$data
for _ in $(seq 1 100); do
  "$build/client/cli/tern" --timeout 1s status -o json 2>/dev/null | grep -q '"role": "leader"' && break
  sleep 0.2
done
echo "--- running README quickstart:"
cat "$work/quickstart.sh"
echo "---"
set -x
bash -euo pipefail "$work/quickstart.sh" >"$work/out" 2>&1 || { cat "$work/out"; echo "quickstart: a line failed"; exit 1; }
set +x
cat "$work/out"
# What the quickstart shows: the value, both watched changes, the lock's and the leader's command,
# the write after the kill, and node 1 unreachable.
grep -q '^db=primary.local$' "$work/out"
grep -q 'changed /config db=replica.local' "$work/out"
grep -q 'changed /config db=primary.local' "$work/out"
grep -q 'backing up with fencing token [0-9]' "$work/out"
grep -q 'leading with token [0-9]' "$work/out"
grep -q '^db=after-failover.local$' "$work/out"
grep -q 'unreachable' "$work/out"
echo "quickstart: ok"
