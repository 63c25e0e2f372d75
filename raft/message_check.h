#pragma once
// Structural validation of a peer message: everything that can be checked without the state of
// the receiving core. Whatever comes off the wire is hostile (docs/raft.md "Peer input"): the
// transport may call check_message() to drop a bad frame before it reaches the core, and
// Core::step() calls it again first thing, so a core never acts on a malformed message, however
// it was delivered. Pure, std only.
//
// Rules (each a reason string when violated):
//   - from and to are non-zero and differ;
//   - requests that only a leader or candidate sends (AppendRequest, HeartbeatRequest,
//     CommitNotice, InstallSnapshotRequest, VoteRequest, TimeoutNow) carry a term >= 1;
//   - AppendRequest (§5.3): entries are contiguous from prev_index + 1 (no index overflow); their
//     terms never decrease, start at or above prev_term, and are not above the message term
//     (a leader only holds entries of its term or earlier); prev_index 0 has prev_term 0; every
//     entry type is known; every conf_change entry decodes (a change or a whole membership), so
//     an entry that could never be applied never enters a log;
//   - VoteRequest: last_term is not above the message term;
//   - InstallSnapshotRequest: index >= 1, term in [1, message term], and the membership is
//     well formed (voters non-empty; voters and learners sorted, unique, disjoint, no id 0).
#include <optional>
#include <string>

#include "raft/messages.h"

namespace tern::raft {

std::optional<std::string> check_message(const Message& m);

// A ConfState a core may adopt: voters non-empty, voters and learners sorted, unique, disjoint,
// and no id 0.
std::optional<std::string> check_conf_state(const ConfState& conf);

// A conf_change entry's data decodes (as one change or as a whole membership, raft/core.h).
bool conf_entry_decodes(const std::string& data);

}  // namespace tern::raft
