#pragma once
// Progress: the leader's view of one follower's log (paper §5.3 nextIndex/matchIndex), with the
// flow-control states of etcd-style replication:
//   probe     — one AppendRequest at a time until the follower's position is known;
//   replicate — pipelining: next_index advances optimistically, bounded by in-flight limits;
//   snapshot  — an InstallSnapshot is outstanding; appends pause until it is acknowledged.
// Invariant: match_index < next_index.
#include <cstddef>
#include <cstdint>
#include <deque>

#include "raft/types.h"

namespace tern::raft {

enum class ProgressState : std::uint8_t { probe, replicate, snapshot };

struct Inflight {
  Index last_index;
  std::size_t bytes;
};

struct Progress {
  Index match_index;
  Index next_index{1};
  ProgressState state = ProgressState::probe;
  bool probe_sent = false;        // probe: an append is outstanding; wait for a reply or heartbeat
  bool recent_active = false;     // heard from since the last check-quorum round (§6.2)
  Index pending_snapshot;         // snapshot: the index of the snapshot sent
  std::uint32_t snapshot_ticks = 0;
  std::uint32_t stalled_heartbeats = 0;  // replicate: heartbeat replies without match progress
  Index commit_sent;              // the commit index this follower was told it may apply (a hint)
  std::deque<Inflight> inflights; // replicate: appends sent and not yet acknowledged
  std::size_t inflight_bytes = 0;

  void become_probe() {
    state = ProgressState::probe;
    next_index = match_index.next();
    commit_sent = Index{};  // what was sent may have been rejected or lost
    probe_sent = false;
    inflights.clear();
    inflight_bytes = 0;
  }
  void become_replicate() {
    state = ProgressState::replicate;
    next_index = match_index.next();
    inflights.clear();
    inflight_bytes = 0;
  }
  void become_snapshot(Index snapshot_index) {
    state = ProgressState::snapshot;
    pending_snapshot = snapshot_index;
    snapshot_ticks = 0;
    inflights.clear();
    inflight_bytes = 0;
  }
  // Acknowledge every in-flight append up to `index`.
  void free_inflights_to(Index index) {
    while (!inflights.empty() && inflights.front().last_index <= index) {
      inflight_bytes -= inflights.front().bytes;
      inflights.pop_front();
    }
  }
  // Returns true if match_index moved forward.
  bool update_match(Index index) {
    bool moved = index > match_index;
    if (moved) {
      match_index = index;
      stalled_heartbeats = 0;
    }
    if (next_index <= index) next_index = index.next();
    return moved;
  }
};

}  // namespace tern::raft
