#!/usr/bin/env bash
# ctest jepsen_netns_cleanup (docs/jepsen.md, "partition"): tern-jepsen removes every network
# namespace and link it made — after a normal run, after SIGTERM in the middle of a run, and (at
# the start of the next run) after a run killed with SIGKILL, whose nodes are still running in
# its namespaces. Skipped (passes, says so) where namespaces cannot be made (not root, or a
# container that refuses them): the runner then falls back to ternd's hook.
# Usage: netns_cleanup.sh TERN_JEPSEN OUT_DIR
set -uo pipefail
jepsen=$1 out=$2
probe=ternjprobe$$
if [ "$(id -u)" != 0 ] || ! ip netns add "$probe" 2>/dev/null; then
  echo "network namespaces not possible here: skipped"
  exit 0
fi
ip netns del "$probe"
fail() { echo "netns_cleanup: $*"; exit 1; }
ours() { ip netns list | grep -c "^ternj$1-"; }
links() { ip -o link show | grep -c ": tj$1[hn]"; }
run() { exec "$jepsen" --workload register --nemesis partition --net netns --time "$1" --rate 100 --seed 31 --out "$2"; }

# 1. SIGKILL in the middle: its namespaces and nodes stay behind...
run 20 "$out/killed" >/dev/null & pid=$!
nodes() { for n in $(ip netns list | awk '{print $1}' | grep "^ternj$1-"); do ip netns pids "$n"; done; }
# Bounded: until its three nodes run (namespaces come first, then certificates, then the nodes).
for i in $(seq 1 150); do [ "$(nodes $pid | wc -l)" -ge 3 ] && break; sleep 0.1; done
[ "$(ours $pid)" -ge 4 ] || fail "no namespaces seen for run $pid"
orphans=$(nodes $pid)
kill -9 $pid; wait $pid 2>/dev/null
# If this test fails before the next run sweeps them, they must not outlive it.
trap 'for p in $orphans; do kill -9 "$p" 2>/dev/null; done' EXIT
[ -n "$orphans" ] || fail "no node processes seen in the killed run's namespaces"
# 2. ...until the next run starts, which removes them; and a normal run cleans up after itself.
run 3 "$out/normal" & next=$!
wait $next; status=$?
[ $status = 0 ] || fail "normal run exited $status"
grep -q '"network": "netns+nftables"' "$out/normal/results.json" || fail "results.json does not say netns+nftables"
[ "$(ours $pid)" = 0 ] && [ "$(links $pid)" = 0 ] || fail "the killed run's namespaces or links remain"
for p in $orphans; do kill -0 "$p" 2>/dev/null && fail "node $p of the killed run still runs"; done
orphans=""  # gone: nothing for the exit trap to kill (their pids may be reused)
[ "$(ours $next)" = 0 ] && [ "$(links $next)" = 0 ] || fail "a normal run left namespaces or links"
# 3. SIGTERM in the middle: exit 3, nothing left. (SIGTERM: a background job of a
# non-interactive shell starts with SIGINT ignored.)
run 20 "$out/interrupted" >/dev/null & pid=$!
for i in $(seq 1 100); do [ "$(ours $pid)" -ge 4 ] && break; sleep 0.1; done
sleep 1
kill -TERM $pid
wait $pid; status=$?
[ $status = 3 ] || fail "interrupted run exited $status, not 3"
[ "$(ours $pid)" = 0 ] && [ "$(links $pid)" = 0 ] || fail "an interrupted run left namespaces or links"
echo "netns_cleanup: ok"
