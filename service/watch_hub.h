#pragma once
// WatchHub: the watches of the clients connected to this server (design.md §4). NOT replicated:
// every server matches the events its state machine produced (in index order) against its own
// clients' watches. std only; the server's loop thread owns it.
//
// - Kinds: data (fires on data_changed and deleted of the path), children (children_changed and
//   deleted), exists (created, data_changed, deleted); recursive watches fire on every node event
//   in the subtree; lock/election/session events are delivered to `events` watches on their name.
// - One-shot watches are removed when they fire; persistent ones stay.
// - Resume: a watch registered with resume_from = N first receives, from a bounded history of
//   recent events, every matching event with index > N, replayed lazily as the watcher polls (so
//   a long backlog does not overflow its queue), then live events. If the history no longer
//   reaches back to N + 1 (or is trimmed while the replay lags), the watcher gets an explicit
//   `resync` notification instead — never a silent gap.
// - Bounded: each watcher's queue holds at most queue_limit notifications. A watcher that falls
//   behind is cut off: its queue is replaced by one `overflow` notification carrying the index to
//   resume from, and its watches are dropped until it watches again.
// The notifications of one watch are in index order and never duplicated.
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "service/sm/types.h"

namespace tern {

enum class WatchKind : std::uint8_t { data, children, exists, events };

struct WatchSpec {
  std::string path;
  WatchKind kind = WatchKind::data;
  bool persistent = false;
  bool recursive = false;  // the whole subtree (node events)
};

struct Notification {
  enum class Type : std::uint8_t { event, resync, overflow };
  Type type = Type::event;
  std::uint64_t watch = 0;
  sm::Event event;               // for `event`
  std::uint64_t resume_from = 0; // for resync / overflow: watch again from here
};

class WatchHub {
 public:
  struct Limits {
    std::size_t history_events = 10000;  // events kept for resuming
    std::size_t queue_limit = 1000;      // notifications queued per watcher
  };
  explicit WatchHub(Limits limits);
  WatchHub() : WatchHub(Limits{}) {}

  std::uint64_t add_watcher();
  void remove_watcher(std::uint64_t watcher);
  // Registers a watch; replays history after resume_from (0: only future events).
  std::uint64_t watch(std::uint64_t watcher, WatchSpec spec, std::uint64_t resume_from = 0);
  bool cancel(std::uint64_t watcher, std::uint64_t watch);
  // Feed the events of applied entries, in index order.
  void publish(const std::vector<sm::Event>& events);
  // Takes up to `max` queued notifications of a watcher.
  std::vector<Notification> poll(std::uint64_t watcher, std::size_t max = SIZE_MAX);

  std::size_t queued(std::uint64_t watcher) const;
  std::size_t watch_count() const;
  std::uint64_t last_index() const { return last_index_; }

 private:
  struct Watch {
    std::uint64_t id;
    WatchSpec spec;
  };
  struct Replay {
    Watch watch;
    std::uint64_t cursor;  // sequence number of the last history event considered
  };
  struct Watcher {
    std::vector<Watch> watches;
    std::vector<Replay> replays;  // watches still catching up from the history
    std::deque<Notification> queue;
    std::uint64_t delivered = 0;       // highest event index queued
    std::uint64_t polled_through = 0;  // every event up to this index has been handed out
    bool overflowed = false;
  };
  static bool matches(const WatchSpec& w, const sm::Event& e);
  void deliver(Watcher& w, const Watch& watch, const sm::Event& e);

  Limits limits_;
  std::map<std::uint64_t, Watcher> watchers_;
  struct Past {
    std::uint64_t seq;
    sm::Event event;
  };
  bool replay_step(Watcher& w, std::vector<Notification>& out, std::size_t max);
  std::deque<Past> history_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t last_index_ = 0;
  std::uint64_t next_id_ = 1;
};

}  // namespace tern
