#pragma once
// Messages exchanged by Raft cores. Plain aggregates: the network layer (service/net) converts
// them to Cap'n Proto; the simulator moves them as they are. Every message carries the sender's
// term (the generation clock, paper §5.1): a receiver with a newer term rejects it, a receiver
// with an older term adopts it (except for pre-votes, thesis §9.6).
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "raft/types.h"

namespace tern::raft {

// §5.3 AppendEntries. prev_index/prev_term identify the entry preceding `entries`.
struct AppendRequest {
  Index prev_index;
  Term prev_term;
  std::vector<Entry> entries;
  Index commit;  // leader's commit index
};

// success: the follower's log matches the leader's up to match_index.
// failure: the follower has no entry prev_index with prev_term (rejected_index = that prev_index);
// conflict_index/conflict_term are the fast back-off hint (§5.3, last paragraph): the first index
// the follower holds with conflict_term, or its last_index + 1 with conflict_term 0.
struct AppendReply {
  bool success = false;
  Index match_index;
  Index rejected_index;
  Index conflict_index;
  Term conflict_term;
};

// §5.2 RequestVote; pre_vote marks the thesis §9.6 pre-vote round (term = candidate's term + 1,
// nobody's term changes). transfer marks an election started by TimeoutNow (thesis §3.10), which
// voters grant even while they still hear from a leader.
struct VoteRequest {
  Index last_index;
  Term last_term;
  bool pre_vote = false;
  bool transfer = false;
};

struct VoteReply {
  bool granted = false;
  bool pre_vote = false;
};

// Heartbeats carry the commit index the follower may safely adopt (min(match, commit)) and the
// ReadIndex round (thesis §6.4): a follower echoes read_seq, so a majority of echoes confirms
// that the leader was still leader when the read was registered.
struct HeartbeatRequest {
  Index commit;
  std::uint64_t read_seq = 0;
};

struct HeartbeatReply {
  std::uint64_t read_seq = 0;
};

// §7 InstallSnapshot. The core leaves `data` empty when it sends: the driver attaches (and may
// stream in chunks) the bytes of its latest snapshot for meta.index. The receiving driver steps
// the complete message, with data.
struct InstallSnapshotRequest {
  SnapshotMeta meta;
  std::shared_ptr<const std::string> data;
};

struct InstallSnapshotReply {
  Index match_index;  // the follower's last index after handling the snapshot
};

// Thesis §3.10 leadership transfer: the target starts an election at once.
struct TimeoutNow {};

// A follower forwards a ReadIndex request to its leader (thesis §6.4) and gets back the index
// at which the read may be served once applied.
struct ReadIndexRequest {
  std::string context;
};

struct ReadIndexReply {
  std::string context;
  Index index;
  bool ok = false;  // false: the receiver was not leader; the caller should retry
};

// Thesis §6.2: clients may send requests to any server; a follower forwards a proposal's command
// to its leader, which appends it as its own (its driver stamps it) and answers with the index
// and term it was given. The follower then waits for that (index, term) to commit and apply,
// as for a proposal of its own. `ok` false: the receiver could not append it (not leader, a
// transfer in progress, too large, too many uncommitted bytes); the follower may retry.
struct ProposeRequest {
  std::uint64_t context = 0;
  std::string command;
  // The client's request id (0: none), so the leader's log lines name it too (docs/client.md,
  // Request ids). Carried for tracing only: the protocol never looks at it.
  std::uint64_t trace = 0;
  // What `command` is, for the driver (0: a client's command). The core never looks at it.
  // ternd: 3 = the sender's own client address (service/replica.h), which the leader records
  // under the sender's id.
  std::uint8_t kind = 0;
};

struct ProposeReply {
  std::uint64_t context = 0;
  Index index;
  bool ok = false;
};

// The commit index a follower may apply, sent when it moves: min(the follower's match index, the
// leader's commit), the rule heartbeats follow (the follower's log matches the leader's through
// its match index, §5.3 Log Matching, so everything up to there that the leader committed is
// committed). One way, no reply: an empty AppendRequest did this job before, and its reply (one
// more message and wake-up per follower per commit) told the leader nothing new.
struct CommitNotice {
  Index commit;
};

using MessageBody =
    std::variant<AppendRequest, AppendReply, VoteRequest, VoteReply, HeartbeatRequest, HeartbeatReply,
                 InstallSnapshotRequest, InstallSnapshotReply, TimeoutNow, ReadIndexRequest, ReadIndexReply,
                 ProposeRequest, ProposeReply, CommitNotice>;

// Messages only a leader sends to its followers.
inline bool sent_by_leader(const MessageBody& b) {
  return std::holds_alternative<AppendRequest>(b) || std::holds_alternative<HeartbeatRequest>(b) ||
         std::holds_alternative<InstallSnapshotRequest>(b) || std::holds_alternative<CommitNotice>(b);
}

struct Message {
  NodeId from;
  NodeId to;
  Term term;
  MessageBody body;
};

const char* message_name(const MessageBody& body);

}  // namespace tern::raft
