#include "tests/storage/explorer.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>

#include "raft/storage/recovery.h"
#include "tests/common/sim_fs.h"

namespace tern::storage::explorer {

namespace {

using raft::Entry;
using raft::HardState;
using raft::Index;
using raft::NodeId;
using raft::Term;
using testing::SimFs;

constexpr const char* data_dir = "/n/data";
constexpr std::size_t segment_bytes = 16 << 10;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What the node has been told is durable.
struct Model {
  std::map<std::uint64_t, Entry> log;  // by index
  HardState hs;
  std::uint64_t snap = 0;  // newest acknowledged snapshot
  std::uint64_t snap_term = 0;
  std::uint64_t last() const { return log.empty() ? snap : std::max(snap, log.rbegin()->first); }
};

// The operation in flight: its WAL batches (submitted, not yet acknowledged, in order; the
// records of all of them applied in order, any prefix may survive) and the snapshot it may have
// made durable.
struct InFlight {
  std::vector<WriteBatch> batches;
  std::optional<std::uint64_t> snap;
  std::string what = "idle";
};

// Applies one record-level step of a batch to `cur`, calling `each` after every record.
template <typename F>
void apply_records(Model& cur, const WriteBatch& b, F&& each) {
  if (b.reset_to) {
    cur.log.clear();
    each(cur);
  }
  if (!b.entries.empty()) {
    std::uint64_t i0 = b.entries.front().index.value;
    if (!cur.log.empty() && i0 <= cur.log.rbegin()->first) {
      cur.log.erase(cur.log.lower_bound(i0), cur.log.end());
      each(cur);
    }
    for (const Entry& e : b.entries) {
      cur.log[e.index.value] = e;
      each(cur);
    }
  }
  if (b.hard_state) {
    cur.hs = *b.hard_state;
    each(cur);
  }
}

Model applied(Model m, const WriteBatch& b) {
  apply_records(m, b, [](const Model&) {});
  return m;
}

// The acknowledged state plus each prefix of the in-flight batches' records.
std::vector<Model> candidates(const Model& m, const InFlight& f) {
  std::vector<Model> out{m};
  Model cur = m;
  for (const WriteBatch& b : f.batches) apply_records(cur, b, [&](const Model& c) { out.push_back(c); });
  return out;
}

struct View {  // what a recovery produced, comparable
  std::uint64_t snap = 0, snap_term = 0;
  HardState hs;
  std::vector<Entry> entries;
  bool operator==(const View&) const = default;
};

View view_of(const RecoveredStorage& r) {
  View v;
  if (r.snapshot) {
    v.snap = r.snapshot->meta.index.value;
    v.snap_term = r.snapshot->meta.term.value;
  }
  v.hs = r.hard_state;
  v.entries = r.entries;
  return v;
}

std::string describe(const HardState& h) {
  return "term " + std::to_string(h.term.value) + " vote " + std::to_string(h.vote.value) + " commit " + std::to_string(h.commit.value);
}

std::string describe(const View& v) {
  std::string s = "snapshot " + std::to_string(v.snap) + " (term " + std::to_string(v.snap_term) + "), " + std::to_string(v.entries.size()) +
                  " entries";
  if (!v.entries.empty())
    s += " " + std::to_string(v.entries.front().index.value) + ".." + std::to_string(v.entries.back().index.value);
  return s + ", hard state " + describe(v.hs);
}

class Explorer {
 public:
  explicit Explorer(const Options& o)
      : o_(o), work_rng_(o.seed), cut_rng_(o.seed * 0x9e3779b97f4a7c15ULL + 1), start_(std::chrono::steady_clock::now()) {}

  Report run() {
    fs_->mkdirs_durable("/n");
    install_rule();
    fs_->set_observer([this](const SimFs::Record& r) { on_op(r); });
    sample_all_ = true;  // every point of the first open (IDENTITY, directories)
    if (!open_node("open")) return report_;
    sample_all_ = false;
    while (!done() && report_.steps < o_.max_steps) {
      ++report_.steps;
      step();
    }
    fs_->set_observer(nullptr);
    node_ = RecoveredStorage{};
    return report_;
  }

 private:
  bool done() const {
    return report_.states >= o_.max_states || report_.violations.size() >= o_.max_violations ||
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() > o_.max_seconds;
  }

  void violation(const std::string& what) {
    if (report_.violations.size() >= o_.max_violations) return;
    report_.violations.push_back("seed " + std::to_string(o_.seed) + " step " + std::to_string(report_.steps) + " op " +
                                 std::to_string(op_seq_) + " during " + flight_.what + ": " + what);
  }

  // ---- the lying disk, or a rule switched off in the code (one rule broken at a time) ----
  void install_rule() {
    fs_->set_fault([this](const SimFs::Record& r) {
      if (r.op != SimFs::Op::close && r.op != SimFs::Op::pread && r.op != SimFs::Op::size && r.op != SimFs::Op::list) {
        prev_op_ = cur_op_;  // the previous operation that changes something
        cur_op_ = r.op;
      }
      // One injected failure of a WAL file operation (then the node stops: fail-stop).
      if (fault_ != Fault::none && !fault_hit_) {
        bool wal = ends_with(r.path, ".wal");
        if (fault_ == Fault::eio_fdatasync && wal && r.op == SimFs::Op::fdatasync) return fault_hit_ = true, EIO;
        if (fault_ == Fault::enospc_pwrite && wal && r.op == SimFs::Op::pwrite) return fault_hit_ = true, ENOSPC;
        if (fault_ == Fault::enospc_fallocate && wal && r.op == SimFs::Op::fallocate) return fault_hit_ = true, ENOSPC;
        if (fault_ == Fault::eio_fsync_wal_dir && r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/wal")) return fault_hit_ = true, EIO;
        if (fault_ == Fault::eio_fsync_snap_dir && r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/snap")) return fault_hit_ = true, EIO;
      }
      return 0;
    });
    const std::string& b = o_.break_rule;
    if (b.empty()) return;
    std::function<bool(const SimFs::Record&)> lie;
    if (b == "wal-batch-fdatasync") {
      auto seen = std::make_shared<std::set<std::string>>();
      lie = [seen](const SimFs::Record& r) {
        if (r.op != SimFs::Op::fdatasync || !ends_with(r.path, ".wal")) return false;
        return !seen->insert(r.path).second;  // every sync but a new segment's first
      };
    } else if (b == "segment-header-sync") {
      auto seen = std::make_shared<std::set<std::string>>();
      lie = [seen](const SimFs::Record& r) {
        return r.op == SimFs::Op::fdatasync && ends_with(r.path, ".wal") && seen->insert(r.path).second;
      };
    } else if (b == "segment-name-durable") {
      lie = [this](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/wal") && prev_op_ != SimFs::Op::unlink; };
    } else if (b == "compaction-unlink-order") {
      lie = [this](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/wal") && prev_op_ == SimFs::Op::unlink; };
    } else if (b == "recovery-syncs-what-it-read") {
      lie = [this](const SimFs::Record& r) { return recovering_ && r.op == SimFs::Op::fdatasync; };
    } else if (b == "recovery-syncs-names") {
      lie = [this](const SimFs::Record& r) {
        // Not the fsync of wal/ that makes a first segment's name durable (R4).
        return recovering_ && r.op == SimFs::Op::fsync_dir &&
               ((ends_with(r.path, "/wal") && had_segments_) || ends_with(r.path, "/snap"));
      };
    } else if (b == "directories-durable-in-parent") {
      lie = [](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir && r.path == "/n"; };
    } else if (b == "identity-file-sync") {
      lie = [](const SimFs::Record& r) { return r.op == SimFs::Op::fsync && ends_with(r.path, "/IDENTITY.tmp"); };
    } else if (b == "snapshot-file-sync") {
      lie = [](const SimFs::Record& r) { return r.op == SimFs::Op::fsync && ends_with(r.path, "/snap.tmp"); };
    } else if (b == "snapshot-rename-durable") {
      lie = [](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/snap"); };
    } else if (b == "install-snapshot-before-reset") {
      return;  // a workload ordering, below
    } else if (b == "seal-sync") {
      broken_.seal_sync = true;  // rules a lying disk cannot break: switched off in the code
    } else if (b == "new-segment-hard-state") {
      broken_.new_segment_hard_state = true;
    } else if (b == "recovery-rewrites-hard-state") {
      broken_.recovery_rewrites_hard_state = true;
    } else if (b == "hard-state-in-active-segment") {
      broken_.new_segment_hard_state = true;
      broken_.recovery_rewrites_hard_state = true;
    } else if (b == "recovery-rewrites-reset") {
      broken_.recovery_rewrites_reset = true;
    } else {
      violation("unknown rule " + b);
      return;
    }
    if (lie) fs_->set_lie(lie);
  }

  // ---- cutting power ----
  void on_op(const SimFs::Record& r) {
    op_seq_ = r.seq;
    if (in_check_) return;
    switch (r.op) {
      case SimFs::Op::pread:
      case SimFs::Op::size:
      case SimFs::Op::list:
      case SimFs::Op::mark:
        return;
      default:
        break;
    }
    if (capturing_) captured_.push_back({fs_->clone(), r});  // for a cut that the workload continues from
    if (done()) return;
    if (!sample_all_ && std::uniform_real_distribution<double>(0, 1)(cut_rng_) >= o_.sample) return;
    ++report_.points;
    auto base = fs_->clone();
    for (std::size_t k = 0; k < o_.cuts_per_point && !done(); ++k) {
      auto s = base->clone();
      if (k == 0) s->crash_lose_all();
      else s->crash(cut_rng_);
      check(*s, "cut " + std::to_string(k));
    }
  }

  // Verify's recovery (read-only) and the node's on one state; they must agree exactly, on the
  // verdict, on what is recovered and on the repairs announced. Returns the node's.
  std::optional<RecoveredStorage> recover_both(SimFs& s, const std::string& label) {
    auto ro = s.clone();
    RecoveryOptions vo;
    vo.io = ro.get();
    vo.read_only = true;
    vo.wal.broken = broken_;  // a rule switched off is off for both (the rule is under test, not their agreement)
    auto verified = recover_storage(data_dir, vo);
    auto node = recover_storage(data_dir, node_options(s));
    ++report_.compared;
    if (!node) {
      if (verified) violation(label + ": verify says the node starts but it refuses: " + node.error().message);
      else ++report_.agreed;
      violation(label + ": the node refuses to start: " + node.error().message);
      return std::nullopt;
    }
    if (!verified) {
      violation(label + ": verify says the node refuses (" + verified.error().message + ") but it starts");
      return std::nullopt;
    }
    if (!(view_of(*verified) == view_of(*node))) {
      violation(label + ": verify and the node disagree on what is recovered: verify " + describe(view_of(*verified)) + "; node " +
                describe(view_of(*node)));
      return std::nullopt;
    }
    // First use: verify announces the identity the node writes; otherwise one note per repair.
    std::size_t announced = verified->repairs.size() - (verified->identity ? 0 : 1);
    if (announced != node->repairs.size()) {
      violation(label + ": verify announces " + std::to_string(announced) + " repairs, the node makes " +
                std::to_string(node->repairs.size()) + (node->repairs.empty() ? "" : " (" + node->repairs.front() + ")"));
      return std::nullopt;
    }
    ++report_.agreed;
    if (!verified->damage.empty()) {
      violation(label + ": damaged files after a power cut: " + verified->damage.front());
      return std::nullopt;
    }
    return std::move(*node);
  }

  // Checks one crash state: verify and the node agree, the node starts with the acknowledged
  // state plus a prefix of the operation in flight, and (`go_on`) it can append and survive
  // compaction down to its active segment. Returns the node's recovery.
  std::optional<RecoveredStorage> check(SimFs& s, const std::string& label, bool go_on = true) {
    in_check_ = true;
    ++report_.states;
    auto node = recover_both(s, label);
    if (node) {
      View v = view_of(*node);
      expect_acknowledged(v, label);
      if (go_on) {
        // The node can go on: its next entry goes right after what it recovered.
        std::uint64_t next = (v.entries.empty() ? v.snap : v.entries.back().index.value) + 1;
        std::uint64_t term = std::max<std::uint64_t>(1, v.hs.term.value);
        Entry e{Term{term}, Index{next}, raft::EntryType::normal, "next"};
        if (auto w = node->wal->write(WriteBatch{{}, {e}, {}}); !w)
          violation(label + ": the node starts but cannot append entry " + std::to_string(next) + ": " + w.error().message);
        else if (o_.compact_after_cut)
          compact_and_cut_again(s, *node, v, next, term, label);
      }
    }
    in_check_ = false;
    return node;
  }

  // R7: the newest hard state must survive when compaction removes every segment but the active
  // one and no new hard state is written. Half the time the node compacts right away (the active
  // segment is the one recovery left: an empty one it re-initialized must have been given the
  // hard state); else the log first rolls into a new segment (entries without a hard state: the
  // new segment must start with it). The node snapshots its last entry (its applied index may run
  // ahead of its durable commit index: service/replica.cc defers commit-only hard states),
  // compacts up to it, and the power fails again.
  void compact_and_cut_again(SimFs& s, RecoveredStorage& node, const View& v, std::uint64_t next, std::uint64_t term,
                             const std::string& label) {
    bool roll = cut_rng_() % 2;
    std::uint64_t last = next;
    if (roll) {
      std::vector<Entry> es;
      for (std::uint64_t i = next + 1, bytes = 0; bytes <= segment_bytes; ++i, bytes += 6000)
        es.push_back(Entry{Term{term}, Index{i}, raft::EntryType::normal, value(i, 6000)});
      if (auto w = node.wal->write(WriteBatch{{}, es, {}}); !w) {
        violation(label + ": the node cannot append a segment's worth after the cut: " + w.error().message);
        return;
      }
      last = es.back().index.value;
    }
    raft::SnapshotMeta meta;
    meta.index = Index{last};
    meta.term = Term{term};
    meta.conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
    if (auto f = node.snapshots->save(meta, value(last, 100)); !f) {
      violation(label + ": the node cannot take a snapshot after the cut: " + f.error().message);
      return;
    }
    if (auto c = node.wal->compact(meta.index); !c) {
      violation(label + ": compaction after the cut failed: " + c.error().message);
      return;
    }
    node = RecoveredStorage{};  // the process is gone
    s.crash_lose_all();
    ++report_.compactions_after_cut;
    std::string again_label = label + ", then " + (roll ? "a roll, " : "") + "a snapshot at " + std::to_string(last) +
                              ", compaction and a cut";
    auto again = recover_both(s, again_label);
    if (!again) return;
    View a = view_of(*again);
    if (a.hs != v.hs)
      violation(again_label + ": the hard state was lost with compaction (the node could vote twice): recovered " + describe(a.hs) +
                ", had " + describe(v.hs));
    else if (a.snap != last || !a.entries.empty())
      violation(again_label + ": recovered snapshot " + std::to_string(a.snap) + " and " + std::to_string(a.entries.size()) + " entries");
  }

  void expect_acknowledged(const View& v, const std::string& label) {
    if (v.snap < m_.snap) {
      violation(label + ": the acknowledged snapshot at " + std::to_string(m_.snap) + " is gone (recovered " + std::to_string(v.snap) + ")");
      return;
    }
    if (v.snap > m_.snap && (!flight_.snap || *flight_.snap != v.snap) && !old_snaps_.count(v.snap)) {
      violation(label + ": a snapshot at " + std::to_string(v.snap) + " that was never written");
      return;
    }
    for (const Model& c : candidates(m_, flight_)) {
      // Recovery rule 6 writes a lost reset again and raises a hard state older than the snapshot
      // to the snapshot's term (no vote, commit at the snapshot), dropping the WAL's entries.
      bool raised = v.snap_term > c.hs.term.value && v.hs == HardState{Term{v.snap_term}, NodeId{}, Index{v.snap}};
      if (raised && v.entries.empty()) return;
      if (v.hs != c.hs) continue;
      std::vector<Entry> want;
      for (auto it = c.log.upper_bound(v.snap); it != c.log.end(); ++it) want.push_back(it->second);
      if (v.snap > c.last()) want.clear();
      if (want == v.entries) return;
    }
    std::string got = std::to_string(v.entries.size()) + " entries";
    if (!v.entries.empty())
      got += " " + std::to_string(v.entries.front().index.value) + ".." + std::to_string(v.entries.back().index.value);
    violation(label + ": not the acknowledged state plus a prefix of the operation in flight: recovered snapshot " +
              std::to_string(v.snap) + ", " + got + ", hard state " + describe(v.hs) + "; acknowledged last index " +
              std::to_string(m_.last()) + ", hard state " + describe(m_.hs));
  }

  RecoveryOptions node_options(SimFs& s) {
    RecoveryOptions ro;
    ro.io = &s;
    ro.cluster_id = 7;
    ro.node_id = 1;
    ro.wal.segment_bytes = segment_bytes;
    ro.wal.salt_seed = o_.seed + 1;
    ro.wal.broken = broken_;
    return ro;
  }

  // ---- the workload ----
  bool open_node(const char* why, std::vector<WriteBatch> unsynced = {}, std::optional<std::uint64_t> snap = std::nullopt) {
    flight_ = InFlight{};
    flight_.what = why;
    flight_.batches = std::move(unsynced);  // failed batches that recovery may read back
    flight_.snap = snap;                    // a snapshot whose sync failed: it may be there
    node_ = RecoveredStorage{};
    had_segments_ = !fs_->list(std::string(data_dir) + "/wal").empty();
    recovering_ = true;
    auto r = recover_storage(data_dir, node_options(*fs_));
    recovering_ = false;
    if (!r) {
      violation(std::string("the node cannot ") + why + ": " + r.error().message);
      return false;
    }
    node_ = std::move(*r);
    flight_ = InFlight{};  // recovered: what it read back is what the node now holds (adopt)
    return true;
  }

  void adopt(const RecoveredStorage& r) {  // after a power cut or a failure: what the node now holds
    View v = view_of(r);
    m_.log.clear();
    for (auto& e : v.entries) m_.log[e.index.value] = e;
    m_.hs = v.hs;
    m_.snap = v.snap;
    m_.snap_term = v.snap_term;
    old_snaps_.clear();
    committed_ = std::min(std::max({committed_, m_.hs.commit.value, m_.snap}), m_.last());
  }

  std::string value(std::uint64_t index, std::size_t bytes) {
    std::string v = "v" + std::to_string(index) + "/" + std::to_string(o_.seed) + ":";
    while (v.size() < bytes) v.push_back(static_cast<char>('a' + (index + v.size()) % 26));
    return v;
  }

  std::vector<Entry> new_entries(std::uint64_t from, std::uint64_t term) {
    static constexpr std::size_t sizes[] = {8, 60, 200, 700, 1500, 3000, 5000, 9000};
    std::size_t n = 1 + work_rng_() % 12;
    std::vector<Entry> es;
    for (std::size_t k = 0; k < n; ++k)
      es.push_back(Entry{Term{term}, Index{from + k}, raft::EntryType::normal, value(from + k, sizes[work_rng_() % 8])});
    return es;
  }

  static std::uint64_t term_of(const Model& p) { return std::max<std::uint64_t>(1, p.hs.term.value); }

  // The batches the node writes, built on `p` (the acknowledged state, or the state a queue of
  // batches will leave). A hard state carries the node's commit index (committed_), which may
  // have run ahead of the durable one (deferred, like service/replica.cc does).
  WriteBatch gen_append(const Model& p) {
    WriteBatch b{{}, new_entries(p.last() + 1, term_of(p)), {}};
    if (work_rng_() % 2) {
      HardState h = p.hs;
      h.term = Term{term_of(p)};
      committed_ = std::max(committed_, p.last() + (work_rng_() % 3 == 0 ? b.entries.size() : 0));
      h.commit = Index{committed_};
      b.hard_state = h;
    }
    return b;
  }

  WriteBatch gen_hard_state(const Model& p) {  // a new term, a vote
    return WriteBatch{{}, {}, HardState{Term{p.hs.term.value + 1}, NodeId{1 + work_rng_() % 3}, Index{committed_}}};
  }

  std::optional<WriteBatch> gen_truncate(const Model& p) {  // a conflict: replace an uncommitted suffix
    std::uint64_t lo = std::max(committed_, p.snap) + 1;
    if (p.log.empty() || lo > p.last()) return std::nullopt;
    std::uint64_t i = lo + work_rng_() % (p.last() - lo + 1);
    if (!p.log.count(i)) return std::nullopt;
    std::uint64_t term = p.hs.term.value + 1;
    return WriteBatch{{}, new_entries(i, term), HardState{Term{term}, NodeId{0}, Index{committed_}}};
  }

  void acknowledged(const WriteBatch& b, const char* what) {
    m_ = applied(m_, b);
    ++report_.acks;
    fs_->mark(std::string("ack ") + what + ": last index " + std::to_string(m_.last()));  // in the trace
  }

  bool write(WriteBatch b, const char* what) {
    flight_ = InFlight{};
    flight_.batches = {b};
    flight_.what = what;
    auto r = node_.wal->write(b);
    flight_ = InFlight{};
    if (!r) {
      violation(std::string(what) + " failed: " + r.error().message);
      return false;
    }
    acknowledged(b, what);
    return true;
  }

  // Group commit (Wal::submit, the node's path for large batches and resets): groups of batches
  // queued together, written by the disk thread and covered by one fdatasync; each is
  // acknowledged when its callback reports it durable. The first group is one batch; the last
  // callback of each group holds the disk thread until the next group is queued, so the groups
  // (and the file operations) are the same on every run of a seed. Sometimes the last group's
  // fdatasync fails: the node stops and restarts without a power cut.
  void group_commit() {
    Model p = m_;
    std::vector<std::vector<WriteBatch>> groups(2 + work_rng_() % 2);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      std::size_t n = g == 0 ? 1 : 2 + work_rng_() % 5;
      for (std::size_t k = 0; k < n; ++k) {
        std::uint64_t kind = work_rng_() % 10;
        std::optional<WriteBatch> b;
        if (kind < 2) b = gen_hard_state(p);
        else if (kind < 4) b = gen_truncate(p);
        if (!b) b = gen_append(p);
        p = applied(p, *b);
        groups[g].push_back(std::move(*b));
      }
    }
    bool eio = work_rng_() % 5 == 0;
    struct Gate {
      std::mutex mu;
      std::condition_variable cv;
      std::size_t parked = 0, released = 0, finished = 0, failed = 0;
    };
    auto gate = std::make_shared<Gate>();
    constexpr auto patience = std::chrono::seconds(30);  // a hang is a failure, not a stuck CI job
    std::size_t total = 0;
    flight_ = InFlight{};
    flight_.what = "group commit";
    for (std::size_t g = 0; g < groups.size(); ++g) {
      if (g > 0) {
        std::unique_lock lk(gate->mu);
        if (!gate->cv.wait_for(lk, patience, [&] { return gate->parked >= g || gate->finished + gate->failed >= total; }) ||
            gate->parked < g) {
          violation("group commit: the disk thread did not finish group " + std::to_string(g - 1));
          break;
        }
        if (eio && g + 1 == groups.size()) {
          fault_ = Fault::eio_fdatasync;
          fault_hit_ = false;
        }
      }
      for (std::size_t k = 0; k < groups[g].size(); ++k) {
        bool park = k + 1 == groups[g].size() && g + 1 < groups.size();
        flight_.batches.push_back(groups[g][k]);
        ++total;
        auto r = node_.wal->submit(groups[g][k], [this, gate, g, park, patience](Result<Index, StorageError> res) {
          // On the disk thread, in submission order, after the group's fdatasync.
          std::unique_lock lk(gate->mu);
          if (res) {
            acknowledged(flight_.batches.front(), "group commit");
            ++report_.group_acks;
            flight_.batches.erase(flight_.batches.begin());
            ++gate->finished;
          } else {
            ++gate->failed;  // stays in flight: the restart may read it back
          }
          gate->cv.notify_all();
          if (park) {
            gate->parked = g + 1;
            gate->cv.notify_all();
            gate->cv.wait_for(lk, patience, [&] { return gate->released > g; });
          }
        });
        if (!r) {
          violation("group commit: submit failed: " + r.error().message);
          --total;
          flight_.batches.pop_back();
        }
      }
      if (g > 0) {
        std::lock_guard lk(gate->mu);
        gate->released = g;
        gate->cv.notify_all();
      }
    }
    {
      std::unique_lock lk(gate->mu);
      gate->released = groups.size();
      gate->cv.notify_all();
      if (!gate->cv.wait_for(lk, patience, [&] { return gate->finished + gate->failed >= total; }))
        violation("group commit: callbacks missing");
    }
    fault_ = Fault::none;
    if (gate->failed == 0) {
      if (eio) violation("group commit: batches were acknowledged although their fdatasync failed");
      flight_ = InFlight{};
      return;
    }
    if (!eio) violation("group commit failed: " + std::to_string(gate->failed) + " batches");
    // Fail-stop: the restart may read the failed batches back (any prefix) and then stands by them.
    if (!open_node("restart after a failed group commit", flight_.batches)) return;
    adopt(node_);
  }

  // Saves a snapshot (flight_.snap set); a quarter of the time the fsync of snap/ fails: the node
  // stops and restarts without a power cut (the file may be there, only in the page cache), and
  // goes on from what it recovered. Returns whether the snapshot was acknowledged.
  bool save_snapshot(const raft::SnapshotMeta& meta, const std::string& data, bool compress) {
    fault_ = work_rng_() % 4 == 0 ? Fault::eio_fsync_snap_dir : Fault::none;
    fault_hit_ = false;
    auto f = node_.snapshots->save(meta, data, compress);
    bool hit = fault_hit_;
    fault_ = Fault::none;
    if (f) {
      if (hit) violation("a snapshot was acknowledged although the fsync of snap/ failed");
      return !hit;
    }
    if (!hit) {
      violation(flight_.what + " failed: " + f.error().message);
      return false;
    }
    if (f.error().code != StorageErrc::fsync_failed) violation("EIO from fsync of snap/ is not fsync_failed: " + f.error().message);
    if (open_node("restart after a failed snapshot sync", {}, meta.index.value)) adopt(node_);
    return false;
  }

  // Continues the workload from a power cut: the cut state becomes the file system, the node
  // recovers (its recovery is itself cut at sampled points) and holds what it recovered.
  void continue_after_cut(std::unique_ptr<SimFs> cut, const char* why, std::vector<WriteBatch> in_flight = {}) {
    fs_->set_observer(nullptr);
    fs_ = std::move(cut);
    install_rule();
    fs_->set_observer([this](const SimFs::Record& r) { on_op(r); });
    if (!open_node(why, std::move(in_flight))) return;
    adopt(node_);
  }

  void step() {
    std::uint64_t roll = work_rng_() % 100;
    if (roll < 32) {  // append, maybe with a hard state
      write(gen_append(m_), "append");
    } else if (roll < 40) {
      write(gen_hard_state(m_), "hard state");
    } else if (roll < 46) {
      if (auto b = gen_truncate(m_)) write(std::move(*b), "truncate");
    } else if (roll < 52) {  // the commit index advances without a write (it rides with the next one)
      if (committed_ < m_.last()) committed_ += 1 + work_rng_() % (m_.last() - committed_);
    } else if (roll < 59) {  // own snapshot at the commit index, then compaction (as the node does)
      std::uint64_t s = std::min(committed_, m_.last());
      if (s <= m_.snap || !m_.log.count(s)) return;
      raft::SnapshotMeta meta;
      meta.index = Index{s};
      meta.term = m_.log.at(s).term;
      meta.conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
      flight_ = InFlight{};
      flight_.snap = s;
      flight_.what = "own snapshot";
      auto f = save_snapshot(meta, value(s, 100 + work_rng_() % 6000), work_rng_() % 2 == 0);
      if (!f) return;
      std::uint64_t previous = m_.snap;
      old_snaps_.insert(m_.snap);
      m_.snap = s;
      m_.snap_term = meta.term.value;
      ++report_.acks;
      flight_ = InFlight{};
      flight_.what = "compaction";
      // The node keeps the log since the previous snapshot (service/replica.cc).
      if (previous > 0)
        if (auto c = node_.wal->compact(Index{previous}); !c) violation("compaction failed: " + c.error().message);
      flight_ = InFlight{};
    } else if (roll < 63) {  // a snapshot received from a leader: the file, then the WAL reset
      std::uint64_t s = m_.last() + 1 + work_rng_() % 5;
      std::uint64_t term = term_of(m_);
      raft::SnapshotMeta meta;
      meta.index = Index{s};
      meta.term = Term{term};
      meta.conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
      WriteBatch reset{std::make_pair(Index{s}, Term{term}), {}, HardState{Term{term}, m_.hs.vote, Index{s}}};
      bool broken = o_.break_rule == "install-snapshot-before-reset";
      if (broken && !write(reset, "install (reset first)")) return;
      flight_ = InFlight{};
      flight_.snap = s;
      flight_.what = "install";
      if (!save_snapshot(meta, value(s, 50 + work_rng_() % 3000), false)) return;
      old_snaps_.insert(m_.snap);
      m_.snap = s;
      m_.snap_term = term;
      committed_ = s;
      ++report_.acks;
      if (!broken) write(reset, "install reset");
    } else if (roll < 71) {
      group_commit();
    } else if (roll < 76) {  // a clean restart (the page cache survives)
      open_node("restart");
    } else if (roll < 80) {  // a write, fdatasync or preallocation fails: fail-stop, then restart without a power cut
      static constexpr const char* what[] = {"", "EIO from fdatasync", "ENOSPC from pwrite", "ENOSPC from fallocate",
                                             "EIO from fsync of wal/"};
      // Half the time the fdatasync (the batch stays in the page cache, unsynced, for the restart to read).
      fault_ = work_rng_() % 2 ? Fault::eio_fdatasync : static_cast<Fault>(2 + work_rng_() % 3);
      fault_hit_ = false;
      WriteBatch b = gen_append(m_);
      if (fault_ == Fault::enospc_fallocate || fault_ == Fault::eio_fsync_wal_dir)  // in a segment roll: make one likely
        for (std::uint64_t i = b.entries.back().index.value + 1; i < b.entries.front().index.value + 6; ++i)
          b.entries.push_back(Entry{Term{term_of(m_)}, Index{i}, raft::EntryType::normal, value(i, 4000)});
      flight_ = InFlight{};
      flight_.batches = {b};
      flight_.what = std::string("append with ") + what[static_cast<int>(fault_)];
      auto r = node_.wal->write(b);
      Fault f = fault_;
      fault_ = Fault::none;
      if (!fault_hit_) {  // no roll, so no preallocation to fail: an ordinary append
        if (!r) violation("append failed: " + r.error().message);
        else acknowledged(b, "append");
        flight_ = InFlight{};
        return;
      }
      if (r) {
        violation(std::string("a batch was acknowledged although ") + what[static_cast<int>(f)] + " failed");
        return;
      }
      if (f == Fault::eio_fdatasync && r.error().code != StorageErrc::fsync_failed)
        violation("EIO from fdatasync is not fsync_failed: " + r.error().message);
      // The node stops; its restart may read the unsynced batch back and then stands by it.
      if (!open_node("restart after fail-stop", {b})) return;
      adopt(node_);
    } else if (roll < 90) {  // a power cut while idle, then the node continues from what recovery made of it
      node_ = RecoveredStorage{};  // the process is gone (its descriptors with it)
      auto cut = fs_->clone();
      cut->crash(cut_rng_);
      flight_.what = "power cut";
      if (!check(*cut, "power cut", false)) return;  // the workload itself goes on from this state
      continue_after_cut(std::move(cut), "restart after a power cut");
    } else {  // a power cut in the middle of an append (often one that rolls a segment); the node continues
      WriteBatch b = gen_append(m_);
      for (std::uint64_t i = b.entries.back().index.value + 1; work_rng_() % 2; ++i)  // longer: more rolls
        b.entries.push_back(Entry{Term{term_of(m_)}, Index{i}, raft::EntryType::normal, value(i, 4000)});
      flight_ = InFlight{};
      flight_.batches = {b};
      flight_.what = "append cut mid-way";
      captured_.clear();
      capturing_ = true;
      auto r = node_.wal->write(b);  // never acknowledged: the cut comes first
      capturing_ = false;
      if (!r) {
        violation("append failed: " + r.error().message);
        return;
      }
      if (captured_.empty()) return;
      // A file operation to cut after: half the time one of a segment roll's (its create up to
      // its header's fdatasync), the moments that leave a new segment empty or half made.
      std::size_t at = work_rng_() % captured_.size();
      for (std::size_t k = 0; k < captured_.size(); ++k)
        if (captured_[k].op.op == SimFs::Op::open && ends_with(captured_[k].op.path, ".wal") && work_rng_() % 2) {
          std::size_t end = k;
          while (end + 1 < captured_.size() && captured_[end].op.op != SimFs::Op::fdatasync) ++end;
          at = k + work_rng_() % (end - k + 1);
          break;
        }
      auto cut = std::move(captured_[at].fs);
      captured_.clear();
      node_ = RecoveredStorage{};
      cut->crash(cut_rng_);
      ++report_.mid_append_cuts;
      if (!check(*cut, "power cut mid-append", false)) return;
      continue_after_cut(std::move(cut), "restart after a cut mid-append", {b});
    }
  }

  struct Captured {
    std::unique_ptr<SimFs> fs;
    SimFs::Record op;
  };

  Options o_;
  std::mt19937_64 work_rng_, cut_rng_;
  std::chrono::steady_clock::time_point start_;
  std::unique_ptr<SimFs> fs_ = std::make_unique<SimFs>();
  RecoveredStorage node_;
  Model m_;
  std::uint64_t committed_ = 0;  // the node's commit index (its hard state's may lag behind it)
  InFlight flight_;
  std::set<std::uint64_t> old_snaps_;
  Report report_;
  BrokenRules broken_;
  enum class Fault : std::uint8_t { none, eio_fdatasync, enospc_pwrite, enospc_fallocate, eio_fsync_wal_dir, eio_fsync_snap_dir };
  Fault fault_ = Fault::none;  // to inject into the next matching WAL operation (once)
  bool fault_hit_ = false;
  bool in_check_ = false, sample_all_ = false, recovering_ = false, had_segments_ = false, capturing_ = false;
  std::vector<Captured> captured_;
  std::uint64_t op_seq_ = 0;
  SimFs::Op prev_op_ = SimFs::Op::mark, cur_op_ = SimFs::Op::mark;
};

}  // namespace

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {"R1", "wal-batch-fdatasync", "a WAL batch is acknowledged only after fdatasync of its segment returned"},
      {"R2", "segment-header-sync", "a new segment's header and leading hard state are fdatasynced before any record goes into it"},
      {"R3", "seal-sync", "a full segment is fdatasynced before the next is created (code switch)"},
      {"R4", "segment-name-durable", "a new segment's name is made durable (fsync of wal/) before records in it are acknowledged"},
      {"R5", "compaction-unlink-order", "compaction removes segments oldest first, each unlink made durable (fsync of wal/) before the next"},
      {"R6", "recovery-syncs-what-it-read", "recovery fdatasyncs what it read back (and its repairs) before the node builds on it"},
      {"R7", "hard-state-in-active-segment", "the hard state is in the active segment: both halves below off (code switch)"},
      {"R7", "new-segment-hard-state", "every new segment starts with the current hard state (code switch)"},
      {"R7", "recovery-rewrites-hard-state", "recovery rewrites the hard state into an active segment that lacks it (code switch)"},
      {"R8", "directories-durable-in-parent", "the data directory (and wal/, snap/ in it) is durable in its parent before data goes in"},
      {"R9", "identity-file-sync", "IDENTITY.tmp is fsynced before it is renamed to IDENTITY"},
      {"R10", "snapshot-file-sync", "a snapshot file is fsynced before it is renamed into place"},
      {"R11", "snapshot-rename-durable", "a snapshot's rename is durable (fsync of snap/) before it is acknowledged and the WAL compacted"},
      {"R12", "install-snapshot-before-reset", "an installed snapshot's file is durable before the WAL's reset record is written (workload order)"},
      {"R13", "recovery-rewrites-reset", "recovery writes again the reset record of a snapshot the WAL does not continue (code switch)"},
      {"R14", "recovery-syncs-names", "recovery fsyncs wal/ and snap/ before the node builds on the segments and snapshots it found"},
  };
  return r;
}

Report explore(const Options& o) { return Explorer(o).run(); }

}  // namespace tern::storage::explorer
