#pragma once
// Ready: the batch of work the core hands to its driver.
//
// THE READY CONTRACT (docs/raft.md). For each Ready, in this order:
//   1. Persist durably: `snapshot` (if any), then `entries` (which may replace the suffix of the
//      stored log starting at entries.front().index; stored entries at or beyond that index are
//      discarded), then `hard_state` (if any). "Durably" means fsync/fdatasync has returned.
//   2. Only then send `messages`. A vote reply or an append reply must never leave before the
//      term, vote and entries it vouches for are durable (paper §5.1, Figure 2 "Persistent state
//      ... updated on stable storage before responding to RPCs").
//   3. Restore the state machine from `snapshot` (if any), then apply `committed` in order.
//      Serve each read in `read_states` once the applied index reaches its index.
//   4. Call Core::advance(ready) with the same Ready.
// Core::ready() may not be called again before advance(). Steps, ticks and proposals may happen
// between ready() and advance(); their output goes into the next Ready.
// A crash at any point loses only what was not yet durable; the core is rebuilt from the durable
// hard state, snapshot and log (RestoreState).
#include <optional>
#include <string>
#include <vector>

#include "raft/messages.h"
#include "raft/types.h"

namespace tern::raft {

struct Snapshot {
  SnapshotMeta meta;
  std::shared_ptr<const std::string> data;
};

struct ReadState {
  std::string context;
  Index index;  // serve the read once applied >= index
};

struct Ready {
  std::optional<HardState> hard_state;
  // True when hard_state changes the term or the vote (not only the commit index). Such a Ready
  // must be durable before ANY of its messages leave, including a leader's AppendRequests that
  // a driver would otherwise send before its own write (thesis §10.2.1): an append or vote
  // request of a term that is not durable lets a restarted node reuse that term (issue 10,
  // hole 2). A commit-only hard state may be written lazily; see docs/raft.md.
  bool term_or_vote_changed = false;
  std::vector<Entry> entries;
  std::optional<Snapshot> snapshot;
  std::vector<Message> messages;
  std::vector<Entry> committed;
  std::vector<ReadState> read_states;

  bool empty() const {
    return !hard_state && entries.empty() && !snapshot && messages.empty() && committed.empty() &&
           read_states.empty();
  }
};

}  // namespace tern::raft
