// Regression tests for the watch hub holes of issue 16, each named after what it broke.
#include <gtest/gtest.h>

#include <optional>

#include "service/watch_hub.h"

namespace tern {
namespace {

using sm::Event;
using sm::EventType;

Event ev(std::uint64_t index, const std::string& path, EventType type = EventType::data_changed) {
  Event e;
  e.index = index;
  e.type = type;
  e.path = path;
  return e;
}

// The resume index an overflow gives `watch` (an overflow for watch 0 covers every watch).
std::optional<std::uint64_t> overflow_resume(const std::vector<Notification>& ns, std::uint64_t watch) {
  for (const auto& n : ns)
    if (n.type == Notification::Type::overflow && (watch == 0 || n.watches == std::vector<std::uint64_t>{watch})) return n.resume_from;
  return std::nullopt;
}

// Hole 4: history is trimmed event by event, so an entry can be half kept; a resume from before
// that entry compared only the oldest retained index and replayed the kept half without a resync.
TEST(WatchHubRegression, ResumeFromBeforeAPartlyTrimmedEntryGetsAResyncNotHalfTheEntry) {
  WatchHub hub({/*history_events=*/2, /*queue_limit=*/100});
  hub.publish({ev(1, "/a")});
  hub.publish({ev(2, "/a"), ev(2, "/a")});  // one entry, two events
  hub.publish({ev(3, "/a")});               // history keeps the second event of 2 and the one of 3
  auto w = hub.add_watcher();
  auto id = hub.watch(w, {"/a", WatchKind::data, true, false}, /*resume_from=*/1);
  auto got = hub.poll(w);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].type, Notification::Type::resync);
  EXPECT_EQ(got[0].watches, std::vector<std::uint64_t>{id});
  EXPECT_EQ(got[0].resume_from, 3u);
  for (const auto& n : got) EXPECT_NE(n.type, Notification::Type::event);  // never the kept half
}

// Hole 5a: the watcher-wide "polled through" index moved with the live queue while another of
// its watches still replayed history; the overflow then told that watch to resume past events it
// had never been handed.
TEST(WatchHubRegression, OverflowDuringAReplayNeverTellsTheReplayingWatchToResumePastUnsentEvents) {
  WatchHub hub({/*history_events=*/1000, /*queue_limit=*/3});
  for (std::uint64_t i = 1; i <= 10; ++i) hub.publish({ev(i, "/r")});
  auto w = hub.add_watcher();
  auto replaying = hub.watch(w, {"/r", WatchKind::data, true, false}, /*resume_from=*/1);
  auto live = hub.watch(w, {"/b", WatchKind::data, true, false});
  hub.publish({ev(11, "/b")});
  hub.publish({ev(12, "/b")});
  auto first = hub.poll(w, 1);  // the live event of 11 only: the replay has handed out nothing
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].event.index, 11u);
  for (std::uint64_t i = 13; i <= 16; ++i) hub.publish({ev(i, "/b")});  // overflows the queue
  auto cut = hub.poll(w);
  auto r = overflow_resume(cut, replaying), l = overflow_resume(cut, live);
  ASSERT_TRUE(r && l);
  EXPECT_LE(*r, 1u);   // no gap: events 2..10 of /r were never handed out
  EXPECT_GE(*l, 11u);  // no duplicate: 11 of /b was
}

// Hole 5b: a watch resumed on a server that is behind the client's index went live at once and
// later delivered the events at or below that index again.
TEST(WatchHubRegression, WatchResumedOnAServerBehindTheClientDeliversNoDuplicates) {
  WatchHub hub;
  for (std::uint64_t i = 1; i <= 5; ++i) hub.publish({ev(i, "/a")});
  auto w = hub.add_watcher();
  hub.watch(w, {"/a", WatchKind::data, true, false}, /*resume_from=*/8);  // the client saw up to 8
  for (std::uint64_t i = 6; i <= 9; ++i) hub.publish({ev(i, "/a")});
  auto got = hub.poll(w);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].event.index, 9u);
}

// Item 7: history and queues were bounded by event count only, and an event can carry 2 MiB
// (data and previous data): 1000 queued events could hold 2 GiB.
TEST(WatchHubRegression, QueueAndHistoryAreBoundedInBytesNotJustEvents) {
  WatchHub::Limits limits;
  limits.history_bytes = 8u << 20;
  limits.queue_bytes = 8u << 20;
  WatchHub hub(limits);
  auto w = hub.add_watcher();
  auto id = hub.watch(w, {"/big", WatchKind::data, true, false});
  for (std::uint64_t i = 1; i <= 20; ++i) {
    Event e = ev(i, "/big");
    e.data.assign(1u << 20, 'n');
    e.prev_data.assign(1u << 20, 'p');
    hub.publish({e});
  }
  EXPECT_LE(hub.history_bytes(), limits.history_bytes);
  auto got = hub.poll(w);
  std::size_t bytes = 0;
  for (const auto& n : got) bytes += n.event.data.size() + n.event.prev_data.size();
  EXPECT_LE(bytes, limits.queue_bytes);
  auto r = overflow_resume(got, id);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0u);  // nothing was handed out before the cut
}

// Item 7: a resync notification was pushed past the queue limit, so registering watches that
// resync, without polling, grew the queue without bound.
TEST(WatchHubRegression, ResyncNotificationsRespectTheQueueLimit) {
  WatchHub hub({/*history_events=*/1, /*queue_limit=*/4});
  for (std::uint64_t i = 1; i <= 5; ++i) hub.publish({ev(i, "/a")});
  auto w = hub.add_watcher();
  for (int k = 0; k < 50; ++k) {
    auto id = hub.watch(w, {"/a", WatchKind::data, true, false}, /*resume_from=*/1);
    if (id != 0) hub.cancel(w, id);
  }
  EXPECT_LE(hub.queued(w), 4u);
}

}  // namespace
}  // namespace tern

namespace tern {
namespace {

// A follower that installs a snapshot never publishes the events the snapshot covers: its live
// watches must be told to resync (not silently skip them), and a later resume from before the
// snapshot must resync too.
TEST(WatchHubRestart, ASnapshotJumpResyncsEveryWatchAndLaterResumesFromBeforeIt) {
  WatchHub hub;
  auto w = hub.add_watcher();
  auto live = hub.watch(w, WatchSpec{"/a", WatchKind::data, true, false});
  hub.publish({ev(3, "/a")});
  hub.restart_at(10);
  hub.publish({ev(11, "/a")});
  auto ns = hub.poll(w);
  ASSERT_EQ(ns.size(), 3u);
  EXPECT_EQ(ns[0].type, Notification::Type::event);
  EXPECT_EQ(ns[0].event.index, 3u);
  EXPECT_EQ(ns[1].type, Notification::Type::resync);
  EXPECT_EQ(ns[1].watches, std::vector<std::uint64_t>{live});
  EXPECT_EQ(ns[1].resume_from, 10u);
  EXPECT_EQ(ns[2].event.index, 11u);

  auto w2 = hub.add_watcher();
  auto resumed = hub.watch(w2, WatchSpec{"/a", WatchKind::data, true, false}, 5);
  auto ns2 = hub.poll(w2);
  ASSERT_EQ(ns2.size(), 1u);
  EXPECT_EQ(ns2[0].type, Notification::Type::resync);
  EXPECT_EQ(ns2[0].watches, std::vector<std::uint64_t>{resumed});
}

// A watch resumed on a node that lags its client (after_index ahead of the node) when that node
// then installs a snapshot below the resume index: the watch has seen everything up to its resume
// index, so it must not be moved back (tern-jepsen --workload watch --seed 106 --overlap: a
// resync at 2163 after index 2260 was delivered, then 2164..2260 again).
TEST(WatchHubRestart, ASnapshotBelowAWatchsResumeIndexNeitherResyncsNorRepeatsIt) {
  WatchHub hub;
  hub.publish({ev(3, "/a")});
  auto w = hub.add_watcher();
  auto ahead = hub.watch(w, WatchSpec{"/a", WatchKind::data, true, false}, 20);  // this node is at 3
  hub.restart_at(10);
  hub.publish({ev(15, "/a"), ev(21, "/a")});
  auto ns = hub.poll(w);
  ASSERT_EQ(ns.size(), 1u);
  EXPECT_EQ(ns[0].type, Notification::Type::event);
  EXPECT_EQ(ns[0].watches, std::vector<std::uint64_t>{ahead});
  EXPECT_EQ(ns[0].event.index, 21u);
}

}  // namespace
}  // namespace tern
