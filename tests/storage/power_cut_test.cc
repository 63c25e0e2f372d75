// Regression tests for issue 15: the real Wal, SnapshotStore and DataDir on the simulated file
// system (tests/common/sim_fs.h), cut at chosen points with chosen power-cut outcomes. Each test
// is named after what the old code broke.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <functional>

#include "raft/storage/data_dir.h"
#include "raft/storage/recovery.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"
#include "tests/common/sim_fs.h"

namespace tern::storage {
namespace {

using raft::EntryType;
using raft::NodeId;
using testing::SimFs;

Entry entry(std::uint64_t i, std::size_t bytes = 40) {
  std::string v = "value-" + std::to_string(i) + "-";
  v += std::string(bytes > v.size() ? bytes - v.size() : 0, static_cast<char>('a' + i % 26));
  return Entry{Term{1}, Index{i}, EntryType::normal, v};
}

std::vector<Entry> entries(std::uint64_t from, std::uint64_t to, std::size_t bytes = 40) {
  std::vector<Entry> out;
  for (auto i = from; i <= to; ++i) out.push_back(entry(i, bytes));
  return out;
}

WalOptions on(SimFs& fs, std::size_t segment_bytes = 1 << 20) {
  WalOptions o;
  o.io = &fs;
  o.segment_bytes = segment_bytes;
  return o;
}

// Clones the file system after every operation that `when` selects (while `action` runs).
std::vector<std::unique_ptr<SimFs>> capture(SimFs& fs, const std::function<bool(const SimFs::Record&)>& when,
                                            const std::function<void()>& action) {
  std::vector<std::unique_ptr<SimFs>> out;
  fs.set_observer([&](const SimFs::Record& r) {
    if (when(r)) out.push_back(fs.clone());
  });
  action();
  fs.set_observer(nullptr);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A crash in which the first dirty page (in file order) keeps its durable content and every other
// page, size and name change survives: a later page of a write reached the disk, an earlier not.
SimFs::Chooser lose_first_dirty_page() {
  auto first = std::make_shared<bool>(true);
  return [first](SimFs::Choice what, std::size_t n) -> std::size_t {
    if (what == SimFs::Choice::page && *first) {
      *first = false;
      return 1;
    }
    return n - 1;
  };
}

// Every recovered entry is the one written at its index, from 1 without a gap.
void expect_prefix(const Recovered& rec, std::uint64_t at_least, std::size_t bytes = 40) {
  ASSERT_GE(rec.entries.size(), at_least);
  for (std::size_t k = 0; k < rec.entries.size(); ++k) ASSERT_EQ(rec.entries[k], entry(k + 1, bytes)) << k;
}

// ---- 1: a legitimate power cut must not make the node refuse to start ----

TEST(PowerCut, AnEarlierLostPageOfAnUnsyncedBatchIsATornTailNotCorruption) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(fs), nullptr);
  ASSERT_TRUE(wal) << wal.error().message;
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 3), HardState{Term{1}, NodeId{1}, Index{3}}}));
  // The next batch spans several pages; the cut comes after its write, before its fdatasync.
  auto states = capture(
      fs, [](const SimFs::Record& r) { return r.op == SimFs::Op::pwrite && r.length > 3 * SimFs::page_bytes; },
      [&] { (void)(*wal)->write(WriteBatch{{}, entries(4, 60, 300), {}}); });
  wal->reset();
  ASSERT_EQ(states.size(), 1u);
  states[0]->crash(lose_first_dirty_page());
  Recovered rec;
  auto again = Wal::open("/n/wal", on(*states[0]), &rec);
  ASSERT_TRUE(again) << again.error().message;
  ASSERT_GE(rec.entries.size(), 3u);
  for (std::uint64_t i = 1; i <= 3; ++i) EXPECT_EQ(rec.entries[i - 1], entry(i));
  EXPECT_EQ(rec.hard_state.commit, Index{3});
}

TEST(PowerCut, ALostHeaderPageOfAJustRolledSegmentIsNotCorruption) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(fs, 16 << 10), nullptr);
  ASSERT_TRUE(wal) << wal.error().message;
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 40, 300), HardState{Term{2}, NodeId{1}, Index{40}}}));
  ASSERT_EQ((*wal)->segment_count(), 1u);
  // This batch rolls into segment 2 and fills more than a page of it before its fdatasync.
  auto states = capture(
      fs,
      [](const SimFs::Record& r) {
        return r.op == SimFs::Op::pwrite && ends_with(r.path, "00000000000000000002.wal") && r.length > SimFs::page_bytes;
      },
      [&] { (void)(*wal)->write(WriteBatch{{}, entries(41, 70, 300), {}}); });
  wal->reset();
  ASSERT_FALSE(states.empty());
  for (auto& s : states) {
    s->crash(lose_first_dirty_page());
    Recovered rec;
    auto again = Wal::open("/n/wal", on(*s, 16 << 10), &rec);
    ASSERT_TRUE(again) << again.error().message;
    expect_prefix(rec, 40, 300);
    EXPECT_EQ(rec.hard_state, (HardState{Term{2}, NodeId{1}, Index{40}}));
  }
}

// ---- 2: bytes inside a torn record must not trigger the corruption rule ----

TEST(PowerCut, AClientValueHoldingAWellFormedRecordDoesNotTurnATornTailIntoCorruption) {
  // A well-formed record, as a client could put it into a value: the bytes of another WAL.
  std::string fake;
  {
    SimFs other;
    other.mkdirs_durable("/o");
    auto w = Wal::open("/o/wal", on(other), nullptr);
    ASSERT_TRUE((*w)->write(WriteBatch{{}, {}, HardState{Term{99}, NodeId{3}, Index{7}}}));
    w->reset();
    auto names = other.list("/o/wal");
    ASSERT_EQ(names.size(), 1u);
    fake = other.read_file("/o/wal/" + names[0]);
    fake = fake.substr(0, 128);  // the header, the record and some zeros
  }
  SimFs fs;
  fs.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(fs), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 1), HardState{Term{1}, NodeId{1}, Index{1}}}));
  Entry big{Term{1}, Index{2}, EntryType::normal, std::string(100, 'p') + fake + std::string(6000, 'q')};
  auto states = capture(
      fs, [](const SimFs::Record& r) { return r.op == SimFs::Op::pwrite && r.length > SimFs::page_bytes; },
      [&] { (void)(*wal)->write(WriteBatch{{}, {big}, {}}); });
  wal->reset();
  ASSERT_EQ(states.size(), 1u);
  // The first page (with the fake record) reaches the disk; the rest of the value does not.
  auto pages = std::make_shared<int>(0);
  states[0]->crash([pages](SimFs::Choice what, std::size_t n) -> std::size_t {
    if (what == SimFs::Choice::page) return (*pages)++ == 0 ? n - 1 : 1;
    return n - 1;
  });
  Recovered rec;
  auto again = Wal::open("/n/wal", on(*states[0]), &rec);
  ASSERT_TRUE(again) << again.error().message;
  ASSERT_EQ(rec.notes.size(), 1u);  // the torn value was cut off
  ASSERT_EQ(rec.entries.size(), 1u);
  EXPECT_EQ(rec.hard_state, (HardState{Term{1}, NodeId{1}, Index{1}}));
}

// ---- 3: the hard state must survive recovery plus compaction ----

TEST(PowerCut, HardStateSurvivesACutDuringASegmentRollThenCompaction) {
  const HardState voted{Term{5}, NodeId{2}, Index{10}};
  SimFs base;
  base.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(base, 16 << 10), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 40, 300), voted}));
  // Every state the roll into segment 2 passes through, once its name is durable.
  auto states = capture(
      base, [](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir || r.op == SimFs::Op::fdatasync; },
      [&] { (void)(*wal)->write(WriteBatch{{}, entries(41, 70, 300), {}}); });
  wal->reset();
  ASSERT_FALSE(states.empty());
  for (std::size_t k = 0; k < states.size(); ++k) {
    SimFs& fs = *states[k];
    fs.crash_lose_all();
    Recovered rec;
    auto w = Wal::open("/n/wal", on(fs, 16 << 10), &rec);
    ASSERT_TRUE(w) << k << ": " << w.error().message;
    ASSERT_EQ(rec.hard_state, voted) << k;
    std::uint64_t last = rec.entries.back().index.value;
    // New entries after the restart (no hard state in their batch), then compaction of segment 1.
    ASSERT_TRUE((*w)->write(WriteBatch{{}, entries(last + 1, last + 2), {}}));
    ASSERT_TRUE((*w)->compact(Index{std::min<std::uint64_t>(last, 40)}));
    w->reset();
    fs.crash_lose_all();
    Recovered after;
    ASSERT_TRUE(Wal::open("/n/wal", on(fs, 16 << 10), &after));
    EXPECT_EQ(after.hard_state, voted) << "state " << k << ": the node could vote again in term 5";
  }
}

// ---- 4: a failed unlink during compaction must leave the bookkeeping consistent ----

TEST(PowerCut, AFailedUnlinkInCompactionNeverClosesAnotherFilesDescriptor) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(fs, 8 << 10), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 80, 200), HardState{Term{1}, NodeId{1}, Index{80}}}));
  ASSERT_GE((*wal)->segment_count(), 3u);
  fs.fail_nth(SimFs::Op::unlink, 1, EIO);
  EXPECT_FALSE((*wal)->compact(Index{60}));
  fs.set_fault(nullptr);
  // More entries (a new segment takes the lowest free descriptor), then compaction again.
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(81, 120, 200), {}}));
  (void)(*wal)->compact(Index{60});
  EXPECT_EQ(fs.bad_closes(), 0u);
  auto r = (*wal)->write(WriteBatch{{}, entries(121, 130, 200), {}});
  ASSERT_TRUE(r) << r.error().message;
  auto got = (*wal)->read(Index{100}, Index{130});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(*got, entries(100, 130, 200));
  wal->reset();
  fs.crash_lose_all();
  Recovered rec;
  ASSERT_TRUE(Wal::open("/n/wal", on(fs, 8 << 10), &rec));
  ASSERT_FALSE(rec.entries.empty());
  EXPECT_EQ(rec.entries.back().index, Index{130});
}

// ---- 5: compaction's unlinks may persist in any order ----

TEST(PowerCut, CompactionUnlinksPersistingOutOfOrderDoNotBreakRecovery) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(fs, 8 << 10), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 100, 200), HardState{Term{1}, NodeId{1}, Index{100}}}));
  ASSERT_GE((*wal)->segment_count(), 3u);
  ASSERT_EQ(fs.fsync_dir("/n"), 0);  // wal/ itself is durable here (that is hole 6)
  auto states = capture(fs, [](const SimFs::Record&) { return true; }, [&] { ASSERT_TRUE((*wal)->compact(Index{80})); });
  wal->reset();
  std::size_t checked = 0;
  for (auto& st : states) {
    for (std::uint64_t mask = 0; mask < 64; ++mask) {
      auto s = st->clone();
      auto bit = std::make_shared<int>(0);
      s->crash([&, bit](SimFs::Choice what, std::size_t n) -> std::size_t {
        if (what == SimFs::Choice::keep_op) return (mask >> ((*bit)++ % 6)) & 1;
        return n - 1;
      });
      Recovered rec;
      auto w = Wal::open("/n/wal", on(*s, 8 << 10), &rec);
      ASSERT_TRUE(w) << "mask " << mask << ": " << w.error().message;
      ASSERT_FALSE(rec.entries.empty());
      EXPECT_LE(rec.entries.front().index, Index{81});
      EXPECT_EQ(rec.entries.back().index, Index{100});
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u);
}

// ---- 6: new directories must be durable in their parents ----

TEST(PowerCut, AcknowledgedDataDoesNotVanishWithItsDirectory) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  {
    auto dd = DataDir::open("/n/data", 7, 1, fs);
    ASSERT_TRUE(dd) << dd.error().message;
    auto wal = Wal::open((*dd)->wal_dir(), on(fs), nullptr);
    ASSERT_TRUE(wal);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 5), HardState{Term{3}, NodeId{1}, Index{5}}}));
    raft::SnapshotMeta m;
    m.index = Index{2};
    m.term = Term{1};
    ASSERT_TRUE(SnapshotStore((*dd)->snap_dir(), fs).save(m, "state"));
  }
  fs.crash_lose_all();  // only what was made durable survives
  auto dd = DataDir::open("/n/data", 7, 1, fs);
  ASSERT_TRUE(dd) << dd.error().message;
  EXPECT_FALSE((*dd)->first_use()) << "the data directory itself was lost";
  Recovered rec;
  ASSERT_TRUE(Wal::open((*dd)->wal_dir(), on(fs), &rec));
  EXPECT_EQ(rec.entries, entries(1, 5));
  EXPECT_EQ(rec.hard_state.term, Term{3});
  auto snap = SnapshotStore((*dd)->snap_dir(), fs).load_newest();
  ASSERT_TRUE(snap);
  ASSERT_TRUE(snap->has_value()) << "the snapshot was lost with snap/";
}

// ---- 7: only ENOENT means first use ----

TEST(PowerCut, AnUnreadableIdentityIsAnErrorNotAFirstUse) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  ASSERT_TRUE(DataDir::open("/n/data", 7, 1, fs));
  for (int err : {EACCES, EIO, EMFILE}) {
    fs.set_fault([err](const SimFs::Record& r) {
      return r.op == SimFs::Op::open && ends_with(r.path, "/IDENTITY") && (r.length & O_ACCMODE) == O_RDONLY ? err : 0;
    });
    auto other = DataDir::open("/n/data", 7, 2, fs);
    fs.set_fault(nullptr);
    EXPECT_FALSE(other) << "errno " << err << ": node 2 took over node 1's data directory";
    if (other) other->reset();
    auto mine = DataDir::open("/n/data", 7, 1, fs);
    ASSERT_TRUE(mine) << mine.error().message;
    EXPECT_FALSE((*mine)->first_use());
  }
}

// ---- directory fsync failures are fail-stop ----

TEST(PowerCut, ADirectoryFsyncFailureInCompactionIsFatal) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  auto wal = Wal::open("/n/wal", on(fs, 8 << 10), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 80, 200), {}}));
  fs.set_fault([](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir ? EIO : 0; });
  auto c = (*wal)->compact(Index{60});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, StorageErrc::fsync_failed);
  fs.set_fault(nullptr);
  auto w = (*wal)->write(WriteBatch{{}, entries(81, 81, 200), {}});
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, StorageErrc::failed);
}


// ---- found by the crash-state explorer after issue 15: a fail-stop, a restart, then a cut ----
// A failed sync makes the node stop; it restarts without a power cut, so names that were never
// made durable are still in the page cache. Recovery must make durable the names it builds on.

// A segment roll fails after the create (ENOSPC from the preallocation, or EIO from the header's
// fdatasync or from the directory's fsync); after the restart the node writes into that segment
// (the empty one re-initialized, or the one with a durable header) and acknowledges; a cut must
// not take the segment's name, and the acknowledged entries, away.
TEST(PowerCut, ASegmentLeftByAFailedRollIsDurableBeforeTheRestartedNodeWritesIntoIt) {
  struct Case {
    SimFs::Op op;
    int err;
  };
  for (Case c : {Case{SimFs::Op::fallocate, ENOSPC}, Case{SimFs::Op::fdatasync, EIO}, Case{SimFs::Op::fsync_dir, EIO}}) {
    SCOPED_TRACE(SimFs::op_name(c.op));
    SimFs fs;
    fs.mkdirs_durable("/n");
    auto wal = Wal::open("/n/wal", on(fs, 16 << 10), nullptr);
    ASSERT_TRUE(wal);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 40, 300), HardState{Term{2}, NodeId{1}, Index{40}}}));
    ASSERT_EQ((*wal)->segment_count(), 1u);
    // The next batch rolls into segment 2; its creation fails at the chosen operation (for
    // fdatasync: the header's, the one after segment 1's seal).
    auto count = std::make_shared<int>(0);
    fs.set_fault([c, count](const SimFs::Record& r) {
      if (r.op != c.op || !ends_with(r.path, c.op == SimFs::Op::fsync_dir ? "/wal" : "02.wal")) return 0;
      return ++*count == 1 ? c.err : 0;
    });
    ASSERT_FALSE((*wal)->write(WriteBatch{{}, entries(41, 80, 300), {}}));
    fs.set_fault(nullptr);
    wal->reset();  // fail-stop; the restart finds the page cache as it was
    Recovered rec;
    auto again = Wal::open("/n/wal", on(fs, 16 << 10), &rec);
    ASSERT_TRUE(again) << again.error().message;
    std::uint64_t last = rec.entries.back().index.value;
    ASSERT_TRUE((*again)->write(WriteBatch{{}, entries(last + 1, last + 3, 300), {}}));  // acknowledged
    again->reset();
    fs.crash_lose_all();
    Recovered after;
    auto w = Wal::open("/n/wal", on(fs, 16 << 10), &after);
    ASSERT_TRUE(w) << w.error().message;
    ASSERT_FALSE(after.entries.empty());
    EXPECT_EQ(after.entries.back().index.value, last + 3) << "acknowledged entries vanished with a segment's name";
    EXPECT_EQ(after.hard_state, (HardState{Term{2}, NodeId{1}, Index{40}}));
  }
}

// An installed snapshot's rename is not durable (the fsync of snap/ failed: fail-stop). The
// restarted node finds the file (its name still in the page cache), writes the lost reset after
// it (rule 6) and goes on; a cut must not leave a WAL that restarts after a snapshot that is gone
// (the node could never start again). Found twice: by the storage explorer and by the
// whole-node simulator (a received snapshot, the node killed before it acted on it).
TEST(PowerCut, ASnapshotFoundAtRestartIsDurableBeforeTheWalIsResetAfterIt) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  RecoveryOptions o;
  o.io = &fs;
  o.cluster_id = 7;
  o.node_id = 1;
  o.wal.segment_bytes = 16 << 10;
  {
    auto n = recover_storage("/n/data", o);
    ASSERT_TRUE(n) << n.error().message;
    ASSERT_TRUE(n->wal->write(WriteBatch{{}, entries(1, 10), HardState{Term{1}, NodeId{1}, Index{10}}}));
    raft::SnapshotMeta m;
    m.index = Index{30};
    m.term = Term{2};
    m.conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
    fs.set_fault([](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir && ends_with(r.path, "/snap") ? EIO : 0; });
    auto f = n->snapshots->save(m, "installed state");
    fs.set_fault(nullptr);
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().code, StorageErrc::fsync_failed);
  }
  {
    auto n = recover_storage("/n/data", o);  // the restart after fail-stop
    ASSERT_TRUE(n) << n.error().message;
    ASSERT_TRUE(n->snapshot);
    ASSERT_EQ(n->snapshot->meta.index, Index{30});
    EXPECT_FALSE(n->repairs.empty()) << "the WAL's reset record should have been written";
    ASSERT_TRUE(n->wal->write(WriteBatch{{}, {Entry{Term{2}, Index{31}, EntryType::normal, "after"}}, {}}));
  }
  fs.crash_lose_all();
  auto n = recover_storage("/n/data", o);
  ASSERT_TRUE(n) << "the node cannot start: " << n.error().message;
  ASSERT_TRUE(n->snapshot) << "recovery relied on a snapshot it had not made durable";
  EXPECT_EQ(n->snapshot->meta.index, Index{30});
  ASSERT_EQ(n->entries.size(), 1u);
  EXPECT_EQ(n->entries[0].index, Index{31});
}

// verify reports the hard state the node will start with, also when the node raises a stale
// term while writing a lost reset again (rule 6).
TEST(RecoverStorage, VerifyReportsTheHardStateTheNodeRaisesWithALostReset) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  RecoveryOptions o;
  o.io = &fs;
  o.cluster_id = 7;
  o.node_id = 1;
  o.wal.segment_bytes = 16 << 10;
  {
    auto n = recover_storage("/n/data", o);
    ASSERT_TRUE(n) << n.error().message;
    ASSERT_TRUE(n->wal->write(WriteBatch{{}, entries(1, 10), HardState{Term{1}, NodeId{1}, Index{10}}}));
    raft::SnapshotMeta m;
    m.index = Index{18};
    m.term = Term{3};  // from a leader of a later term; the reset (and its hard state) was lost
    m.conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
    ASSERT_TRUE(n->snapshots->save(m, "installed state"));
  }
  RecoveryOptions vo;
  vo.io = &fs;
  vo.read_only = true;
  auto v = recover_storage("/n/data", vo);
  ASSERT_TRUE(v) << v.error().message;
  auto n = recover_storage("/n/data", o);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->hard_state, (HardState{Term{3}, NodeId{}, Index{18}}));
  EXPECT_EQ(v->hard_state, n->hard_state) << "verify announces another hard state than the node starts with";
  EXPECT_EQ(v->entries, n->entries);
}

// ---- 8: recovery makes durable what it builds on ----

// Found by the whole-node simulator: a segment roll interrupted by a kill -9 after the new
// segment was created and before the directory was synced. The restart found the segment (its
// name still in the page cache) and appended to it, syncing the file but never the directory:
// the next power cut took the name and every entry acknowledged since.
TEST(PowerCut, ASegmentFoundAfterAKilledRollIsMadeDurableBeforeItIsUsed) {
  SimFs fs;
  fs.mkdirs_durable("/n");
  Index acked;
  {
    auto wal = Wal::open("/n/wal", on(fs, 8 << 10), nullptr);
    ASSERT_TRUE(wal) << wal.error().message;
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 20, 200), HardState{Term{1}, NodeId{}, Index{20}}}));
    // This batch rolls to a new segment; the process dies at the directory sync (nothing after
    // it runs: the sync fails, and the Wal is dropped without a power cut).
    fs.set_fault([](const SimFs::Record& r) { return r.op == SimFs::Op::fsync_dir ? EIO : 0; });
    EXPECT_FALSE((*wal)->write(WriteBatch{{}, entries(21, 60, 200), {}}));
    fs.set_fault(nullptr);
  }
  {
    Recovered rec;
    auto wal = Wal::open("/n/wal", on(fs, 8 << 10), &rec);
    ASSERT_TRUE(wal) << wal.error().message;
    std::uint64_t last = rec.entries.empty() ? 0 : rec.entries.back().index.value;
    ASSERT_GE(last, 20u);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(last + 1, last + 3, 200), HardState{Term{1}, NodeId{}, Index{last + 3}}}));
    acked = Index{last + 3};
  }
  fs.crash_lose_all();  // only what was made durable survives
  Recovered rec;
  auto wal = Wal::open("/n/wal", on(fs, 8 << 10), &rec);
  ASSERT_TRUE(wal) << wal.error().message;
  ASSERT_FALSE(rec.entries.empty());
  EXPECT_GE(rec.entries.back().index, acked) << "entries acknowledged after the restart vanished with their segment's name";
}

}  // namespace
}  // namespace tern::storage
