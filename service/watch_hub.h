#pragma once
// WatchHub: the watches of the clients connected to this server (design.md §4). NOT replicated:
// every server matches the events its state machine produced (in index order) against its own
// clients' watches. std only; the server's loop thread owns it.
//
// - Kinds: data (fires on data_changed and deleted of the path), children (children_changed and
//   deleted), exists (created, data_changed, deleted); recursive watches fire on every node event
//   in the subtree; lock/election/session events are delivered to `events` watches on their name.
// - One-shot watches are removed when they fire; persistent ones stay.
// - Resume: a watch registered with resume_from = N receives exactly the matching events with
//   index > N, in order, then live events. The ones still in the bounded history of recent
//   events are replayed lazily as the watcher polls (so a long backlog does not overflow its
//   queue). If any event with index > N is no longer in the history (trimmed before the watch was
//   registered, or while its replay lagged), the watch gets an explicit `resync` notification
//   instead, with the index to watch from after reading the current state — never a silent gap.
//   A server that is behind the client (N above anything it has published) delivers only events
//   with index > N: never a duplicate.
// - One notification per event per watcher: an event that matches several watches of a watcher
//   is queued once, naming all of them (10 sessions with 1,000 watches of one key: 10 queued
//   notifications per write, not 10,000).
// - Bounded: each watcher's queue holds at most queue_limit notifications and queue_bytes bytes
//   of events (an empty queue always admits one event, so any event can be delivered); the
//   history at most history_events events and history_bytes bytes; a watcher at most
//   watches_per_watcher watches. A watcher that falls behind is cut off: its queue is replaced by
//   one `overflow` notification per watch, each carrying the index that watch resumes from (every
//   event of the watch up to it has been handed out, none after it), and its watches are dropped
//   until it watches again.
// - poll hands out whole entries: it stops only between events of different indexes (so it can
//   return more than `max` when one entry's events straddle it), which is what makes the
//   per-watch resume indexes exact. publish must be given the events of whole entries.
// The notifications of one watch are in index order and never duplicated.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
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
  std::vector<std::uint64_t> watches;  // the watches of the watcher it is for (never empty)
  sm::Event event;               // for `event`
  std::uint64_t resume_from = 0; // for resync / overflow: watch again from here
};

class WatchHub {
 public:
  struct Limits {
    std::size_t history_events = 10000;         // events kept for resuming
    std::size_t queue_limit = 1000;             // notifications queued per watcher
    std::size_t history_bytes = 64u << 20;      // bytes of events kept for resuming
    std::size_t queue_bytes = 16u << 20;        // bytes of events queued per watcher
    std::size_t watches_per_watcher = 1000;
  };
  explicit WatchHub(Limits limits);
  WatchHub() : WatchHub(Limits{}) {}

  // resume_from for a watch of future events only. (0 is an index like any other: every event.)
  static constexpr std::uint64_t from_now = UINT64_MAX;

  std::uint64_t add_watcher();
  void remove_watcher(std::uint64_t watcher);
  // Registers a watch; replays history after resume_from (from_now: only future events; an
  // overflow or resync can give any index, 0 included, to resume from). Returns the
  // watch id, or 0 if the watcher is unknown, has watches_per_watcher watches, or its queue is
  // full (poll first).
  std::uint64_t watch(std::uint64_t watcher, WatchSpec spec, std::uint64_t resume_from = from_now);
  // Removes the watch and its queued notifications: nothing more arrives for it.
  bool cancel(std::uint64_t watcher, std::uint64_t watch);
  // Feed the events of applied entries (whole entries), in index order.
  void publish(const std::vector<sm::Event>& events);
  // This server's state jumped to a snapshot taken at `index` (a follower that fell behind): the
  // events up to it were never published here. Every watch that has not seen `index` (a watch
  // resumed from further on has) gets a `resync` from `index` and stays live after it; the
  // history is dropped, so later resumes from before it resync too.
  void restart_at(std::uint64_t index);
  // Takes about `max` queued notifications of a watcher (whole entries: see above).
  std::vector<Notification> poll(std::uint64_t watcher, std::size_t max = SIZE_MAX);

  std::size_t queued(std::uint64_t watcher) const;
  // Nothing queued and nothing left to replay: every notification this watcher is owed for the
  // events published so far has been handed out by poll.
  bool drained(std::uint64_t watcher) const;
  std::size_t watch_count() const;
  std::uint64_t last_index() const { return last_index_; }
  std::size_t history_bytes() const { return history_bytes_; }
  // The memory an event is charged for in the history and the queues.
  static std::size_t event_bytes(const sm::Event& e) {
    return sizeof(sm::Event) + e.path.size() + e.data.size() + e.prev_data.size();
  }

 private:
  struct Watch {
    std::uint64_t id;
    WatchSpec spec;
    std::uint64_t after;  // only events with index > after (a resume index ahead of this server)
  };
  // A watcher's live watches, indexed by path so that an event is matched only against the
  // watches that can match it (those of its exact path, and the recursive ones on it or an
  // ancestor), not against every watch: 10,000 watches of distinct keys cost a lookup per event.
  class LiveWatches {
   public:
    void add(Watch w);
    bool erase(std::uint64_t id);
    void erase(const std::vector<std::uint64_t>& ids);  // one pass per list they are in
    void clear();
    std::size_t size() const { return where_.size(); }
    // Every watch, in id order.
    std::vector<Watch*> all();
    // The watches an event at `path` can match (matches() decides); each visited once.
    template <class F>
    void for_each_candidate(const std::string& path, F&& f) const;

   private:
    struct Hash {
      using is_transparent = void;
      std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    using Lists = std::unordered_map<std::string, std::vector<Watch>, Hash, std::equal_to<>>;
    Lists exact_, recursive_;
    std::unordered_map<std::uint64_t, std::pair<bool, std::string>> where_;  // id -> (recursive, path)
  };
  struct Replay {
    Watch watch;
    std::uint64_t cursor;   // sequence number of the last history event considered
    std::uint64_t through;  // every event with index <= through has been considered
  };
  struct Watcher {
    LiveWatches watches;
    std::vector<Replay> replays;  // watches still catching up from the history
    std::deque<Notification> queue;
    std::size_t queue_bytes = 0;
    bool overflowed = false;
  };
  static bool matches(const WatchSpec& w, const sm::Event& e);
  void deliver(Watcher& w, std::vector<std::uint64_t> watches, const sm::Event& e);
  void publish_to(Watcher& w, const sm::Event& e);
  void cut_off(Watcher& w, std::uint64_t index);
  bool replay_step(Watcher& w, std::vector<Notification>& out, std::size_t max);

  Limits limits_;
  std::map<std::uint64_t, Watcher> watchers_;
  struct Past {
    std::uint64_t seq;
    sm::Event event;
  };
  std::deque<Past> history_;
  std::size_t history_bytes_ = 0;
  std::uint64_t trimmed_through_ = 0;  // the newest index of any event trimmed from the history
  std::uint64_t next_seq_ = 1;
  std::uint64_t last_index_ = 0;
  std::uint64_t next_id_ = 1;
};

}  // namespace tern
