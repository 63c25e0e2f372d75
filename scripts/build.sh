#!/usr/bin/env bash
# Configures and builds tern into build/ (Release with debug info, warnings are errors).
# Usage: scripts/build.sh [build-dir] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}; shift || true
jobs=${TERN_JOBS:-$(nproc)}
cmake -S . -B "$dir" -G Ninja -DTERN_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$jobs"
