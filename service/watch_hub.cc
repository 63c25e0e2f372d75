#include "service/watch_hub.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/assert.h"
#include "service/sm/path.h"

namespace tern {

using sm::Event;
using sm::EventType;

#ifdef TERN_PLANTED_BUGS
namespace {
// Planted bug "drop-watch-event" (test builds only, docs/testing.md): the 50th event this server
// would queue for its watchers is dropped, once per process.
bool planted_drop_one() {
  static const bool on = [] {
    const char* e = std::getenv("TERN_PLANTED_BUG");
    return e != nullptr && std::string_view(e) == "drop-watch-event";
  }();
  static int matched = 0;
  return on && ++matched == 50;
}
}  // namespace
#endif

WatchHub::WatchHub(Limits limits) : limits_(limits) {}

void WatchHub::LiveWatches::add(Watch w) {
  bool recursive = w.spec.recursive;
  auto [it, added] = where_.emplace(w.id, std::pair{recursive, w.spec.path});
  TERN_ASSERT_MSG(added, "a watch id is live twice");
  (recursive ? recursive_ : exact_)[w.spec.path].push_back(std::move(w));
}

bool WatchHub::LiveWatches::erase(std::uint64_t id) {
  auto it = where_.find(id);
  if (it == where_.end()) return false;
  Lists& lists = it->second.first ? recursive_ : exact_;
  auto list = lists.find(it->second.second);
  TERN_ASSERT(list != lists.end());
  std::erase_if(list->second, [&](const Watch& w) { return w.id == id; });
  if (list->second.empty()) lists.erase(list);
  where_.erase(it);
  return true;
}

void WatchHub::LiveWatches::erase(const std::vector<std::uint64_t>& ids) {
  if (ids.size() == 1) {
    erase(ids.front());
    return;
  }
  std::unordered_set<std::uint64_t> gone(ids.begin(), ids.end());
  std::set<std::pair<bool, std::string>> keys;
  for (auto id : ids)
    if (auto it = where_.find(id); it != where_.end()) {
      keys.insert(it->second);
      where_.erase(it);
    }
  for (const auto& [recursive, path] : keys) {
    Lists& lists = recursive ? recursive_ : exact_;
    auto list = lists.find(path);
    TERN_ASSERT(list != lists.end());
    std::erase_if(list->second, [&](const Watch& w) { return gone.contains(w.id); });
    if (list->second.empty()) lists.erase(list);
  }
}

void WatchHub::LiveWatches::clear() {
  exact_.clear();
  recursive_.clear();
  where_.clear();
}

std::vector<WatchHub::Watch*> WatchHub::LiveWatches::all() {
  std::vector<Watch*> out;
  out.reserve(where_.size());
  for (Lists* lists : {&exact_, &recursive_})
    for (auto& [path, list] : *lists)
      for (auto& w : list) out.push_back(&w);
  std::sort(out.begin(), out.end(), [](const Watch* a, const Watch* b) { return a->id < b->id; });
  return out;
}

template <class F>
void WatchHub::LiveWatches::for_each_candidate(const std::string& path, F&& f) const {
  auto visit = [&](const Lists& lists, std::string_view key) {
    if (auto it = lists.find(key); it != lists.end())
      for (const auto& w : it->second) f(w);
  };
  visit(exact_, path);
  if (recursive_.empty()) return;
  // Recursive watches on the path itself or any ancestor ("/" covers everything: sm::in_subtree).
  visit(recursive_, "/");
  for (std::size_t i = 1; i < path.size(); ++i)
    if (path[i] == '/' && path[0] == '/') visit(recursive_, std::string_view(path).substr(0, i));
  if (path != "/") visit(recursive_, path);
}

std::uint64_t WatchHub::add_watcher() {
  std::uint64_t id = next_id_++;
  watchers_[id];
  return id;
}

void WatchHub::remove_watcher(std::uint64_t watcher) { watchers_.erase(watcher); }

bool WatchHub::matches(const WatchSpec& w, const Event& e) {
  switch (e.type) {
    case EventType::lock_granted:
    case EventType::leader_changed: return w.kind == WatchKind::events && e.path == w.path;
    case EventType::session_expired:
    case EventType::lease_expired: return false;
    default: break;
  }
  if (w.kind == WatchKind::events) return false;
  if (w.recursive) return sm::in_subtree(e.path, w.path);
  if (e.path != w.path) return false;
  switch (w.kind) {
    case WatchKind::data: return e.type == EventType::data_changed || e.type == EventType::deleted;
    case WatchKind::children: return e.type == EventType::children_changed || e.type == EventType::deleted;
    case WatchKind::exists: return e.type != EventType::children_changed;
    default: return false;
  }
}

void WatchHub::deliver(Watcher& w, std::vector<std::uint64_t> watches, const Event& e) {
  if (w.overflowed) return;
  std::size_t bytes = event_bytes(e);
  if (!w.queue.empty() && (w.queue.size() >= limits_.queue_limit || w.queue_bytes + bytes > limits_.queue_bytes)) {
    cut_off(w, e.index);
    return;
  }
  w.queue.push_back(Notification{Notification::Type::event, std::move(watches), e, 0});
  w.queue_bytes += bytes;
}

void WatchHub::cut_off(Watcher& w, std::uint64_t index) {
  // Each watch resumes after what it has actually been handed: before its first unpolled event,
  // or (none queued) before the entry being published, whose events it has not received. poll
  // hands out whole entries, so no entry is half handed out. Unpolled resync and overflow
  // notices stay, in order, ahead of the new overflow notices (at most queue_limit of them).
  std::unordered_map<std::uint64_t, std::uint64_t> first_event;  // watch -> index of its first unpolled event
  std::deque<Notification> notes;
  for (const auto& n : w.queue) {
    if (n.type != Notification::Type::event) notes.push_back(n);
    else
      for (auto id : n.watches) first_event.emplace(id, n.event.index);
  }
  for (const Watch* live : w.watches.all()) {
    const Watch& watch = *live;
    auto it = first_event.find(watch.id);
    std::uint64_t next = it != first_event.end() ? it->second : index;
    notes.push_back(Notification{Notification::Type::overflow, {watch.id}, {}, std::max(next - 1, watch.after)});
    if (it != first_event.end()) first_event.erase(it);
  }
  for (const auto& r : w.replays) notes.push_back(Notification{Notification::Type::overflow, {r.watch.id}, {}, r.through});
  // A one-shot watch that fired is no longer registered, but its event may still be queued: it
  // too is told where to resume rather than losing the event silently. (Sorted: deterministic.)
  std::map<std::uint64_t, std::uint64_t> fired(first_event.begin(), first_event.end());
  for (const auto& [id, next] : fired) notes.push_back(Notification{Notification::Type::overflow, {id}, {}, next - 1});
  w.queue = std::move(notes);  // at most queue_limit + watches_per_watcher
  w.queue_bytes = 0;
  w.watches.clear();
  w.replays.clear();
  w.overflowed = true;
}

std::uint64_t WatchHub::watch(std::uint64_t watcher, WatchSpec spec, std::uint64_t resume_from) {
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return 0;
  Watcher& w = it->second;
  // A full queue (notices included) takes no new watch: the queue bound holds for notices too.
  if (w.watches.size() + w.replays.size() >= limits_.watches_per_watcher || w.queue.size() >= limits_.queue_limit) return 0;
  w.overflowed = false;  // watching again after a cut
  if (resume_from == from_now) resume_from = last_index_;
  Watch watch{next_id_++, std::move(spec), std::max(resume_from, last_index_)};
  if (resume_from >= last_index_) {
    // Live at once; events at or below a resume index ahead of this server are skipped.
    w.watches.add(watch);
    return watch.id;
  }
  if (trimmed_through_ > resume_from) {
    // An event after resume_from is gone: say so rather than skip it.
    w.queue.push_back(Notification{Notification::Type::resync, {watch.id}, {}, last_index_});
    w.watches.add(watch);
    return watch.id;
  }
  // Replay lazily, from the first history event after resume_from (all of them are kept).
  watch.after = resume_from;
  auto first = std::partition_point(history_.begin(), history_.end(), [&](const Past& p) { return p.event.index <= resume_from; });
  std::uint64_t cursor = first == history_.end() ? next_seq_ - 1 : first->seq - 1;
  w.replays.push_back(Replay{watch, cursor, resume_from});
  return watch.id;
}

// Moves the replaying watches forward, stopping only between entries; true if more remain.
bool WatchHub::replay_step(Watcher& w, std::vector<Notification>& out, std::size_t max) {
  while (!w.replays.empty()) {
    Replay& r = w.replays.front();
    std::uint64_t oldest = history_.empty() ? next_seq_ : history_.front().seq;
    if (r.cursor + 1 < oldest) {
      // Trimmed while the watcher lagged: explicit resync, then live from the newest index.
      out.push_back(Notification{Notification::Type::resync, {r.watch.id}, {}, last_index_});
      Watch live = r.watch;
      live.after = last_index_;
      w.watches.add(live);
      w.replays.erase(w.replays.begin());
      continue;
    }
    std::size_t pos = r.cursor + 1 - oldest;
    if (pos >= history_.size()) {  // caught up: the watch goes live
      w.watches.add(r.watch);
      w.replays.erase(w.replays.begin());
      continue;
    }
    const Past& p = history_[pos];
    if (out.size() >= max && p.event.index != r.through) return true;  // at an entry boundary
    r.cursor = p.seq;
    r.through = p.event.index;
    if (p.event.index <= r.watch.after || !matches(r.watch.spec, p.event)) continue;
    out.push_back(Notification{Notification::Type::event, {r.watch.id}, p.event, 0});
    if (!r.watch.spec.persistent) w.replays.erase(w.replays.begin());  // a one-shot watch fired
  }
  return false;
}

bool WatchHub::cancel(std::uint64_t watcher, std::uint64_t watch) {
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return false;
  auto& rs = it->second.replays;
  bool found = it->second.watches.erase(watch);
  found |= std::erase_if(rs, [&](const Replay& x) { return x.watch.id == watch; }) > 0;
  // Nothing more for a cancelled watch, queued notifications included.
  Watcher& w = it->second;
  std::erase_if(w.queue, [&](Notification& n) {
    std::erase(n.watches, watch);
    if (!n.watches.empty()) return false;
    if (n.type == Notification::Type::event) w.queue_bytes -= event_bytes(n.event);
    return true;
  });
  return found;
}

void WatchHub::restart_at(std::uint64_t index) {
  history_.clear();
  history_bytes_ = 0;
  last_index_ = std::max(last_index_, index);
  trimmed_through_ = std::max(trimmed_through_, last_index_);
  for (auto& [id, w] : watchers_) {
    for (auto& r : w.replays) w.watches.add(r.watch);
    w.replays.clear();
    for (Watch* live : w.watches.all()) {
      Watch& watch = *live;
      // A watch resumed from ahead of this server (its client had it from a node further on)
      // missed nothing the snapshot covers: moving it back would hand out again what it has.
      if (watch.after >= last_index_) continue;
      watch.after = last_index_;
      w.queue.push_back(Notification{Notification::Type::resync, {watch.id}, {}, last_index_});
    }
  }
}

void WatchHub::publish(const std::vector<Event>& events) {
  for (const auto& e : events) {
    last_index_ = std::max(last_index_, e.index);
    history_.push_back(Past{next_seq_++, e});
    history_bytes_ += event_bytes(e);
    while (!history_.empty() && (history_.size() > limits_.history_events || history_bytes_ > limits_.history_bytes)) {
      trimmed_through_ = std::max(trimmed_through_, history_.front().event.index);
      history_bytes_ -= event_bytes(history_.front().event);
      history_.pop_front();
    }
    for (auto& [id, w] : watchers_) publish_to(w, e);
  }
}

// One notification for every watch of `w` that `e` matches.
void WatchHub::publish_to(Watcher& w, const Event& e) {
  std::vector<std::uint64_t> fired, one_shots;
  w.watches.for_each_candidate(e.path, [&](const Watch& watch) {
    if (e.index <= watch.after || !matches(watch.spec, e)) return;
    fired.push_back(watch.id);
    if (!watch.spec.persistent) one_shots.push_back(watch.id);
  });
  if (fired.empty()) return;
  bool drop = false;
#ifdef TERN_PLANTED_BUGS
  drop = planted_drop_one();
#endif
  // Delivered before the one-shot watches are removed, so that a cut-off right now still gives
  // them a resume index.
  if (!drop) deliver(w, std::move(fired), e);
  if (w.overflowed) return;
  if (!one_shots.empty()) w.watches.erase(one_shots);
}

std::vector<Notification> WatchHub::poll(std::uint64_t watcher, std::size_t max) {
  std::vector<Notification> out;
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return out;
  Watcher& w = it->second;
  auto& q = w.queue;
  std::uint64_t last = 0;  // index of the last event handed out: its entry is handed out whole
  while (!q.empty()) {
    Notification& n = q.front();
    bool is_event = n.type == Notification::Type::event;
    if (out.size() >= max && !(is_event && last != 0 && n.event.index == last)) break;
    if (is_event) {
      last = n.event.index;
      w.queue_bytes -= event_bytes(n.event);
    }
    out.push_back(std::move(n));
    q.pop_front();
  }
  if (q.empty()) replay_step(w, out, max);
  return out;
}

std::size_t WatchHub::queued(std::uint64_t watcher) const {
  auto it = watchers_.find(watcher);
  return it == watchers_.end() ? 0 : it->second.queue.size();
}

bool WatchHub::drained(std::uint64_t watcher) const {
  auto it = watchers_.find(watcher);
  return it == watchers_.end() || (it->second.queue.empty() && it->second.replays.empty());
}

std::size_t WatchHub::watch_count() const {
  std::size_t n = 0;
  for (const auto& [id, w] : watchers_) n += w.watches.size() + w.replays.size();
  return n;
}

}  // namespace tern
