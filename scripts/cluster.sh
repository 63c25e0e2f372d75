#!/usr/bin/env bash
# Starts a local 3-node ternd cluster on 127.0.0.1 in the foreground; Ctrl-C stops all three.
# Usage: scripts/cluster.sh [build-dir] [data-dir]
#   build-dir defaults to build/ (scripts/build.sh); data-dir defaults to a new /tmp directory
#   (pass an existing one to restart the same cluster with its data).
# Ports: peers 7101-7103, clients (admin RPC) 7201-7203, admin HTTP 7301-7303.
# Peers authenticate with a cluster secret (docs/security.md): generated into <data-dir>/peer.secret
# on the first start and reused on restarts. The client ports serve mutual TLS: a local CA, one
# server certificate per node (SAN 127.0.0.1, localhost) and a client certificate are issued into
# <data-dir>/tls by scripts/tern-certs.sh (openssl) on the first start; <data-dir>/tls/client.env
# sets TERN_TLS_CA/CERT/KEY for ternadm. TERN_INSECURE=1 runs without either (--insecure).
# Try, from another terminal:
#   curl -s 127.0.0.1:7301/status
#   . <data-dir>/tls/client.env      (not with TERN_INSECURE=1)
#   build/service/ternadm --addr 127.0.0.1:7201 status
#   build/service/ternadm --addr 127.0.0.1:7201 propose hello   (on the leader; errors name it)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/service/ternd
base=${2:-$(mktemp -d /tmp/tern-cluster.XXXXXX)}
[ -x "$bin" ] || { echo "no ternd at $bin: run scripts/build.sh first" >&2; exit 2; }
cluster=1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
security=()
if [ "${TERN_INSECURE:-0}" = 1 ]; then
  security=(--insecure)
else
  mkdir -p "$base"
  secret=$base/peer.secret
  if [ ! -s "$secret" ]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secret")
  fi
  security=(--peer-secret-file "$secret")
  tls=$base/tls
  scripts/tern-certs.sh "$tls" n1 n2 n3
  printf 'export TERN_TLS_CA=%q TERN_TLS_CERT=%q TERN_TLS_KEY=%q\n' \
    "$tls/ca.pem" "$tls/client.pem" "$tls/client.key" >"$tls/client.env"
fi
pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait
  echo "tern cluster stopped; data kept in $base"
}
trap stop INT TERM EXIT
for i in 1 2 3; do
  mkdir -p "$base/n$i"
  client_tls=()
  [ "${TERN_INSECURE:-0}" = 1 ] ||
    client_tls=(--client-tls-cert "$tls/n$i.pem" --client-tls-key "$tls/n$i.key" --client-tls-ca "$tls/ca.pem")
  "$bin" --id "$i" --data-dir "$base/n$i" --initial-cluster "$cluster" \
    --client-addr "127.0.0.1:720$i" --admin-addr "127.0.0.1:730$i" "${security[@]}" "${client_tls[@]}" \
    2>>"$base/n$i.log" &
  pids+=($!)
done
echo "tern cluster: 3 nodes, data and logs in $base"
if [ "${TERN_INSECURE:-0}" = 1 ]; then
  echo "  status:  curl -s 127.0.0.1:7301/status    admin:  $build/service/ternadm --addr 127.0.0.1:7201 status"
else
  echo "  status:  curl -s 127.0.0.1:7301/status"
  echo "  admin:   . $tls/client.env && $build/service/ternadm --addr 127.0.0.1:7201 status   (mutual TLS)"
fi
echo "  Ctrl-C stops all three"
# Report the leader once elected (bounded: 10 s), then wait for the nodes.
command -v curl >/dev/null || { wait; exit; }
for _ in $(seq 1 100); do
  if s=$(curl -sf 127.0.0.1:7301/status 2>/dev/null) && [[ $s != *'"leader":0'* ]]; then
    echo "  leader elected: $s"
    break
  fi
  sleep 0.1
done
wait
