#!/usr/bin/env bash
# CI check of the installed client library (issue 11): installs tern into a temporary prefix,
# builds examples/leader-config against it with find_package(tern), and runs two replicas of it
# against a local 3-node cluster (scripts/cluster.sh): a replica must become leader and both must
# reload the configuration the leader publishes. Stops what it started, by pid.
# Usage: scripts/check-example.sh [build-dir]
#   TERN_EXAMPLE_ENDPOINTS   the cluster's client endpoints (default: scripts/cluster.sh's)
#   TERN_EXAMPLE_ARGS        extra options for the example (e.g. client security options)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
work=$(mktemp -d /tmp/tern-example.XXXXXX)
cluster_pid=
cleanup() {
  if [ -n "$cluster_pid" ]; then
    kill -TERM "$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
cmake -S examples/leader-config -B "$work/ex" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log"
cmake --build "$work/ex" >"$work/build.log"
scripts/cluster.sh "$build" "$work/cluster" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
# The cluster's client ports use mutual TLS; the library reads TERN_TLS_* (docs/client.md).
if [ "${TERN_INSECURE:-0}" != 1 ]; then
  for _ in $(seq 100); do [ -f "$work/cluster/tls/client.env" ] && break; sleep 0.1; done
  # shellcheck disable=SC1091
  . "$work/cluster/tls/client.env"
fi
endpoints=${TERN_EXAMPLE_ENDPOINTS:-127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203}
# The replicas' connect retries until the cluster has a leader (within its request timeout).
pids=()
for r in 1 2; do
  # shellcheck disable=SC2086
  "$work/ex/leader_config_service" --endpoints "$endpoints" --name "replica-$r" --run-seconds 4 \
    --session-timeout-ms 2000 ${TERN_EXAMPLE_ARGS:-} >"$work/replica-$r.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
cat "$work"/replica-*.log
[ "$status" = 0 ] || { echo "check-example: a replica failed" >&2; exit 1; }
cat "$work"/replica-*.log | grep -q 'became leader' || { echo "check-example: no replica became leader" >&2; exit 1; }
for r in 1 2; do
  grep -q 'reloaded config "leader=' "$work/replica-$r.log" ||
    { echo "check-example: replica-$r did not reload the leader's config" >&2; exit 1; }
done
echo "check-example: passed"
