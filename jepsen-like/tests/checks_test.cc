// Unit tests of tern-jepsen's workload checks (jepsen-like/runner/checks/) on handcrafted
// histories: each valid history passes, and each history with exactly one planted anomaly fails
// that check (and only that one) with a detail that names the anomaly. A check that always says
// "valid", or that skips its loop, fails these tests.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <limits>

#include "jepsen-like/runner/checks/bank_check.h"
#include "jepsen-like/runner/checks/list_append_check.h"
#include "jepsen-like/runner/checks/mutex_check.h"
#include "jepsen-like/runner/checks/set_check.h"
#include "jepsen-like/runner/checks/watch_check.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

using checks::Outcome;
namespace fs = std::filesystem;

// A time point `ms` milliseconds after an arbitrary origin.
Clock::time_point at(int ms) { return Clock::time_point(std::chrono::milliseconds(ms)); }
constexpr auto kNever = Clock::time_point::max();  // an unknown outcome's completion

// The check named `name` (a test failure if absent).
Check find(const std::vector<Check>& checks, const std::string& name) {
  for (const auto& c : checks)
    if (c.name == name) return c;
  ADD_FAILURE() << "no check named " << name;
  return {};
}

// Every check valid, except `invalid` (if given), which is invalid with `detail` in its detail.
void expect_only(const std::vector<Check>& checks, const std::string& invalid = "", const std::string& detail = "") {
  for (const auto& c : checks) {
    if (c.name == invalid) {
      EXPECT_EQ(c.verdict, "invalid") << c.name << ": " << c.detail;
      EXPECT_NE(c.detail.find(detail), std::string::npos) << c.name << ": " << c.detail;
    } else {
      EXPECT_EQ(c.verdict, "valid") << c.name << ": " << c.detail;
    }
  }
  if (!invalid.empty()) find(checks, invalid);
}

// ---- list-append ----

// List 1: 10 and 20 acknowledged, 30 of unknown outcome; reads of [10] and [10, 20] in between.
struct ListHistory {
  std::vector<checks::Append> appends{{1, 10, at(0), at(10), Outcome::ok},
                                      {1, 20, at(20), at(30), Outcome::ok},
                                      {1, 30, at(40), kNever, Outcome::unknown}};
  std::vector<checks::ListRead> reads{{1, at(12), at(15), {10}}, {1, at(35), at(38), {10, 20}}};
  std::map<std::uint64_t, std::vector<std::uint64_t>> final_lists{{1, {10, 20, 30}}};
  std::vector<Check> check() const { return checks::check_list_append(appends, reads, final_lists, 0); }
};

TEST(ListAppendCheck, ValidHistoryPasses) {
  auto out = ListHistory().check();
  ASSERT_EQ(out.size(), 3u);
  expect_only(out);
  EXPECT_NE(find(out, "list-final").detail.find("1 lists, 3 elements"), std::string::npos);
  EXPECT_NE(find(out, "list-final").detail.find("unknown present 1"), std::string::npos);
  EXPECT_NE(find(out, "list-reads").detail.find("2 reads"), std::string::npos);
}

TEST(ListAppendCheck, LostAcknowledgedElement) {
  ListHistory h;
  h.final_lists[1] = {10, 30};  // 20 was acknowledged
  h.reads.pop_back();           // (no read saw it either)
  expect_only(h.check(), "list-final", "acknowledged missing 1");
  expect_only(h.check(), "list-final", "list 1: acknowledged element 20 missing");
}

TEST(ListAppendCheck, ReorderedPrefix) {
  ListHistory h;
  h.reads[1].values = {20, 10};
  expect_only(h.check(), "list-reads", "list 1: a read of 2 elements differs from the final list at position 0 (read 20)");
}

TEST(ListAppendCheck, ReadGoesBackInRealTime) {
  ListHistory h;
  h.appends[1].completed = kNever;  // 20 unknown: a read that misses it is not stale
  h.appends[1].outcome = Outcome::unknown;
  h.reads.push_back({1, at(39), at(45), {10}});  // began after the read of [10, 20] ended
  expect_only(h.check(), "list-realtime", "list 1: a read of 1 elements began after a read of 2 had ended");
  EXPECT_NE(find(h.check(), "list-realtime").detail.find("reads shorter than an earlier read 1"), std::string::npos);
}

TEST(ListAppendCheck, StaleReadMissesAnAcknowledgedAppend) {
  ListHistory h;
  h.reads[1].values = {10};  // began at 35, after 20 was acknowledged at 30
  expect_only(h.check(), "list-realtime", "list 1: a read of 1 elements misses position 1, acknowledged before the read began");
}

TEST(ListAppendCheck, ReadOfAnAppendNotYetBegun) {
  ListHistory h;
  h.reads[0].values = {10, 20};  // ended at 15; 20's append began at 20
  expect_only(h.check(), "list-realtime", "list 1: a read of 2 elements holds an append that began after it ended");
}

TEST(ListAppendCheck, ElementNeverAppended) {
  ListHistory h;
  h.final_lists[1] = {10, 20, 30, 99};
  expect_only(h.check(), "list-final", "list 1: element 99 never appended to it");
}

TEST(ListAppendCheck, ElementTwiceAndFailedAppendPresent) {
  ListHistory h;
  h.final_lists[1] = {10, 20, 20, 30};
  expect_only(h.check(), "list-final", "list 1: element 20 twice");
  ListHistory g;
  g.appends[2].outcome = Outcome::fail;
  g.appends[2].completed = at(45);
  expect_only(g.check(), "list-final", "list 1: element 30 whose append failed");
}

TEST(ListAppendCheck, FinalReadFailedIsUnknown) {
  ListHistory h;
  h.final_lists.clear();
  EXPECT_EQ(find(h.check(), "list-final").verdict, "unknown");
}

// ---- bank ----

std::vector<checks::BankRead> bank_reads() {
  return {{{100, 100, 100, 100, 100}, false, false, ""}, {{95, 105, 100, 100, 100}, true, false, ""}};
}
const std::vector<std::int64_t> kBankFinal{90, 110, 100, 100, 100};

TEST(BankCheck, ValidHistoryPasses) {
  auto out = checks::check_bank(bank_reads(), 3, true, kBankFinal, 500);
  ASSERT_EQ(out.size(), 2u);
  expect_only(out);
  EXPECT_NE(find(out, "bank-reads").detail.find("2 reads of one state checked (1 of them validated by a multi), 3 discarded"),
            std::string::npos);
  EXPECT_NE(find(out, "bank-final").detail.find("total 500"), std::string::npos);
}

TEST(BankCheck, ReadOfTwoStates) {
  auto reads = bank_reads();
  reads.push_back({{95, 100, 100, 100, 105}, false, false, ""});  // then a transfer 0 -> 4 seen as...
  reads.push_back({{100, 100, 100, 100, 105}, false, false, ""});  // ...its credit without its debit
  expect_only(checks::check_bank(reads, 0, true, kBankFinal, 500), "bank-reads",
              "1 with a wrong total or a negative balance; first: balances [100,100,100,100,105] total 505 (want 500)");
}

TEST(BankCheck, NegativeBalanceAndMalformedValue) {
  auto reads = bank_reads();
  reads.push_back({{-5, 105, 100, 100, 200}, false, false, ""});
  expect_only(checks::check_bank(reads, 0, true, kBankFinal, 500), "bank-reads", "first: balances [-5,105,100,100,200]");
  reads = bank_reads();
  reads.push_back({{}, false, true, "x1"});
  expect_only(checks::check_bank(reads, 0, true, kBankFinal, 500), "bank-reads", "first: account value 'x1' is not a balance");
}

TEST(BankCheck, FinalTotalOffByOne) {
  expect_only(checks::check_bank(bank_reads(), 0, true, {90, 110, 100, 100, 99}, 500), "bank-final",
              "final balances [90,110,100,100,99], total 499");
  EXPECT_EQ(find(checks::check_bank(bank_reads(), 0, false, {}, 500), "bank-final").verdict, "unknown");
}

// ---- mutex ----

// Runs the lock check (the linearizability checker's mutex model, as the workload does) on a
// history of (process, type, f, token) events.
struct LockEvent {
  std::int64_t process;
  const char* type;
  const char* f;
  std::string value;
};
Check lock_check(const std::vector<LockEvent>& events) {
  Recorder history(Clock::now());
  for (const auto& e : events) history.add(e.process, e.type, e.f, "jepsen-lock", e.value);
  RunContext ctx;
  ctx.history = &history;
  auto dir = fs::temp_directory_path() / ("tern-checks-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ctx.out_dir = dir.string();
  auto c = linearizability_check(ctx, "mutex", "lock");
  fs::remove_all(dir);
  return c;
}

TEST(MutexCheck, LockValidHistoryPasses) {
  auto c = lock_check({{0, "invoke", "acquire", "null"}, {0, "ok", "acquire", "5"}, {0, "invoke", "release", "null"},
                       {0, "ok", "release", "null"}, {1, "invoke", "acquire", "null"}, {1, "ok", "acquire", "7"},
                       {1, "invoke", "release", "null"}, {1, "ok", "release", "null"}});
  EXPECT_EQ(c.verdict, "valid") << c.detail;
}

TEST(MutexCheck, LockTwoHoldersAtOnce) {
  auto c = lock_check({{0, "invoke", "acquire", "null"}, {0, "ok", "acquire", "5"}, {1, "invoke", "acquire", "null"},
                       {1, "ok", "acquire", "7"}, {0, "invoke", "release", "null"}, {0, "ok", "release", "null"},
                       {1, "invoke", "release", "null"}, {1, "ok", "release", "null"}});
  EXPECT_EQ(c.verdict, "invalid") << c.detail;
  EXPECT_NE(c.detail.find("not linearizable"), std::string::npos) << c.detail;
  EXPECT_NE(c.detail.find("process 1 acquire key=jepsen-lock -> 7"), std::string::npos) << c.detail;
}

TEST(MutexCheck, LockTokenNotLargerThanAnEarlierGrant) {
  auto c = lock_check({{0, "invoke", "acquire", "null"}, {0, "ok", "acquire", "5"}, {0, "invoke", "release", "null"},
                       {0, "ok", "release", "null"}, {1, "invoke", "acquire", "null"}, {1, "ok", "acquire", "5"},
                       {1, "invoke", "release", "null"}, {1, "ok", "release", "null"}});
  EXPECT_EQ(c.verdict, "invalid") << c.detail;
  EXPECT_NE(c.detail.find("process 1 acquire key=jepsen-lock -> 5"), std::string::npos) << c.detail;
}

using Result = checks::Increment::Result;
std::vector<checks::Increment> increments() {
  return {{5, {0, 0, true}, Result::acked}, {7, {1, 5, true}, Result::acked}, {9, {2, 7, true}, Result::unknown}};
}

TEST(MutexCheck, CounterValidHistoryPasses) {
  for (std::int64_t fin : {2, 3}) {
    auto out = checks::check_counter(increments(), {fin, 9, true});
    ASSERT_EQ(out.size(), 2u);
    expect_only(out);
    EXPECT_NE(find(out, "counter").detail.find("acknowledged increments 2, unknown 1"), std::string::npos);
  }
  EXPECT_EQ(find(checks::check_counter(increments(), {}), "counter").verdict, "unknown");
}

TEST(MutexCheck, CounterWentBackwards) {
  expect_only(checks::check_counter(increments(), {1, 5, true}), "counter",
              "final 1, acknowledged increments 2, unknown 1");
}

TEST(MutexCheck, HolderFindsANewerToken) {
  auto inc = increments();
  inc.push_back({8, {3, 9, true}, Result::failed});  // token 8 granted after 9 wrote
  expect_only(checks::check_counter(inc, {2, 9, true}), "fencing", "1 holders found a newer token in the counter");
}

TEST(MutexCheck, CounterWriteLostWhileHolding) {
  auto inc = increments();
  inc.push_back({11, {2, 9, true}, Result::cas_lost});
  expect_only(checks::check_counter(inc, {2, 9, true}), "fencing", "1 counter writes lost to another writer while holding");
  inc = increments();
  inc.push_back({11, checks::parse_counter("garbage"), Result::failed});
  expect_only(checks::check_counter(inc, {2, 9, true}), "fencing", "1 malformed counter values");
}

TEST(MutexCheck, ParseCounter) {
  auto v = checks::parse_counter("12 345");
  EXPECT_TRUE(v.valid);
  EXPECT_EQ(v.count, 12);
  EXPECT_EQ(v.token, 345u);
  EXPECT_FALSE(checks::parse_counter("12").valid);
  EXPECT_FALSE(checks::parse_counter("").valid);
}

// ---- set ----

struct SetHistory {
  std::vector<checks::Add> adds{{1, at(0), at(10), Outcome::ok}, {2, at(5), at(50), Outcome::unknown},
                                {3, at(12), at(14), Outcome::fail}};
  std::vector<checks::SetRead> reads{{at(20), at(25), {1}}, {at(30), at(35), {1, 2}}};
  std::vector<std::uint64_t> final_values{1, 2};
  std::vector<Check> check() const { return checks::check_set(adds, reads, true, final_values); }
};

TEST(SetCheck, ValidHistoryPasses) {
  auto out = SetHistory().check();
  ASSERT_EQ(out.size(), 2u);
  expect_only(out);
  EXPECT_NE(find(out, "set-final").detail.find("unknown present 1"), std::string::npos);
  EXPECT_EQ(find(checks::check_set({}, {}, false, {}), "set-final").verdict, "unknown");
}

TEST(SetCheck, LostAcknowledgedAdd) {
  SetHistory h;
  h.reads[1].values = {2};  // 1 was acknowledged at 10, before the read began at 30
  expect_only(h.check(), "set-reads", "1 lost, 0 phantom; first: element 1 acknowledged before a read began is missing from it");
  SetHistory g;
  g.final_values = {2};
  expect_only(g.check(), "set-final", "acknowledged missing 1");
}

TEST(SetCheck, PhantomAndFailedAddPresent) {
  SetHistory h;
  h.reads[0].values = {1, 4};  // 4 was never added
  expect_only(h.check(), "set-reads", "0 lost, 1 phantom; first: element 4 read before its add began");
  SetHistory g;
  g.final_values = {1, 2, 3};
  expect_only(g.check(), "set-final", "failed present 1");
}

// ---- watch ----

// N0 = 10; three acknowledged writes at 11-13 (M = 13), one of unknown outcome never applied;
// two live watchers that delivered all three.
struct WatchHistory {
  std::vector<checks::WatchWrite> writes{{"/jepsen/w/p0", "a", Outcome::ok, 11},
                                         {"/jepsen/w/p1", "b", Outcome::ok, 12},
                                         {"/jepsen/w/p0", "c", Outcome::ok, 13},
                                         {"/jepsen/w/p1", "d", Outcome::unknown, 0}};
  std::vector<checks::WatchEventRecord> all{{"data_changed", 11, "/jepsen/w/p0", "a"},
                                            {"data_changed", 12, "/jepsen/w/p1", "b"},
                                            {"data_changed", 13, "/jepsen/w/p0", "c"}};
  std::vector<checks::WatcherRecord> watchers{{0, true, all}, {1, true, all}};
  std::vector<Check> check() const { return checks::check_watch(writes, watchers, 10, 13); }
};

TEST(WatchCheck, ValidHistoryPasses) {
  auto out = WatchHistory().check();
  ASSERT_EQ(out.size(), 3u);
  expect_only(out);
  EXPECT_NE(find(out, "watch-complete").detail.find("2 live watchers of 2 (2 judged), changes 10 < index <= 13; 6 deliveries due, 0 missing"),
            std::string::npos);
}

TEST(WatchCheck, EventDeliveredTwice) {
  WatchHistory h;
  h.watchers[0].events.insert(h.watchers[0].events.begin() + 2, h.all[1]);
  expect_only(h.check(), "watch-order", "1 events out of index order or repeated; first: watcher 0 delivered index 12 after 12");
}

TEST(WatchCheck, EventsOutOfIndexOrder) {
  WatchHistory h;
  std::swap(h.watchers[1].events[1], h.watchers[1].events[2]);
  expect_only(h.check(), "watch-order", "first: watcher 1 delivered index 12 after 13");
}

TEST(WatchCheck, MissingEventForALiveWatcher) {
  WatchHistory h;
  h.watchers[1].events.erase(h.watchers[1].events.begin() + 1);
  expect_only(h.check(), "watch-complete", "1 missing, 0 inside a resync gap (0 resync events); first: watcher 1 never "
                                           "delivered index 12 (/jepsen/w/p1 = 'b')");
  // A watcher not live at the end is judged up to its last event: a gap before it still counts,
  h.watchers[1].live = false;
  expect_only(h.check(), "watch-complete", "1 missing");
  // the changes after it were never due to it.
  WatchHistory late;
  late.watchers[1].events.pop_back();
  late.watchers[1].live = false;
  expect_only(late.check());
  // An acknowledged write that no watcher delivered is due too.
  WatchHistory g;
  for (auto& w : g.watchers) w.events.pop_back();
  expect_only(g.check(), "watch-complete", "2 missing");
}

TEST(WatchCheck, WatchersDisagree) {
  WatchHistory h;
  h.watchers[1].events[1].data = "d";  // an attempted write, but watcher 0 saw 'b' at index 12
  expect_only(h.check(), "watch-agree", "1 disagreements on an index; 0 acknowledged writes whose reply named a later index "
                                        "than their change (retries); first: watcher 1 delivered /jepsen/w/p1 = 'd' at "
                                        "index 12, which another delivery contradicts");
}

TEST(WatchCheck, EventNoWriteMadeAndDeliveryAfterReply) {
  WatchHistory h;
  h.watchers[0].events[1].data = "zzz";
  expect_only(h.check(), "watch-agree", "1 events no write made");
  WatchHistory g;  // 'b' delivered at 14, after its write's reply named 12
  for (auto& w : g.watchers) w.events = {g.all[0], g.all[2], {"data_changed", 14, "/jepsen/w/p1", "b"}};
  auto out = checks::check_watch(g.writes, g.watchers, 10, 14);
  expect_only(out, "watch-agree", "/jepsen/w/p1 = 'b' delivered at index 14, after its write's reply (index 12)");
}

TEST(WatchCheck, ResyncExcusesItsGapAndTheEventAfterItCounts) {
  WatchHistory h;
  h.watchers[1].events = {h.all[0], {"resync", 12, "", ""}, h.all[2]};  // 12 inside the gap (11, 12]
  auto out = h.check();
  expect_only(out);
  EXPECT_NE(find(out, "watch-complete").detail.find("6 deliveries due, 0 missing, 1 inside a resync gap (1 resync events)"),
            std::string::npos);
  // The event after the resync is still due: without it, watcher 1 misses index 13.
  h.watchers[1].events.pop_back();
  expect_only(h.check(), "watch-complete", "1 missing, 1 inside a resync gap (1 resync events); first: watcher 1 never "
                                           "delivered index 13 (/jepsen/w/p0 = 'c')");
}

}  // namespace
}  // namespace tern::jepsen
