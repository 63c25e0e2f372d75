#!/usr/bin/env bash
# tern beside etcd and ZooKeeper in one sitting (issue 14): the same machine, the same workload
# shape (../shared/peers/README.md), each system through its own client library, runs interleaved
# (tern, etcd, ZooKeeper, then again), medians of the runs, written to bench/results/vs-peers.md.
#   bench/vs-peers.sh [RUNS=3] [SECS=10]
# Env: BUILD=build (tern's build dir), SIZES="3 1", SYSTEMS="tern etcd zk", PEERS=../shared/peers,
# TERN_CFGS="put:1 put:16 ..." and WATCHERS=10000 (tern's configurations),
# (called, never copied), TERN_TLS=0|1 (tern's client port in plaintext like the peers', or mutual
# TLS), OUT=file for the raw lines, RESULTS=bench/results/vs-peers.md.
# Every run is bounded (SECS + 1 s warm-up); tern's servers are stopped by the pids this script
# started, the peers' by their own stop.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECS=${2:-10}
BUILD=${BUILD:-build}; SIZES=${SIZES:-3 1}; SYSTEMS=${SYSTEMS:-tern etcd zk}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
TERN_TLS=${TERN_TLS:-0}
# tern's configurations (op:outstanding); watch is the fan-out of WATCHERS watchers of one key,
# one write per millisecond.
TERN_CFGS=${TERN_CFGS:-put:1 put:16 put:128 get:16 get:128 get-serializable:16 get-serializable:128 mixed:128 lock:16 watch:1}
WATCHERS=${WATCHERS:-10000}
work=$(mktemp -d /tmp/tern-vs-peers.XXXXXX)
OUT=${OUT:-$work/lines.txt}
RESULTS=${RESULTS:-bench/results/vs-peers.md}
ternd=$BUILD/service/ternd; bench=$BUILD/bench/peers/tern-bench
[ -x "$ternd" ] && [ -x "$bench" ] || { echo "build first: scripts/build.sh $BUILD (needs ternd and tern-bench)" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
: >"$OUT"

# ---- tern: a fresh cluster of n nodes on ports of its own (7401.., 7411.., 7421..) ----
tern_pids=()
tern_stop() {
  for p in "${tern_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${tern_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  tern_pids=()
}
trap 'tern_stop; rm -rf "$work"' EXIT
tern_start() {
  local n=$1 i cluster="" dir=$work/tern-$n-$RANDOM
  for i in $(seq 1 "$n"); do cluster+="${cluster:+,}$i=127.0.0.1:740$i"; done
  mkdir -p "$dir"
  local sec=(--insecure)
  if [ "$TERN_TLS" = 1 ]; then
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/peer.secret"
    scripts/tern-certs.sh "$dir/tls" $(seq -f 'n%g' 1 "$n") >/dev/null
    export TERN_TLS_CA=$dir/tls/ca.pem TERN_TLS_CERT=$dir/tls/client.pem TERN_TLS_KEY=$dir/tls/client.key
  fi
  for i in $(seq 1 "$n"); do
    [ "$TERN_TLS" = 1 ] && sec=(--peer-secret-file "$dir/peer.secret" --client-tls-cert "$dir/tls/n$i.pem"
      --client-tls-key "$dir/tls/n$i.key" --client-tls-ca "$dir/tls/ca.pem")
    mkdir -p "$dir/n$i"
    "$ternd" --id "$i" --data-dir "$dir/n$i" --initial-cluster "$cluster" --client-addr "127.0.0.1:741$i" \
      --admin-addr "127.0.0.1:742$i" --log-level warn "${sec[@]}" 2>>"$dir/n$i.log" &
    tern_pids+=($!)
  done
}
tern_endpoints() {  # the leader's client port first
  local n=$1 i lead="" rest="" deadline=$((SECONDS + 20)) s
  while [ -z "$lead" ] && [ $SECONDS -lt $deadline ]; do
    for i in $(seq 1 "$n"); do
      s=$(curl -s --max-time 1 "127.0.0.1:742$i/status" || true)
      [[ $s == *'"role":"leader"'* ]] && lead=127.0.0.1:741$i
    done
    [ -n "$lead" ] || sleep 0.2
  done
  [ -n "$lead" ] || { echo "tern: no leader within 20 s" >&2; return 1; }
  for i in $(seq 1 "$n"); do [ "127.0.0.1:741$i" = "$lead" ] || rest+="${rest:+,}127.0.0.1:741$i"; done
  echo "$lead${rest:+,$rest}"
}
tern_round() {  # one run of every configuration, each size
  local r=$1 n eps pids cfg op c
  for n in $SIZES; do
    tern_start "$n"
    eps=$(tern_endpoints "$n")
    pids=$(IFS=,; echo "${tern_pids[*]}")
    log "tern x$n endpoints (leader first): $eps"
    "$bench" --endpoints "$eps" --op put --conc 16 --secs 3 --warmup 0 >/dev/null  # warm-up, discarded
    for cfg in $TERN_CFGS; do
      op=${cfg%%:*}; c=${cfg##*:}
      "$bench" --endpoints "$eps" --op "$op" --conc "$c" --secs "$SECS" --pids "$pids" --watchers "$WATCHERS" \
        --label "nodes=$n run=$r tls=$TERN_TLS" | tee -a "$OUT" >&2 || log "tern-bench failed: $op $c"
    done
    tern_stop
  done
}
peer_round() {  # one run of the peer's own configurations, through its own bench.sh
  local sys=$1 r=$2 f=$work/$sys-$r.txt
  SIZES="$SIZES" OUT="$f" "$PEERS/bench.sh" "$sys" 1 "$SECS" >/dev/null || log "$sys run $r failed"
  [ -f "$f" ] && sed "s/ run=1 / run=$r /" "$f" >>"$OUT"
}

for r in $(seq 1 "$RUNS"); do
  for sys in $SYSTEMS; do
    log "run $r of $RUNS: $sys"
    if [ "$sys" = tern ]; then tern_round "$r"; else peer_round "$sys" "$r"; fi
  done
done
log "raw lines: $OUT"
python3 bench/vs_peers_table.py "$OUT" "$(nproc)" "$(cat /proc/loadavg | cut -d' ' -f1-3)" >"$RESULTS"
# The hand-written analysis (targets, profiles) follows the numbers; update it when they change.
[ -f bench/results/vs-peers-notes.md ] && cat bench/results/vs-peers-notes.md >>"$RESULTS"
cp "$OUT" "${RESULTS%.md}.lines.txt"
log "table: $RESULTS"
