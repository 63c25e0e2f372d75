#!/usr/bin/env bash
# ctest jepsen_endpoints_hooks (docs/jepsen.md): tern-jepsen --endpoints against a 3-node ternd
# cluster this script starts itself (plaintext, --insecure, free loopback ports), as an operator
# would point it at their own deployment. The kill/start/pause/resume hooks act on this script's
# processes by pid; the partition/heal hooks only record their calls (ternd has no user-facing way
# to cut peers). Passes if the run is valid (exit 0) and every hook kind was called, and a second
# run against the same cluster is valid too.
# Usage: endpoints_hooks.sh TERN_JEPSEN TERND OUT_DIR
set -euo pipefail
jepsen=$1 ternd=$2 out=$3
dir=$(mktemp -d /tmp/tern_hooks_XXXXXX)
cleanup() {
  for f in "$dir"/n*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
read -r -a ports < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
cluster="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
# start.sh N: starts node N in the background (same data directory each time), its pid in nN.pid.
cat >"$dir/start.sh" <<EOF
#!/usr/bin/env bash
i=\$1
ports=(${ports[*]})
"$ternd" --id \$i --data-dir "$dir/n\$i" --initial-cluster "$cluster" \\
  --client-addr 127.0.0.1:\${ports[\$((i + 2))]} --admin-addr 127.0.0.1:\${ports[\$((i + 5))]} \\
  --insecure --election-timeout-ms 300 --heartbeat-interval-ms 30 </dev/null >>"$dir/n\$i.log" 2>&1 &
echo \$! >"$dir/n\$i.pid"
EOF
chmod +x "$dir/start.sh"
for i in 1 2 3; do "$dir/start.sh" $i; done
endpoints="127.0.0.1:${ports[3]},127.0.0.1:${ports[4]},127.0.0.1:${ports[5]}"
status=0
# The seed fixes the sequence of fault families (only their timing varies): seed 6's first picks
# cover kill, pause and partition within 12 s; SEED=N tries another.
"$jepsen" --endpoints "$endpoints" --workload register --nemesis kill,pause,partition --time 12 --rate 200 \
  --seed "${SEED:-6}" --out "$out" \
  --hook-kill "kill -9 \$(cat $dir/n{node}.pid)" --hook-start "$dir/start.sh {node}" \
  --hook-pause "kill -STOP \$(cat $dir/n{node}.pid)" --hook-resume "kill -CONT \$(cat $dir/n{node}.pid)" \
  --hook-partition "echo cut {node} {peers} {endpoint} >>$dir/cuts" --hook-heal "echo heal >>$dir/cuts" || status=$?
echo "tern-jepsen exit status: $status"
[ "$status" = 0 ] || exit 1
for kind in kill pause partition; do
  grep -q "\"fault\":\"$kind\"" "$out/nemesis.log" || { echo "no $kind fault in $out/nemesis.log"; exit 1; }
done
grep -q '^cut [0-9] [0-9]' "$dir/cuts" && grep -q '^heal' "$dir/cuts" || { echo "partition hooks not called"; exit 1; }
grep -q '"network": "user-hook"' "$out/results.json" || { echo "results.json does not name the user hook"; exit 1; }
[ -s "$out/report.html" ] || { echo "no report.html"; exit 1; }
# An operator runs it again against the same cluster: the workload's keys are already there.
status=0
"$jepsen" --endpoints "$endpoints" --workload register --nemesis none --time 3 --rate 200 --seed 7 \
  --out "$out-again" || status=$?
[ "$status" = 0 ] || { echo "a second run against the same cluster: exit status $status"; exit 1; }
echo "endpoints_hooks: ok"
