#include "service/watch_hub.h"

#include <algorithm>

#include "service/sm/path.h"

namespace tern {

using sm::Event;
using sm::EventType;

WatchHub::WatchHub(Limits limits) : limits_(limits) {}

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

void WatchHub::deliver(Watcher& w, const Watch& watch, const Event& e) {
  if (w.overflowed) return;
  if (w.queue.size() >= limits_.queue_limit) {
    // Cut the slow watcher off explicitly: it resumes after what it has actually received.
    std::uint64_t resume = w.polled_through;
    w.queue.clear();
    w.queue.push_back(Notification{Notification::Type::overflow, 0, {}, resume});
    w.watches.clear();
    w.replays.clear();
    w.overflowed = true;
    return;
  }
  w.queue.push_back(Notification{Notification::Type::event, watch.id, e, 0});
  w.delivered = std::max(w.delivered, e.index);
}

std::uint64_t WatchHub::watch(std::uint64_t watcher, WatchSpec spec, std::uint64_t resume_from) {
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return 0;
  Watcher& w = it->second;
  w.overflowed = false;
  Watch watch{next_id_++, std::move(spec)};
  if (resume_from == 0 || resume_from >= last_index_) {
    w.watches.push_back(watch);
    return watch.id;
  }
  std::uint64_t oldest_index = history_.empty() ? last_index_ + 1 : history_.front().event.index;
  if (oldest_index > resume_from + 1) {
    // The history no longer reaches back: say so rather than skip events.
    w.queue.push_back(Notification{Notification::Type::resync, watch.id, {}, last_index_});
    w.watches.push_back(watch);
    return watch.id;
  }
  // Replay lazily, from the first history event after resume_from.
  std::uint64_t cursor = history_.front().seq - 1;
  for (const auto& p : history_) {
    if (p.event.index > resume_from) break;
    cursor = p.seq;
  }
  w.replays.push_back(Replay{watch, cursor});
  return watch.id;
}

// Moves one replaying watch forward; true if it needs more polling.
bool WatchHub::replay_step(Watcher& w, std::vector<Notification>& out, std::size_t max) {
  while (!w.replays.empty() && out.size() < max) {
    Replay& r = w.replays.front();
    std::uint64_t oldest = history_.empty() ? next_seq_ : history_.front().seq;
    if (r.cursor + 1 < oldest) {
      // Trimmed while the watcher lagged: explicit resync, then live.
      out.push_back(Notification{Notification::Type::resync, r.watch.id, {}, last_index_});
      w.watches.push_back(r.watch);
      w.replays.erase(w.replays.begin());
      continue;
    }
    std::size_t pos = r.cursor + 1 - oldest;
    if (pos >= history_.size()) {  // caught up: the watch goes live
      w.watches.push_back(r.watch);
      w.replays.erase(w.replays.begin());
      continue;
    }
    const Past& p = history_[pos];
    r.cursor = p.seq;
    if (!matches(r.watch.spec, p.event)) continue;
    out.push_back(Notification{Notification::Type::event, r.watch.id, p.event, 0});
    if (!r.watch.spec.persistent) w.replays.erase(w.replays.begin());  // a one-shot watch fired
  }
  return !w.replays.empty();
}

bool WatchHub::cancel(std::uint64_t watcher, std::uint64_t watch) {
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return false;
  auto& ws = it->second.watches;
  auto& rs = it->second.replays;
  auto before = ws.size() + rs.size();
  std::erase_if(ws, [&](const Watch& x) { return x.id == watch; });
  std::erase_if(rs, [&](const Replay& x) { return x.watch.id == watch; });
  return ws.size() + rs.size() != before;
}

void WatchHub::publish(const std::vector<Event>& events) {
  for (const auto& e : events) {
    last_index_ = std::max(last_index_, e.index);
    history_.push_back(Past{next_seq_++, e});
    while (history_.size() > limits_.history_events) history_.pop_front();
    for (auto& [id, w] : watchers_) {
      for (std::size_t i = 0; i < w.watches.size();) {
        if (!matches(w.watches[i].spec, e)) {
          ++i;
          continue;
        }
        Watch fired = w.watches[i];
        if (!fired.spec.persistent) w.watches.erase(w.watches.begin() + static_cast<std::ptrdiff_t>(i));
        else ++i;
        deliver(w, fired, e);
        if (w.overflowed) break;
      }
    }
  }
}

std::vector<Notification> WatchHub::poll(std::uint64_t watcher, std::size_t max) {
  std::vector<Notification> out;
  auto it = watchers_.find(watcher);
  if (it == watchers_.end()) return out;
  Watcher& w = it->second;
  auto& q = w.queue;
  while (!q.empty() && out.size() < max) {
    out.push_back(std::move(q.front()));
    q.pop_front();
  }
  replay_step(w, out, max);
  // Events of one index may span several notifications: only a fully handed-out index counts.
  std::uint64_t through = q.empty() ? w.delivered : (q.front().type == Notification::Type::event ? q.front().event.index - 1 : w.polled_through);
  w.polled_through = std::max(w.polled_through, through);
  return out;
}

std::size_t WatchHub::queued(std::uint64_t watcher) const {
  auto it = watchers_.find(watcher);
  return it == watchers_.end() ? 0 : it->second.queue.size();
}

std::size_t WatchHub::watch_count() const {
  std::size_t n = 0;
  for (const auto& [id, w] : watchers_) n += w.watches.size() + w.replays.size();
  return n;
}

}  // namespace tern
