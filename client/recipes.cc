// Recipes (client/include/tern/recipes.h) on the public Client API only. Watch callbacks run on
// the library's thread, where a blocking Client call would deadlock: they only queue the event
// in an Inbox; the recipe's own threads (or the caller's) make the calls.
#include "tern/recipes.h"

#include <algorithm>
#include <deque>
#include <tuple>
#include <utility>

namespace tern::recipes {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

Clock::time_point deadline_after(milliseconds timeout) {
  auto now = Clock::now();
  if (timeout >= std::chrono::duration_cast<milliseconds>(Clock::time_point::max() - now)) return Clock::time_point::max();
  return now + timeout;
}

// Events a watch callback queued for a recipe thread. Shared with the callback, so an event
// arriving after the recipe is gone finds the inbox alive.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<WatchEvent> events;
  bool stop = false;

  WatchCallback callback(const std::shared_ptr<Inbox>& self) {
    return [self](const WatchEvent& e) {
      std::lock_guard<std::mutex> g(self->mu);
      self->events.push_back(e);
      self->cv.notify_all();
    };
  }
  // Waits until an event is queued, `until` passes, or stop; returns the events taken.
  std::deque<WatchEvent> take(Clock::time_point until) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_until(l, until, [&] { return !events.empty() || stop; });
    std::deque<WatchEvent> out;
    out.swap(events);
    return out;
  }
  void shut() {
    std::lock_guard<std::mutex> g(mu);
    stop = true;
    cv.notify_all();
  }
  bool stopped() {
    std::lock_guard<std::mutex> g(mu);
    return stop;
  }
};

// A persistent watch cancelled when it goes out of scope: the library's handle (tern::Watch).
Watch scoped_watch(Client& client, const std::string& path, WatchKind kind, WatchCallback cb, bool recursive = false) {
  return client.watch_handle(path, kind, std::move(cb), true, recursive);
}

// Re-asking a queued lock or campaign is harmless (the server answers "held" with the token, or
// keeps the request queued once); doing it now and then covers an event the recipe missed.
constexpr milliseconds kRecheck{1000};

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }

std::string hex(std::uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 15];
  return s;
}

bool transient(Error e) {
  return e == Error::unknown_outcome || e == Error::disconnected || e == Error::timed_out || e == Error::unavailable ||
         e == Error::slow_down || e == Error::not_leader;
}

}  // namespace

struct Access {
  static Permit permit(Client* c, const std::string& node) { return Permit(c, node); }
  static Permit permit_error(Error e) { return Permit(e); }
};

namespace {

// Queues for `name` and waits for the grant: this session's lock_granted event, or a re-ask that
// answers with the token. The watch is registered before the request, so no grant is missed.
LockGuard acquire_lock(Client& client, const std::string& name, bool shared, bool try_only, milliseconds delay,
                       milliseconds timeout) {
  if (try_only) return client.lock_handle(name, shared, true, delay);
  auto until = deadline_after(timeout);
  auto inbox = std::make_shared<Inbox>();
  Watch watch = scoped_watch(client, name, WatchKind::events, inbox->callback(inbox));
  if (watch.error() != Error::ok) return LockGuard(watch.error());
  auto r = client.lock(name, shared, false, delay);
  while (true) {
    // A request whose fate is unknown is simply asked again: asking is idempotent per session.
    if (!r.ok() && !transient(r.error)) return LockGuard(r.error);
    if (r.ok() && r.id != 0) return client.adopt_lock(name, r.id);
    if (Clock::now() >= until) break;
    for (const auto& e : inbox->take(std::min(until, Clock::now() + kRecheck)))
      if (e.type == WatchEvent::Type::lock_granted && e.id == client.session_id() && e.token != 0)
        return client.adopt_lock(name, e.token);
    r = client.lock(name, shared, false, delay);
  }
  // Timed out: withdraw the request (or release a grant that raced with the timeout).
  client.unlock(name);
  return LockGuard(Error::timed_out);
}

}  // namespace

Error ensure_path(Client& client, const std::string& path, const std::string& data) {
  if (client.exists(path).ok()) return Error::ok;
  for (std::size_t at = 1; at <= path.size(); ++at) {
    if (at != path.size() && path[at] != '/') continue;
    std::string prefix = path.substr(0, at);
    auto r = client.create(prefix, at == path.size() ? data : std::string());
    if (!r.ok() && r.error != Error::node_exists) return r.error;
  }
  return Error::ok;
}

// --- Mutex, ReadWriteLock (LockGuard is tern::Lock, client.cc) -------------------------------

Mutex::Mutex(Client& client, std::string name, milliseconds lock_delay)
    : client_(client), name_(std::move(name)), delay_(lock_delay) {}
LockGuard Mutex::lock(milliseconds timeout) { return acquire_lock(client_, name_, false, false, delay_, timeout); }
LockGuard Mutex::try_lock() { return acquire_lock(client_, name_, false, true, delay_, milliseconds(0)); }

ReadWriteLock::ReadWriteLock(Client& client, std::string name, milliseconds lock_delay)
    : client_(client), name_(std::move(name)), delay_(lock_delay) {}
LockGuard ReadWriteLock::read_lock(milliseconds timeout) { return acquire_lock(client_, name_, true, false, delay_, timeout); }
LockGuard ReadWriteLock::write_lock(milliseconds timeout) { return acquire_lock(client_, name_, false, false, delay_, timeout); }
LockGuard ReadWriteLock::try_read_lock() { return acquire_lock(client_, name_, true, true, delay_, milliseconds(0)); }
LockGuard ReadWriteLock::try_write_lock() { return acquire_lock(client_, name_, false, true, delay_, milliseconds(0)); }

// --- Semaphore --------------------------------------------------------------------------------

Permit::Permit(Permit&& o) noexcept : client_(std::exchange(o.client_, nullptr)), node_(std::move(o.node_)), error_(o.error_) {}

Permit& Permit::operator=(Permit&& o) noexcept {
  if (this != &o) {
    release();
    client_ = std::exchange(o.client_, nullptr);
    node_ = std::move(o.node_);
    error_ = o.error_;
  }
  return *this;
}

Permit::~Permit() { release(); }

Error Permit::release() {
  if (client_ == nullptr) return Error::ok;
  Client* c = std::exchange(client_, nullptr);
  auto e = c->remove(node_).error;
  return e == Error::no_node ? Error::ok : e;
}

Semaphore::Semaphore(Client& client, std::string path, std::uint32_t permits)
    : client_(client), path_(std::move(path)), permits_(std::max<std::uint32_t>(permits, 1)) {}

// The count lives in the semaphore's node, so every user agrees on it.
Error Semaphore::setup() {
  if (ready_) return Error::ok;
  if (auto e = ensure_path(client_, path_, std::to_string(permits_)); e != Error::ok) return e;
  auto g = client_.get(path_);
  if (!g.ok()) return g.error;
  try {
    auto n = std::stoul(g.data);
    if (n > 0 && n <= UINT32_MAX) permits_ = static_cast<std::uint32_t>(n);
  } catch (...) {
    // Not a count: keep ours.
  }
  ready_ = true;
  return Error::ok;
}

// A holder is one of the `permits` oldest nodes (by sequence number). Nodes ahead of a waiter
// only ever go away (new ones get larger numbers), so once in, a node stays in until released;
// at any moment at most `permits` nodes are among the oldest `permits`.
Permit Semaphore::acquire(milliseconds timeout) {
  auto until = deadline_after(timeout);
  if (auto e = setup(); e != Error::ok) return Access::permit_error(e);
  auto inbox = std::make_shared<Inbox>();
  Watch watch = scoped_watch(client_, path_, WatchKind::children, inbox->callback(inbox));
  if (watch.error() != Error::ok) return Access::permit_error(watch.error());
  // The name carries the session, so a create whose outcome is unknown can be found again.
  const std::string prefix = "p-" + hex(client_.session_id()) + "-";
  std::string mine;
  auto seq = [](const std::string& n) { return n.size() >= 10 ? n.substr(n.size() - 10) : n; };
  while (mine.empty()) {
    auto c = client_.create(join(path_, prefix), "", CreateOptions{.ephemeral = true, .sequential = true});
    if (c.ok()) {
      mine = c.path.substr(c.path.rfind('/') + 1);
    } else if (c.error == Error::unknown_outcome) {
      auto kids = client_.children(path_);
      for (const auto& n : kids.names)
        if (n.rfind(prefix, 0) == 0) mine = n;
      if (mine.empty() && Clock::now() >= until) return Access::permit_error(Error::timed_out);
    } else {
      return Access::permit_error(c.error);
    }
  }
  while (true) {
    auto kids = client_.children(path_);
    if (!kids.ok()) {
      if (Clock::now() >= until) break;
    } else {
      std::vector<std::string> names = kids.names;
      std::sort(names.begin(), names.end(), [&](const auto& a, const auto& b) { return seq(a) < seq(b); });
      auto at = std::find(names.begin(), names.end(), mine);
      if (at == names.end()) return Access::permit_error(Error::no_node);  // the session ended
      if (at - names.begin() < static_cast<std::ptrdiff_t>(permits_)) return Access::permit(&client_, join(path_, mine));
      if (Clock::now() >= until) break;
    }
    inbox->take(std::min(until, Clock::now() + kRecheck));
  }
  client_.remove(join(path_, mine));
  return Access::permit_error(Error::timed_out);
}

// --- Barriers ---------------------------------------------------------------------------------

Error Barrier::raise() {
  if (auto e = ensure_path(client_, parent_of(path_)); e != Error::ok) return e;
  auto r = client_.create(path_, "");
  return r.ok() || r.error == Error::node_exists ? Error::ok : r.error;
}

Error Barrier::lower() {
  auto r = client_.remove(path_);
  return r.ok() || r.error == Error::no_node ? Error::ok : r.error;
}

Error Barrier::wait(milliseconds timeout) {
  auto until = deadline_after(timeout);
  auto inbox = std::make_shared<Inbox>();
  Watch watch = scoped_watch(client_, path_, WatchKind::exists, inbox->callback(inbox));
  if (watch.error() != Error::ok) return watch.error();
  while (true) {
    auto r = client_.exists(path_);
    if (r.error == Error::no_node) return Error::ok;
    if (!r.ok() && r.error != Error::disconnected) return r.error;
    if (Clock::now() >= until) return Error::timed_out;
    inbox->take(std::min(until, Clock::now() + kRecheck));
  }
}

DoubleBarrier::DoubleBarrier(Client& client, std::string path, std::uint32_t count, std::string name)
    : client_(client), path_(std::move(path)), name_(name.empty() ? hex(client.session_id()) : std::move(name)),
      count_(std::max<std::uint32_t>(count, 1)) {}

// Every participant creates its member node before it counts, so the one that completes the
// count sees every member and creates `ready`; the others wait for `ready` to appear.
Error DoubleBarrier::enter(milliseconds timeout) {
  auto until = deadline_after(timeout);
  const std::string members = join(path_, "members"), ready = join(path_, "ready"), me = join(members, name_);
  if (auto e = ensure_path(client_, members); e != Error::ok) return e;
  auto inbox = std::make_shared<Inbox>();
  Watch watch = scoped_watch(client_, ready, WatchKind::exists, inbox->callback(inbox));
  if (watch.error() != Error::ok) return watch.error();
  auto c = client_.create(me, "", CreateOptions{.ephemeral = true});
  if (!c.ok() && c.error != Error::node_exists) return c.error;
  while (true) {
    if (client_.exists(ready).ok()) return Error::ok;
    auto kids = client_.children(members);
    if (kids.ok() && kids.names.size() >= count_) {
      auto r = client_.create(ready, "");
      if (r.ok() || r.error == Error::node_exists) return Error::ok;
    }
    if (Clock::now() >= until) break;
    inbox->take(std::min(until, Clock::now() + kRecheck));
  }
  client_.remove(me);  // not entered: do not count
  return Error::timed_out;
}

// Leaving removes the member node; everyone leaves once no member node is left.
Error DoubleBarrier::leave(milliseconds timeout) {
  auto until = deadline_after(timeout);
  const std::string members = join(path_, "members");
  auto inbox = std::make_shared<Inbox>();
  Watch watch = scoped_watch(client_, members, WatchKind::children, inbox->callback(inbox));
  if (watch.error() != Error::ok) return watch.error();
  auto r = client_.remove(join(members, name_));
  if (!r.ok() && r.error != Error::no_node) return r.error;
  while (true) {
    auto kids = client_.children(members);
    if (kids.ok() && kids.names.empty()) return Error::ok;
    if (Clock::now() >= until) return Error::timed_out;
    inbox->take(std::min(until, Clock::now() + kRecheck));
  }
}

// --- LeaderElection ---------------------------------------------------------------------------
//
// Two threads: the worker makes every Client call (campaign, which also confirms: re-asking a
// held election answers its token and is a write that renews the session) and reports facts;
// the notifier alone runs the callbacks and ends a leadership whose confirmation window ran out,
// even while the worker is stuck retrying.

struct LeaderElection::State {
  Client& client;
  std::string name, value;
  Callback on_elected, on_lost;
  milliseconds interval, window;
  std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();

  struct Fact {
    enum class Kind : std::uint8_t { confirmed, not_leader, dead } kind;
    std::uint64_t token = 0;
    Clock::time_point started{};
  };
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Fact> facts;
  bool stop = false;
  bool leading = false, dead = false;
  std::uint64_t token = 0;
  Clock::time_point valid_until{};

  State(Client& c, std::string n, std::string v, Callback e, Callback l, milliseconds i, milliseconds w)
      : client(c), name(std::move(n)), value(std::move(v)), on_elected(std::move(e)), on_lost(std::move(l)), interval(i), window(w) {}

  void post(Fact f) {
    std::lock_guard<std::mutex> g(mu);
    facts.push_back(f);
    cv.notify_all();
  }

  void work() {
    std::optional<Watch> watch;
    std::uint64_t held = 0;
    while (!inbox->stopped()) {
      // The events watch only makes a change of leader noticed sooner; re-asking covers the rest.
      if (!watch || watch->error() != Error::ok)
        watch.emplace(scoped_watch(client, name, WatchKind::events, inbox->callback(inbox)));
      auto started = Clock::now();
      auto r = client.campaign(name, value);
      if (r.error == Error::unknown_session) {
        post({Fact::Kind::dead});
        return;
      }
      if (r.ok() && r.id != 0) {
        held = r.id;
        post({Fact::Kind::confirmed, r.id, started});
      } else if (r.ok() && held != 0) {
        held = 0;  // queued again: someone else leads
        post({Fact::Kind::not_leader});
      }
      // Any other error: nothing is confirmed, and the notifier's window runs out by itself.
      inbox->take(Clock::now() + interval);
    }
  }

  void lose(std::unique_lock<std::mutex>& l) {
    if (!leading) return;
    leading = false;
    auto t = std::exchange(token, 0);
    l.unlock();
    if (on_lost) on_lost(t);
    l.lock();
  }

  void notify() {
    std::unique_lock<std::mutex> l(mu);
    while (true) {
      auto ready = [&] { return !facts.empty() || stop; };
      if (leading) cv.wait_until(l, valid_until, ready);
      else cv.wait(l, ready);
      if (stop) break;
      if (leading && Clock::now() >= valid_until) lose(l);  // could not confirm in time
      while (!facts.empty()) {
        Fact f = facts.front();
        facts.pop_front();
        if (f.kind == Fact::Kind::dead) {
          dead = true;
          lose(l);
          return;
        }
        if (f.kind == Fact::Kind::not_leader) {
          lose(l);
          continue;
        }
        auto until = f.started + window;
        if (until <= Clock::now()) continue;  // too old to vouch for anything
        if (leading && token != f.token) lose(l);
        if (leading) {
          valid_until = std::max(valid_until, until);
          continue;
        }
        leading = true;
        token = f.token;
        valid_until = until;
        l.unlock();
        if (on_elected) on_elected(f.token);
        l.lock();
        if (stop) break;
      }
    }
    lose(l);
  }
};

LeaderElection::LeaderElection(Client& client, std::string name, std::string value, Callback on_elected, Callback on_lost,
                               ElectionOptions options) {
  auto timeout = client.session_timeout();
  auto window = options.window.count() > 0 ? options.window : timeout / 2;
  auto interval = options.confirm_interval.count() > 0 ? options.confirm_interval : timeout / 6;
  interval = std::max(interval, milliseconds(10));
  state_ = std::make_shared<State>(client, std::move(name), std::move(value), std::move(on_elected), std::move(on_lost),
                                   interval, window);
  notifier_ = std::thread([s = state_] { s->notify(); });
  worker_ = std::thread([s = state_] { s->work(); });
}

LeaderElection::~LeaderElection() {
  state_->inbox->shut();
  worker_.join();
  {
    std::lock_guard<std::mutex> g(state_->mu);
    state_->stop = true;
    state_->cv.notify_all();
  }
  notifier_.join();  // runs on_lost if leading: the application stops acting before anyone else can lead
  if (!state_->dead) state_->client.resign(state_->name);
}

bool LeaderElection::is_leader() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->leading && Clock::now() < state_->valid_until;
}

std::uint64_t LeaderElection::token() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->leading && Clock::now() < state_->valid_until ? state_->token : 0;
}

bool LeaderElection::failed() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->dead;
}

// --- TreeCache --------------------------------------------------------------------------------
//
// The watch is registered before the first read, so every change after the reads reaches the
// inbox. The worker applies events only after a (re)load has replaced the copy, and a node's copy
// only moves forward by (created, modified, child) index: an event the reads already reflect
// changes nothing, and a later one applies.

namespace {

bool in_subtree(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

bool newer(const Stat& a, const Stat& b) {
  return std::tie(a.created_index, a.modified_index, a.child_index) > std::tie(b.created_index, b.modified_index, b.child_index);
}

}  // namespace

struct TreeCache::State {
  Client& client;
  std::string root;
  Listener listener;
  std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::map<std::string, Node> nodes;
  std::uint64_t index = 0, reloads = 0;
  bool loaded = false;

  State(Client& c, std::string r, Listener l) : client(c), root(std::move(r)), listener(std::move(l)) {}

  using Changes = std::vector<std::pair<std::string, std::optional<Node>>>;

  // Reads the subtree (depth first); false if a read failed (the caller retries).
  bool read(const std::string& path, std::map<std::string, Node>& out, std::uint64_t& at) {
    auto g = client.get(path);
    if (g.error == Error::no_node) return true;  // deleted meanwhile: its event follows
    if (!g.ok()) return false;
    at = std::max(at, g.index);
    out[path] = Node{g.data, g.stat};
    if (g.stat.child_count == 0) return true;
    auto kids = client.children(path);
    if (kids.error == Error::no_node) return true;
    if (!kids.ok()) return false;
    at = std::max(at, kids.index);
    for (const auto& n : kids.names)
      if (!read(join(path, n), out, at)) return false;
    return true;
  }

  bool reload() {
    std::map<std::string, Node> fresh;
    std::uint64_t at = 0;
    if (!read(root, fresh, at)) return false;
    Changes changes;
    {
      std::lock_guard<std::mutex> g(mu);
      for (const auto& [p, n] : nodes)
        if (!fresh.count(p)) changes.emplace_back(p, std::nullopt);
      for (const auto& [p, n] : fresh) {
        auto it = nodes.find(p);
        if (it == nodes.end() || it->second.data != n.data || newer(n.stat, it->second.stat)) changes.emplace_back(p, n);
      }
      nodes.swap(fresh);
      index = std::max(index, at);
      ++reloads;
      loaded = true;
      cv.notify_all();
    }
    emit(changes);
    return true;
  }

  void apply(const WatchEvent& e, Changes& changes) {
    using T = WatchEvent::Type;
    index = std::max(index, e.index);
    if (!in_subtree(e.path, root)) return;
    auto it = nodes.find(e.path);
    switch (e.type) {
      case T::created:
      case T::data_changed:
        if (it == nodes.end() || newer(e.stat, it->second.stat)) {
          nodes[e.path] = Node{e.data, e.stat};
          changes.emplace_back(e.path, nodes[e.path]);
        }
        break;
      case T::children_changed:
        if (it != nodes.end() && it->second.stat.created_index == e.stat.created_index && newer(e.stat, it->second.stat)) {
          it->second.stat = e.stat;
          changes.emplace_back(e.path, it->second);
        }
        break;
      case T::deleted:
        // The node and anything under it that existed then (a later incarnation stays).
        for (auto jt = nodes.lower_bound(e.path); jt != nodes.end() && in_subtree(jt->first, e.path);) {
          if (jt->second.stat.created_index <= e.index) {
            changes.emplace_back(jt->first, std::nullopt);
            jt = nodes.erase(jt);
          } else {
            ++jt;
          }
        }
        break;
      default: break;
    }
  }

  void emit(const Changes& changes) {
    if (!listener) return;
    for (const auto& [p, n] : changes) listener(p, n);
  }

  void work() {
    std::optional<Watch> watch;
    bool need_reload = true;
    while (!inbox->stopped()) {
      if (!watch || watch->error() != Error::ok) {
        watch.emplace(scoped_watch(client, root, WatchKind::exists, inbox->callback(inbox), true));
        if (watch->error() != Error::ok) {
          inbox->take(Clock::now() + milliseconds(200));
          continue;
        }
        need_reload = true;
      }
      if (need_reload) {
        if (!reload()) {
          inbox->take(Clock::now() + milliseconds(200));
          continue;
        }
        need_reload = false;
      }
      auto events = inbox->take(Clock::now() + kRecheck);
      Changes changes;
      {
        std::lock_guard<std::mutex> g(mu);
        for (const auto& e : events) {
          if (e.type == WatchEvent::Type::resync) {
            need_reload = true;  // events were lost: read everything again, then go on
            continue;
          }
          apply(e, changes);
        }
      }
      emit(changes);
    }
  }
};

TreeCache::TreeCache(Client& client, std::string root, Listener listener)
    : state_(std::make_shared<State>(client, std::move(root), std::move(listener))) {
  worker_ = std::thread([s = state_] { s->work(); });
}

TreeCache::~TreeCache() {
  state_->inbox->shut();
  worker_.join();
}

bool TreeCache::wait_loaded(milliseconds timeout) const {
  std::unique_lock<std::mutex> l(state_->mu);
  return state_->cv.wait_until(l, deadline_after(timeout), [&] { return state_->loaded; });
}

std::optional<TreeCache::Node> TreeCache::get(const std::string& path) const {
  std::lock_guard<std::mutex> g(state_->mu);
  auto it = state_->nodes.find(path);
  if (it == state_->nodes.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> TreeCache::children(const std::string& path) const {
  std::lock_guard<std::mutex> g(state_->mu);
  std::vector<std::string> out;
  const std::string prefix = path == "/" ? "/" : path + "/";
  for (auto it = state_->nodes.lower_bound(prefix); it != state_->nodes.end() && it->first.rfind(prefix, 0) == 0; ++it)
    if (it->first.find('/', prefix.size()) == std::string::npos && it->first.size() > prefix.size())
      out.push_back(it->first.substr(prefix.size()));
  return out;
}

std::map<std::string, TreeCache::Node> TreeCache::snapshot() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->nodes;
}

std::uint64_t TreeCache::index() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->index;
}

std::uint64_t TreeCache::reloads() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->reloads;
}

// --- ConfigWatcher ----------------------------------------------------------------------------

struct ConfigWatcher::State {
  Client& client;
  std::string path;
  Callback callback;
  std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();
  // What was last delivered: whether the node existed and its (created, modified) index.
  bool delivered = false, existed = false;
  std::uint64_t created = 0, modified = 0;

  State(Client& c, std::string p, Callback cb) : client(c), path(std::move(p)), callback(std::move(cb)) {}

  void offer(const std::optional<std::string>& value, const Stat& stat, std::uint64_t index) {
    bool exists = value.has_value();
    if (delivered && !exists && !existed) return;  // still absent
    if (delivered && exists && existed &&
        std::tie(stat.created_index, stat.modified_index) <= std::tie(created, modified))
      return;  // a value already delivered, or an older one
    delivered = true;
    existed = exists;
    created = exists ? stat.created_index : 0;
    modified = exists ? stat.modified_index : 0;
    if (callback) callback(value, index);
  }

  void work() {
    std::optional<Watch> watch;
    bool need_read = true;
    std::uint64_t applied = 0;  // events at or below it are reflected in what was offered
    while (!inbox->stopped()) {
      if (!watch || watch->error() != Error::ok) {
        watch.emplace(scoped_watch(client, path, WatchKind::exists, inbox->callback(inbox)));
        if (watch->error() != Error::ok) {
          inbox->take(Clock::now() + milliseconds(200));
          continue;
        }
        need_read = true;
      }
      if (need_read) {
        auto g = client.get(path);
        if (!g.ok() && g.error != Error::no_node) {
          inbox->take(Clock::now() + milliseconds(200));
          continue;
        }
        // Every event up to g.index was delivered before this reply (the ordering guarantee).
        applied = std::max(applied, g.index);
        offer(g.ok() ? std::optional<std::string>(g.data) : std::nullopt, g.stat, g.index);
        need_read = false;
      }
      for (const auto& e : inbox->take(Clock::now() + kRecheck)) {
        if (e.type == WatchEvent::Type::resync) {
          need_read = true;
          continue;
        }
        if (e.index <= applied) continue;
        applied = e.index;
        if (e.type == WatchEvent::Type::deleted) offer(std::nullopt, e.stat, e.index);
        else offer(e.data, e.stat, e.index);
      }
    }
  }
};

ConfigWatcher::ConfigWatcher(Client& client, std::string path, Callback callback)
    : state_(std::make_shared<State>(client, std::move(path), std::move(callback))) {
  worker_ = std::thread([s = state_] { s->work(); });
}

ConfigWatcher::~ConfigWatcher() {
  state_->inbox->shut();
  worker_.join();
}

}  // namespace tern::recipes
