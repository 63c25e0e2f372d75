#!/usr/bin/env bash
# Enforces the folder boundaries of docs/architecture.md by scanning #include lines.
# Exits non-zero and names every offending line.
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
bad=0
# check <files-glob-find-args> <regex-of-forbidden-includes> <why>
check() {
  local where=$1 forbidden=$2 why=$3 exclude=${4:-}
  local files
  files=$(find "$where" -type f \( -name '*.h' -o -name '*.cc' \) ${exclude:+-not -path "$exclude"} 2>/dev/null)
  [ -n "$files" ] || return 0
  local hits
  hits=$(grep -HnE "^\s*#\s*include\s*[<\"]($forbidden)" $files)
  if [ -n "$hits" ]; then
    echo "boundary violation ($why):"; echo "$hits"; bad=1
  fi
}
check raft 'asio|capnp|kj/|spdlog|fmt/|thread>|mutex>|chrono>|atomic>|fstream>|filesystem>|iostream>|unistd|fcntl|sys/|service/|client/|raft/storage/' \
  "raft/ core is pure: std only" 'raft/storage/*'
check raft/storage 'asio|capnp|kj/|service/|client/|raft/core|raft/log|raft/progress' \
  "raft/storage knows raft/types.h, never the core or Asio"
check service/sm 'asio|capnp|kj/|raft/|service/net|service/node|client/|chrono>|thread>|mutex>|random>' \
  "service/sm is deterministic and std-only"
check service/net 'raft/core|raft/log|raft/progress|raft/storage|service/node|service/sm|service/admin|spdlog' \
  "service/net moves and converts raft messages; it knows neither the core, the node nor the state machine"
check client 'service/(sm|net|node|watch)' "client/ may use only the protocol schema from service/"
if [ $bad = 0 ]; then echo "boundaries: ok"; fi
exit $bad
