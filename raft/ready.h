#pragma once
// Ready: the batch of work the core hands to its driver.
//
// THE READY CONTRACT (docs/raft.md). For each Ready, in this order:
//   1. Persist durably: `snapshot` (if any), then `entries` (which may replace the suffix of the
//      stored log starting at entries.front().index; stored entries at or beyond that index are
//      discarded), then `hard_state` (if any). "Durably" means fsync/fdatasync has returned.
//   2. Only then send `messages`. A vote reply or an append reply must never leave before the
//      term, vote and entries it vouches for are durable (paper §5.1, Figure 2 "Persistent state
//      ... updated on stable storage before responding to RPCs"). Exception (thesis §10.2.1):
//      a leader's AppendRequests may leave before its own write, since the core counts its own
//      entries only after advance() — but never when `term_or_vote_changed` is set.
//   3. Restore the state machine from `snapshot` (if any), then apply `committed` in order.
//      Serve each read in `read_states` once the applied index reaches its index.
//      `forwarded` and `placed` (proposal forwarding, thesis §6.2) need no ordering: handle them
//      whenever (ternd: at once, so a forwarded command joins the next Ready).
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

// A command a follower forwarded to this leader (thesis §6.2): the driver proposes it (stamping
// it as its own) and answers with Core::answer_forwarded.
struct Forwarded {
  NodeId from;
  std::uint64_t context = 0;
  std::string command;
  std::uint64_t trace = 0;  // the client's request id (ProposeRequest::trace), for logs
  std::uint8_t kind = 0;    // ProposeRequest::kind
};

// Where the leader put a command this node forwarded: wait for (index, term) to apply.
struct Placed {
  std::uint64_t context = 0;
  Index index;
  Term term;
  bool ok = false;
  NodeId leader;  // who answered
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
  std::vector<Forwarded> forwarded;  // leader: commands to propose and answer (any time)
  std::vector<Placed> placed;        // follower: where the leader put this node's commands

  bool empty() const {
    return !hard_state && entries.empty() && !snapshot && messages.empty() && committed.empty() &&
           read_states.empty() && forwarded.empty() && placed.empty();
  }
};

}  // namespace tern::raft
