// The per-server watch hub (issue 5): kinds, one-shot and persistent, recursive, resume from an
// index without gaps or duplicates, explicit resync, bounded queues with explicit overflow.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "service/sm/command.h"
#include "service/sm/path.h"
#include "service/sm/state_machine.h"
#include "service/watch_hub.h"

namespace tern {
namespace {

using sm::Event;
using sm::EventType;
using sm::Op;
using sm::OpType;

struct Cluster {
  sm::StateMachine machine;
  WatchHub hub;
  std::uint64_t index = 0;
  explicit Cluster(WatchHub::Limits l = {}) : hub(l) {}
  void apply(const Op& op) {
    ++index;
    auto r = machine.apply(index, 1000 + static_cast<std::int64_t>(index), sm::encode(sm::Command{0, 0, op}));
    hub.publish(r.events);
  }
  void create(const std::string& p, const std::string& d = "") { apply(Op{OpType::create, p, d}); }
  void set(const std::string& p, const std::string& d) { apply(Op{OpType::set, p, d}); }
  void remove(const std::string& p) { apply(Op{OpType::remove, p}); }
};

std::vector<std::pair<EventType, std::string>> kinds(const std::vector<Notification>& ns) {
  std::vector<std::pair<EventType, std::string>> out;
  for (auto& n : ns) out.push_back({n.event.type, n.event.path});
  return out;
}

TEST(WatchHub, OneShotFiresOncePersistentFiresEveryTime) {
  Cluster c;
  c.create("/cfg", "1");
  auto w = c.hub.add_watcher();
  auto one_shot = c.hub.watch(w, {"/cfg", WatchKind::data, false, false});
  auto persistent = c.hub.watch(w, {"/cfg", WatchKind::data, true, false});
  c.set("/cfg", "2");
  c.set("/cfg", "3");
  auto got = c.hub.poll(w);
  ASSERT_EQ(got.size(), 2u);  // the first event once for both watches, the second for the persistent one
  EXPECT_EQ(got[0].watches, (std::vector<std::uint64_t>{one_shot, persistent}));
  EXPECT_EQ(got[0].event.prev_data, "1");
  EXPECT_EQ(got[0].event.data, "2");
  EXPECT_EQ(got[1].watches, std::vector<std::uint64_t>{persistent});
  EXPECT_EQ(got[1].event.data, "3");
  EXPECT_EQ(c.hub.watch_count(), 1u);
}

TEST(WatchHub, KindsMatchTheRightEvents) {
  Cluster c;
  auto w = c.hub.add_watcher();
  c.hub.watch(w, {"/a", WatchKind::exists, true, false});
  c.hub.watch(w, {"/", WatchKind::children, true, false});
  c.create("/a", "x");
  c.create("/a/b");  // a child of /a: not an exists event of /a, not a child of /
  c.set("/a", "y");
  auto got = kinds(c.hub.poll(w));
  std::vector<std::pair<EventType, std::string>> want = {
      {EventType::created, "/a"}, {EventType::children_changed, "/"}, {EventType::data_changed, "/a"}};
  EXPECT_EQ(got, want);
}

TEST(WatchHub, RecursiveWatchCoversTheSubtreeOnly) {
  Cluster c;
  c.create("/a");
  c.create("/ab");
  auto w = c.hub.add_watcher();
  c.hub.watch(w, {"/a", WatchKind::data, true, true});
  c.create("/a/x");
  c.create("/ab/y");
  c.set("/a/x", "1");
  for (auto& n : c.hub.poll(w)) EXPECT_TRUE(sm::in_subtree(n.event.path, "/a")) << n.event.path;
}

TEST(WatchHub, ResumeFromAnIndexHasNoGapsOrDuplicates) {
  Cluster c;
  c.create("/r");
  auto w = c.hub.add_watcher();
  auto id = c.hub.watch(w, {"/r", WatchKind::data, true, true});
  std::vector<Event> received;
  for (int i = 0; i < 10; ++i) c.create("/r/n" + std::to_string(i));
  for (auto& n : c.hub.poll(w)) received.push_back(n.event);
  std::uint64_t last = received.back().index;
  c.hub.cancel(w, id);  // the client disconnects...
  for (int i = 0; i < 10; ++i) c.set("/r/n" + std::to_string(i), "v");
  c.hub.watch(w, {"/r", WatchKind::data, true, true}, last);  // ...and resumes on another connection
  c.remove("/r/n0");
  for (auto& n : c.hub.poll(w)) received.push_back(n.event);
  // Exactly the events of an uninterrupted watch: every index after /r's creation, in order.
  std::vector<std::uint64_t> indexes;
  for (auto& e : received) indexes.push_back(e.index);
  EXPECT_TRUE(std::is_sorted(indexes.begin(), indexes.end()));
  std::size_t data_changes = 0;
  for (auto& e : received) data_changes += e.type == EventType::data_changed;
  EXPECT_EQ(data_changes, 10u);
  for (std::size_t i = 1; i < received.size(); ++i) EXPECT_FALSE(received[i] == received[i - 1]);
}

TEST(WatchHub, ResyncWhenTheHistoryNoLongerReachesBack) {
  Cluster c({/*history_events=*/5, /*queue_limit=*/100});
  c.create("/r");
  for (int i = 0; i < 20; ++i) c.set("/r", std::to_string(i));
  auto w = c.hub.add_watcher();
  c.hub.watch(w, {"/r", WatchKind::data, true, false}, /*resume_from=*/2);
  auto got = c.hub.poll(w);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, Notification::Type::resync);
  EXPECT_EQ(got[0].resume_from, c.index);
}

TEST(WatchHub, SlowWatcherIsCutOffExplicitlyAndCanResumeWithoutLoss) {
  Cluster c({/*history_events=*/1000, /*queue_limit=*/8});
  c.create("/r");
  auto slow = c.hub.add_watcher();
  c.hub.watch(slow, {"/r", WatchKind::data, true, false});
  for (int i = 0; i < 3; ++i) c.set("/r", "a" + std::to_string(i));
  auto first = c.hub.poll(slow);
  ASSERT_EQ(first.size(), 3u);
  for (int i = 0; i < 30; ++i) c.set("/r", "b" + std::to_string(i));
  auto cut = c.hub.poll(slow);
  ASSERT_EQ(cut.size(), 1u);  // bounded: one overflow notice instead of an unbounded queue
  EXPECT_EQ(cut[0].type, Notification::Type::overflow);
  EXPECT_EQ(cut[0].resume_from, first.back().event.index);
  EXPECT_EQ(c.hub.watch_count(), 0u);
  c.hub.watch(slow, {"/r", WatchKind::data, true, false}, cut[0].resume_from);
  std::size_t resumed = 0;
  while (true) {
    auto batch = c.hub.poll(slow, 5);  // keeps up now
    if (batch.empty()) break;
    for (auto& n : batch) resumed += n.type == Notification::Type::event;
  }
  EXPECT_EQ(resumed, 30u);  // every event after the cut, replayed lazily within the bound
}

RC_GTEST_PROP(WatchHubProp, PersistentRecursiveWatchSeesExactlyTheSubtreeEventsInOrder, ()) {
  Cluster c;
  auto w = c.hub.add_watcher();
  c.hub.watch(w, {"/", WatchKind::data, true, true});
  std::vector<Event> all;
  int n = *rc::gen::inRange(1, 60);
  for (int i = 0; i < n; ++i) {
    std::string p = *rc::gen::element<std::string>("/a", "/b", "/a/x", "/a/y");
    int k = *rc::gen::inRange(0, 3);
    Op op{k == 0 ? OpType::create : k == 1 ? OpType::set : OpType::remove, p, std::to_string(i)};
    auto r = c.machine.apply(++c.index, 1000, sm::encode(sm::Command{0, 0, op}));
    c.hub.publish(r.events);
    all.insert(all.end(), r.events.begin(), r.events.end());
    if (*rc::gen::inRange(0, 4) == 0) {  // poll at random moments
      auto got = c.hub.poll(w);
      RC_ASSERT(got.size() <= all.size());
    }
  }
  (void)c.hub.poll(w);
  // Re-run with a watcher that never polls early: it must see every node event, in order.
  Cluster d;
  auto v = d.hub.add_watcher();
  d.hub.watch(v, {"/", WatchKind::data, true, true});
  std::vector<Event> seen;
  for (auto& e : all) d.hub.publish({e});
  for (auto& note : d.hub.poll(v)) seen.push_back(note.event);
  RC_ASSERT(seen == all);
}

}  // namespace
}  // namespace tern
