#!/usr/bin/env bash
# The 30-minute campaign of docs/jepsen.md: six runs of 300 s of faults, two at a time.
#   jepsen-like/campaign.sh [OUT=/tmp/tern-campaign]   (BUILD=build names the build directory)
# Each run is bounded (timeout 600 s); a summary line per run goes to OUT/summary.txt.
set -u
cd "$(dirname "$0")/.."
J=${BUILD:-build}/jepsen-like/tern-jepsen
export TERND_BIN=${TERND_BIN:-${BUILD:-build}/service/ternd}
out=${1:-/tmp/tern-campaign}
mkdir -p "$out"
stream() {
  while [ $# -gt 0 ]; do
    name=$1; args=$2; shift 2
    start=$(date +%s)
    # shellcheck disable=SC2086
    timeout 600 "$J" $args --time 300 --out "$out/$name" >"$out/$name.txt" 2>&1
    echo "$name rc=$? wall=$(( $(date +%s) - start ))s" >>"$out/summary.txt"
  done
}
stream register-5 "--workload register --nodes 5 --nemesis kill,pause,partition,clock,disk,membership --overlap --rate 100 --seed 101" \
       list-append "--workload list-append --nemesis kill,kill-all,partition --rate 100 --seed 102" \
       ephemeral "--workload ephemeral --nemesis pause,clock,partition --rate 100 --seed 103" &
stream mutex "--workload mutex --nemesis kill,pause,partition,clock --overlap --rate 100 --seed 104" \
       bank "--workload bank --nemesis partition,kill,disk,membership --rate 100 --seed 105" \
       watch "--workload watch --nemesis kill,pause,partition --overlap --rate 100 --seed 106" &
wait
cat "$out/summary.txt"
