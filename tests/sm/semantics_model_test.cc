// Model-based test of the documented semantics (issue 16): responses AND events of the real
// state machine are compared, entry by entry, with an independent model of docs/data-model.md —
// nodes with full stats (persistent, ephemeral, sequential, container, TTL, leased), sessions and
// leases expiring on cluster time in the same entries as other commands, containers emptied by
// expiry or by transactions, every create flag combination (valid and invalid, inside and
// outside multi), extreme numbers for every numeric field. A second replica is restored from a
// snapshot at random points and must answer and emit exactly like the first.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
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
  Limits lim;
  std::map<std::string, Node> nodes{{"/", Node{}}};
  std::map<std::uint64_t, Session> sessions;
  std::map<std::uint64_t, Lease> leases;
  std::map<std::uint64_t, std::uint64_t> seq_counter;  // parent uid -> next suffix
  std::uint64_t next_uid = 1;
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
  void end_session(std::uint64_t id) {
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
  void begin(std::uint64_t idx, std::int64_t t) {
    index = idx;
    now = t;
    events.clear();
    maybe_empty.clear();
    std::vector<std::uint64_t> dead;
    for (auto& [id, s] : sessions)
      if (now > s.deadline) dead.push_back(id);
    for (auto id : dead) end_session(id);
    dead.clear();
    for (auto& [id, l] : leases)
      if (now > l.deadline) dead.push_back(id);
    for (auto id : dead) end_lease(id);
    std::vector<std::string> ttl_dead;
    for (const auto& [p, n] : nodes)
      if ((n.flags & flag_ttl) && n.stat.child_count == 0 && now > sat(n.stat.mtime_ms, n.ttl)) ttl_dead.push_back(p);
    for (const auto& p : ttl_dead)
      if (nodes.count(p)) remove_node(p);
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
      if (validate_path(o.path) != Errc::ok) one = err(Errc::bad_path);
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
  Response run(const Op& op, std::uint64_t session) {
    if (op.type == OpType::open_session) {
      if (op.ttl_ms < lim.min_timeout_ms || op.ttl_ms > lim.max_timeout_ms) return err(Errc::bad_request);
      sessions[index] = Session{op.ttl_ms, sat(now, op.ttl_ms)};
      Response r;
      r.id = index;
      return r;
    }
    if (session != 0) {
      if (!sessions.count(session)) return err(Errc::unknown_session);
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
        if (op.type == OpType::close_session) end_session(session);
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
      default: return err(Errc::bad_request);
    }
  }
};

// Events of one entry in a canonical order (the model does not know node ids, which order the
// collection of empty containers); the content of every event is compared exactly.
std::vector<Event> canonical(std::vector<Event> es) {
  auto key = [](const Event& e) {
    return std::make_tuple(e.type, e.path, e.id, e.stat.child_count, e.stat.child_version, e.stat.version, e.data, e.prev_data);
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

RC_GTEST_PROP(SemanticsModel, ResponsesAndEventsMatchTheDocumentedSemanticsAcrossExpiryMultiAndRestore, ()) {
  Driver d;
  Driver replica;  // restored from d's snapshot at random points; must behave identically
  M m;
  std::vector<std::uint64_t> sessions, leases;
  int steps = pick(1, 120);
  for (int step = 0; step < steps; ++step) {
    std::int64_t advance = *rc::gen::element<std::int64_t>(0, 0, 100, 400, 900, 1500);
    d.time += advance;
    replica.time = d.time;
    int what = pick(0, 20);
    std::uint64_t session = 0;
    if (!sessions.empty() && pick(0, 3) != 0) session = sessions[static_cast<std::size_t>(pick(0, static_cast<int>(sessions.size())))];
    Op op;
    if (what < 9) {
      op = gen_node_op(false, leases, m.lim, m);
    } else if (what < 13) {
      op.type = OpType::multi;
      int n = pick(1, 5);
      for (int i = 0; i < n; ++i) op.ops.push_back(gen_node_op(true, leases, m.lim, m));
    } else if (what == 13) {
      op.type = OpType::open_session;
      op.ttl_ms = *rc::gen::element<std::int64_t>(3000, 5000, 10'000, 99, 100, m.lim.max_timeout_ms, m.lim.max_timeout_ms + 1, i64max, -1);
    } else if (what == 14) {
      op.type = *rc::gen::element(OpType::keep_alive, OpType::close_session);
      if (pick(0, 5) == 0) op.id = *rc::gen::element<std::uint64_t>(1, UINT64_MAX);
    } else if (what == 15) {
      op.type = OpType::grant_lease;
      op.ttl_ms = *rc::gen::element<std::int64_t>(500, 1000, 2500, 99, m.lim.max_timeout_ms + 1, i64max);
    } else if (what == 16) {
      op.type = *rc::gen::element(OpType::keep_alive_lease, OpType::revoke_lease);
      op.id = leases.empty() ? 7 : leases[static_cast<std::size_t>(pick(0, static_cast<int>(leases.size())))];
    } else {
      op.type = OpType::tick;
    }
    if (pick(0, 8) == 0) {  // a replica restored from a snapshot here
      RC_ASSERT(replica.sm.restore(d.sm.snapshot()));
      replica.index = d.index;
      replica.secrets = d.secrets;
      RC_ASSERT(replica.sm.digest() == d.sm.digest());
    }
    // The model, then both replicas.
    m.begin(d.index + 1, d.time);
    Response want = m.run(op, session);
    m.end();
    d.events.clear();
    replica.events.clear();
    Command c{session, 0, op, session ? d.secrets[session] : 0};
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
    // The namespace agrees with the model, node by node, stat by stat.
    for (const auto& [p, n] : m.nodes) {
      auto g = d.sm.get(p);
      RC_ASSERT(g.err == Errc::ok);
      RC_ASSERT(g.data == n.data);
      RC_ASSERT(g.stat == n.stat);
    }
    RC_ASSERT(d.sm.node_count() == m.nodes.size());
    for (std::uint64_t s : sessions) RC_ASSERT(d.sm.has_session(s) == (m.sessions.count(s) > 0));
  }
}

}  // namespace
}  // namespace tern::sm
