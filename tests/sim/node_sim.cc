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

#include <cerrno>
#include <limits>

#include "common/le.h"
#include "raft/invariants.h"
#include "raft/message_check.h"
#include "service/replica.h"
#include "service/sm/command.h"
#include "service/sm/query.h"
#include "service/sm/state_machine.h"
#include "service/sm_applier.h"
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
constexpr int kKeys = 6;
constexpr std::uint64_t kDigestEvery = 4;  // few keys, written often: a stale read is likely to show

std::string key_path(std::uint64_t k) { return "/k" + std::to_string(k); }
std::string get_query(const std::string& path) { return sm::encode(sm::Query{sm::QueryType::get, path, "", 0, 0}); }
std::string describe(const std::string& encoded_response) {
  auto r = sm::decode_response(encoded_response);
  if (!r) return "(undecodable)";
  if (r->err != sm::Errc::ok) return sm::errc_name(r->err);
  return "'" + r->data + "' v" + std::to_string(r->stat.version) + " @" + std::to_string(r->stat.modified_index);
}

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
  std::uint64_t last_post_ms = 0;
  // A crash point armed by the fault loop: the node dies right after its next message of this
  // kind leaves, or right after its next write of this kind is durable (before it hears so).
  // during_write: a crash inside the next WAL batch or snapshot file, after a random number of
  // its file system calls (a segment roll cut between sealing the entries and writing the hard
  // state, a snapshot renamed but its directory not synced, ...): every later call fails, then
  // either the disk loses what was not synced (a power cut) or the process alone died (kill -9).
  enum class CrashPoint : std::uint8_t { none, after_leader_send, after_reply, after_write, after_snapshot_file, during_write };
  CrashPoint crash_point = CrashPoint::none;
  // Arms the during_write cut if it is armed; returns whether it is. After the disk work,
  // power_cut_done() disarms it and schedules the crash.
  bool power_cut_start();
  void power_cut_done(bool armed);
  // An injected disk error (EIO from a sync, ENOSPC from a write) has been returned to this node:
  // a fatal error that follows is the replica's fail-stop, not a bug.
  bool disk_fault_fired = false;
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
      // Issue 13: each node announces a client address through the log (forwarded under faults).
      o.client_address = "10.0.1." + std::to_string(n->id.value) + ":7201";
      o.bootstrap = n->id.value <= static_cast<std::uint64_t>(opt_.voters);
      o.tick = std::chrono::milliseconds(kTickMs);
      o.election_ticks = 10;
      o.snapshot_entries = opt_.snapshot_entries;
      if (opt_.snapshot_slice_bytes) o.snapshot_slice_bytes = opt_.snapshot_slice_bytes;
      o.max_pending_proposals = 256;
      o.wal_segment_bytes = opt_.segment_bytes;  // small segments: rolls happen in every run
      NodeId id = n->id;
      o.on_apply = [this, id](const Entry& e) { on_apply(id, e); };
      o.on_restore = [this, id](const raft::SnapshotMeta& m) {
        checker_.on_restore(id, m.index);
        ++out_.snapshots_installed;
        check_digest(id, m.index, "after installing a snapshot");
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
        on_fatal(f.what());
      }
      if (++out_.events > kMaxEvents) fail("too many events");
      if (!failed()) {
        auto c0 = RealClock::now();
        check();
        out_.check_seconds += std::chrono::duration<double>(RealClock::now() - c0).count();
      }
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
    // Issue 13: a member's client address, where known, is the one that member announced
    // (a forwarded announcement is recorded under its sender's id, never another's).
    for (auto& n : nodes_) {
      if (!n->up || failed()) continue;
      for (const auto& m : n->r->status().members) {
        if (m.client_address.empty()) continue;
        ++out_.client_addresses_known;
        if (m.client_address != "10.0.1." + std::to_string(m.id.value) + ":7201")
          fail("n" + std::to_string(n->id.value) + " says n" + std::to_string(m.id.value) + "'s client address is " + m.client_address);
      }
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
  // The replica's fail-stop (its `fatal`): expected after an injected disk error, which the node
  // answers by stopping; it restarts (after a power cut: what the failing disk had not synced is
  // gone) through its real recovery and must lose nothing it acknowledged. Anywhere else a bug.
  void on_fatal(const std::string& what) {
    SimNode* n = fatal_node_;
    fatal_node_ = nullptr;
    if (n == nullptr || !n->disk_fault_fired)
      return fail(std::string("fatal error in a replica") + (n ? " (node " + std::to_string(n->id.value) + ")" : "") + ": " + what);
    ++out_.disk_faults;
    note("node " + std::to_string(n->id.value) + " fail-stop: " + what);
    crash(*n, /*power=*/true);
    restart_later(*n, 5 + rand(100));
  }

  std::uint64_t now_ms() const { return now_; }
  void at(std::uint64_t when, std::function<void()> fn) { events_.push(Event{when, seq_++, std::move(fn)}); }
  std::uint64_t rand(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(std::uint64_t pct) { return rand(100) < pct; }
  void count_wal(double seconds) {
    out_.wal_seconds += seconds;
    ++out_.wal_writes;
  }
  void count_snapshot(double seconds) { out_.snapshot_seconds += seconds; }
  bool power_cuts() const { return opt_.power_cuts; }
  void trace(const std::string& s) { note(s); }

  // A crash point fired: the node dies before anything else it scheduled runs (same time,
  // earlier sequence number), then restarts.
  void crash_now_without_power_cut(SimNode& n) { crash_now(n, false, true); }
  void crash_now(SimNode& n, bool power = false, bool never_power = false) {
    at(now_, [this, &n, power, never_power, inc = n.incarnation] {
      if (n.incarnation != inc || !n.up || healed_) return;
      note("node " + std::to_string(n.id.value) + " crash point");
      crash(n, opt_.power_cuts && !never_power && (power || chance(30)));
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
        if (n.up) (void)n.r->step(m);
      });
    }
    if (chance(malformed_pct_))
      if (auto bad = malformed(m)) {
        at(now_ + 1 + rand(kMaxNetDelayMs), [this, to = m.to, bad = std::move(*bad)] { deliver_malformed(to, bad); });
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
    env.fatal = [this, &n](const std::string& what) {
      fatal_node_ = &n;
      throw Fatal(what);
    };
    checker_.on_restart(n.id);
    auto r = Replica::open(env, n.opt, std::make_unique<service::SmApplier>(), n.metrics);
    if (!r) return fail("node " + std::to_string(n.id.value) + " cannot start: " + r.error());
    n.r = std::move(*r);
    n.up = true;
    const auto& core = n.r->core();
    checker_.on_restore(n.id, n.r->applied());
    check_digest(n.id, n.r->applied(), "after recovery");
    auto sm = core.snapshot_meta();
    n.snap_index = sm.index;
    n.snap_term = sm.term;
    n.log.clear();
    for (Index i = core.first_index(); i <= core.last_index(); i = i.next()) n.log[i] = *core.term_at(i);
    note("node " + std::to_string(n.id.value) + " up: term " + std::to_string(core.term().value) + ", last " +
         std::to_string(core.last_index().value) + ", members " + std::to_string(core.conf_state().voters.size()));
    // A crash loop: a restarted node may crash again at its next critical step, the moments
    // right after a restart being the fragile ones: its first leader message after it wins an
    // election (the Ready that changes its term: hole 2), the snapshot a lagging node receives
    // (between the file and the WAL reset record: hole 4), its first reply or write.
    if (!healed_ && n.crash_point == SimNode::CrashPoint::none && chance(30)) {
      std::uint64_t p = rand(100);
      n.crash_point = p < 40   ? SimNode::CrashPoint::after_snapshot_file
                      : p < 75 ? SimNode::CrashPoint::after_leader_send
                      : p < 90 ? SimNode::CrashPoint::during_write
                               : static_cast<SimNode::CrashPoint>(2 + rand(2));
    }
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
    std::erase_if(client_ops_, [&n](const auto& op) { return op.second == n.id; });
    if (live_probe_at_ == n.id) live_probe_at_.reset();  // a fail-stop after healing: probe again
    n.fs.set_fault(nullptr);  // a new disk (or the same one, freed up): armed faults are gone
    n.disk_fault_fired = false;
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
      bool was_leader = n.r->core().role() == raft::Role::leader;
      n.r->tick();
      // Clients that found no leader retry on the new one at once: their commands reach it in
      // the instant it wins (a one-voter election happens inside a tick), before its first Ready.
      if (!was_leader && n.r->core().role() == raft::Role::leader && !healed_)
        for (std::uint64_t k = 1 + rand(3); k > 0 && client_ops_.size() < kMaxPendingClientOps; --k) client_op(n);
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

  // A node that still believes it leads at an older term than the leader (a deposed leader on
  // the minority side of a partition), or nullptr.
  SimNode* stale_leader() {
    SimNode* best = leader();
    for (auto& n : nodes_)
      if (n.get() != best && n->up && n->r->core().role() == raft::Role::leader) return n.get();
    return nullptr;
  }

  // ---- clients ----
  // The workload is the coordination state machine's own (service/sm): creates (persistent or
  // ephemeral), sets and deletes with and without expected versions, transactions, sessions that
  // open, keep alive, close and expire (taking their ephemerals with them), and linearizable
  // reads (get, by ReadIndex) on a few hot keys.
  struct ClientSession {
    std::uint64_t id = 0, secret = 0, next_seq = 1;
  };

  sm::Op random_write_op(const std::string& path) {
    sm::Op op;
    op.path = path;
    op.data = "v" + std::to_string(next_value_++);
    auto expected = [&] {
      if (chance(50)) return std::int64_t{-1};
      auto it = versions_.find(path);
      return it == versions_.end() || chance(20) ? static_cast<std::int64_t>(rand(3)) : it->second;
    };
    std::uint64_t roll = rand(100);
    if (roll < 40) {
      op.type = sm::OpType::create;
    } else if (roll < 80) {
      op.type = sm::OpType::set;
      op.version = expected();
    } else {
      op.type = sm::OpType::remove;
      op.version = expected();
    }
    return op;
  }

  // A random command; an open_session carries the secret its session will have.
  sm::Command random_command() {
    sm::Command c;
    ClientSession* s = sessions_.empty() ? nullptr : &sessions_[rand(sessions_.size())];
    std::uint64_t roll = rand(100);
    if (roll < 8 || sessions_.empty()) {
      c.secret = rng_() | 1;
      c.op.type = sm::OpType::open_session;
      c.op.ttl_ms = 150 + static_cast<std::int64_t>(rand(1500));
      return c;
    }
    auto in_session = [&] {
      c.session = s->id;
      c.secret = s->secret;
      c.seq = s->next_seq++;
    };
    if (roll < 20) {
      in_session();
      c.op.type = sm::OpType::keep_alive;
    } else if (roll < 23) {
      in_session();
      c.op.type = sm::OpType::close_session;
    } else if (roll < 35) {
      in_session();
      c.op.type = sm::OpType::create;
      c.op.path = key_path(rand(kKeys));
      c.op.data = "e" + std::to_string(next_value_++);
      c.op.flags = sm::flag_ephemeral;
    } else if (roll < 47) {
      // A transaction over two keys: all or nothing.
      c.op.type = sm::OpType::multi;
      std::string a = key_path(rand(kKeys)), b = key_path(rand(kKeys));
      sm::Op first;
      if (chance(50)) {
        first.type = sm::OpType::check;
        first.path = a;
        first.flags = chance(50) ? sm::check_exists : sm::check_not_exists;
      } else {
        first = random_write_op(a);
      }
      c.op.ops.push_back(std::move(first));
      c.op.ops.push_back(random_write_op(b));
      if (chance(50)) in_session();
    } else {
      c.op = random_write_op(key_path(rand(kKeys)));
      if (chance(30)) in_session();
    }
    return c;
  }

  void client_loop() {
    if (failed()) return;
    at(now_ + 1 + rand(6), [this] { client_loop(); });
    if (healed_ || client_ops_.size() >= kMaxPendingClientOps) return;
    std::vector<SimNode*> up;
    for (auto& n : nodes_)
      if (n->up) up.push_back(n.get());
    if (up.empty()) return;
    // Mostly the leader (as real clients that follow hints), sometimes anyone. Clients cut off
    // with a deposed leader keep writing to it: its log grows a stale suffix that a later
    // snapshot from the new leader must replace (hole 4's precondition).
    SimNode* n = leader();
    if (SimNode* stale = stale_leader(); stale != nullptr && chance(50)) n = stale;
    else if (n == nullptr || chance(30)) n = up[rand(up.size())];
    client_op(*n);
  }

  // One client operation on node n: a command (65 %) or a linearizable read.
  void client_op(SimNode& node) {
    SimNode* n = &node;
    std::uint64_t op_id = next_op_id_++;
    client_ops_[op_id] = n->id;
    if (chance(65)) {
      sm::Command c = random_command();
      std::string cmd = sm::encode(c);
      Index floor = max_acked_;
      n->r->propose(cmd, [this, c, cmd, floor, op_id](Result<Committed, NodeError> r) {
        client_ops_.erase(op_id);
        if (r) on_ack(c, cmd, floor, *r);
      });
    } else {
      std::string path = key_path(rand(kKeys));
      Index floor = max_acked_;
      n->r->read(get_query(path), [this, path, floor, op_id](Result<service::ReadResult, NodeError> r) {
        client_ops_.erase(op_id);
        if (r) on_read(path, floor, *r);
      });
    }
  }

  // A proposal answered "committed" at (index, term) with `response`.
  void on_ack(const sm::Command& c, const std::string& cmd, Index floor, const Committed& r) {
    ++out_.acked;
    std::string at = "(" + std::to_string(r.index.value) + ", " + std::to_string(r.term.value) + ")";
    auto it = applied_.find(r.index);
    if (it == applied_.end()) return fail("proposal acknowledged at " + at + " before any node applied that index");
    if (it->second.term != r.term || command_of(it->second) != cmd)
      return fail("proposal acknowledged at " + at + " but the entry applied there is (" + std::to_string(r.index.value) +
                  ", " + std::to_string(it->second.term.value) + ") with another command");
    // Real time: a write invoked after another was acknowledged is ordered after it.
    if (r.index <= floor)
      return fail("proposal acknowledged at " + at + " although a write acknowledged before it was proposed is at " +
                  std::to_string(floor.value));
    auto ref = ref_response_.find(r.index);
    if (ref == ref_response_.end()) return fail("acknowledged index " + std::to_string(r.index.value) + " is not in the committed log");
    if (ref->second != r.response)
      return fail("proposal acknowledged at " + at + " answered " + describe(r.response) + " but the committed log answers " +
                  describe(ref->second));
    acked_[r.index] = {r.term, cmd};
    max_acked_ = std::max(max_acked_, r.index);
    auto resp = sm::decode_response(r.response);
    if (!resp || resp->err != sm::Errc::ok) return;
    ++out_.acked_ok;
    if (c.op.type == sm::OpType::multi) ++out_.multi_ok;
    if (c.op.type == sm::OpType::create && (c.op.flags & sm::flag_ephemeral) != 0) ++out_.ephemerals_created;
    if (c.op.type == sm::OpType::open_session) sessions_.push_back(ClientSession{resp->id, c.secret, 1});
    if (c.op.type == sm::OpType::create || c.op.type == sm::OpType::set) versions_[c.op.path] = resp->stat.version;
  }

  // A ReadIndex read of `path` (thesis §6.4) must be linearizable: it returns the key's state at
  // some point of the committed log at or after every write acknowledged before the read began
  // (`floor`; the read index covers them) and no later than what has been applied anywhere.
  void on_read(const std::string& path, Index floor, const service::ReadResult& r) {
    ++out_.reads_ok;
    if (r.index < floor)
      return fail("ReadIndex read of " + path + " used read index " + std::to_string(r.index.value) +
                  " below the write acknowledged at " + std::to_string(floor.value) + " before it began");
    const auto& states = key_states_[path];
    auto it = std::upper_bound(states.begin(), states.end(), floor,
                               [](Index x, const std::pair<Index, std::string>& p) { return x < p.first; });
    --it;  // states begin at index 0
    for (; it != states.end() && it->first <= ref_at_; ++it)
      if (it->second == r.response) {
        if (auto resp = sm::decode_response(r.response); resp && resp->err == sm::Errc::ok) versions_[path] = resp->stat.version;
        return;
      }
    std::string seen;
    auto from = std::upper_bound(states.begin(), states.end(), floor,
                                 [](Index x, const std::pair<Index, std::string>& p) { return x < p.first; });
    for (--from; from != states.end(); ++from) seen += " " + std::to_string(from->first.value) + ":" + describe(from->second);
    fail("ReadIndex read of " + path + " (read index " + std::to_string(r.index.value) + ") returned " + describe(r.response) +
         ", not the state at any index in [" + std::to_string(floor.value) + ", " + std::to_string(ref_at_.value) +
         "] (states from index:" + seen + ")");
  }

  struct AppliedEntry {
    Term term;
    raft::EntryType type = raft::EntryType::normal;
    std::string data;
  };
  // The state machine command an entry carries ("" if none): payload kind 1 (service/replica.h).
  static std::string command_of(const AppliedEntry& e) {
    if (e.type != raft::EntryType::normal || e.data.size() < 9 || e.data[0] != 1) return "";
    return e.data.substr(9);
  }

  void on_apply(NodeId id, const Entry& e) {
    if (auto err = checker_.on_apply(id, e)) return fail(*err);
    auto r0 = RealClock::now();
    AppliedEntry mine{e.term, e.type, e.data};
    if (applied_.emplace(e.index, mine).second) advance_reference();
    struct Charge {
      double& to;
      RealClock::time_point t0;
      ~Charge() { to += std::chrono::duration<double>(RealClock::now() - t0).count(); }
    } charge{out_.reference_seconds, r0};
    if (auto a = acked_.find(e.index); a != acked_.end() && (a->second.first != e.term || a->second.second != command_of(mine)))
      return fail("node " + std::to_string(id.value) + " applied (" + std::to_string(e.index.value) + ", " +
                  std::to_string(e.term.value) + ") where an acknowledged proposal of term " +
                  std::to_string(a->second.first.value) + " was");
    check_digest(id, e.index, "after applying it");
  }

  // The reference: the committed log (the entries applied, each index once) applied in order to
  // one more state machine, as the replicas apply it. Every replica must have its digest at equal
  // applied index, every acknowledgement its response, every read one of its states.
  void advance_reference() {
    for (auto it = applied_.find(ref_at_.next()); it != applied_.end() && it->first == ref_at_.next(); ++it) {
      Index i = it->first;
      const AppliedEntry& e = it->second;
      std::string cmd = command_of(e);
      if (e.type == raft::EntryType::normal && e.data.size() >= 9 && e.data[0] == 1) {
        std::uint64_t t = le::get_u64(e.data.data() + 1);
        auto stamp = static_cast<std::int64_t>(std::min<std::uint64_t>(t, std::numeric_limits<std::int64_t>::max()));
        sm::ApplyResult r = ref_.apply(i.value, stamp, cmd);
        ref_response_[i] = sm::encode_response(r.response);
        for (const auto& ev : r.events) out_.sessions_expired += ev.type == sm::EventType::session_expired;
        if (!r.events.empty())
          for (int k = 0; k < kKeys; ++k) {
            std::string path = key_path(k);
            std::string st = sm::encode_response(sm::run_query(ref_, get_query(path)));
            auto& v = key_states_[path];
            if (v.back().second != st) v.emplace_back(i, std::move(st));
          }
      }
      if (i.value % kDigestEvery == 0) ref_digest_[i] = ref_.digest();
      ref_at_ = i;
    }
  }

  // Digests are compared at every kDigestEvery-th index (a digest encodes the whole state: every
  // index would cost more than the rest of the run).
  void check_digest(NodeId id, Index index, const char* when) {
    if (failed() || index.value % kDigestEvery != 0) return;
    auto d = ref_digest_.find(index);
    if (d == ref_digest_.end() && index > ref_at_)
      return fail("node " + std::to_string(id.value) + " is at index " + std::to_string(index.value) + " " + when +
                  ", beyond the committed log applied so far (" + std::to_string(ref_at_.value) + ")");
    if (d == ref_digest_.end()) return;
    std::uint64_t mine = node(id).r->applier().digest();
    if (mine != d->second)
      return fail("node " + std::to_string(id.value) + " has state machine digest " + std::to_string(mine) + " at index " +
                  std::to_string(index.value) + " " + when + ", the committed log gives " + std::to_string(d->second));
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
    } else if (roll < 26) {
      if (up.empty()) return;
      SimNode* n = chance(40) && leader() ? leader() : up[rand(up.size())];
      crash(*n, opt_.power_cuts && chance(35));
      restart_later(*n, 5 + rand(300));
    } else if (roll < 36) {
      partition();
    } else if (roll < 44) {
      blocked_.clear();
      note("heal partitions");
    } else if (roll < 50) {
      loss_pct_ = rand(25);
      dup_pct_ = rand(12);
      malformed_pct_ = chance(50) ? 1 + rand(8) : 0;
    } else if (roll < 66) {
      membership_change();
    } else if (roll < 86) {
      if (up.empty()) return;
      // The snapshot-file point is the rarest moment (a received snapshot between its file and
      // the WAL reset record): it gets the most weight. It and the leader-send point are armed on
      // a node that is not the leader: a follower receives snapshots, and a node that is not
      // leader yet sends its first leader message right after winning an election (the Ready
      // that changes the term: hole 2's moment).
      std::uint64_t p = rand(100);
      auto point = p < 35   ? SimNode::CrashPoint::after_snapshot_file
                   : p < 60 ? SimNode::CrashPoint::during_write
                   : p < 80 ? SimNode::CrashPoint::after_leader_send
                            : static_cast<SimNode::CrashPoint>(2 + rand(2));
      std::vector<SimNode*> others;
      for (auto* n : up) {
        const auto& c = n->r->core();
        bool voter = std::find(c.conf_state().voters.begin(), c.conf_state().voters.end(), n->id) != c.conf_state().voters.end();
        if (c.role() == raft::Role::leader) continue;
        // Only a voter can become leader and send a leader message.
        if (point == SimNode::CrashPoint::after_leader_send && !voter) continue;
        others.push_back(n);
      }
      bool not_leader = point == SimNode::CrashPoint::after_snapshot_file || point == SimNode::CrashPoint::after_leader_send;
      auto& from = not_leader && !others.empty() ? others : up;
      from[rand(from.size())]->crash_point = point;
    } else if (roll < 91) {
      if (up.empty()) return;
      arm_disk_fault(*up[rand(up.size())]);
    } else if (roll < 96) {
      if (auto* l = leader()) {
        NodeId to = all_ids_[rand(all_ids_.size())];
        if (to != l->id) (void)l->r->transfer_leadership(to);
      }
    }
  }

  // The node's disk fails one of its next operations of one kind: a sync with EIO, or a write or
  // preallocation with ENOSPC. The node must fail-stop if the error reaches a write it depends
  // on (on_fatal), and may carry on if it is one it can retry (a snapshot of its own).
  void arm_disk_fault(SimNode& n) {
    using Op = testing::SimFs::Op;
    static constexpr std::pair<Op, int> kinds[] = {
        {Op::fdatasync, EIO}, {Op::fsync, EIO}, {Op::fsync_dir, EIO}, {Op::pwrite, ENOSPC}, {Op::fallocate, ENOSPC}};
    auto [op, err] = kinds[rand(std::size(kinds))];
    std::uint64_t nth = 1 + rand(4);
    note("node " + std::to_string(n.id.value) + ": operation " + std::to_string(nth) + " of kind " + testing::SimFs::op_name(op) +
         " will fail with " + (err == EIO ? "EIO" : "ENOSPC"));
    n.fs.set_fault([&n, op, err, nth, count = std::uint64_t{0}](const testing::SimFs::Record& r) mutable -> int {
      if (r.op != op || ++count != nth) return 0;
      n.disk_fault_fired = true;
      return err;
    });
  }

  // A copy of `m` made malformed the way a buggy or hostile peer could send it: a gap or a term
  // regression in an append's entries, an entry of a term above the message's, an undecodable
  // membership change, a vote request claiming a log of a later term, a snapshot of an invalid
  // membership, node id 0. Only copies that raft/message_check.h calls malformed are returned
  // (a corrupted message that is still well formed would be a lie no check can see).
  std::optional<raft::Message> malformed(const raft::Message& m) {
    raft::Message b = m;
    std::uint64_t how = rand(6);
    std::visit(
        [&](auto& body) {
          using T = std::decay_t<decltype(body)>;
          if constexpr (std::is_same_v<T, raft::AppendRequest>) {
            auto& es = body.entries;
            if (es.empty()) {
              body.prev_term = Term{b.term.value + 1};
            } else if (how % 4 == 0) {
              es[rand(es.size())].index = Index{es.front().index.value + es.size() + rand(3)};
            } else if (how % 4 == 1) {
              es[rand(es.size())].term = Term{b.term.value + 1 + rand(2)};
            } else if (how % 4 == 2 && es.size() >= 2) {
              es.front().term = Term{es.back().term.value + 1};
            } else {
              auto& e = es[rand(es.size())];
              e.type = raft::EntryType::conf_change;
              e.data = std::string("\x7f" "not a membership change", 24);
            }
          } else if constexpr (std::is_same_v<T, raft::VoteRequest>) {
            body.last_term = Term{b.term.value + 1};
          } else if constexpr (std::is_same_v<T, raft::InstallSnapshotRequest>) {
            if (how % 2 == 0) body.meta.conf.voters.clear();
            else body.meta.term = Term{b.term.value + 1};
          } else {
            b.to = b.from;
          }
        },
        b.body);
    if (how == 5) b.from = NodeId{0};
    if (!raft::check_message(b)) return std::nullopt;
    return b;
  }

  // The replica must refuse it (Replica::step returns the core's StepError) without asserting
  // and without changing anything.
  void deliver_malformed(NodeId to, const raft::Message& bad) {
    auto& n = node(to);
    if (!n.up) return;
    auto state = [&n] {
      const auto& c = n.r->core();
      return std::make_tuple(c.term(), c.vote(), c.commit_index(), c.last_index(), c.role(), c.leader(), c.conf_state(),
                             n.r->applied(), n.r->persisting());
    };
    auto before = state();
    auto r = n.r->step(bad);
    if (r) return fail("node " + std::to_string(to.value) + " accepted a malformed message (" + *raft::check_message(bad) + ")");
    if (state() != before)
      return fail("node " + std::to_string(to.value) + " changed its state on a malformed message it rejected (" + r.error().reason + ")");
    ++out_.malformed_rejected;
  }

  void partition() {
    blocked_.clear();
    std::set<NodeId> side;
    if (SimNode* l = leader(); l != nullptr && l->r->core().conf_state().voters.size() >= 3 && chance(40)) {
      // The leader of 3 or more voters cut off in a minority (alone, or with one other node when that is still a
      // minority) keeps taking proposals it cannot commit: after the heal it is a follower whose
      // log holds a stale suffix, which a snapshot from the new leader must replace (hole 4).
      side.insert(l->id);
      if (all_ids_.size() >= 5 && chance(50)) side.insert(all_ids_[rand(all_ids_.size())]);
    } else {
      for (auto id : all_ids_)
        if (chance(50)) side.insert(id);
    }
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
      // A leader may remove itself (thesis §4.2.2) unless --no-remove-leader.
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
    malformed_pct_ = 0;
    note("heal: network whole, every node restarted");
    for (auto& n : nodes_) {
      n->crash_point = SimNode::CrashPoint::none;
      n->fs.set_fault(nullptr);
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
    if (l == nullptr || live_probe_at_) return;
    live_probe_at_ = l->id;
    sm::Command c;
    c.op.type = sm::OpType::set;
    c.op.path = key_path(0);
    c.op.data = "probe" + std::to_string(next_value_++);
    std::string cmd = sm::encode(c);
    l->r->propose(cmd, [this, c, cmd, floor = max_acked_](Result<Committed, NodeError> r) {
      live_probe_at_.reset();
      if (!r) return note(std::string("liveness probe: ") + service::node_errc_name(r.error().code) + " " + r.error().message);
      on_ack(c, cmd, floor, *r);
      live_ok_ = true;
    });
  }

  // ---- invariants ----
  // What the invariants read: each node's core (term, vote, role, commit, log bounds) and its
  // durable log. An event that changes none of it (most ticks and heartbeats) cannot create a
  // violation the previous check did not see, so the checks are skipped (they compare whole logs
  // pairwise: most of a run's time otherwise).
  std::vector<std::uint64_t> observed_state() const {
    std::vector<std::uint64_t> v;
    for (const auto& n : nodes_) {
      v.push_back(n->incarnation);
      v.push_back(n->snap_index.value);
      v.push_back(n->log.size());
      auto [li, lt] = n->last();
      v.push_back(li.value);
      v.push_back(lt.value);
      if (!n->up) continue;
      const auto& c = n->r->core();
      v.push_back(c.term().value);
      v.push_back(c.vote().value);
      v.push_back(static_cast<std::uint64_t>(c.role()));
      v.push_back(c.commit_index().value);
      v.push_back(c.first_index().value);
      v.push_back(c.last_index().value);
      v.push_back(c.term_at(c.last_index()).value_or(Term{}).value);
      v.push_back(c.conf_state().voters.size());
      v.push_back(c.conf_history().size());
    }
    return v;
  }

  void check() {
    auto seen = observed_state();
    if (seen == last_checked_) return;
    last_checked_ = std::move(seen);
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
  bool healed_ = false, live_ok_ = false;
  std::optional<NodeId> live_probe_at_;  // the node the liveness probe waits on
  // Client operations waiting for an answer, by the node they went to: a crashed node never
  // answers (Replica::crash drops its callbacks), so its operations are forgotten with it.
  std::map<std::uint64_t, NodeId> client_ops_;
  std::uint64_t next_op_id_ = 0;
  std::uint64_t next_value_ = 0;
  std::vector<ClientSession> sessions_;          // opened (they may have expired or closed since)
  std::map<std::string, std::int64_t> versions_;  // the last version a client saw per key
  Index max_acked_;                               // the highest index acknowledged so far
  std::map<Index, AppliedEntry> applied_;         // the first entry applied at each index
  std::map<Index, std::pair<Term, std::string>> acked_;  // index -> (term, command)
  sm::StateMachine ref_;
  Index ref_at_;
  std::map<Index, std::uint64_t> ref_digest_{{Index{0}, sm::StateMachine().digest()}};
  std::map<Index, std::string> ref_response_;
  std::map<std::string, std::vector<std::pair<Index, std::string>>> key_states_ = initial_key_states();
  std::uint64_t malformed_pct_ = 0;
  SimNode* fatal_node_ = nullptr;
  std::vector<std::uint64_t> last_checked_;
  NodeSimOutcome out_;

  static std::map<std::string, std::vector<std::pair<Index, std::string>>> initial_key_states() {
    std::map<std::string, std::vector<std::pair<Index, std::string>>> m;
    sm::StateMachine empty;
    for (int k = 0; k < kKeys; ++k) m[key_path(k)].emplace_back(Index{0}, sm::encode_response(sm::run_query(empty, get_query(key_path(k)))));
    return m;
  }
};

// ---- SimNode ------------------------------------------------------------------------------------

void SimNode::send(const raft::Message& m) {
  sim.net_send(id, m);
  bool leader_msg = raft::sent_by_leader(m.body) && !std::holds_alternative<raft::InstallSnapshotRequest>(m.body);
  bool reply = std::holds_alternative<raft::AppendReply>(m.body) || std::holds_alternative<raft::VoteReply>(m.body);
  if ((crash_point == CrashPoint::after_leader_send && leader_msg) || (crash_point == CrashPoint::after_reply && reply)) {
    crash_point = CrashPoint::none;
    const auto* a = std::get_if<raft::AppendRequest>(&m.body);
    sim.trace("node " + std::to_string(id.value) + " crash point after sending " + (leader_msg ? "a leader message" : "a reply") +
              (a ? " with " + std::to_string(a->entries.size()) + " entries" : "") + " to " + std::to_string(m.to.value) +
              " (term " + std::to_string(m.term.value) + ")");
    sim.crash_now(*this);
  }
}

std::chrono::steady_clock::time_point SimNode::now() {
  return std::chrono::steady_clock::time_point(std::chrono::milliseconds(sim.now_ms()));
}

std::uint64_t SimNode::wall_ms() { return 1'800'000'000'000ULL + sim.now_ms(); }

// Posted work runs in order, now or a millisecond later (a busy loop): what arrives meanwhile
// (client proposals, messages) joins the next Ready, as in ternd.
void SimNode::post(std::function<void()> fn) {
  last_post_ms = std::max(last_post_ms, sim.now_ms() + sim.rand(2));
  sim.at(last_post_ms, [this, inc = incarnation, fn = std::move(fn)] {
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

bool SimNode::power_cut_start() {
  if (crash_point != CrashPoint::during_write || !sim.power_cuts()) return false;
  crash_point = CrashPoint::none;
  fs.set_fault([calls = std::uint64_t{0}, last = 1 + sim.rand(7)](const testing::SimFs::Record&) mutable {
    return ++calls > last ? EIO : 0;
  });
  return true;
}

void SimNode::power_cut_done(bool armed) {
  if (!armed) return;
  fs.set_fault(nullptr);
  // Half the time the power fails; otherwise the process alone dies inside the write (kill -9
  // between two calls): what it issued stays in the page cache for the restart to find.
  bool power = sim.rand(2) == 0;
  if (power) sim.crash_now(*this, /*power=*/true);
  else sim.crash_now_without_power_cut(*this);
}

// Two steps: the write becomes durable, then (later, unless the node crashes first) the replica
// hears about it.
void SimNode::write(storage::Wal& wal, storage::WriteBatch batch, service::WalDone done) {
  disk.push_back([this, &wal, batch = std::move(batch), done = std::move(done)]() mutable {
    bool cut = power_cut_start();
    auto t0 = RealClock::now();
    auto res = wal.write(batch);
    sim.count_wal(std::chrono::duration<double>(RealClock::now() - t0).count());
    if (res) shadow_write(batch);
    power_cut_done(cut);
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
  // A snapshot received from the leader is saved while the replica's Ready waits on it
  // (persisting); its own snapshots are not (almost never: one finishing during a WAL write).
  bool received = r && r->persisting();
  disk.push_back([this, received, work = std::move(work), done = std::move(done)]() mutable {
    bool cut = power_cut_start();
    auto t0 = RealClock::now();
    auto f = work();
    sim.count_snapshot(std::chrono::duration<double>(RealClock::now() - t0).count());
    power_cut_done(cut);
    if (f && f->meta.index > snap_index) {
      snap_index = f->meta.index;
      snap_term = f->meta.term;
    }
    if (crash_point == CrashPoint::after_snapshot_file && received) {
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
