#include "tests/storage/explorer.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
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

// The operation in flight: its WAL batch (records applied in order, any prefix may survive) and
// the snapshot it may have made durable.
struct InFlight {
  std::optional<WriteBatch> batch;
  std::optional<std::uint64_t> snap;
  std::string what = "idle";
};

// The acknowledged state plus each prefix of the in-flight batch's records.
std::vector<Model> candidates(const Model& m, const InFlight& f) {
  std::vector<Model> out{m};
  if (!f.batch) return out;
  Model cur = m;
  const WriteBatch& b = *f.batch;
  if (b.reset_to) {
    cur.log.clear();
    out.push_back(cur);
  }
  if (!b.entries.empty()) {
    std::uint64_t i0 = b.entries.front().index.value;
    if (!cur.log.empty() && i0 <= cur.log.rbegin()->first) {
      cur.log.erase(cur.log.lower_bound(i0), cur.log.end());
      out.push_back(cur);
    }
    for (const Entry& e : b.entries) {
      cur.log[e.index.value] = e;
      out.push_back(cur);
    }
  }
  if (b.hard_state) {
    cur.hs = *b.hard_state;
    out.push_back(cur);
  }
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

  // ---- the lying disk (one rule broken at a time) ----
  void install_rule() {
    fs_->set_fault([this](const SimFs::Record& r) {
      if (r.op != SimFs::Op::close && r.op != SimFs::Op::pread && r.op != SimFs::Op::size && r.op != SimFs::Op::list) {
        prev_op_ = cur_op_;  // the previous operation that changes something
        cur_op_ = r.op;
      }
      if (inject_eio_ && (r.op == SimFs::Op::fdatasync) && ends_with(r.path, ".wal")) {
        inject_eio_ = false;
        return EIO;
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
      lie = [this](const SimFs::Record& r) {
        bool l = r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/wal") && prev_op_ == SimFs::Op::unlink;
        return l;
      };
    } else if (b == "recovery-syncs-what-it-read") {
      lie = [this](const SimFs::Record& r) { return recovering_ && r.op == SimFs::Op::fdatasync; };
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
    } else {
      violation("unknown rule " + b);
      return;
    }
    fs_->set_lie(lie);
  }

  // ---- cutting power ----
  void on_op(const SimFs::Record& r) {
    op_seq_ = r.seq;
    if (in_check_ || done()) return;
    switch (r.op) {
      case SimFs::Op::pread:
      case SimFs::Op::size:
      case SimFs::Op::list:
      case SimFs::Op::mark:
        return;
      default:
        break;
    }
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

  // Runs verify's and the node's recovery on a crash state and checks them. Returns the node's.
  std::optional<RecoveredStorage> check(SimFs& s, const std::string& label, bool probe_append = true) {
    in_check_ = true;
    ++report_.states;
    std::optional<RecoveredStorage> result;
    auto ro = s.clone();
    RecoveryOptions vo;
    vo.io = ro.get();
    vo.read_only = true;
    auto verified = recover_storage(data_dir, vo);
    auto node = recover_storage(data_dir, node_options(s));
    if (!node) {
      violation(label + ": the node refuses to start: " + node.error().message);
    } else if (!verified) {
      violation(label + ": verify says the node refuses (" + verified.error().message + ") but it starts");
    } else if (!(view_of(*verified) == view_of(*node))) {
      violation(label + ": verify and the node disagree");
    } else if (!verified->damage.empty()) {
      violation(label + ": damaged files after a power cut: " + verified->damage.front());
    } else {
      View v = view_of(*node);
      expect_acknowledged(v, label);
      // The node can go on: its next entry goes right after what it recovered.
      std::uint64_t next = (v.entries.empty() ? v.snap : v.entries.back().index.value) + 1;
      Entry e{Term{std::max<std::uint64_t>(1, v.hs.term.value)}, Index{next}, raft::EntryType::normal, "next"};
      if (auto w = probe_append ? node->wal->write(WriteBatch{{}, {e}, {}}) : Result<Index, StorageError>(Index{next}); !w)
        violation(label + ": the node starts but cannot append entry " + std::to_string(next) + ": " + w.error().message);
      result = std::move(*node);
    }
    in_check_ = false;
    return result;
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
    return ro;
  }

  // ---- the workload ----
  bool open_node(const char* why, std::optional<WriteBatch> unsynced = std::nullopt) {
    flight_ = InFlight{};
    flight_.what = why;
    flight_.batch = std::move(unsynced);  // a failed batch that recovery may read back
    node_ = RecoveredStorage{};
    recovering_ = true;
    auto r = recover_storage(data_dir, node_options(*fs_));
    recovering_ = false;
    if (!r) {
      violation(std::string("the node cannot ") + why + ": " + r.error().message);
      return false;
    }
    node_ = std::move(*r);
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

  bool write(WriteBatch b, const char* what) {
    flight_ = InFlight{};
    flight_.batch = b;
    flight_.what = what;
    auto r = node_.wal->write(b);
    flight_ = InFlight{};
    if (!r) {
      violation(std::string(what) + " failed: " + r.error().message);
      return false;
    }
    Model next = candidates(m_, InFlight{b, {}, ""}).back();
    m_ = next;
    ++report_.acks;
    fs_->mark(std::string("ack ") + what + ": last index " + std::to_string(m_.last()));  // in the trace
    return true;
  }

  void step() {
    std::uint64_t roll = work_rng_() % 100;
    std::uint64_t commit = m_.hs.commit.value;
    if (roll < 40) {  // append, maybe with a hard state
      std::uint64_t term = std::max<std::uint64_t>(1, m_.hs.term.value);
      WriteBatch b{{}, new_entries(m_.last() + 1, term), {}};
      if (work_rng_() % 2) {
        HardState h = m_.hs;
        h.term = Term{term};
        h.commit = Index{std::max(commit, m_.last() + (work_rng_() % 3 == 0 ? b.entries.size() : 0))};
        b.hard_state = h;
      }
      write(std::move(b), "append");
    } else if (roll < 50) {  // hard state only: a new term, a vote
      HardState h{Term{m_.hs.term.value + 1}, NodeId{1 + work_rng_() % 3}, m_.hs.commit};
      write(WriteBatch{{}, {}, h}, "hard state");
    } else if (roll < 58) {  // a conflict: replace an uncommitted suffix
      std::uint64_t lo = std::max(commit, m_.snap) + 1;
      if (m_.log.empty() || lo > m_.last()) return;
      std::uint64_t i = lo + work_rng_() % (m_.last() - lo + 1);
      if (!m_.log.count(i)) return;
      std::uint64_t term = m_.hs.term.value + 1;
      WriteBatch b{{}, new_entries(i, term), HardState{Term{term}, NodeId{0}, m_.hs.commit}};
      write(std::move(b), "truncate");
    } else if (roll < 66) {  // own snapshot at the commit index, then compaction (as the node does)
      std::uint64_t s = std::min(commit, m_.last());
      if (s <= m_.snap || !m_.log.count(s)) return;
      raft::SnapshotMeta meta;
      meta.index = Index{s};
      meta.term = m_.log.at(s).term;
      meta.conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
      flight_ = InFlight{};
      flight_.snap = s;
      flight_.what = "own snapshot";
      auto f = node_.snapshots->save(meta, value(s, 100 + work_rng_() % 6000), work_rng_() % 2 == 0);
      if (!f) {
        violation("own snapshot failed: " + f.error().message);
        return;
      }
      std::uint64_t previous = m_.snap;
      old_snaps_.insert(m_.snap);
      m_.snap = s;
      m_.snap_term = meta.term.value;
      ++report_.acks;
      flight_ = InFlight{};
      flight_.what = "compaction";
      if (previous > 0)
        if (auto c = node_.wal->compact(Index{previous}); !c) violation("compaction failed: " + c.error().message);
      flight_ = InFlight{};
    } else if (roll < 70) {  // a snapshot received from a leader: the file, then the WAL reset
      std::uint64_t s = m_.last() + 1 + work_rng_() % 5;
      std::uint64_t term = std::max<std::uint64_t>(1, m_.hs.term.value);
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
      auto f = node_.snapshots->save(meta, value(s, 50 + work_rng_() % 3000));
      if (!f) {
        violation("install failed: " + f.error().message);
        return;
      }
      old_snaps_.insert(m_.snap);
      m_.snap = s;
      m_.snap_term = term;
      ++report_.acks;
      if (!broken) write(reset, "install reset");
    } else if (roll < 78) {  // a clean restart (the page cache survives)
      open_node("restart");
    } else if (roll < 82) {  // an fdatasync fails: fail-stop, then restart without a power cut
      inject_eio_ = true;
      std::uint64_t term = std::max<std::uint64_t>(1, m_.hs.term.value);
      WriteBatch b{{}, new_entries(m_.last() + 1, term), {}};
      flight_ = InFlight{};
      flight_.batch = b;
      flight_.what = "append with EIO";
      auto r = node_.wal->write(b);
      inject_eio_ = false;
      if (r) {
        violation("a batch was acknowledged although its fdatasync failed");
        return;
      }
      if (r.error().code != StorageErrc::fsync_failed) violation("EIO from fdatasync is not fsync_failed: " + r.error().message);
      // The node stops; its restart may read the unsynced batch back and then stands by it.
      if (!open_node("restart after fail-stop", b)) return;
      adopt(node_);
    } else {  // a power cut, then the node continues from what recovery made of it
      node_ = RecoveredStorage{};  // the process is gone (its descriptors with it)
      auto cut = fs_->clone();
      cut->crash(cut_rng_);
      flight_.what = "power cut";
      if (!check(*cut, "power cut", false)) return;  // the workload itself goes on from this state
      // Continue on the cut state; the restart is itself observed (cuts during recovery).
      fs_->set_observer(nullptr);
      fs_ = std::move(cut);
      install_rule();
      fs_->set_observer([this](const SimFs::Record& r) { on_op(r); });
      if (!open_node("restart after a power cut")) return;
      adopt(node_);
    }
  }

  Options o_;
  std::mt19937_64 work_rng_, cut_rng_;
  std::chrono::steady_clock::time_point start_;
  std::unique_ptr<SimFs> fs_ = std::make_unique<SimFs>();
  RecoveredStorage node_;
  Model m_;
  InFlight flight_;
  std::set<std::uint64_t> old_snaps_;
  Report report_;
  bool in_check_ = false, sample_all_ = false, recovering_ = false, inject_eio_ = false;
  std::uint64_t op_seq_ = 0;
  SimFs::Op prev_op_ = SimFs::Op::mark, cur_op_ = SimFs::Op::mark;
};

}  // namespace

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {"wal-batch-fdatasync", "a WAL batch is acknowledged only after fdatasync of its segment returned"},
      {"segment-header-sync", "a new segment's header and leading hard state are fdatasynced before any record goes into it"},
      {"segment-name-durable", "a new segment's name is made durable (fsync of wal/) before records in it are acknowledged"},
      {"compaction-unlink-order", "compaction removes segments oldest first, each unlink made durable (fsync of wal/) before the next"},
      {"recovery-syncs-what-it-read", "recovery fdatasyncs what it read back (and its repairs) before the node builds on it"},
      {"directories-durable-in-parent", "the data directory (and wal/, snap/ in it) is durable in its parent before data goes in"},
      {"identity-file-sync", "IDENTITY.tmp is fsynced before it is renamed to IDENTITY"},
      {"snapshot-file-sync", "a snapshot file is fsynced before it is renamed into place"},
      {"snapshot-rename-durable", "a snapshot's rename is durable (fsync of snap/) before it is acknowledged and the WAL compacted"},
      {"install-snapshot-before-reset", "an installed snapshot's file is durable before the WAL's reset record is written"},
  };
  return r;
}

Report explore(const Options& o) { return Explorer(o).run(); }

}  // namespace tern::storage::explorer
