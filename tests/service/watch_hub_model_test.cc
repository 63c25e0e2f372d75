// Watch hub property test (issue 16): one watcher with several watches (kinds, recursive or not,
// one-shot or persistent) registered at random moments, resuming from every kind of index (0,
// in the history, trimmed, ahead of the server), with tiny history and queue bounds (counts and
// bytes) so that trimming lands on every event boundary and overflows hit live queues and
// replays alike; polls of random size at random moments. A model client checks every
// notification against the published events: a watch's events are exactly the matching events
// after its resume index, in order — or an explicit resync (then exactly the matching events
// after the index it gives) or overflow (then every matching event up to its index has been
// received, none after; the client re-watches from there). Never a silent gap or a duplicate.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <optional>
#include <set>

#include "service/sm/path.h"
#include "service/watch_hub.h"

namespace tern {
namespace {

using sm::Event;
using sm::EventType;

// The documented matching rule (data-model.md, Watches), written independently of the hub.
bool model_matches(const WatchSpec& w, const Event& e) {
  bool named = e.type == EventType::lock_granted || e.type == EventType::leader_changed;
  if (w.kind == WatchKind::events) return named && e.path == w.path;
  if (named) return false;
  if (w.recursive) return sm::in_subtree(e.path, w.path);
  if (e.path != w.path) return false;
  if (w.kind == WatchKind::data) return e.type == EventType::data_changed || e.type == EventType::deleted;
  if (w.kind == WatchKind::children) return e.type == EventType::children_changed || e.type == EventType::deleted;
  return e.type != EventType::children_changed;  // exists
}

struct ClientWatch {
  WatchSpec spec;
  std::uint64_t from;           // expects exactly the matching events with index > from
  std::vector<Event> got;       // received since `from`
  bool done = false;            // a one-shot that fired
};

RC_GTEST_PROP(WatchHubModel, DeliveredIsExactlyTheMatchingEventsAfterTheResumeIndexOrAnExplicitResyncOrOverflow, ()) {
  WatchHub::Limits limits;
  bool bounded = *rc::gen::inRange(0, 5) != 0;
  if (bounded) {
    limits.history_events = static_cast<std::size_t>(*rc::gen::inRange(1, 25));
    limits.queue_limit = static_cast<std::size_t>(*rc::gen::inRange(1, 10));
    if (*rc::gen::inRange(0, 3) == 0) limits.history_bytes = static_cast<std::size_t>(*rc::gen::inRange(1000, 6000));
    if (*rc::gen::inRange(0, 3) == 0) limits.queue_bytes = static_cast<std::size_t>(*rc::gen::inRange(800, 4000));
  }
  WatchHub hub(limits);
  RC_LOG() << "limits " << limits.history_events << " " << limits.queue_limit << " " << limits.history_bytes << " " << limits.queue_bytes << "\n";
  auto watcher = hub.add_watcher();
  std::vector<Event> published;
  std::map<std::uint64_t, ClientWatch> watches;  // hub watch id -> the client's view
  std::uint64_t index = 0;
  const std::vector<std::string> paths = {"/", "/a", "/a/b", "/a/b/c", "/c", "lk"};

  auto expected = [&](const ClientWatch& w) {
    std::vector<Event> out;
    for (const auto& e : published)
      if (e.index > w.from && model_matches(w.spec, e)) out.push_back(e);
    if (!w.spec.persistent && out.size() > 1) out.resize(1);
    return out;
  };
  auto add = [&](WatchSpec spec, std::uint64_t resume) {
    std::uint64_t from = resume == WatchHub::from_now ? hub.last_index() : resume;
    auto id = hub.watch(watcher, spec, resume);
    RC_LOG() << "watch " << id << " resume " << resume << " at " << hub.last_index() << "\n";
    if (id != 0) watches[id] = ClientWatch{spec, from, {}};
    return id;
  };
  auto handle = [&](const std::vector<Notification>& ns) {
    for (const auto& n : ns) {
      RC_LOG() << "note type " << int(n.type) << " watches " << n.watches.size() << " index " << n.event.index << " resume " << n.resume_from << "\n";
      RC_ASSERT(!n.watches.empty());
      RC_ASSERT(std::set<std::uint64_t>(n.watches.begin(), n.watches.end()).size() == n.watches.size());
      // An event is queued once for all the watches of the watcher it matches: each gets it.
      for (auto watch : n.watches) {
        auto it = watches.find(watch);
        RC_ASSERT(it != watches.end());  // every notification names a watch of the client
        ClientWatch& w = it->second;
        RC_ASSERT(!w.done);
        if (n.type == Notification::Type::event) {
          auto want = expected(w);
          RC_ASSERT(w.got.size() < want.size());  // no duplicate, nothing extra
          RC_ASSERT(n.event == want[w.got.size()]);  // no gap: the next matching event
          w.got.push_back(n.event);
          if (!w.spec.persistent) w.done = true;
        } else if (n.type == Notification::Type::resync) {
          RC_ASSERT(bounded);  // only when history was trimmed
          RC_ASSERT(n.resume_from >= w.from);
          w.from = n.resume_from;  // the client reads the state, then expects what follows
          w.got.clear();
        } else {
          RC_ASSERT(bounded);
          // Everything up to the resume index was received and nothing after it.
          std::vector<Event> upto;
          for (const auto& e : expected(w))
            if (e.index <= n.resume_from) upto.push_back(e);
          RC_ASSERT(w.got == upto);
          RC_ASSERT(n.resume_from >= w.from);
          WatchSpec spec = w.spec;
          std::uint64_t resume = n.resume_from;
          bool fired = !w.spec.persistent && !w.got.empty();
          watches.erase(it);
          if (!fired) add(spec, resume);  // the client watches again from there (if it can)
        }
      }
    }
  };

  int steps = *rc::gen::inRange(1, 120);
  for (int step = 0; step < steps; ++step) {
    int what = *rc::gen::inRange(0, 10);
    if (what < 5) {
      index += static_cast<std::uint64_t>(*rc::gen::inRange(1, 3));  // some entries have no events
      std::vector<Event> entry;
      int n = *rc::gen::inRange(0, 4);
      for (int k = 0; k < n; ++k) {
        Event e;
        e.index = index;
        e.path = paths[static_cast<std::size_t>(*rc::gen::inRange(0, static_cast<int>(paths.size())))];
        e.type = e.path == "lk" ? EventType::lock_granted
                                : *rc::gen::element(EventType::created, EventType::deleted, EventType::data_changed,
                                                    EventType::children_changed);
        e.data = std::string(static_cast<std::size_t>(*rc::gen::inRange(0, 400)), 'd');
        e.id = static_cast<std::uint64_t>(k);  // distinguishes the events of one entry
        entry.push_back(e);
      }
      for (auto& e : entry) RC_LOG() << "pub " << e.index << " " << e.path << " " << sm::event_name(e.type) << " bytes " << WatchHub::event_bytes(e) << "\n";
      hub.publish(entry);
      published.insert(published.end(), entry.begin(), entry.end());
    } else if (what < 7) {
      WatchSpec spec;
      spec.path = paths[static_cast<std::size_t>(*rc::gen::inRange(0, static_cast<int>(paths.size())))];
      spec.kind = spec.path == "lk" ? WatchKind::events
                                    : *rc::gen::element(WatchKind::data, WatchKind::children, WatchKind::exists);
      spec.persistent = *rc::gen::inRange(0, 4) != 0;
      spec.recursive = spec.kind != WatchKind::events && *rc::gen::arbitrary<bool>();
      int r = *rc::gen::inRange(0, 4);
      std::uint64_t resume = r == 0 ? WatchHub::from_now
                                    : static_cast<std::uint64_t>(*rc::gen::inRange<std::uint64_t>(0, index + 4));  // may be ahead
      if (watches.size() < 5) add(spec, resume);
    } else if (what < 9) {
      RC_LOG() << "poll\n";
      handle(hub.poll(watcher, static_cast<std::size_t>(*rc::gen::inRange(1, 6))));
    } else if (!watches.empty()) {
      auto it = std::next(watches.begin(), *rc::gen::inRange(0, static_cast<int>(watches.size())));
      RC_LOG() << "cancel " << it->first << "\n";
      // False if the hub already dropped it (fired, or cut off) and the client has not polled
      // that yet; either way nothing more arrives for it, queued notices included.
      hub.cancel(watcher, it->first);
      watches.erase(it);
    }
  }
  // Drain: afterwards every live watch has received everything it is owed.
  for (int k = 0; k < 10'000; ++k) {
    auto ns = hub.poll(watcher, 3);
    RC_LOG() << "drain " << ns.size() << " queued " << hub.queued(watcher) << "\n";
    if (ns.empty()) break;
    handle(ns);
  }
  RC_ASSERT(hub.poll(watcher).empty());
  for (const auto& [id, w] : watches) {
    RC_LOG() << "watch " << id << " path " << w.spec.path << " kind " << int(w.spec.kind) << " rec " << w.spec.recursive
             << " persistent " << w.spec.persistent << " from " << w.from << " got " << w.got.size() << " want "
             << expected(w).size() << " last_index " << hub.last_index() << "\n";
    RC_ASSERT(w.got == expected(w));
  }
}

}  // namespace
}  // namespace tern
