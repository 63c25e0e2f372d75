#include "tests/sim/sim.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <tuple>
#include <cstdio>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>

#include "raft/core.h"
#include "common/assert.h"
#include "raft/invariants.h"
#include "raft/quorum.h"
#include "tests/sim/linearizability.h"

namespace tern::sim {

using raft::Core;
using raft::Entry;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::Term;

std::string describe(const Fault& f) {
  static const char* names[] = {"crash",    "restart",   "partition", "cut_one_way", "isolate_leader",
                                "bridge",   "heal",      "loss",      "duplicate",   "transfer",
                                "add_learner", "promote", "remove", "reboot", "crash_point"};
  return "@" + std::to_string(f.at_tick) + " " + names[static_cast<int>(f.kind)] + "(" + std::to_string(f.a) + "," +
         std::to_string(f.b) + ")";
}

namespace {

constexpr std::uint64_t tick_units = 10;  // virtual time units per tick
constexpr std::uint32_t election_ticks = 10;
constexpr std::uint64_t give_up_ticks = 60;

struct Disk {
  raft::HardState hs;
  std::optional<raft::SnapshotMeta> snap_meta;
  std::shared_ptr<const std::string> snap_data;
  std::vector<Entry> log;  // contiguous, after the snapshot
};

struct PendingWrite {
  std::size_t op;
  Index index;
  Term term;
};

struct PendingRead {
  std::size_t op;
  std::string context;
  std::optional<Index> index;
};

struct Node {
  NodeId id;
  std::unique_ptr<Core> core;  // null while crashed
  Disk disk;
  std::vector<std::uint64_t> list;  // the replicated state machine
  Index applied;
  std::optional<raft::Ready> inflight;
  std::uint64_t inflight_gen = 0;
  std::vector<PendingWrite> writes;
  std::vector<PendingRead> reads;
  int crash_after = -1;  // armed crash point (FaultKind::crash_point), -1 when none
};

enum class EventKind : std::uint8_t { tick, deliver, disk_done, client, fault };

struct Event {
  std::uint64_t time;
  std::uint64_t seq;
  EventKind kind;
  int node = 0;
  std::uint64_t gen = 0;
  std::shared_ptr<Message> msg;
  bool operator>(const Event& o) const { return std::tie(time, seq) > std::tie(o.time, o.seq); }
};

std::string encode_list(const std::vector<std::uint64_t>& list) {
  std::string s;
  s.reserve(list.size() * 8);
  for (auto v : list) s.append(reinterpret_cast<const char*>(&v), sizeof v);
  return s;
}

std::vector<std::uint64_t> decode_list(const std::string& s) {
  std::vector<std::uint64_t> list(s.size() / 8);
  for (std::size_t i = 0; i < list.size(); ++i) std::memcpy(&list[i], s.data() + i * 8, 8);
  return list;
}

class Simulation {
 public:
  explicit Simulation(const Options& o) : opt_(o), rng_(o.seed) {
    pre_vote_ = o.pre_vote.value_or(chance(50));
    check_quorum_ = o.check_quorum.value_or(chance(50));
    max_msg_bytes_ = chance(50) ? 1 : uniform(8, 256);
    lazy_commit_ = o.lazy_commit.value_or(chance(50));
    int n = o.voters + o.spares;
    nodes_.resize(n + 1);
    for (int i = 1; i <= n; ++i) {
      nodes_[i].id = NodeId(i);
      all_ids_.push_back(NodeId(i));
      start(i);
      schedule(static_cast<std::uint64_t>(i), EventKind::tick, i);
    }
    next_spare_ = o.voters + 1;
    ops_.reserve(4096);
    for (int c = 0; c < o.clients; ++c) schedule(uniform(1, 30), EventKind::client, c);
    for (std::size_t i = 0; i < o.faults.size(); ++i) {
      schedule(o.faults[i].at_tick * tick_units + 5, EventKind::fault, 0, i);
    }
  }

  Outcome run() {
    std::uint64_t safety_end = opt_.ticks * tick_units;
    run_until(safety_end);
    if (!out_.ok) return out_;
    liveness();
    if (!out_.ok) return out_;
    final_check();
    return out_;
  }

 private:
  // -- infrastructure ------------------------------------------------------------------------
  std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) { return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_); }
  bool chance(std::uint32_t percent) { return uniform(0, 99) < percent; }

  void schedule(std::uint64_t at, EventKind kind, int node, std::uint64_t gen = 0, std::shared_ptr<Message> msg = {}) {
    queue_.push(Event{at, seq_++, kind, node, gen, std::move(msg)});
  }

  void fail(std::string why) {
    if (!out_.ok) return;
    out_.ok = false;
    out_.error = "t=" + std::to_string(now_) + ": " + why;
  }

  void run_until(std::uint64_t end) {
    while (out_.ok && !queue_.empty() && queue_.top().time <= end) {
      Event e = queue_.top();
      queue_.pop();
      now_ = e.time;
      ++out_.events;
      dispatch(e);
      if (out_.ok) check_invariants();
    }
    now_ = end;
  }

  void dispatch(Event& e) {
    switch (e.kind) {
      case EventKind::tick: {
        if (auto& c = nodes_[e.node].core) c->tick();
        pump(e.node);
        schedule(now_ + tick_units, EventKind::tick, e.node);
        break;
      }
      case EventKind::deliver: deliver(*e.msg); break;
      case EventKind::disk_done: disk_done(e.node, e.gen); break;
      case EventKind::client:
        if (clients_active_) {
          client_op(e.node);
          schedule(now_ + uniform(2, 25), EventKind::client, e.node);
        }
        break;
      case EventKind::fault: apply_fault(opt_.faults[e.gen]); break;
    }
  }

  void check_invariants() {
    std::vector<const Core*> live;
    for (auto& n : nodes_)
      if (n.core) live.push_back(n.core.get());
    auto holds = [&](NodeId id, Index i, Term t) {
      const Disk& d = nodes_[id.value].disk;
      if (d.snap_meta && i <= d.snap_meta->index) return true;  // snapshots hold only committed entries
      Index first = d.snap_meta ? d.snap_meta->index.next() : Index{1};
      return i >= first && i - first < d.log.size() && d.log[i - first].term == t;
    };
    auto last = [&](NodeId id) -> std::pair<Index, Term> {
      const Disk& d = nodes_[id.value].disk;
      if (!d.log.empty()) return {d.log.back().index, d.log.back().term};
      if (d.snap_meta) return {d.snap_meta->index, d.snap_meta->term};
      return {Index{0}, Term{0}};
    };
    if (auto err = checker_.check(live, all_ids_, holds, last)) fail(*err);
  }

  // -- nodes ---------------------------------------------------------------------------------
  raft::ConfState bootstrap_conf(int id) const {
    raft::ConfState conf;
    if (id <= opt_.voters)
      for (int v = 1; v <= opt_.voters; ++v) conf.voters.push_back(NodeId(v));
    return conf;  // spares start with no membership and learn it when added
  }

  void start(int i) {
    Node& n = nodes_[i];
    raft::Config cfg;
    cfg.id = n.id;
    cfg.election_ticks = election_ticks;
    cfg.heartbeat_ticks = 2;
    cfg.seed = opt_.seed ^ (0x1000u * ++incarnations_);
    cfg.max_msg_bytes = max_msg_bytes_;  // small batches exercise pipelining and partial replication
    cfg.max_inflight_msgs = 8;
    cfg.pre_vote = pre_vote_;
    cfg.check_quorum = check_quorum_;
    if (opt_.verbose) cfg.log = [](std::string_view s) { std::fprintf(stderr, "%.*s\n", (int)s.size(), s.data()); };
    raft::RestoreState rs;
    rs.hard_state = n.disk.hs;
    rs.snapshot = n.disk.snap_meta;
    rs.entries = n.disk.log;
    rs.bootstrap = bootstrap_conf(i);
    n.core = std::make_unique<Core>(cfg, std::move(rs));
    n.list = n.disk.snap_data ? decode_list(*n.disk.snap_data) : std::vector<std::uint64_t>{};
    n.applied = n.disk.snap_meta ? n.disk.snap_meta->index : Index{0};
    checker_.on_restart(n.id);
    checker_.on_restore(n.id, n.applied);
  }

  void crash(int i) {
    Node& n = nodes_[i];
    if (!n.core) return;
    n.core.reset();
    n.inflight.reset();  // not durable: lost
    ++n.inflight_gen;
    for (auto& w : n.writes) ops_[w.op].status = OpStatus::info, ops_[w.op].complete_time = now_;
    for (auto& r : n.reads) ops_[r.op].status = OpStatus::fail, ops_[r.op].complete_time = now_;
    for (auto& w : n.writes) busy_.erase(ops_[w.op].process);
    for (auto& r : n.reads) busy_.erase(ops_[r.op].process);
    n.writes.clear();
    n.reads.clear();
  }

  void pump(int i) {
    Node& n = nodes_[i];
    if (!n.core || n.inflight || !n.core->has_ready()) return;
    n.inflight = n.core->ready();
    schedule(now_ + uniform(0, 4), EventKind::disk_done, i, ++n.inflight_gen);
  }

  void persist(Node& n, const raft::Ready& rd) {
    Disk& d = n.disk;
    if (rd.snapshot) {
      const auto& meta = rd.snapshot->meta;
      Index first = d.snap_meta ? d.snap_meta->index.next() : Index{1};
      bool keep = meta.index >= first && meta.index - first < d.log.size() && d.log[meta.index - first].term == meta.term;
      if (keep)
        d.log.erase(d.log.begin(), d.log.begin() + static_cast<std::ptrdiff_t>(meta.index - first + 1));
      else
        d.log.clear();
      d.snap_meta = meta;
      d.snap_data = rd.snapshot->data;
    }
    if (!rd.entries.empty()) {
      Index first = d.snap_meta ? d.snap_meta->index.next() : Index{1};
      Index from = rd.entries.front().index;
      TERN_ASSERT(from >= first);
      TERN_ASSERT(from - first <= d.log.size());
      d.log.resize(from - first);
      d.log.insert(d.log.end(), rd.entries.begin(), rd.entries.end());
    }
    if (rd.hard_state) {
      raft::HardState hs = *rd.hard_state;
      // A commit-only change is not written yet: the durable commit lags (issue 10, hole 3).
      if (lazy_commit_ && hs.term == d.hs.term && hs.vote == d.hs.vote) hs.commit = d.hs.commit;
      d.hs = hs;
    }
  }

  void disk_done(int i, std::uint64_t gen) {
    Node& n = nodes_[i];
    if (!n.core || !n.inflight || gen != n.inflight_gen) return;
    raft::Ready rd = std::move(*n.inflight);
    n.inflight.reset();
    persist(n, rd);                                   // 1. durable
    bool hit = false;
    for (auto& m : rd.messages) {                     // 2. only now the messages leave
      hit = hit || crash_point_hit(n, m);
      send(n, std::move(m));
    }
    if (hit) {
      n.crash_after = -1;
      crash(i);
      start(i);
      return;
    }
    if (rd.snapshot) {                                // 3. apply
      n.list = decode_list(*rd.snapshot->data);
      n.applied = rd.snapshot->meta.index;
      checker_.on_restore(n.id, n.applied);
      for (auto& w : n.writes)
        if (w.index <= n.applied)
          ops_[w.op].status = OpStatus::info, ops_[w.op].complete_time = now_, busy_.erase(ops_[w.op].process);
      std::erase_if(n.writes, [&](const PendingWrite& w) { return w.index <= n.applied; });
    }
    for (const Entry& e : rd.committed) apply(n, e);
    for (auto& rs : rd.read_states) {
      for (auto& r : n.reads)
        if (r.context == rs.context && !r.index) r.index = rs.index;
    }
    n.core->advance(rd);  // 4.
    maybe_snapshot(n);
    serve_reads(n);
    pump(i);
  }

  static bool crash_point_hit(const Node& n, const Message& m) {
    switch (n.crash_after) {
      case 0:
        if (auto* v = std::get_if<raft::VoteReply>(&m.body)) return v->granted && !v->pre_vote;
        return false;
      case 1: return std::holds_alternative<raft::AppendReply>(m.body);
      case 2: return std::holds_alternative<raft::AppendRequest>(m.body);
      default: return false;
    }
  }

  void apply(Node& n, const Entry& e) {
    if (e.index <= n.applied) return;
    if (auto err = checker_.on_apply(n.id, e)) return fail(*err);
    TERN_ASSERT(e.index == n.applied.next());
    n.applied = e.index;
    if (e.type == raft::EntryType::normal) n.list.push_back(std::stoull(e.data));
    for (auto it = n.writes.begin(); it != n.writes.end();) {
      if (it->index != e.index) {
        ++it;
        continue;
      }
      HistoryOp& op = ops_[it->op];
      bool ours = e.term == it->term && e.type == raft::EntryType::normal && std::stoull(e.data) == op.value;
      op.status = ours ? OpStatus::ok : OpStatus::info;  // overwritten: outcome unknown
      op.complete_time = now_;
      if (ours) ++out_.writes_ok;
      busy_.erase(op.process);
      it = n.writes.erase(it);
    }
    out_.committed = std::max<std::uint64_t>(out_.committed, e.index.value);
  }

  void maybe_snapshot(Node& n) {
    Index snap = n.disk.snap_meta ? n.disk.snap_meta->index : Index{0};
    if (n.applied - snap < opt_.snapshot_every || n.core->applied_index() < n.applied) return;
    n.core->compact(n.applied);
    n.disk.snap_meta = n.core->snapshot_meta();
    n.disk.snap_data = std::make_shared<const std::string>(encode_list(n.list));
    Index first = snap.next();
    std::size_t drop = std::min<std::size_t>(n.applied - first + 1, n.disk.log.size());
    n.disk.log.erase(n.disk.log.begin(), n.disk.log.begin() + static_cast<std::ptrdiff_t>(drop));
  }

  void serve_reads(Node& n) {
    for (auto it = n.reads.begin(); it != n.reads.end();) {
      if (!it->index || *it->index > n.applied) {
        ++it;
        continue;
      }
      HistoryOp& op = ops_[it->op];
      op.status = OpStatus::ok;
      op.complete_time = now_;
      op.read_length = n.list.size();
      op.read_last = n.list.empty() ? 0 : n.list.back();
      ++out_.reads_ok;
      busy_.erase(op.process);
      it = n.reads.erase(it);
    }
  }

  // -- network -------------------------------------------------------------------------------
  bool blocked(NodeId from, NodeId to) const { return cut_.count({from.value, to.value}) > 0; }

  void send(Node& from, Message m) {
    if (auto* snap = std::get_if<raft::InstallSnapshotRequest>(&m.body)) {
      // The driver attaches the bytes of its newest durable snapshot (possibly newer than the
      // one the core named: that is still a valid snapshot of committed state).
      TERN_ASSERT(from.disk.snap_meta.has_value());
      snap->meta = *from.disk.snap_meta;
      snap->data = from.disk.snap_data;
      ++out_.snapshots_sent;
    }
    if (blocked(m.from, m.to) || chance(loss_)) return;
    auto msg = std::make_shared<Message>(std::move(m));
    int copies = chance(dup_) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      std::uint64_t delay = chance(5) ? uniform(10, 60) : uniform(1, 8);
      schedule(now_ + delay, EventKind::deliver, 0, 0, msg);
    }
  }

  void deliver(const Message& m) {
    Node& n = nodes_[m.to.value];
    if (!n.core || blocked(m.from, m.to)) return;
    // Every message here comes from a correct core: a rejection is a bug in the sender or in
    // the checks (docs/raft.md "Peer input").
    if (auto r = n.core->step(m); !r)
      return fail(std::string("a correct peer's ") + raft::message_name(m.body) + " was rejected: " + r.error().reason);
    pump(static_cast<int>(m.to.value));
  }

  // -- clients -------------------------------------------------------------------------------
  int leader_node() const {
    int best = 0;
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
      const auto& c = nodes_[i].core;
      if (c && c->role() == raft::Role::leader && (best == 0 || c->term() > nodes_[best].core->term()))
        best = static_cast<int>(i);
    }
    return best;
  }

  void client_op(int process) {
    if (auto it = busy_.find(process); it != busy_.end()) {
      // A client gives up on an operation after a while: a write's outcome is then unknown, a
      // read simply did not happen. Either way the process may move on.
      HistoryOp& op = ops_[it->second];
      if (now_ - op.invoke_time < give_up_ticks * tick_units) return;
      op.status = op.is_write ? OpStatus::info : OpStatus::fail;
      op.complete_time = now_;
      for (auto& n : nodes_) {
        std::erase_if(n.writes, [&](const PendingWrite& w) { return w.op == it->second; });
        std::erase_if(n.reads, [&](const PendingRead& r) { return r.op == it->second; });
      }
      busy_.erase(it);
    }
    int target = leader_node();
    if (target == 0 || chance(25)) target = static_cast<int>(uniform(1, nodes_.size() - 1));
    Node& n = nodes_[target];
    if (!n.core) return;
    HistoryOp op;
    op.process = process;
    op.invoke_time = now_;
    std::size_t id = ops_.size();
    if (chance(60)) {
      op.is_write = true;
      op.value = id + 1;
      auto r = n.core->propose(std::to_string(op.value));
      if (!r) {
        op.status = OpStatus::fail;  // rejected before entering any log: never takes effect
        op.complete_time = now_;
        ops_.push_back(op);
        return;
      }
      ops_.push_back(op);
      n.writes.push_back(PendingWrite{id, *r, n.core->term()});
    } else {
      std::string ctx = "r" + std::to_string(id);
      auto r = n.core->read_index(ctx);
      if (!r) {
        op.status = OpStatus::fail;
        op.complete_time = now_;
        ops_.push_back(op);
        return;
      }
      ops_.push_back(op);
      n.reads.push_back(PendingRead{id, ctx, std::nullopt});
    }
    busy_[process] = id;
    pump(target);
  }

  // -- faults --------------------------------------------------------------------------------
  int node_count() const { return static_cast<int>(nodes_.size()) - 1; }

  void apply_fault(const Fault& f) {
    if (opt_.verbose) std::fprintf(stderr, "t=%llu fault %s\n", (unsigned long long)now_, describe(f).c_str());
    int n = node_count();
    auto node_of = [&](std::uint32_t a) { return static_cast<int>(a % n) + 1; };
    switch (f.kind) {
      case FaultKind::crash: crash(node_of(f.a)); break;
      case FaultKind::restart:
        if (!nodes_[node_of(f.a)].core) start(node_of(f.a));
        break;
      case FaultKind::crash_point:
        nodes_[node_of(f.a)].crash_after = static_cast<int>(f.b % 3);
        break;
      case FaultKind::reboot:
        crash(node_of(f.a));
        start(node_of(f.a));
        break;
      case FaultKind::partition:
        cut_.clear();
        for (int a = 1; a <= n; ++a)
          for (int b = 1; b <= n; ++b)
            if (((f.a >> a) & 1) != ((f.a >> b) & 1)) cut_.insert({std::uint64_t(a), std::uint64_t(b)});
        break;
      case FaultKind::cut_one_way:
        if (node_of(f.a) != node_of(f.b)) cut_.insert({std::uint64_t(node_of(f.a)), std::uint64_t(node_of(f.b))});
        break;
      case FaultKind::isolate_leader: {
        int l = leader_node();
        for (int b = 1; l && b <= n; ++b)
          if (b != l) cut_.insert({std::uint64_t(l), std::uint64_t(b)}), cut_.insert({std::uint64_t(b), std::uint64_t(l)});
        break;
      }
      case FaultKind::bridge: {
        int x = node_of(f.a);
        cut_.clear();
        for (int a = 1; a <= n; ++a)
          for (int b = 1; b <= n; ++b)
            if (a != x && b != x && (a % 2) != (b % 2)) cut_.insert({std::uint64_t(a), std::uint64_t(b)});
        break;
      }
      case FaultKind::heal:
        cut_.clear();
        loss_ = 0;
        dup_ = 0;
        break;
      case FaultKind::loss: loss_ = std::min<std::uint32_t>(f.a, 40); break;
      case FaultKind::duplicate: dup_ = std::min<std::uint32_t>(f.a, 30); break;
      case FaultKind::transfer:
        if (int l = leader_node()) (void)nodes_[l].core->transfer_leadership(NodeId(node_of(f.a)));
        break;
      case FaultKind::add_learner:
        if (int l = leader_node(); l && next_spare_ <= n) {
          if (nodes_[l].core->propose_conf_change({raft::ConfChangeType::add_learner, NodeId(next_spare_)})) ++next_spare_;
        }
        break;
      case FaultKind::promote:
        if (int l = leader_node()) {
          const auto& learners = nodes_[l].core->conf_state().learners;
          if (!learners.empty()) (void)nodes_[l].core->propose_conf_change({raft::ConfChangeType::promote_learner, learners.front()});
        }
        break;
      case FaultKind::remove:
        if (int l = leader_node()) {
          const auto& voters = nodes_[l].core->conf_state().voters;
          NodeId victim(node_of(f.a));
          // Keep at least three voters so that the remaining faults stay meaningful.
          if (voters.size() > 3 && raft::contains(voters, victim))
            (void)nodes_[l].core->propose_conf_change({raft::ConfChangeType::remove_node, victim});
        }
        break;
    }
    for (int i = 1; i <= n; ++i) pump(i);
  }

  // -- liveness and the final check ----------------------------------------------------------
  void liveness() {
    cut_.clear();
    loss_ = dup_ = 0;
    for (int i = 1; i <= node_count(); ++i)
      if (!nodes_[i].core) start(i);
    // Drop the remaining scheduled faults.
    std::priority_queue<Event, std::vector<Event>, std::greater<>> keep;
    while (!queue_.empty()) {
      if (queue_.top().kind != EventKind::fault) keep.push(queue_.top());
      queue_.pop();
    }
    queue_ = std::move(keep);
    std::uint64_t deadline = now_ + opt_.liveness_ticks * tick_units;
    clients_active_ = false;
    // A fresh write must commit: retry the proposal on whoever is leader until it is accepted.
    int probe_node = 0;  // 0: no probe accepted yet
    Index probe_index;
    std::uint64_t value = 1'000'000'000 + opt_.seed % 1000;
    while (now_ < deadline && out_.ok) {
      run_until(now_ + tick_units);
      if (probe_node == 0) {
        if (int l = leader_node()) {
          if (auto r = nodes_[l].core->propose(std::to_string(value))) {
            probe_node = l;
            probe_index = *r;
            probe_term_ = nodes_[l].core->term();
            pump(l);
          }
        }
      } else if (probe_committed(probe_node, probe_index)) {
        return;
      } else if (!nodes_[probe_node].core || nodes_[probe_node].core->term() != probe_term_ ||
                 nodes_[probe_node].core->role() != raft::Role::leader) {
        // Leadership changed (a leader removed from the membership steps down in its own term);
        // propose again, a new value, so the check stays exact.
        probe_node = 0;
        ++value;
      }
    }
    if (out_.ok) fail("liveness: no write committed on every member within " + std::to_string(opt_.liveness_ticks) + " ticks after healing; " + cluster_state());
  }

  std::string cluster_state() const {
    std::string s;
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
      const auto& c = nodes_[i].core;
      if (!c) continue;
      s += "[n" + std::to_string(i) + " " + raft::role_name(c->role()) + " t" + std::to_string(c->term().value) +
           " last=" + std::to_string(c->last_index().value) + " commit=" + std::to_string(c->commit_index().value) +
           " applied=" + std::to_string(nodes_[i].applied.value) + " voters=" + std::to_string(c->conf_state().voters.size()) +
           " learners=" + std::to_string(c->conf_state().learners.size());
      for (auto& [id, pr] : c->progress_map())
        s += " p" + std::to_string(id.value) + "{m" + std::to_string(pr.match_index.value) + " n" +
             std::to_string(pr.next_index.value) + " s" + std::to_string(int(pr.state)) + " ps" +
             std::to_string(pr.probe_sent) + " if" + std::to_string(pr.inflights.size()) + "}";
      s += "] ";
    }
    return s;
  }

  bool probe_committed(int node, Index index) {
    const Core& leader = *nodes_[node].core;
    if (leader.term_at(index) != probe_term_) return false;
    std::vector<NodeId> members = leader.conf_state().voters;
    members.insert(members.end(), leader.conf_state().learners.begin(), leader.conf_state().learners.end());
    for (NodeId m : members) {
      const Node& n = nodes_[m.value];
      if (!n.core || n.applied < index) return false;
    }
    return true;
  }

  void final_check() {
    // Let pending client operations finish, then compare against the longest applied list.
    run_until(now_ + 20 * tick_units);
    const Node* longest = nullptr;
    for (const auto& n : nodes_)
      if (n.core && (!longest || n.list.size() > longest->list.size())) longest = &n;
    std::vector<std::uint64_t> order;
    for (auto v : longest->list)
      if (v < 1'000'000'000) order.push_back(v);  // liveness probes are not client writes
    for (auto& op : ops_)
      if (op.status == OpStatus::pending) {
        op.status = op.is_write ? OpStatus::info : OpStatus::fail;
        op.complete_time = now_;
      }
    for (auto& op : ops_)
      if (!op.is_write && op.status == OpStatus::ok) {
        // Reads may have seen probe values at the end; cut them off the observed prefix.
        std::size_t len = 0;
        while (len < op.read_length && len < longest->list.size() && longest->list[len] < 1'000'000'000) ++len;
        if (len < op.read_length) op.read_length = len, op.read_last = len ? longest->list[len - 1] : 0;
      }
    if (!opt_.history_path.empty()) std::ofstream(opt_.history_path) << history_jsonl(ops_, order);
    if (auto err = check_list_history(ops_, order)) fail("linearizability: " + *err);
    for (const auto& n : nodes_)
      if (n.core && n.core->role() == raft::Role::leader) ++out_.leaders;
  }

  Options opt_;
  std::mt19937_64 rng_;
  std::vector<Node> nodes_;  // index 0 unused
  std::vector<NodeId> all_ids_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::uint64_t seq_ = 0;
  std::uint64_t now_ = 0;
  std::uint64_t incarnations_ = 0;
  std::set<std::pair<std::uint64_t, std::uint64_t>> cut_;  // (from, to) links that drop messages
  std::uint32_t loss_ = 0, dup_ = 0;
  int next_spare_ = 0;
  bool clients_active_ = true;
  bool pre_vote_ = true, check_quorum_ = true, lazy_commit_ = false;
  std::size_t max_msg_bytes_ = 64;
  Term probe_term_;
  std::vector<HistoryOp> ops_;
  std::map<int, std::size_t> busy_;  // process -> its operation in flight
  raft::InvariantChecker checker_;
  Outcome out_;
};

}  // namespace

Outcome run(const Options& options) { return Simulation(options).run(); }

std::vector<Fault> random_faults(std::uint64_t seed, std::uint32_t ticks, int nodes) {
  std::mt19937_64 rng(seed ^ 0xfeedfacecafebeefULL);
  std::vector<Fault> faults;
  int count = static_cast<int>(rng() % 40);
  for (int i = 0; i < count; ++i) {
    Fault f;
    f.at_tick = static_cast<std::uint32_t>(rng() % ticks);
    f.kind = static_cast<FaultKind>(rng() % 15);
    f.a = static_cast<std::uint32_t>(rng() % 64);
    f.b = static_cast<std::uint32_t>(rng() % nodes);
    faults.push_back(f);
  }
  return faults;
}


}  // namespace tern::sim
