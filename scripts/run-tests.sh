#!/usr/bin/env bash
# Builds and runs the whole test suite (ctest), then the fast and cluster tests again under
# ASan+UBSan.
#   TERN_SKIP_SANITIZE=1   skip the sanitizer pass
#   RC_PARAMS="..."        passed to RapidCheck (e.g. "seed=42" or "max_success=20000")
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/build.sh build
(cd build && ctest --output-on-failure -j "${TERN_JOBS:-$(nproc)}" --timeout 900)
echo "run-tests: main suite passed in $(( $(date +%s) - start ))s"
# The installed client package: examples/ built with find_package(tern), run on a local cluster.
scripts/check-example.sh build
if [ "${TERN_SKIP_SANITIZE:-0}" != 1 ]; then
  scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DTERN_SANITIZE=address,undefined -DTERN_BUILD_BENCH=OFF
  # Fast tests, plus the real-cluster tests against an ASan+UBSan ternd (node, transport, RPC).
  # Property tests run with fewer cases here: the main pass runs their full counts; this pass
  # looks for memory errors and undefined behaviour along the same code paths.
  (cd build-asan && RC_PARAMS=${RC_PARAMS:-max_success=40} \
    ctest --output-on-failure -L 'fast|cluster' -j "${TERN_JOBS:-$(nproc)}" --timeout 900)
  echo "run-tests: sanitizer pass passed in $(( $(date +%s) - start ))s total"
fi
