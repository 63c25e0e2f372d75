#include "tests/sim/node_sim.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "raft/invariants.h"
#include "service/replica.h"
#include "tests/common/sim_fs.h"

namespace tern::sim {
namespace {

using raft::Entry;
using raft::Index;
using raft::NodeId;
using raft::Term;
using service::Committed;
using service::NodeError;
using service::Replica;
using RealClock = std::chrono::steady_clock;

constexpr std::uint64_t kTickMs = 10;
constexpr std::uint64_t kMaxNetDelayMs = 8;
constexpr std::size_t kMaxEvents = 2'000'000;  // a run that schedules more is reported, not looped
constexpr std::size_t kMaxPendingClientOps = 64;

struct Fatal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Event {
  std::uint64_t at;
  std::uint64_t seq;
  std::function<void()> fn;
};
struct Later {
  bool operator()(const Event& a, const Event& b) const { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }
};

class Sim;

// One simulated machine: its disk, its options and (while up) its Replica. It is the replica's
// transport, clock and executor.
struct SimNode final : service::ReplicaTransport, service::ReplicaClock, service::ReplicaExecutor {
  Sim& sim;
  NodeId id;
  testing::SimFs fs;
  service::NodeOptions opt;
  service::Metrics metrics;
  std::unique_ptr<Replica> r;
  std::uint64_t incarnation = 0;
  bool up = false;
  std::deque<std::function<void()>> disk;  // writes and snapshot files, in order
  bool disk_scheduled = false;
  // A crash point armed by the fault loop: the node dies right after its next message of this
  // kind leaves, or right after its next write of this kind is durable (before it hears so).
  enum class CrashPoint : std::uint8_t { none, after_leader_send, after_reply, after_write, after_snapshot_file };
  CrashPoint crash_point = CrashPoint::none;
  // What this node's disk durably holds (from writes that returned): for the invariant checks.
  Index snap_index;
  Term snap_term;
  std::map<Index, Term> log;

  SimNode(Sim& s, NodeId i) : sim(s), id(i) {}
  void send(const raft::Message& m) override;
  void set_peer(NodeId, const std::string&) override {}
  void remove_peer(NodeId) override {}
  std::chrono::steady_clock::time_point now() override;
  std::uint64_t wall_ms() override;
  void post(std::function<void()> fn) override;
  void write(storage::Wal& wal, storage::WriteBatch batch, service::WalDone done) override;
  void save_snapshot(std::function<service::SnapshotResult()> work,
                     std::function<void(service::SnapshotResult)> done) override;

  void schedule_disk();
  void shadow_write(const storage::WriteBatch& b) {
    if (b.reset_to) {
      log.clear();
      if (b.reset_to->first >= snap_index) {
        snap_index = b.reset_to->first;
        snap_term = b.reset_to->second;
      }
    }
    if (!b.entries.empty()) {
      log.erase(log.lower_bound(b.entries.front().index), log.end());
      for (const auto& e : b.entries) log[e.index] = e.term;
    }
  }
  bool holds(Index i, Term t) const {
    if (i <= snap_index) return i < snap_index || t == snap_term;
    auto it = log.find(i);
    return it != log.end() && it->second == t;
  }
  std::pair<Index, Term> last() const {
    if (!log.empty() && log.rbegin()->first > snap_index) return *log.rbegin();
    return {snap_index, snap_term};
  }
};

class Sim {
 public:
  explicit Sim(const NodeSimOptions& o) : opt_(o), rng_(o.seed * 0x9e3779b97f4a7c15ULL + 17) {}

  NodeSimOutcome run() {
    auto t0 = RealClock::now();
    int total = opt_.voters + opt_.spares;
    for (int i = 1; i <= total; ++i) {
      nodes_.push_back(std::make_unique<SimNode>(*this, NodeId{static_cast<std::uint64_t>(i)}));
      all_ids_.push_back(NodeId{static_cast<std::uint64_t>(i)});
    }
    for (auto& n : nodes_) {
      auto& o = n->opt;
      o.id = n->id;
      o.cluster_id = 1;
      o.data_dir = "/data/n" + std::to_string(n->id.value);
      for (int v = 1; v <= opt_.voters; ++v) o.initial_cluster[NodeId{static_cast<std::uint64_t>(v)}] = address(v);
      o.initial_cluster[n->id] = address(static_cast<int>(n->id.value));
      o.bootstrap = n->id.value <= static_cast<std::uint64_t>(opt_.voters);
      o.tick = std::chrono::milliseconds(kTickMs);
      o.election_ticks = 10;
      o.snapshot_entries = opt_.snapshot_entries;
      o.max_pending_proposals = 256;
      o.wal_segment_bytes = 64 << 10;  // small segments: rolls happen in every run
      NodeId id = n->id;
      o.on_apply = [this, id](const Entry& e) { on_apply(id, e); };
      o.on_restore = [this, id](const raft::SnapshotMeta& m) {
        checker_.on_restore(id, m.index);
        ++out_.snapshots_installed;
      };
      // The operator's directory exists. The node's own directories are created durably here
      // too unless fresh_dirs (this simulator found that DataDir, Wal and SnapshotStore did not
      // fsync the parent after their mkdir: a power cut could drop a whole WAL).
      n->fs.mkdirs_durable("/data");
      if (!opt_.fresh_dirs) {
        n->fs.mkdirs_durable(o.data_dir + "/wal");
        n->fs.mkdirs_durable(o.data_dir + "/snap");
      }
      boot(*n);
    }
    at(1, [this] { client_loop(); });
    at(50, [this] { fault_loop(); });
    at(opt_.fault_ms, [this] { heal(); });
    std::uint64_t end = opt_.fault_ms + opt_.liveness_ms;
    while (!events_.empty() && !failed() && !live_ok_) {
      Event e = events_.top();
      events_.pop();
      if (e.at > end) break;
      now_ = e.at;
      try {
        e.fn();
      } catch (const Fatal& f) {
        fail(std::string("fatal error in a replica: ") + f.what());
      }
      if (++out_.events > kMaxEvents) fail("too many events");
      if (!failed()) check();
    }
    if (!failed() && !live_ok_) {
      std::string state;
      for (auto& n : nodes_) {
        if (!n->up) continue;
        const auto& c = n->r->core();
        state += "; n" + std::to_string(n->id.value) + " " + raft::role_name(c.role()) + " t" + std::to_string(c.term().value) +
                 " commit " + std::to_string(c.commit_index().value) + " last " + std::to_string(c.last_index().value) +
                 " voters " + std::to_string(c.conf_state().voters.size()) + (n->r->persisting() ? " persisting" : "");
      }
      fail("no leader committed a write within " + std::to_string(opt_.liveness_ms) + " ms after healing" + state);
    }
    for (auto& n : nodes_) {
      if (n->up) {
        n->r->crash();
        n->r.reset();
      }
    }
    out_.total_seconds = std::chrono::duration<double>(RealClock::now() - t0).count();
    return out_;
  }

  // ---- used by SimNode ----
  std::uint64_t now_ms() const { return now_; }
  void at(std::uint64_t when, std::function<void()> fn) { events_.push(Event{when, seq_++, std::move(fn)}); }
  std::uint64_t rand(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(std::uint64_t pct) { return rand(100) < pct; }
  void count_wal(double seconds) {
    out_.wal_seconds += seconds;
    ++out_.wal_writes;
  }

  // A crash point fired: the node dies before anything else it scheduled runs (same time,
  // earlier sequence number), then restarts.
  void crash_now(SimNode& n) {
    at(now_, [this, &n, inc = n.incarnation] {
      if (n.incarnation != inc || !n.up || healed_) return;
      note("node " + std::to_string(n.id.value) + " crash point");
      crash(n, opt_.power_cuts && chance(30));
      restart_later(n, 5 + rand(150));
    });
  }

  void net_send(NodeId from, const raft::Message& m) {
    if (m.to.value == 0 || m.to.value > nodes_.size()) return;
    if (blocked_.count({from, m.to}) != 0 || chance(loss_pct_)) return;
    int copies = chance(dup_pct_) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      at(now_ + 1 + rand(kMaxNetDelayMs), [this, m] {
        auto& n = node(m.to);
        if (n.up) n.r->step(m);
      });
    }
  }

 private:
  static std::string address(int id) { return "10.0.0." + std::to_string(id) + ":7000"; }
  SimNode& node(NodeId id) { return *nodes_[id.value - 1]; }
  bool failed() const { return !out_.ok; }
  void fail(const std::string& why) {
    if (!out_.ok) return;
    out_.ok = false;
    out_.error = "t=" + std::to_string(now_) + "ms: " + why;
  }
  void note(const std::string& s) {
    if (opt_.verbose) std::printf("%6llu ms  %s\n", static_cast<unsigned long long>(now_), s.c_str());
  }

  // ---- node lifecycle ----
  void boot(SimNode& n) {
    ++n.incarnation;
    n.opt.raft_seed = rng_() | 1;
    service::ReplicaEnv env;
    env.io = &n.fs;
    env.transport = &n;
    env.clock = &n;
    env.executor = &n;
    env.fatal = [](const std::string& what) { throw Fatal(what); };
    checker_.on_restart(n.id);
    auto r = Replica::open(env, n.opt, std::make_unique<service::RawLog>(), n.metrics);
    if (!r) return fail("node " + std::to_string(n.id.value) + " cannot start: " + r.error());
    n.r = std::move(*r);
    n.up = true;
    const auto& core = n.r->core();
    checker_.on_restore(n.id, n.r->applied());
    auto sm = core.snapshot_meta();
    n.snap_index = sm.index;
    n.snap_term = sm.term;
    n.log.clear();
    for (Index i = core.first_index(); i <= core.last_index(); i = i.next()) n.log[i] = *core.term_at(i);
    note("node " + std::to_string(n.id.value) + " up: term " + std::to_string(core.term().value) + ", last " +
         std::to_string(core.last_index().value) + ", members " + std::to_string(core.conf_state().voters.size()));
    n.r->start();
    tick_loop(n, n.incarnation);
  }

  void crash(SimNode& n, bool power) {
    if (!n.up) return;
    n.r->crash();
    n.r.reset();
    n.up = false;
    n.disk.clear();
    n.disk_scheduled = false;
    ++n.incarnation;  // every event of the old incarnation is void
    ++out_.crashes;
    if (power) {
      n.fs.crash(rng_);
      ++out_.power_cuts;
    }
    note("node " + std::to_string(n.id.value) + (power ? " power cut" : " kill -9"));
  }

  void restart_later(SimNode& n, std::uint64_t delay) {
    at(now_ + delay, [this, &n] {
      if (n.up) return;
      ++out_.restarts;
      boot(n);
    });
  }

  void tick_loop(SimNode& n, std::uint64_t inc) {
    at(now_ + kTickMs, [this, &n, inc] {
      if (n.incarnation != inc || !n.up) return;
      n.r->tick();
      tick_loop(n, inc);
    });
  }

  SimNode* leader() {
    SimNode* best = nullptr;
    for (auto& n : nodes_)
      if (n->up && n->r->core().role() == raft::Role::leader && (!best || n->r->core().term() > best->r->core().term()))
        best = n.get();
    return best;
  }

  // ---- clients ----
  void client_loop() {
    if (failed()) return;
    at(now_ + 1 + rand(6), [this] { client_loop(); });
    if (healed_ || inflight_ >= kMaxPendingClientOps) return;
    std::vector<SimNode*> up;
    for (auto& n : nodes_)
      if (n->up) up.push_back(n.get());
    if (up.empty()) return;
    // Mostly the leader (as real clients that follow hints), sometimes anyone.
    SimNode* n = leader();
    if (n == nullptr || chance(30)) n = up[rand(up.size())];
    if (chance(70) || next_key_ == 0) {
      std::uint64_t k = next_key_++;
      std::string cmd = "reg w k" + std::to_string(k) + " " + std::to_string(k);
      ++inflight_;
      n->r->propose(cmd, [this, k, cmd](Result<Committed, NodeError> r) {
        --inflight_;
        if (r) on_ack(k, cmd, r->index, r->term);
      });
    } else {
      std::uint64_t k = rand(next_key_);
      bool must_see = acked_keys_.count(k) != 0;
      ++inflight_;
      n->r->read("reg r k" + std::to_string(k), [this, k, must_see](Result<service::ReadResult, NodeError> r) {
        --inflight_;
        if (!r) return;
        ++out_.reads_ok;
        const std::string& v = r->response;
        if ((must_see && v != std::to_string(k)) || (v != "null" && v != std::to_string(k)))
          fail("ReadIndex read of k" + std::to_string(k) + " at index " + std::to_string(r->index.value) + " returned '" +
               v + "'" + (must_see ? " after the write was acknowledged" : ""));
      });
    }
  }

  void on_ack(std::uint64_t k, const std::string& cmd, Index index, Term term) {
    ++out_.acked;
    acked_keys_.insert(k);
    auto it = applied_.find(index);
    if (it == applied_.end()) return fail("proposal k" + std::to_string(k) + " acknowledged at index " +
                                          std::to_string(index.value) + " before any node applied that index");
    if (it->second.first != term || it->second.second != cmd)
      return fail("proposal k" + std::to_string(k) + " acknowledged at (" + std::to_string(index.value) + ", " +
                  std::to_string(term.value) + ") but the entry applied there is (" + std::to_string(it->second.first.value) +
                  ", '" + it->second.second + "')");
    acked_[index] = {term, cmd};
  }

  static std::string command_of(const Entry& e) {
    if (e.type != raft::EntryType::normal || e.data.size() < 9 || e.data[0] != 1) return "";
    return e.data.substr(9);
  }

  void on_apply(NodeId id, const Entry& e) {
    if (auto err = checker_.on_apply(id, e)) return fail(*err);
    std::string cmd = command_of(e);
    applied_.emplace(e.index, std::make_pair(e.term, cmd));
    if (auto it = acked_.find(e.index); it != acked_.end() && (it->second.first != e.term || it->second.second != cmd))
      fail("node " + std::to_string(id.value) + " applied (" + std::to_string(e.index.value) + ", " +
           std::to_string(e.term.value) + ") where the acknowledged proposal '" + it->second.second + "' was");
  }

  // ---- faults ----
  void fault_loop() {
    if (failed() || healed_) return;
    at(now_ + 20 + rand(80), [this] { fault_loop(); });
    std::vector<SimNode*> up;
    for (auto& n : nodes_)
      if (n->up) up.push_back(n.get());
    std::uint64_t roll = rand(100);
    // The first second of a new cluster is the most fragile (hole 1): whole-cluster crashes are
    // likelier there.
    std::uint64_t all_pct = now_ < 1000 ? 12 : 3;
    if (roll < all_pct) {
      for (auto* n : up) {
        crash(*n, opt_.power_cuts && chance(40));
        restart_later(*n, 5 + rand(100));
      }
    } else if (roll < 30) {
      if (up.empty()) return;
      SimNode* n = chance(40) && leader() ? leader() : up[rand(up.size())];
      crash(*n, opt_.power_cuts && chance(35));
      restart_later(*n, 5 + rand(300));
    } else if (roll < 45) {
      partition();
    } else if (roll < 55) {
      blocked_.clear();
      note("heal partitions");
    } else if (roll < 62) {
      loss_pct_ = rand(25);
      dup_pct_ = rand(12);
    } else if (roll < 80) {
      membership_change();
    } else if (roll < 92) {
      if (up.empty()) return;
      SimNode* n = up[rand(up.size())];
      // The snapshot-file point is the rarest moment (a received snapshot between its file and
      // the WAL reset record): it gets the most weight.
      n->crash_point = chance(40) ? SimNode::CrashPoint::after_snapshot_file : static_cast<SimNode::CrashPoint>(1 + rand(3));
    } else if (roll < 96) {
      if (auto* l = leader()) {
        NodeId to = all_ids_[rand(all_ids_.size())];
        if (to != l->id) (void)l->r->transfer_leadership(to);
      }
    }
  }

  void partition() {
    blocked_.clear();
    std::set<NodeId> side;
    for (auto id : all_ids_)
      if (chance(50)) side.insert(id);
    for (auto a : all_ids_)
      for (auto b : all_ids_)
        if ((side.count(a) != 0) != (side.count(b) != 0)) blocked_.insert({a, b});
    note("partition: " + std::to_string(side.size()) + " node(s) on one side");
  }

  void membership_change() {
    SimNode* l = leader();
    if (l == nullptr) return;
    const auto& conf = l->r->core().conf_state();
    auto member = [&](NodeId id) {
      return std::find(conf.voters.begin(), conf.voters.end(), id) != conf.voters.end() ||
             std::find(conf.learners.begin(), conf.learners.end(), id) != conf.learners.end();
    };
    std::vector<NodeId> outside, learners(conf.learners.begin(), conf.learners.end()), voters(conf.voters.begin(), conf.voters.end());
    for (auto id : all_ids_)
      if (!member(id)) outside.push_back(id);
    auto done = [this](Result<Committed, NodeError> r) {
      if (r) ++out_.conf_changes;
    };
    std::uint64_t roll = rand(3);
    if (roll == 0 && !outside.empty()) {
      NodeId id = outside[rand(outside.size())];
      note("add learner " + std::to_string(id.value));
      l->r->add_member(id, address(static_cast<int>(id.value)), /*learner=*/true, done);
    } else if (roll == 1 && !learners.empty()) {
      NodeId id = learners[rand(learners.size())];
      note("promote " + std::to_string(id.value));
      l->r->promote_member(id, done);
    } else if (roll == 2 && voters.size() > static_cast<std::size_t>(std::max(1, opt_.voters - 1))) {
      // A leader removing itself is left out unless asked for: with membership adopted at
      // commit, a leader that steps down on committing its own removal can leave the remaining
      // voter without the commit index and unable to win (docs/testing.md, the core's issue).
      if (!opt_.remove_leader) voters.erase(std::remove(voters.begin(), voters.end(), l->id), voters.end());
      if (voters.empty()) return;
      NodeId id = voters[rand(voters.size())];
      note("remove " + std::to_string(id.value));
      l->r->remove_member(id, done);
    }
  }

  void heal() {
    healed_ = true;
    blocked_.clear();
    loss_pct_ = 0;
    dup_pct_ = 0;
    note("heal: network whole, every node restarted");
    for (auto& n : nodes_) {
      n->crash_point = SimNode::CrashPoint::none;
      if (!n->up) {
        ++out_.restarts;
        boot(*n);
      }
    }
    liveness_probe();
  }

  void liveness_probe() {
    if (failed() || live_ok_) return;
    at(now_ + 50, [this] { liveness_probe(); });
    SimNode* l = leader();
    if (l == nullptr || live_inflight_) return;
    live_inflight_ = true;
    std::uint64_t k = next_key_++;
    std::string cmd = "reg w k" + std::to_string(k) + " " + std::to_string(k);
    l->r->propose(cmd, [this, k, cmd](Result<Committed, NodeError> r) {
      live_inflight_ = false;
      if (!r) return note(std::string("liveness probe: ") + service::node_errc_name(r.error().code) + " " + r.error().message);
      on_ack(k, cmd, r->index, r->term);
      live_ok_ = true;
    });
  }

  // ---- invariants ----
  void check() {
    std::vector<const raft::Core*> live;
    for (auto& n : nodes_)
      if (n->up) live.push_back(&n->r->core());
    auto holds = [this](NodeId id, Index i, Term t) { return node(id).holds(i, t); };
    auto last = [this](NodeId id) { return node(id).last(); };
    if (auto err = checker_.check(live, all_ids_, holds, last)) fail(*err);
  }

  NodeSimOptions opt_;
  std::mt19937_64 rng_;
  std::priority_queue<Event, std::vector<Event>, Later> events_;
  std::uint64_t now_ = 0, seq_ = 0;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::vector<NodeId> all_ids_;
  raft::InvariantChecker checker_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::uint64_t loss_pct_ = 0, dup_pct_ = 0;
  bool healed_ = false, live_ok_ = false, live_inflight_ = false;
  std::uint64_t next_key_ = 0;
  std::size_t inflight_ = 0;
  std::set<std::uint64_t> acked_keys_;
  std::map<Index, std::pair<Term, std::string>> applied_;  // the first entry applied at each index
  std::map<Index, std::pair<Term, std::string>> acked_;
  NodeSimOutcome out_;
};

// ---- SimNode ------------------------------------------------------------------------------------

void SimNode::send(const raft::Message& m) {
  sim.net_send(id, m);
  bool leader_msg = std::holds_alternative<raft::AppendRequest>(m.body) || std::holds_alternative<raft::HeartbeatRequest>(m.body);
  bool reply = std::holds_alternative<raft::AppendReply>(m.body) || std::holds_alternative<raft::VoteReply>(m.body);
  if ((crash_point == CrashPoint::after_leader_send && leader_msg) || (crash_point == CrashPoint::after_reply && reply)) {
    crash_point = CrashPoint::none;
    sim.crash_now(*this);
  }
}

std::chrono::steady_clock::time_point SimNode::now() {
  return std::chrono::steady_clock::time_point(std::chrono::milliseconds(sim.now_ms()));
}

std::uint64_t SimNode::wall_ms() { return 1'800'000'000'000ULL + sim.now_ms(); }

void SimNode::post(std::function<void()> fn) {
  sim.at(sim.now_ms(), [this, inc = incarnation, fn = std::move(fn)] {
    if (inc == incarnation && up) fn();
  });
}

void SimNode::schedule_disk() {
  if (disk_scheduled || disk.empty()) return;
  disk_scheduled = true;
  sim.at(sim.now_ms() + sim.rand(3), [this, inc = incarnation] {
    if (inc != incarnation) return;
    disk_scheduled = false;
    auto op = std::move(disk.front());
    disk.pop_front();
    op();
    schedule_disk();
  });
}

// Two steps: the write becomes durable, then (later, unless the node crashes first) the replica
// hears about it.
void SimNode::write(storage::Wal& wal, storage::WriteBatch batch, service::WalDone done) {
  disk.push_back([this, &wal, batch = std::move(batch), done = std::move(done)]() mutable {
    auto t0 = RealClock::now();
    auto res = wal.write(batch);
    sim.count_wal(std::chrono::duration<double>(RealClock::now() - t0).count());
    if (res) shadow_write(batch);
    if (crash_point == CrashPoint::after_write) {
      crash_point = CrashPoint::none;
      sim.crash_now(*this);
    }
    sim.at(sim.now_ms() + sim.rand(2), [this, inc = incarnation, res = std::move(res), done = std::move(done)] {
      if (inc == incarnation && up) done(res);
    });
  });
  schedule_disk();
}

void SimNode::save_snapshot(std::function<service::SnapshotResult()> work,
                            std::function<void(service::SnapshotResult)> done) {
  disk.push_back([this, work = std::move(work), done = std::move(done)]() mutable {
    auto f = work();
    if (f && f->meta.index > snap_index) {
      snap_index = f->meta.index;
      snap_term = f->meta.term;
    }
    if (crash_point == CrashPoint::after_snapshot_file) {
      crash_point = CrashPoint::none;
      sim.crash_now(*this);
    }
    sim.at(sim.now_ms() + sim.rand(2), [this, inc = incarnation, f = std::move(f), done = std::move(done)] {
      if (inc == incarnation && up) done(f);
    });
  });
  schedule_disk();
}

}  // namespace

NodeSimOutcome run_node_sim(const NodeSimOptions& options) {
  Sim s(options);
  return s.run();
}

}  // namespace tern::sim
