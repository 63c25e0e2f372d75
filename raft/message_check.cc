#include "raft/message_check.h"

#include <limits>

#include "common/overloaded.h"
#include "raft/core.h"
#include "raft/quorum.h"

namespace tern::raft {

namespace {
bool sorted_unique_nonzero(const std::vector<NodeId>& ids) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == no_node) return false;
    if (i > 0 && !(ids[i - 1] < ids[i])) return false;
  }
  return true;
}

std::optional<std::string> check_append(const Message& m, const AppendRequest& r) {
  if (r.prev_index.value == 0 && r.prev_term.value != 0) return "append: prev_index 0 with a non-zero prev_term";
  if (r.prev_term > m.term) return "append: prev_term above the message term";
  if (r.entries.size() > std::numeric_limits<std::uint64_t>::max() - r.prev_index.value)
    return "append: entry indices overflow";
  Term last = r.prev_term;
  for (std::size_t i = 0; i < r.entries.size(); ++i) {
    const Entry& e = r.entries[i];
    if (e.index != r.prev_index + (i + 1)) return "append: entries not contiguous from prev_index + 1";
    if (e.term < last) return "append: entry terms decrease";
    if (e.term > m.term) return "append: entry term above the message term";
    last = e.term;
    switch (e.type) {
      case EntryType::normal:
      case EntryType::noop: break;
      case EntryType::conf_change:
        if (!conf_entry_decodes(e.data)) return "append: undecodable membership change entry";
        break;
      default: return "append: unknown entry type";
    }
  }
  return std::nullopt;
}
}  // namespace

std::optional<std::string> check_conf_state(const ConfState& conf) {
  if (conf.voters.empty()) return "membership without voters";
  if (!sorted_unique_nonzero(conf.voters) || !sorted_unique_nonzero(conf.learners))
    return "membership ids not sorted, unique and non-zero";
  for (NodeId l : conf.learners)
    if (contains(conf.voters, l)) return "membership: a node is both voter and learner";
  return std::nullopt;
}

bool conf_entry_decodes(const std::string& data) {
  if (auto cc = decode_conf_change(data)) return cc->node != no_node;
  if (auto conf = decode_conf_state(data)) return !check_conf_state(*conf);
  return false;
}

std::optional<std::string> check_message(const Message& m) {
  if (m.from == no_node) return "message from node id 0";
  if (m.to == no_node) return "message to node id 0";
  if (m.from == m.to) return "message to its own sender";
  return std::visit(
      Overloaded{
          [&](const AppendRequest& r) -> std::optional<std::string> {
            if (m.term.value == 0) return "append at term 0";
            return check_append(m, r);
          },
          [&](const HeartbeatRequest&) -> std::optional<std::string> {
            if (m.term.value == 0) return "heartbeat at term 0";
            return std::nullopt;
          },
          [&](const CommitNotice&) -> std::optional<std::string> {
            if (m.term.value == 0) return "commit notice at term 0";
            return std::nullopt;
          },
          [&](const VoteRequest& r) -> std::optional<std::string> {
            if (m.term.value == 0) return "vote request at term 0";
            if (r.last_term > m.term) return "vote request: last_term above the message term";
            return std::nullopt;
          },
          [&](const InstallSnapshotRequest& r) -> std::optional<std::string> {
            if (m.term.value == 0) return "snapshot at term 0";
            if (r.meta.index.value == 0) return "snapshot at index 0";
            if (r.meta.term.value == 0 || r.meta.term > m.term) return "snapshot term not in [1, message term]";
            if (auto err = check_conf_state(r.meta.conf)) return "snapshot: " + *err;
            return std::nullopt;
          },
          [&](const TimeoutNow&) -> std::optional<std::string> {
            if (m.term.value == 0) return "timeout-now at term 0";
            return std::nullopt;
          },
          [&](const ProposeReply& r) -> std::optional<std::string> {
            // An appended entry has a real index and the term of the leader that appended it.
            if (r.ok && (r.index.value == 0 || m.term.value == 0)) return "propose reply: placed at index or term 0";
            return std::nullopt;
          },
          [&](const auto&) -> std::optional<std::string> { return std::nullopt; },
      },
      m.body);
}

}  // namespace tern::raft
