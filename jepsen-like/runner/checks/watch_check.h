#pragma once
// The checks of the watch workload (docs/jepsen.md; jepsen-like/runner/watch_workload.cc): every
// watcher holds one persistent recursive data watch registered from index N0, and after the heal
// M is the highest acknowledged write's index.
//  - watch-order: each watcher's events have strictly increasing indexes (in index order, none
//    twice);
//  - watch-agree: every event is a change some client attempted (path and value), not one that
//    definitely failed, and all watchers and the writers' replies agree on each index's change
//    (an acknowledged write's event carries its reply's index);
//  - watch-complete: every watcher delivered every change after N0 up to M (up to its last
//    event if it is not live at the end) that was acknowledged or that any watcher delivered —
//    except those inside a gap that ends in an explicit resync event (counted: resync is
//    explicit, never a silent gap); unknown if no watcher has anything to be judged on.
#include <cstdint>
#include <string>
#include <vector>

#include "jepsen-like/runner/checks/check.h"

namespace tern::jepsen::checks {

struct WatchWrite {
  std::string path, value;
  Outcome outcome = Outcome::unknown;
  std::uint64_t index = 0;  // acknowledged: the reply's index
};
struct WatchEventRecord {
  std::string type;  // the event type's name: "data_changed", "resync", "created", ...
  std::uint64_t index = 0;
  std::string path, data;
};
struct WatcherRecord {
  int number = 0;
  bool live = false;  // live at the end: its (last) session and its watch are there
  std::vector<WatchEventRecord> events;  // in delivery order
};

// Returns watch-order, watch-agree, watch-complete.
std::vector<Check> check_watch(const std::vector<WatchWrite>& writes, const std::vector<WatcherRecord>& watchers,
                               std::uint64_t n0, std::uint64_t m);

}  // namespace tern::jepsen::checks
