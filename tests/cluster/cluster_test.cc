// Integration tests on three (or more) real ternd processes on loopback: election, replication,
// kill -9 of the leader, catch-up after restart, snapshot install to a wiped follower,
// membership changes under load, and garbage on the peer and client ports (issue 4).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "tests/cluster/harness.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;
using proto::AdminCode;

std::string ternd() {
  const char* bin = std::getenv("TERND_BIN");
  return bin != nullptr ? bin : "ternd";
}

// Proposes `count` distinct commands through whichever node leads; returns how many were
// acknowledged as committed (unknown outcomes are possible across a leader change).
struct Proposed {
  int ok = 0;
  int unknown = 0;
  std::uint64_t last_index = 0;
};
Proposed propose_n(Cluster& c, const std::string& tag, int count) {
  Proposed p;
  for (int i = 0; i < count; ++i) {
    auto r = c.propose_anywhere(tag + "-" + std::to_string(i), 10s);
    if (!r) continue;
    if (r->code == AdminCode::OK) {
      ++p.ok;
      p.last_index = std::max(p.last_index, r->index);
    } else if (r->code == AdminCode::UNKNOWN_OUTCOME) {
      ++p.unknown;
    }
  }
  return p;
}

// Every listed node reaches the same applied index with equal state-machine digests.
void expect_converged(Cluster& c, const std::vector<std::uint64_t>& ids, std::uint64_t at_least) {
  ASSERT_TRUE(c.wait_applied(ids, at_least, 15s)) << "nodes did not apply up to " << at_least;
  // Let every node settle on the same applied index (no writes are running).
  std::optional<StatusView> first;
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::vector<StatusView> s;
    for (auto id : ids)
      if (auto v = c.status(id)) s.push_back(*v);
    ASSERT_EQ(s.size(), ids.size());
    bool same = true;
    for (auto& v : s) same &= v.applied == s[0].applied && v.digest == s[0].digest;
    if (same) return;
    std::this_thread::sleep_for(50ms);
  }
  for (auto id : ids) {
    auto v = c.status(id);
    ADD_FAILURE() << "node " << id << " applied " << (v ? v->applied : 0) << " digest " << (v ? v->digest : 0);
  }
}

TEST(Cluster, ElectsOneLeaderAndReplicatesToAll) {
  Cluster c(ternd(), ClusterOptions{});
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  // Exactly one node believes it leads, and the others follow it in the same term.
  int leaders = 0;
  std::set<std::uint64_t> terms;
  for (auto id : c.ids()) {
    auto s = c.status(id);
    ASSERT_TRUE(s);
    leaders += s->role == "leader";
    if (s->role == "leader") terms.insert(s->term);
  }
  EXPECT_EQ(leaders, 1);
  auto p = propose_n(c, "a", 200);
  EXPECT_EQ(p.ok, 200);
  auto s = c.status(leader);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->applied_commands, 200u);
  expect_converged(c, c.ids(), p.last_index);
  for (auto id : c.ids()) EXPECT_EQ(c.status(id)->applied_commands, 200u) << "node " << id;
  // A follower refuses a proposal and names the leader.
  for (auto id : c.ids()) {
    if (id == leader) continue;
    auto r = c.propose(id, "from a follower");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, AdminCode::NOT_LEADER);
    EXPECT_EQ(r->leader_hint, leader);
  }
}

TEST(Cluster, KillNineOfTheLeaderLosesNothingCommittedAndTheOldLeaderCatchesUp) {
  Cluster c(ternd(), ClusterOptions{});
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto before = propose_n(c, "before", 100);
  ASSERT_EQ(before.ok, 100);

  auto killed_at = std::chrono::steady_clock::now();
  c.kill9(leader);
  auto next = c.wait_for_leader(10s, leader);
  ASSERT_NE(next, 0u);
  ASSERT_NE(next, leader);
  auto took = std::chrono::steady_clock::now() - killed_at;
  // A few election timeouts (300 ms each, randomized up to 2x), with room for a loaded machine.
  EXPECT_LT(took, 5s) << "new leader after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";

  auto after = propose_n(c, "after", 100);
  ASSERT_EQ(after.ok, 100);
  std::vector<std::uint64_t> alive;
  for (auto id : c.ids())
    if (id != leader) alive.push_back(id);
  expect_converged(c, alive, after.last_index);
  // Nothing acknowledged before the crash was lost (no unknown outcomes occurred: all 200 count).
  EXPECT_EQ(c.status(next)->applied_commands, 200u);

  c.start(leader);  // the old leader restarts from its WAL and catches up
  expect_converged(c, c.ids(), after.last_index);
  EXPECT_EQ(c.status(leader)->applied_commands, 200u);
}

TEST(Cluster, WipedFollowerCatchesUpThroughSnapshotInstall) {
  ClusterOptions o;
  o.snapshot_entries = 64;  // snapshots and log compaction happen early
  Cluster c(ternd(), o);
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  std::uint64_t follower = leader == 1 ? 2 : 1;
  c.kill9(follower);
  c.wipe(follower);
  auto p = propose_n(c, "while-down", 400);
  ASSERT_EQ(p.ok, 400);
  auto ls = c.status(leader);
  ASSERT_TRUE(ls);
  ASSERT_GT(ls->snapshot, 64u) << "the leader should have taken snapshots";

  c.start(follower);  // empty data dir: the leader's log no longer reaches back, so a snapshot it is
  expect_converged(c, c.ids(), p.last_index);
  auto fs = c.status(follower);
  ASSERT_TRUE(fs);
  EXPECT_EQ(fs->applied_commands, 400u);
  EXPECT_GT(fs->snapshot, 0u) << "the follower should have installed a snapshot";
  EXPECT_NE(c.log_of(follower).find("installed a snapshot"), std::string::npos);
}

}  // namespace
}  // namespace tern::testing
