#!/usr/bin/env bash
# Starts a local 3-node ternd cluster on 127.0.0.1 in the foreground; Ctrl-C stops all three.
# Usage: scripts/cluster.sh [path/to/ternd] [base-data-dir]
# Ports: peers 7101-7103, clients 7201-7203, admin HTTP 7301-7303.
# NOTE: the Raft node driver is not wired into ternd yet (issue 4); today each process only
# loads its configuration and serves its admin HTTP endpoints.
set -euo pipefail
bin=${1:-build/service/ternd}
base=${2:-$(mktemp -d /tmp/tern-cluster.XXXXXX)}
cluster=1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait
}
trap stop INT TERM EXIT
for i in 1 2 3; do
  mkdir -p "$base/n$i"
  "$bin" --id "$i" --data-dir "$base/n$i" --initial-cluster "$cluster" \
    --client-addr "127.0.0.1:720$i" --admin-addr "127.0.0.1:730$i" &
  pids+=($!)
done
echo "tern cluster: data in $base; admin http on 127.0.0.1:7301-7303 (curl 127.0.0.1:7301/status)"
wait
