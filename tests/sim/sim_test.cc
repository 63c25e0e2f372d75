// Deterministic simulation of Raft under generated fault schedules (issue 2).
// Each property prints its RapidCheck seed; replay with RC_PARAMS="reproduce=..." or a single
// schedule with `tern-sim --seed N`. TERN_SIM_RUNS scales the number of schedules.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"
#include "tests/sim/sim.h"

namespace tern::sim {
namespace {

rc::Gen<Fault> gen_fault(std::uint32_t ticks, int nodes) {
  return rc::gen::apply(
      [](std::uint32_t at, int kind, std::uint32_t a, std::uint32_t b) {
        return Fault{at, static_cast<FaultKind>(kind), a, b};
      },
      rc::gen::inRange<std::uint32_t>(0, ticks),
      rc::gen::weightedElement<int>({{6, (int)FaultKind::crash},
                                     {6, (int)FaultKind::restart},
                                     {3, (int)FaultKind::partition},
                                     {2, (int)FaultKind::cut_one_way},
                                     {3, (int)FaultKind::isolate_leader},
                                     {2, (int)FaultKind::bridge},
                                     {4, (int)FaultKind::heal},
                                     {2, (int)FaultKind::loss},
                                     {2, (int)FaultKind::duplicate},
                                     {2, (int)FaultKind::transfer},
                                     {1, (int)FaultKind::add_learner},
                                     {1, (int)FaultKind::promote},
                                     {1, (int)FaultKind::remove},
                                     {4, (int)FaultKind::reboot},
                                     {4, (int)FaultKind::crash_point}}),
      rc::gen::inRange<std::uint32_t>(0, 64), rc::gen::inRange<std::uint32_t>(0, static_cast<std::uint32_t>(nodes)));
}

void run_schedule(int voters, int spares) {
  Options o;
  o.voters = voters;
  o.spares = spares;
  o.ticks = 250;
  o.seed = *rc::gen::arbitrary<std::uint64_t>();
  o.faults = *rc::gen::container<std::vector<Fault>>(gen_fault(o.ticks, voters + spares));
  Outcome out = run(o);
  if (!out.ok) {
    std::string schedule;
    for (const auto& f : o.faults) schedule += describe(f) + " ";
    RC_FAIL("seed=" + std::to_string(o.seed) + " voters=" + std::to_string(voters) + " : " + out.error +
            "\n  schedule: " + schedule);
  }
  RC_TAG(out.writes_ok > 0 ? "writes committed" : "no writes committed");
}

RC_GTEST_PROP(Simulation, ThreeNodesStaySafeAndLive, ()) { run_schedule(3, 1); }
RC_GTEST_PROP(Simulation, FiveNodesStaySafeAndLive, ()) { run_schedule(5, 1); }

// Without faults a cluster must elect a leader and commit many writes: guards against a
// simulator that silently does nothing (which would make every property pass).
TEST(Simulation, QuietClusterMakesProgress) {
  Options o;
  o.seed = 42;
  Outcome out = run(o);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_GT(out.writes_ok, 20u);
  EXPECT_GT(out.reads_ok, 10u);
  EXPECT_EQ(out.leaders, 1u);
}

// Issue 10, hole 3: with a durable commit index that lags the durable log (as on the real
// node), membership adopted at commit let a restarted node count votes with an old
// configuration. These tern-sim seeds broke leader completeness / electability on that code
// (the first failures from seed 1: 3 nodes seed 122, 5 nodes seed 137); both pass with
// lazy_commit off on the old code too, so it is the lagging commit that exposes the hole.
TEST(Simulation, DurableCommitLaggingTheLogKeepsMembershipSafe) {
  for (auto [seed, voters] : {std::pair<std::uint64_t, int>{122, 3}, {137, 5}}) {
    Options o;
    o.seed = seed;
    o.voters = voters;
    o.lazy_commit = true;
    o.faults = random_faults(seed, o.ticks, voters + 1);
    Outcome out = run(o);
    EXPECT_TRUE(out.ok) << "tern-sim --seed " << seed << " --nodes " << voters << ": " << out.error;
  }
}

TEST(Simulation, SnapshotsAreSentToARestartedLaggard) {
  Options o;
  o.seed = 7;
  o.faults = {{20, FaultKind::crash, 2}, {200, FaultKind::restart, 2}};
  Outcome out = run(o);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_GT(out.snapshots_sent, 0u);
}

// Found by sim_rapidcheck_many (RapidCheck seed 6999069922701406247, shrunk): the isolated
// leader took the liveness probe, then committed its own removal and stepped down in the same
// term; the simulator waited for that probe for ever instead of proposing again on the new
// leader (a checker bug, not a Raft one: the cluster of the other four was live).
TEST(Simulation, ProbeIsProposedAgainWhenItsLeaderStepsDownInItsTerm) {
  Options o;
  o.voters = 5;
  o.spares = 1;
  o.ticks = 250;
  o.seed = 18909317442ull;
  o.faults = {{0, FaultKind::bridge}, {16, FaultKind::isolate_leader}, {16, FaultKind::remove}};
  Outcome out = run(o);
  ASSERT_TRUE(out.ok) << out.error;
}

TEST(Simulation, SameSeedSameRun) {
  Options o;
  o.seed = 99;
  o.faults = {{30, FaultKind::isolate_leader}, {90, FaultKind::heal}, {120, FaultKind::crash, 0}};
  Outcome a = run(o), b = run(o);
  ASSERT_TRUE(a.ok) << a.error;
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.writes_ok, b.writes_ok);
  EXPECT_EQ(a.committed, b.committed);
}

// Cross-check: the project's general checker (jepsen-like/, Wing-Gong-Lowe search) agrees that
// simulated histories under faults are linearizable.
TEST(Simulation, HistoriesPassTheGeneralLinearizabilityChecker) {
  std::string path = ::testing::TempDir() + "/sim-history.jsonl";
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    Options o;
    o.seed = seed;
    o.history_path = path;
    o.faults = {{40, FaultKind::isolate_leader}, {90, FaultKind::heal}, {120, FaultKind::reboot, static_cast<std::uint32_t>(seed)},
                {150, FaultKind::loss, 20}, {200, FaultKind::heal}};
    Outcome out = run(o);
    ASSERT_TRUE(out.ok) << out.error;
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    auto history = check::parse_history(text.str());
    ASSERT_TRUE(history) << history.error().message;
    ASSERT_GT(history->ops.size(), 20u);
    auto verdict = check::check_history(*history, "list");
    EXPECT_EQ(verdict.verdict, check::Verdict::linearizable) << "seed " << seed;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace tern::sim
