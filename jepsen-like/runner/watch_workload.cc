// Workload "watch": clients write unique values to a few znodes /jepsen/w/p<k> (set), while
// watchers — each its own session, started on different nodes — hold one persistent recursive
// data watch on /jepsen/w registered from the index N0 of the setup (so every change after N0 is
// theirs, replayed if it came before the registration). One more watcher registers halfway
// through the run from N0 too (a replay of the history). Across the nemesis's faults the library
// fails the watchers over and resumes each watch from the last index it delivered. A watcher
// whose session the library reports expired (the one loss a watch cannot resume across) is
// re-established as a user would: a new session watching again from the last index it delivered
// (a resync if the history no longer reaches back), so watchers are live at the end of long runs
// and each one's events stay a single sequence (stats: sessions and expiries per watcher).
// Each watcher's session holds a twin of its watch (the same spec, its own sequence, checked as
// a watcher of its own): the server sends every event once for both (one note naming both
// watches) and the library hands it to each, across every failover and resume.
//
// After the heal, one final acknowledged write per znode fixes M (the highest acknowledged
// index); the harness waits (bounded) until every watcher has delivered up to M, then checks
// (docs/jepsen.md): watch-order, watch-agree and watch-complete, jepsen-like/runner/checks/watch_check.h.
#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "jepsen-like/runner/checks/watch_check.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

using namespace std::chrono_literals;

const std::string kDir = "/jepsen/w";
constexpr int kPaths = 3;
constexpr int kWatchers = 3;
constexpr std::int64_t kWatcherProcess = 2000000;  // the watchers' events in the history
constexpr std::int64_t kFinalProcess = 1000000;

std::string path_of(int k) { return kDir + "/p" + std::to_string(k); }

enum class Outcome : std::uint8_t { ok, fail, unknown };
struct Write {
  std::string path, value;
  Outcome outcome = Outcome::unknown;
  std::uint64_t index = 0;  // acknowledged: the entry's index
};
struct Delivered {
  WatchEvent::Type type;
  std::uint64_t index;
  std::string path, data;
};
struct Watcher {
  int number = 0;
  // The current session and its watch: replaced (by the keeper thread, or final_reads once the
  // keeper stopped) when the library reports the session expired.
  std::unique_ptr<Client> client;
  std::uint64_t watch_id = 0;
  std::shared_ptr<std::atomic<bool>> expired = std::make_shared<std::atomic<bool>>(false);
  int sessions = 1;       // sessions it watched through (1 + re-establishments)
  int suspensions = 0;    // connection losses the library reported (all sessions)
  std::string renew_error;  // the last failed re-establishment, if any
  std::mutex mu;
  struct Sequence {
    std::vector<Delivered> events;
    std::uint64_t last_index = 0;  // of the last event (mu)
  };
  Sequence main, twin;  // the watch and its twin in the same session (mu)
  std::uint64_t twin_watch_id = 0;
};
constexpr int kTwinNumber = 100;  // a twin's watcher number in the checks: its watcher's + this

const char* type_name(WatchEvent::Type t) {
  switch (t) {
    case WatchEvent::Type::created: return "created";
    case WatchEvent::Type::deleted: return "deleted";
    case WatchEvent::Type::data_changed: return "data_changed";
    case WatchEvent::Type::children_changed: return "children_changed";
    case WatchEvent::Type::resync: return "resync";
    default: return "other";
  }
}

class WatchWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    if (!c) return *error = "setup: no client session", false;
    for (const std::string& p : {std::string("/jepsen"), kDir}) {
      auto r = c->create(p, "");
      if (!r.ok() && r.error != Error::node_exists) return *error = "setup: create " + p + ": " + r.message, false;
      n0_ = std::max(n0_, r.index);
    }
    for (int k = 0; k < kPaths; ++k) {
      auto r = c->create(path_of(k), "init");
      if (!r.ok()) return *error = "setup: create " + path_of(k) + ": " + error_name(r.error), false;
      n0_ = std::max(n0_, r.index);
    }
    for (int w = 0; w < kWatchers; ++w)
      if (!start_watcher(ctx, w, error)) return false;
    keeper_ = std::thread([this, ctx] { keep_watchers(ctx); });
    return true;
  }

  ~WatchWorkload() override { stop_keeper(); }

  void client(int index, const RunContext& ctx) override {
    std::mt19937_64 rng(ctx.seed * 1000003 + static_cast<std::uint64_t>(index));
    std::int64_t process = index;
    const auto options = options_for(ctx, index);
    auto c = connect_until(options, ctx.end);
    auto start = Clock::now();
    auto halfway = start + (ctx.end - start) / 2;
    bool late_started = index != 0;  // client 0 starts the late watcher
    std::uint64_t next = 0;
    std::vector<Write> writes;
    while (c && Clock::now() < ctx.end && !interrupted()) {
      pace(rng, ctx);
      if (!late_started && Clock::now() >= halfway) {
        late_started = true;
        std::string error;
        if (!start_watcher(ctx, kWatchers, &error)) {  // a failure leaves it out (reported in stats)
          std::lock_guard<std::mutex> lock(mu_);
          late_error_ = error;
        }
      }
      Write w;
      w.path = path_of(static_cast<int>(rng() % kPaths));
      w.value = std::to_string(static_cast<std::uint64_t>(index) * 1000000000ull + next++);
      do_write(*c, &w, &process, ctx);
      writes.push_back(std::move(w));
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : writes) writes_.push_back(std::move(w));
  }

  void final_reads(const RunContext& ctx) override {
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    std::int64_t process = kFinalProcess;
    for (int k = 0; k < kPaths && c; ++k) {
      for (int attempt = 0; attempt < 3; ++attempt) {
        Write w;
        w.path = path_of(k);
        w.value = "final-" + std::to_string(k) + "-" + std::to_string(attempt);
        do_write(*c, &w, &process, ctx);
        bool ok = w.outcome == Outcome::ok;
        writes_.push_back(std::move(w));
        if (ok) break;
      }
    }
    for (const auto& w : writes_)
      if (w.outcome == Outcome::ok) m_ = std::max(m_, w.index);
    // Every watcher delivers up to M (bounded wait; the keeper still re-establishes a watcher
    // whose session expires meanwhile), then its watch is cancelled.
    auto until = Clock::now() + 15s;
    for (auto& w : watchers_) {
      while (Clock::now() < until && !interrupted()) {
        {
          std::lock_guard<std::mutex> lock(w->mu);
          if (w->main.last_index >= m_ && w->twin.last_index >= m_) break;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    stop_keeper();
    for (auto& w : watchers_) {
      if (w->watch_id != 0) w->client->unwatch(w->watch_id);
      if (w->twin_watch_id != 0) w->client->unwatch(w->twin_watch_id);
      live_at_end_ += w->watch_id != 0 && !w->expired->load();
      w->client.reset();
    }
  }

  std::vector<Check> check(const RunContext&) override {
    // The recorded writes and deliveries as plain data for the checks (checks/watch_check.h).
    auto outcome = [](Outcome o) {
      return o == Outcome::ok ? checks::Outcome::ok : o == Outcome::fail ? checks::Outcome::fail : checks::Outcome::unknown;
    };
    std::vector<checks::WatchWrite> writes;
    for (const auto& w : writes_) writes.push_back({w.path, w.value, outcome(w.outcome), w.index});
    std::vector<checks::WatcherRecord> watchers;
    for (const auto& wp : watchers_) {
      bool live = !wp->expired->load() && wp->watch_id != 0;
      for (const auto* seq : {&wp->main, &wp->twin}) {
        checks::WatcherRecord r{wp->number + (seq == &wp->twin ? kTwinNumber : 0), live, {}};
        for (const auto& e : seq->events) r.events.push_back({type_name(e.type), e.index, e.path, e.data});
        watchers.push_back(std::move(r));
      }
    }
    return checks::check_watch(writes, watchers, n0_, m_);
  }

  nlohmann::json stats() const override {
    std::size_t ok = 0, unknown = 0, delivered = 0;
    for (const auto& w : writes_) {
      ok += w.outcome == Outcome::ok;
      unknown += w.outcome == Outcome::unknown;
    }
    nlohmann::json per_watcher = nlohmann::json::array();
    for (const auto& wp : watchers_) {
      delivered += wp->main.events.size() + wp->twin.events.size();
      per_watcher.push_back({{"watcher", wp->number}, {"events", wp->main.events.size()},
                             {"twin_events", wp->twin.events.size()}, {"sessions", wp->sessions},
                             {"suspensions", wp->suspensions}, {"last_index", wp->main.last_index},
                             {"renew_error", wp->renew_error}});
    }
    return {{"writes", writes_.size()}, {"writes_acknowledged", ok}, {"writes_unknown", unknown},
            {"watchers", watchers_.size()}, {"watchers_live_at_end", live_at_end_}, {"events_delivered", delivered},
            {"n0", n0_}, {"m", m_}, {"late_watcher_error", late_error_}, {"per_watcher", per_watcher}};
  }

 private:
  bool start_watcher(const RunContext& ctx, int number, std::string* error) {
    auto w = std::make_unique<Watcher>();
    w->number = number;
    if (!open_watch(ctx, *w, n0_, n0_, error)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    watchers_.push_back(std::move(w));
    return true;
  }

  // Opens a session for `w` and watches /jepsen/w from `after` (events go to w's main sequence,
  // and to the watch's history) and its twin from `twin_after` (to the twin sequence); sets
  // w.client, w.watch_id, w.twin_watch_id and w.expired.
  bool open_watch(const RunContext& ctx, Watcher& w, std::uint64_t after, std::uint64_t twin_after, std::string* error) {
    const int number = w.number;
    auto expired = std::make_shared<std::atomic<bool>>(false);
    ClientOptions o = options_for(ctx, number);
    o.on_state = [flag = expired, raw = &w](ConnectionState s) {
      if (s == ConnectionState::session_expired) flag->store(true);
      if (s == ConnectionState::suspended) {
        std::lock_guard<std::mutex> lock(raw->mu);
        ++raw->suspensions;
      }
    };
    auto client = connect_until(o, Clock::now() + 20s);
    if (!client) return *error = "setup: no session for watcher " + std::to_string(number), false;
    Watcher* raw = &w;
    Recorder* history = ctx.history;
    auto record = [raw](Watcher::Sequence& seq, const WatchEvent& e) {
      std::lock_guard<std::mutex> lock(raw->mu);
      seq.events.push_back(Delivered{e.type, e.index, e.path, e.data});
      if (e.type != WatchEvent::Type::resync) seq.last_index = std::max(seq.last_index, e.index);
    };
    auto cb = [raw, history, record](const WatchEvent& e) {
      record(raw->main, e);
      nlohmann::json v{{"type", type_name(e.type)}, {"index", e.index}, {"path", e.path}, {"data", e.data}};
      history->add(kWatcherProcess + raw->number, "invoke", "event", "watch", "null");
      history->add(kWatcherProcess + raw->number, "ok", "event", "watch", v.dump());
    };
    auto r = client->watch(kDir, WatchKind::data, cb, /*persistent=*/true, /*recursive=*/true, after);
    if (!r.ok()) return *error = "setup: watch for watcher " + std::to_string(number) + ": " + error_name(r.error), false;
    auto twin = client->watch(kDir, WatchKind::data, [raw, record](const WatchEvent& e) { record(raw->twin, e); },
                              /*persistent=*/true, /*recursive=*/true, twin_after);
    if (!twin.ok()) return *error = "setup: twin watch for watcher " + std::to_string(number) + ": " + error_name(twin.error), false;
    w.client = std::move(client);
    w.watch_id = r.id;
    w.twin_watch_id = twin.id;
    w.expired = std::move(expired);
    return true;
  }

  // The keeper: every 100 ms, re-establishes the watchers whose sessions expired, from the last
  // index each delivered (the old watch is cancelled first: its callback never runs again, so
  // the events stay in order and none repeats). Until stop_keeper.
  void keep_watchers(const RunContext& ctx) {
    std::unique_lock<std::mutex> lock(keeper_mu_);
    while (!stopping_ && !interrupted()) {
      keeper_cv_.wait_for(lock, 100ms, [&] { return stopping_; });
      if (stopping_) break;
      std::vector<Watcher*> all;
      {
        std::lock_guard<std::mutex> g(mu_);
        for (auto& w : watchers_) all.push_back(w.get());
      }
      for (Watcher* w : all)
        if (!stopping_ && w->expired->load()) renew(ctx, *w);
    }
  }

  void renew(const RunContext& ctx, Watcher& w) {
    if (w.watch_id != 0) w.client->unwatch(w.watch_id);  // local: no callback runs after this
    if (w.twin_watch_id != 0) w.client->unwatch(w.twin_watch_id);
    w.watch_id = w.twin_watch_id = 0;
    w.client.reset();  // closes what is left of the old session (bounded)
    std::uint64_t from = n0_, twin_from = n0_;
    {
      std::lock_guard<std::mutex> lock(w.mu);
      from = std::max(from, w.main.last_index);
      twin_from = std::max(twin_from, w.twin.last_index);
    }
    std::string error;
    if (!open_watch(ctx, w, from, twin_from, &error)) {
      w.renew_error = error;  // tried again on the keeper's next round
      w.expired = std::make_shared<std::atomic<bool>>(true);
      return;
    }
    ++w.sessions;
  }

  void stop_keeper() {
    {
      std::lock_guard<std::mutex> lock(keeper_mu_);
      stopping_ = true;
    }
    keeper_cv_.notify_all();
    if (keeper_.joinable()) keeper_.join();
  }

  void do_write(Client& c, Write* w, std::int64_t* process, const RunContext& ctx) {
    ctx.history->add(*process, "invoke", "write", w->path, nlohmann::json(w->value).dump());
    auto r = c.set(w->path, w->value);
    w->outcome = r.ok() ? Outcome::ok : definite_failure(r.error) ? Outcome::fail : Outcome::unknown;
    if (r.ok()) w->index = r.index;
    ctx.history->add(*process, w->outcome == Outcome::ok ? "ok" : w->outcome == Outcome::fail ? "fail" : "info", "write",
                     w->path, nlohmann::json(w->value).dump());
    if (w->outcome == Outcome::unknown) *process += ctx.clients;
  }

  std::uint64_t n0_ = 0, m_ = 0;
  std::size_t live_at_end_ = 0;
  std::string late_error_;
  std::thread keeper_;
  std::mutex keeper_mu_;
  std::condition_variable keeper_cv_;
  bool stopping_ = false;  // keeper_mu_
  std::mutex mu_;
  std::vector<std::unique_ptr<Watcher>> watchers_;
  std::vector<Write> writes_;
};

}  // namespace

std::unique_ptr<Workload> make_watch_workload() { return std::make_unique<WatchWorkload>(); }

}  // namespace tern::jepsen
