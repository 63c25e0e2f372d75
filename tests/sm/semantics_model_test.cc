// Model-based test of the documented semantics (issue 16): responses AND events of the real
// state machine are compared, entry by entry, with an independent model of docs/data-model.md —
// nodes with full stats (persistent, ephemeral, sequential, container, TTL, leased), sessions and
// leases expiring on cluster time in the same entries as other commands, containers emptied by
// expiry or by transactions, every create flag combination (valid and invalid, inside and
// outside multi), extreme numbers for every numeric field. Locks and elections run in the same
// command stream (and are rejected inside multi): shared, exclusive and try requests on one lock by
// the same and by different sessions, FIFO hand-over, exact fencing tokens, and the lock-delay of
// a holder whose session expires (not closes), measured on the cluster clock, whose stamps jump
// forward and back. A second replica is restored from a snapshot at random points and must answer
// and emit exactly like the first.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "service/sm/command.h"
#include "service/sm/path.h"
#include "service/sm/state_machine.h"
#include "tests/sm/driver.h"

namespace tern::sm {
namespace {

using test::Driver;
constexpr std::int64_t i64max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t i64min = std::numeric_limits<std::int64_t>::min();

struct M {
  struct Node {
    std::string data;
    Stat stat;
    std::uint32_t flags = 0;
    std::int64_t ttl = 0;
    std::uint64_t uid = 0;  // identity: never reused
  };
  struct Session {
    std::int64_t timeout = 0, deadline = 0;
  };
  struct Lease {
    std::int64_t ttl = 0, deadline = 0;
  };
  // Locks and elections: one table, keys "l:<name>" and "e:<name>" (independent name spaces).
  struct Holder {
    std::uint64_t session = 0;
    bool shared = false;
    std::uint64_t token = 0;
    std::int64_t delay = 0;  // the lock-delay it asked for, applied if its session expires
  };
  struct Waiter {
    std::uint64_t session = 0;
    bool shared = false;
    std::int64_t delay = 0;
    std::string value;
  };
  struct Lock {
    std::vector<Holder> holders;
    std::deque<Waiter> queue;
    std::int64_t delayed_until = 0;  // cluster time; nobody is granted the lock before it
    bool delay_pending = false;      // (statistics) a lock-delay began and nobody got it since
    std::string value;               // elections: the leader's value
    std::uint64_t last_token = 0;
    std::set<std::uint64_t> issued;  // every token ever granted (check_token must reject old ones)
  };
  // What the generated runs exercised (RC_CLASSIFY), so a generator that stops reaching a case
  // shows up in the output.
  struct Tally {
    int granted_after_delay = 0;   // a waiter or new locker got a lock once its lock-delay passed
    int held_off_by_delay = 0;     // a request queued (or try got busy) only because of a lock-delay
    int closed_without_delay = 0;  // a holder asking for a lock-delay closed: handed on at once
    int shared_mix = 0;            // one lock with a shared holder and an exclusive request, or the reverse
    int same_session_again = 0;    // a session asked again for a lock it holds or waits for
  };
  Limits lim;
  std::map<std::string, Node> nodes{{"/", Node{}}};
  std::map<std::uint64_t, Session> sessions;
  std::map<std::uint64_t, Lease> leases;
  std::map<std::uint64_t, std::uint64_t> seq_counter;  // parent uid -> next suffix
  std::uint64_t next_uid = 1;
  std::map<std::string, Lock> locks;
  Tally tally;
  // The cluster clock (docs/data-model.md, Time): follows the leader's stamps, by at most
  // max_time_step_ms per entry, never backwards.
  std::int64_t last_stamp = 0;
  bool stamped = false;
  // per entry
  std::uint64_t index = 0;
  std::int64_t now = 0;
  std::vector<Event> events;
  std::set<std::uint64_t> maybe_empty;  // container uids that lost a child in this entry

  std::vector<std::string> children(const std::string& p) const {
    std::vector<std::string> out;
    for (const auto& [q, n] : nodes)
      if (q != "/" && parent_of(q) == p) out.push_back(q);
    return out;  // map order = name order under one parent
  }
  void remove_node(std::string p) {  // by value: callers pass keys of `nodes`
    Node n = nodes.at(p);
    nodes.erase(p);
    Node& par = nodes.at(std::string(parent_of(p)));
    par.stat.child_count--;
    par.stat.child_version++;
    par.stat.child_index = index;
    seq_counter.erase(n.uid);
    if (par.flags & flag_container) maybe_empty.insert(par.uid);
    events.push_back(Event{index, EventType::deleted, p, {}, n.data, n.stat, 0});
    events.push_back(Event{index, EventType::children_changed, std::string(parent_of(p)), {}, {}, par.stat, 0});
  }
  void remove_subtree(const std::string& p) {
    for (const auto& c : children(p)) remove_subtree(c);
    remove_node(p);
  }
  // `expired`: the session timed out (its held locks keep their lock-delay); else its owner closed it.
  void end_session(std::uint64_t id, bool expired) {
    std::vector<std::string> eph;
    for (const auto& [p, n] : nodes)
      if (n.stat.ephemeral_owner == id) eph.push_back(p);
    for (auto it = eph.rbegin(); it != eph.rend(); ++it) remove_node(*it);
    sessions.erase(id);
    Event e;
    e.index = index;
    e.type = EventType::session_expired;
    e.id = id;
    events.push_back(e);
    // Its holds and requests go in the same entry; the lock passes on unless a lock-delay holds it.
    for (auto& [key, l] : locks) {
      auto mine = [&](const auto& x) { return x.session == id; };
      if (std::none_of(l.holders.begin(), l.holders.end(), mine) && std::none_of(l.queue.begin(), l.queue.end(), mine))
        continue;  // (a lock whose delay passed is handed on after the expiries, see begin)
      bool was_leader = key[0] == 'e' && !l.holders.empty() && l.holders.front().session == id;
      for (const auto& h : l.holders)
        if (h.session == id && h.delay > 0) {
          if (expired) {
            l.delayed_until = std::max(l.delayed_until, sat(now, h.delay));
            l.delay_pending = true;
          } else if (!l.queue.empty()) {
            ++tally.closed_without_delay;
          }
        }
      std::erase_if(l.holders, mine);
      std::erase_if(l.queue, mine);
      grant_waiters(key, l);
      if (was_leader && l.holders.empty()) leader_event(key, l);  // nobody leads now
    }
  }
  // ---- locks and elections (docs/data-model.md, Locks, Elections) ----
  static bool compatible(const Lock& l, bool shared) {
    return l.holders.empty() || (shared && l.holders.front().shared);
  }
  // Fencing: the entry's index, or the lock's previous token + 1 if that is larger.
  std::uint64_t next_token(Lock& l) {
    l.last_token = std::max(index, l.last_token + 1);
    l.issued.insert(l.last_token);
    return l.last_token;
  }
  void leader_event(const std::string& key, const Lock& l) {
    Event e;
    e.index = index;
    e.type = EventType::leader_changed;
    e.path = key.substr(2);
    if (!l.holders.empty()) {
      e.id = l.holders.front().session;
      e.token = l.holders.front().token;
      e.data = l.value;
    }
    events.push_back(e);
  }
  void grant_event(const std::string& key, const Lock& l, const Holder& h) {
    if (key[0] == 'e') return leader_event(key, l);
    Event e;
    e.index = index;
    e.type = EventType::lock_granted;
    e.path = key.substr(2);
    e.id = h.session;
    e.token = h.token;
    events.push_back(e);
  }
  // FIFO hand-over: from the front while compatible (a run of shared waiters together, an
  // exclusive one alone), and nothing at all while a lock-delay lasts.
  void grant_waiters(const std::string& key, Lock& l) {
    if (now < l.delayed_until) return;
    while (!l.queue.empty() && compatible(l, l.queue.front().shared)) {
      Waiter w = l.queue.front();
      l.queue.pop_front();
      if (l.holders.empty()) l.value = w.value;
      l.holders.push_back(Holder{w.session, w.shared, next_token(l), w.delay});
      if (l.delay_pending) ++tally.granted_after_delay;
      l.delay_pending = false;
      grant_event(key, l, l.holders.back());
      if (!w.shared) break;
    }
  }
  Response lock_op(const Op& op, std::uint64_t session) {
    if (!sessions.count(session)) return err(Errc::unknown_session);
    if (op.path.empty() || op.path.size() > max_path_bytes) return err(Errc::bad_path);  // names need not be paths
    if (op.data.size() > lim.max_value_bytes) return err(Errc::too_large);
    bool election = op.type == OpType::campaign || op.type == OpType::resign || op.type == OpType::proclaim;
    std::string key = (election ? "e:" : "l:") + op.path;
    if (op.type == OpType::lock || op.type == OpType::campaign) {
      if ((op.flags & ~(lock_shared | lock_try)) || (election && op.flags != 0)) return err(Errc::bad_request);
      if (op.ttl_ms < 0 || op.ttl_ms > lim.max_lock_delay_ms) return err(Errc::bad_request);
      bool shared = op.flags & lock_shared, try_only = op.flags & lock_try;
      Lock& l = locks[key];
      if (!l.holders.empty() && l.holders.front().shared != shared) ++tally.shared_mix;
      for (const auto& h : l.holders)
        if (h.session == session) {
          ++tally.same_session_again;
          if (h.shared != shared) return err(Errc::bad_request);  // no upgrade or downgrade
          Response r;
          r.id = h.token;  // the token held
          return r;
        }
      for (const auto& w : l.queue)
        if (w.session == session) {
          ++tally.same_session_again;
          if (w.shared != shared) return err(Errc::bad_request);
          return try_only ? err(Errc::busy) : Response{};  // queued once
        }
      bool delayed = now < l.delayed_until;
      if (l.queue.empty() && compatible(l, shared) && !delayed) {
        Response r;
        r.id = next_token(l);
        if (l.delay_pending) ++tally.granted_after_delay;
        l.delay_pending = false;
        l.holders.push_back(Holder{session, shared, r.id, op.ttl_ms});
        if (l.holders.size() == 1) l.value = op.data;
        if (election) leader_event(key, l);
        return r;
      }
      if (delayed && l.queue.empty() && compatible(l, shared)) ++tally.held_off_by_delay;
      if (try_only) return err(Errc::busy);
      l.queue.push_back(Waiter{session, shared, op.ttl_ms, op.data});
      return Response{};  // queued: a grant event follows
    }
    auto it = locks.find(key);
    if (op.type == OpType::proclaim) {
      if (it == locks.end() || it->second.holders.empty() || it->second.holders.front().session != session)
        return err(Errc::not_held);
      it->second.value = op.data;
      leader_event(key, it->second);
      return Response{};
    }
    // unlock / resign: release a hold or withdraw a request.
    if (it == locks.end()) return err(Errc::not_held);
    Lock& l = it->second;
    auto mine = [&](const auto& x) { return x.session == session; };
    if (std::none_of(l.holders.begin(), l.holders.end(), mine) && std::none_of(l.queue.begin(), l.queue.end(), mine))
      return err(Errc::not_held);
    bool was_leader = election && !l.holders.empty() && l.holders.front().session == session;
    std::erase_if(l.holders, mine);
    std::erase_if(l.queue, mine);
    grant_waiters(key, l);
    if (was_leader && l.holders.empty()) leader_event(key, l);
    return Response{};
  }
  void end_lease(std::uint64_t id) {
    std::vector<std::string> att;
    for (const auto& [p, n] : nodes)
      if (n.stat.lease == id) att.push_back(p);
    for (auto it = att.rbegin(); it != att.rend(); ++it)
      if (nodes.count(*it)) remove_subtree(*it);
    leases.erase(id);
    Event e;
    e.index = index;
    e.type = EventType::lease_expired;
    e.id = id;
    events.push_back(e);
  }
  static std::int64_t sat(std::int64_t a, std::int64_t b) {
    std::int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? i64max : i64min) : r;
  }
  void advance_clock(std::int64_t stamp) {
    if (!stamped) now = stamp;
    else if (stamp > last_stamp) now = sat(now, std::min<std::int64_t>(stamp - last_stamp, lim.max_time_step_ms));
    stamped = true;
    last_stamp = stamp;
  }
  void begin(std::uint64_t idx, std::int64_t stamp) {
    index = idx;
    advance_clock(stamp);
    events.clear();
    maybe_empty.clear();
    std::vector<std::uint64_t> dead;
    for (auto& [id, s] : sessions)
      if (now > s.deadline) dead.push_back(id);
    for (auto id : dead) end_session(id, /*expired=*/true);
    dead.clear();
    for (auto& [id, l] : leases)
      if (now > l.deadline) dead.push_back(id);
    for (auto id : dead) end_lease(id);
    std::vector<std::string> ttl_dead;
    for (const auto& [p, n] : nodes)
      if ((n.flags & flag_ttl) && n.stat.child_count == 0 && now > sat(n.stat.mtime_ms, n.ttl)) ttl_dead.push_back(p);
    for (const auto& p : ttl_dead)
      if (nodes.count(p)) remove_node(p);
    for (auto& [key, l] : locks) grant_waiters(key, l);  // lock-delays that have passed
  }
  void end() {
    while (!maybe_empty.empty()) {
      std::uint64_t uid = *maybe_empty.begin();
      maybe_empty.erase(maybe_empty.begin());
      for (const auto& [p, n] : nodes)
        if (n.uid == uid && p != "/" && n.stat.child_count == 0) {
          remove_node(p);
          break;
        }
    }
  }

  static Response err(Errc e) {
    Response r;
    r.err = e;
    return r;
  }
  Response create(const Op& op, std::uint64_t session, bool in_multi) {
    if (validate_path(op.path) != Errc::ok || op.path == "/") return err(Errc::bad_path);
    if (op.data.size() > lim.max_value_bytes) return err(Errc::too_large);
    std::uint32_t f = op.flags;
    if (f & ~15u) return err(Errc::bad_request);
    if (in_multi && (f & flag_sequential)) return err(Errc::bad_request);
    bool eph = f & flag_ephemeral;
    if ((f & flag_ttl) && (op.ttl_ms < 1 || op.ttl_ms > lim.max_node_ttl_ms || eph)) return err(Errc::bad_request);
    if (!(f & flag_ttl) && op.ttl_ms != 0) return err(Errc::bad_request);
    if ((f & flag_container) && eph) return err(Errc::bad_request);
    if (eph && !sessions.count(session)) return err(Errc::unknown_session);
    if (op.id != 0 && !leases.count(op.id)) return err(Errc::unknown_lease);
    std::string parent(parent_of(op.path));
    auto pit = nodes.find(parent);
    if (pit == nodes.end()) return err(Errc::no_parent);
    if (pit->second.stat.ephemeral_owner) return err(Errc::ephemeral_parent);
    std::string path = op.path;
    if (f & flag_sequential) {
      char suffix[24];
      std::snprintf(suffix, sizeof suffix, "%010" PRIu64, seq_counter[pit->second.uid]);
      path += suffix;
    }
    if (path.size() > max_path_bytes) return err(Errc::bad_path);
    if (nodes.count(path)) return err(Errc::node_exists);
    if (f & flag_sequential) ++seq_counter[pit->second.uid];
    Node n;
    n.data = op.data;
    n.flags = f;
    n.ttl = (f & flag_ttl) ? op.ttl_ms : 0;
    n.uid = next_uid++;
    n.stat.created_index = n.stat.modified_index = n.stat.child_index = index;
    n.stat.ephemeral_owner = eph ? session : 0;
    n.stat.lease = op.id;
    n.stat.data_length = op.data.size();
    n.stat.ctime_ms = n.stat.mtime_ms = now;
    Node& par = pit->second;
    par.stat.child_count++;
    par.stat.child_version++;
    par.stat.child_index = index;
    nodes[path] = n;
    events.push_back(Event{index, EventType::created, path, op.data, {}, n.stat, 0});
    events.push_back(Event{index, EventType::children_changed, parent, {}, {}, nodes.at(parent).stat, 0});
    Response r;
    r.path = path;
    r.stat = n.stat;
    return r;
  }
  Response set(const Op& op) {
    if (validate_path(op.path) != Errc::ok) return err(Errc::bad_path);
    if (op.data.size() > lim.max_value_bytes) return err(Errc::too_large);
    if (op.version < -1) return err(Errc::bad_request);
    auto it = nodes.find(op.path);
    if (it == nodes.end()) return err(Errc::no_node);
    Node& n = it->second;
    if (op.version >= 0 && op.version != n.stat.version) return err(Errc::bad_version);
    std::string prev = n.data;
    n.data = op.data;
    n.stat.version++;
    n.stat.modified_index = index;
    n.stat.mtime_ms = now;
    n.stat.data_length = op.data.size();
    events.push_back(Event{index, EventType::data_changed, op.path, op.data, prev, n.stat, 0});
    Response r;
    r.stat = n.stat;
    return r;
  }
  Response remove(const Op& op, bool in_multi) {
    if (validate_path(op.path) != Errc::ok || op.path == "/") return err(Errc::bad_path);
    if (op.version < -1) return err(Errc::bad_request);
    if (in_multi && op.recursive) return err(Errc::bad_request);
    auto it = nodes.find(op.path);
    if (it == nodes.end()) return err(Errc::no_node);
    if (op.version >= 0 && op.version != it->second.stat.version) return err(Errc::bad_version);
    if (it->second.stat.child_count > 0 && !op.recursive) return err(Errc::not_empty);
    Response r;
    r.stat = it->second.stat;
    remove_subtree(op.path);
    return r;
  }
  Response check(const Op& op) {
    if (validate_path(op.path) != Errc::ok) return err(Errc::bad_path);
    if (op.version < -1 || (op.flags & ~7u)) return err(Errc::bad_request);
    auto it = nodes.find(op.path);
    bool ex = it != nodes.end();
    if ((op.flags & check_exists) && !ex) return err(Errc::no_node);
    if ((op.flags & check_not_exists) && ex) return err(Errc::node_exists);
    if (op.version >= 0 && (!ex || it->second.stat.version != op.version)) return err(ex ? Errc::bad_version : Errc::no_node);
    if ((op.flags & check_value) && (!ex || it->second.data != op.data)) return err(ex ? Errc::check_failed : Errc::no_node);
    return Response{};
  }
  Response multi(const Op& op, std::uint64_t session) {
    M trial = *this;  // all or nothing
    Response r;
    for (std::size_t i = 0; i < op.ops.size(); ++i) {
      const Op& o = op.ops[i];
      Response one;
      bool allowed = o.type == OpType::create || o.type == OpType::set || o.type == OpType::remove || o.type == OpType::check;
      if (!allowed) one = err(Errc::bad_request);  // whatever its path
      else if (validate_path(o.path) != Errc::ok) one = err(Errc::bad_path);
      else if (o.type == OpType::create) one = trial.create(o, session, true);
      else if (o.type == OpType::set) one = trial.set(o);
      else if (o.type == OpType::remove) one = trial.remove(o, true);
      else if (o.type == OpType::check) one = trial.check(o);
      else one = err(Errc::bad_request);
      if (one.err != Errc::ok) {
        Response f;
        f.err = one.err;
        f.results.resize(i + 1);
        f.results[i].err = one.err;
        return f;
      }
      r.results.push_back(one);
    }
    *this = std::move(trial);
    return r;
  }
  // `owner`: the command carries the session's secret (else the session is as good as unknown).
  Response run(const Op& op, std::uint64_t session, bool owner = true) {
    if (op.type == OpType::open_session) {
      if (op.ttl_ms < lim.min_timeout_ms || op.ttl_ms > lim.max_timeout_ms) return err(Errc::bad_request);
      sessions[index] = Session{op.ttl_ms, sat(now, op.ttl_ms)};
      Response r;
      r.id = index;
      return r;
    }
    if (session != 0) {
      if (!sessions.count(session) || !owner) return err(Errc::unknown_session);
      sessions[session].deadline = sat(now, sessions[session].timeout);
    }
    switch (op.type) {
      case OpType::create: return create(op, session, false);
      case OpType::set: return set(op);
      case OpType::remove: return remove(op, false);
      case OpType::multi: return multi(op, session);
      case OpType::keep_alive:
      case OpType::close_session:
        if (session == 0) return err(Errc::unknown_session);
        if (op.id != 0 && op.id != session) return err(Errc::bad_request);
        if (op.type == OpType::close_session) end_session(session, /*expired=*/false);
        return Response{};
      case OpType::grant_lease: {
        if (op.ttl_ms < lim.min_timeout_ms || op.ttl_ms > lim.max_timeout_ms) return err(Errc::bad_request);
        leases[index] = Lease{op.ttl_ms, sat(now, op.ttl_ms)};
        Response r;
        r.id = index;
        r.ttl_ms = op.ttl_ms;
        return r;
      }
      case OpType::keep_alive_lease: {
        auto it = leases.find(op.id);
        if (it == leases.end()) return err(Errc::unknown_lease);
        it->second.deadline = sat(now, it->second.ttl);
        Response r;
        r.id = op.id;
        r.ttl_ms = it->second.ttl;
        return r;
      }
      case OpType::revoke_lease:
        if (!leases.count(op.id)) return err(Errc::unknown_lease);
        end_lease(op.id);
        return Response{};
      case OpType::tick: return Response{};
      case OpType::lock:
      case OpType::unlock:
      case OpType::campaign:
      case OpType::resign:
      case OpType::proclaim: return lock_op(op, session);
      default: return err(Errc::bad_request);
    }
  }
};

// Events of one entry in a canonical order (the model does not know node ids, which order the
// collection of empty containers); the content of every event is compared exactly.
std::vector<Event> canonical(std::vector<Event> es) {
  auto key = [](const Event& e) {
    return std::make_tuple(e.type, e.path, e.id, e.token, e.stat.child_count, e.stat.child_version, e.stat.version, e.data,
                           e.prev_data);
  };
  std::sort(es.begin(), es.end(), [&](const Event& a, const Event& b) { return key(a) < key(b); });
  return es;
}

// Uniform whatever RapidCheck's size (inRange alone stays near its minimum at small sizes).
template <class T>
T pick(T lo, T hi) {
  return *rc::gen::resize(100, rc::gen::inRange<T>(lo, hi));
}

const std::vector<std::string> paths = {"/a", "/a/b", "/a/b/c", "/c", "/c/x", "/c/y", "/t", "/t/k", "/", "a", "/a/"};

std::int64_t gen_version() {
  return *rc::gen::element<std::int64_t>(-1, -1, -1, 0, 0, 1, 2, -2, i64min, i64max);
}
std::int64_t gen_ttl(const Limits& l) {
  return *rc::gen::element<std::int64_t>(0, 0, 0, 1, 300, 900, 2500, l.max_node_ttl_ms, l.max_node_ttl_ms + 1, -1, i64max, i64min);
}

Op gen_node_op(bool in_multi, const std::vector<std::uint64_t>& leases, const Limits& l, const M& m) {
  Op op;
  int k = pick(0, in_multi ? 4 : 3);
  op.type = k == 0 ? OpType::create : k == 1 ? OpType::set : k == 2 ? OpType::remove : OpType::check;
  if (k == 0 && pick(0, 3) == 0) op.type = OpType::create;  // creates a bit more often
  op.path = paths[static_cast<std::size_t>(pick(0, static_cast<int>(paths.size())))];
  op.data = *rc::gen::element<std::string>("", "x", "y", "zz");
  if (pick(0, 20) == 0) op.data = std::string(l.max_value_bytes + pick(0, 1), 'v');  // at and above the bound
  op.version = gen_version();
  if (op.type == OpType::create) {
    op.flags = static_cast<std::uint32_t>(pick(0, 16));
    if (pick(0, 12) == 0) op.flags |= *rc::gen::element<std::uint32_t>(16u, 1u << 31);
    op.ttl_ms = (op.flags & flag_ttl) || pick(0, 8) == 0 ? gen_ttl(l) : 0;
    if ((op.flags & flag_ttl) && op.ttl_ms == 0) op.ttl_ms = 900;
    if (!leases.empty() && pick(0, 3) == 0) op.id = leases[static_cast<std::size_t>(pick(0, static_cast<int>(leases.size())))];
    else if (pick(0, 15) == 0) op.id = *rc::gen::element<std::uint64_t>(1, 999'999, UINT64_MAX);
  }
  if (op.type == OpType::check) op.flags = static_cast<std::uint32_t>(pick(0, 9));
  if (op.type == OpType::remove) op.recursive = pick(0, 4) == 0;
  if (pick(0, 3) != 0) {
    // Plausible (most are accepted, so the tree grows): valid paths, any version, valid flags.
    op.path = paths[static_cast<std::size_t>(pick(0, 8))];
    if (pick(0, 3) == 0) op.type = OpType::create;
    // Mostly a path the operation can succeed on, as the model sees it.
    std::vector<std::string> fit;
    for (std::size_t i = 0; i < 8; ++i) {
      const std::string& p = paths[i];
      bool exists = m.nodes.count(p) > 0, parent = m.nodes.count(std::string(parent_of(p))) > 0;
      if (op.type == OpType::create ? (!exists && parent) : exists) fit.push_back(p);
    }
    if (!fit.empty() && pick(0, 5) != 0) op.path = fit[static_cast<std::size_t>(pick(0, static_cast<int>(fit.size())))];
    op.version = -1;
    if (op.type == OpType::create) {
      op.flags = *rc::gen::element<std::uint32_t>(0, 0, flag_container, flag_container, flag_ephemeral, flag_ttl,
                                                 flag_sequential, flag_container | flag_ttl);
      op.ttl_ms = (op.flags & flag_ttl) ? *rc::gen::element<std::int64_t>(300, 900, 2500) : 0;
    }
    if (op.type == OpType::remove) op.recursive = in_multi ? false : pick(0, 4) == 0;
  }
  return op;
}

std::int64_t gen_lock_delay(const Limits& l) {
  return *rc::gen::element<std::int64_t>(0, 0, 1, 300, 700, 1500, 2500, 2500, 6000, l.max_lock_delay_ms,
                                         l.max_lock_delay_ms + 1, -1, i64max, i64min);
}

// Locks and elections on a few names, mostly well formed; every numeric field also extreme (the
// fields a lock operation ignores — version, id, recursive, flags of a release — included).
Op gen_lock_op(const Limits& l) {
  Op op;
  op.type = *rc::gen::element(OpType::lock, OpType::lock, OpType::lock, OpType::lock, OpType::unlock, OpType::unlock,
                              OpType::campaign, OpType::campaign, OpType::resign, OpType::proclaim);
  op.path = *rc::gen::element<std::string>("m", "m", "m", "n", "/a");  // "m" is a lock and an election
  if (pick(0, 25) == 0) op.path = *rc::gen::element(std::string(), std::string(max_path_bytes, 'k'), std::string(max_path_bytes + 1, 'k'));
  op.data = *rc::gen::element<std::string>("", "v1", "v2");
  if (pick(0, 20) == 0) op.data = std::string(l.max_value_bytes + pick(0, 1), 'v');  // at and above the bound
  bool odd = pick(0, 12) == 0;  // out-of-range or ignored fields
  if (op.type == OpType::lock)
    op.flags = odd ? *rc::gen::element<std::uint32_t>(4u, 1u << 31, std::uint32_t{UINT32_MAX}, 9u)
                   : *rc::gen::element<std::uint32_t>(0u, 0u, lock_shared | 0u, lock_shared | 0u, lock_try | 0u, lock_shared | lock_try);
  else if (op.type == OpType::campaign)
    op.flags = odd ? *rc::gen::element<std::uint32_t>(1u /*shared*/, 2u /*try*/, std::uint32_t{UINT32_MAX}) : 0;
  else if (odd)
    op.flags = *rc::gen::element<std::uint32_t>(1u, std::uint32_t{UINT32_MAX});
  if (op.type == OpType::lock || op.type == OpType::campaign) op.ttl_ms = gen_lock_delay(l);
  else if (odd) op.ttl_ms = *rc::gen::element<std::int64_t>(1, -1, i64max, i64min);
  if (odd || pick(0, 6) == 0) {
    op.id = *rc::gen::element<std::uint64_t>(0, 1, UINT64_MAX);
    op.version = gen_version();
    op.recursive = pick(0, 1) == 1;
  }
  return op;
}

struct Mix {
  bool lock_heavy = false;  // mostly locks, elections and session ends, fewer namespace operations
};

// A small value limit, so that values at and above it are cheap to generate.
Limits model_limits() {
  Limits l;
  l.max_value_bytes = 16;
  l.max_request_bytes = 1 << 16;  // well above any generated request (the model has no request limit)
  return l;
}

void run_model(const Mix& mix) {
  Driver d(model_limits());
  Driver replica(model_limits());  // restored from d's snapshot at random points; must behave identically
  M m;
  m.lim = model_limits();
  std::vector<std::uint64_t> sessions, leases;
  int steps = pick(1, mix.lock_heavy ? 160 : 120);
  for (int step = 0; step < steps; ++step) {
    // The leader's stamp: mostly small steps, sometimes a jump forward (charged at most 2 s) or
    // back (charged nothing): cluster time and the stamps part ways.
    std::int64_t advance = *rc::gen::element<std::int64_t>(0, 0, 100, 400, 400, 900, 900, 1500, 2000, 2001, 5000, 60'000,
                                                           -700, -5000);
    d.time += advance;
    replica.time = d.time;
    int what = pick(0, 20);
    std::uint64_t session = 0;
    if (!sessions.empty() && pick(0, 3) != 0) session = sessions[static_cast<std::size_t>(pick(0, static_cast<int>(sessions.size())))];
    bool close = false;
    if (mix.lock_heavy) {
      // Mostly live sessions (each request renews one: the others drift towards expiry), a new
      // one whenever few are left; locks half the time, keep-alives, fewer node operations.
      std::vector<std::uint64_t> live;
      for (auto& [id, s] : m.sessions) live.push_back(id);
      if (!live.empty() && pick(0, 9) != 0) session = live[static_cast<std::size_t>(pick(0, static_cast<int>(live.size())))];
      int k = pick(0, 20);
      what = live.size() < 3 && pick(0, 2) == 0 ? 13 : k < 10 ? 17 : k < 13 ? 14 : k < 15 ? 0 : k < 16 ? 9 : k < 17 ? 15 : 20;
      close = k == 12;  // a holder's clean close: handed on at once, whatever lock-delay it asked for
    }
    Op op;
    if (what < 9) {
      op = gen_node_op(false, leases, m.lim, m);
    } else if (what < 13) {
      op.type = OpType::multi;
      int n = pick(1, 5);
      for (int i = 0; i < n; ++i) op.ops.push_back(pick(0, 8) == 0 ? gen_lock_op(m.lim) : gen_node_op(true, leases, m.lim, m));
    } else if (what == 13) {
      op.type = OpType::open_session;
      op.ttl_ms = mix.lock_heavy ? *rc::gen::element<std::int64_t>(1500, 3000, 5000, 5000, 10'000, 10'000, 99, i64max)
                                 : *rc::gen::element<std::int64_t>(3000, 5000, 10'000, 99, 100, m.lim.max_timeout_ms,
                                                                   m.lim.max_timeout_ms + 1, i64max, -1);
    } else if (what == 14) {
      op.type = close ? OpType::close_session
                      : *rc::gen::element(OpType::keep_alive, OpType::keep_alive, OpType::keep_alive, OpType::close_session);
      if (pick(0, 5) == 0) op.id = *rc::gen::element<std::uint64_t>(1, UINT64_MAX);
    } else if (what == 15) {
      op.type = OpType::grant_lease;
      op.ttl_ms = *rc::gen::element<std::int64_t>(500, 1000, 2500, 99, m.lim.max_timeout_ms + 1, i64max);
    } else if (what == 16) {
      op.type = *rc::gen::element(OpType::keep_alive_lease, OpType::revoke_lease);
      op.id = leases.empty() ? 7 : leases[static_cast<std::size_t>(pick(0, static_cast<int>(leases.size())))];
    } else if (what < 20) {
      op = gen_lock_op(m.lim);
    } else {
      op.type = OpType::tick;
    }
    if (pick(0, 8) == 0) {  // a replica restored from a snapshot here
      RC_ASSERT(replica.sm.restore(d.sm.snapshot()));
      replica.index = d.index;
      replica.secrets = d.secrets;
      RC_ASSERT(replica.sm.digest() == d.sm.digest());
    }
    // Now and then a session id nobody opened, or a live session without its secret.
    std::uint64_t secret = session ? d.secrets[session] : 0;
    bool owner = true;
    if (pick(0, 30) == 0) {
      if (session != 0 && pick(0, 1) == 0) {
        secret ^= 1;
        owner = false;
      } else {
        session = *rc::gen::element<std::uint64_t>(UINT64_MAX, 1'000'000);
        secret = 1;
      }
    }
    // The model, then both replicas.
    m.begin(d.index + 1, d.time);
    Response want = m.run(op, session, owner);
    m.end();
    d.events.clear();
    replica.events.clear();
    Command c{session, 0, op, secret};
    if (op.type == OpType::open_session) c.secret = 0x5eed0000ull + d.index;  // the opener's choice
    std::string bytes = encode(c);
    Response got = d.raw(bytes).response;
    Response rgot = replica.raw(bytes).response;  // the same entry on the other replica
    if (op.type == OpType::open_session && got.err == Errc::ok) {
      sessions.push_back(got.id);
      d.secrets[got.id] = replica.secrets[got.id] = c.secret;
    }
    if (op.type == OpType::grant_lease && got.err == Errc::ok) leases.push_back(got.id);
    RC_CLASSIFY(op.type == OpType::multi && got.err == Errc::ok, "multi ok");
    RC_CLASSIFY(std::any_of(d.events.begin(), d.events.end(), [](const Event& e) { return e.type == EventType::deleted; }) &&
                std::any_of(d.events.begin(), d.events.end(), [](const Event& e) { return e.type == EventType::created; }),
                "create+delete in one entry");
    RC_ASSERT(got == want);
    RC_ASSERT(canonical(d.events) == canonical(m.events));
    RC_ASSERT(rgot == got);
    RC_ASSERT(replica.events == d.events);  // exactly, order included
    RC_ASSERT(replica.sm.digest() == d.sm.digest());
    RC_ASSERT(d.sm.now_ms() == m.now);  // the cluster clock
    // The namespace agrees with the model, node by node, stat by stat.
    for (const auto& [p, n] : m.nodes) {
      auto g = d.sm.get(p);
      RC_ASSERT(g.err == Errc::ok);
      RC_ASSERT(g.data == n.data);
      RC_ASSERT(g.stat == n.stat);
    }
    RC_ASSERT(d.sm.node_count() == m.nodes.size());
    for (std::uint64_t s : sessions) RC_ASSERT(d.sm.has_session(s) == (m.sessions.count(s) > 0));
    // Locks: a token is valid exactly while its holder holds the lock; elections: the leader.
    for (const auto& [key, l] : m.locks) {
      std::string name = key.substr(2);
      if (key[0] == 'l') {
        for (std::uint64_t t : l.issued) {
          bool held = std::any_of(l.holders.begin(), l.holders.end(), [&](const M::Holder& h) { return h.token == t; });
          RC_ASSERT(d.sm.check_token(name, t) == held);
        }
        continue;
      }
      Response ld = d.sm.leader(name);
      if (l.holders.empty()) {
        RC_ASSERT(ld.err == Errc::no_node);
      } else {
        RC_ASSERT(ld.err == Errc::ok);
        RC_ASSERT(ld.id == l.holders.front().session);
        RC_ASSERT(ld.data == l.value);
        RC_ASSERT(ld.stat.modified_index == l.holders.front().token);
      }
    }
  }
  RC_CLASSIFY(m.tally.granted_after_delay > 0, "granted after a lock-delay");
  RC_CLASSIFY(m.tally.held_off_by_delay > 0, "held off by a lock-delay");
  RC_CLASSIFY(m.tally.closed_without_delay > 0, "closed holder: no lock-delay");
  RC_CLASSIFY(m.tally.shared_mix > 0, "shared/exclusive mix");
  RC_CLASSIFY(m.tally.same_session_again > 0, "same session asks again");
}

RC_GTEST_PROP(SemanticsModel, ResponsesAndEventsMatchTheDocumentedSemanticsAcrossExpiryMultiAndRestore, ()) {
  run_model(Mix{});
}

// The same model, with the command stream weighted towards locks, elections and session ends, so
// that lock-delays begin (a holder's session expires), hold waiters and new lockers off, and end.
RC_GTEST_PROP(SemanticsModel, LocksAndElectionsWithLockDelayAndExpiryMatchTheDocumentedSemantics, ()) {
  run_model(Mix{true});
}

}  // namespace
}  // namespace tern::sm
