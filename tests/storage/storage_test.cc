// Tests of raft/storage (issue 3): CRC32C vectors, WAL append/truncate/compact/restart, torn
// tails at every byte, corruption, fault injection (short writes, ENOSPC, EIO on fsync, lost
// unsynced data), group commit, snapshots, the data directory, and a model-based property.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <fstream>
#include <thread>

#include "raft/storage/crc32c.h"
#include "raft/storage/data_dir.h"
#include "raft/storage/recovery.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"

namespace tern::storage {
namespace {

namespace fs = std::filesystem;
using raft::EntryType;
using raft::NodeId;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tern-storage-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

Entry entry(std::uint64_t index, std::uint64_t term = 1, const std::string& data = "") {
  return Entry{Term{term}, Index{index}, EntryType::normal, data.empty() ? "value-" + std::to_string(index) : data};
}

std::vector<Entry> entries(std::uint64_t from, std::uint64_t to, std::uint64_t term = 1) {
  std::vector<Entry> out;
  for (auto i = from; i <= to; ++i) out.push_back(entry(i, term));
  return out;
}

WalOptions with_io(Io* io) {
  WalOptions o;
  o.io = io;
  return o;
}

WalOptions medium() {
  WalOptions o;
  o.segment_bytes = 64 << 10;
  return o;
}

WalOptions small(Io* io = &posix_io()) {
  WalOptions o;
  o.segment_bytes = 4096;
  o.io = io;
  return o;
}

std::string only_segment(const std::string& dir) {
  std::vector<std::string> segs;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".wal") segs.push_back(e.path());
  std::sort(segs.begin(), segs.end());
  return segs.back();
}

// ---- CRC32C ------------------------------------------------------------------------------

TEST(Crc32c, Rfc3720Vectors) {
  unsigned char zeros[32] = {}, ones[32], inc[32], dec[32];
  std::memset(ones, 0xff, 32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<unsigned char>(i), dec[i] = static_cast<unsigned char>(31 - i);
  for (auto f : {&crc32c, &crc32c_portable}) {
    EXPECT_EQ(f(zeros, 32, 0), 0x8a9136aau);
    EXPECT_EQ(f(ones, 32, 0), 0x62a8ab43u);
    EXPECT_EQ(f(inc, 32, 0), 0x46dd794eu);
    EXPECT_EQ(f(dec, 32, 0), 0x113fdb5cu);
    EXPECT_EQ(f("123456789", 9, 0), 0xe3069283u);
  }
  // Incremental computation equals one pass, at every split.
  std::string s = "The quick brown fox jumps over the lazy dog, twice over.";
  for (std::size_t k = 0; k <= s.size(); ++k)
    EXPECT_EQ(crc32c(s.data() + k, s.size() - k, crc32c(s.data(), k)), crc32c(s.data(), s.size()));
}

// ---- WAL basics ----------------------------------------------------------------------------

TEST(Wal, AppendReadAndRecoverAfterRestart) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, small(), nullptr);
    ASSERT_TRUE(wal) << wal.error().message;
    auto r = (*wal)->write(WriteBatch{{}, entries(1, 300), HardState{Term{3}, NodeId{2}, Index{50}}});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, Index{300});
    EXPECT_GT((*wal)->segment_count(), 1u);  // small segments roll over
    auto got = (*wal)->read(Index{10}, Index{12});
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, entries(10, 12));
  }
  Recovered rec;
  auto wal = Wal::open(d.path, small(), &rec);
  ASSERT_TRUE(wal) << wal.error().message;
  EXPECT_EQ(rec.entries, entries(1, 300));
  EXPECT_EQ(rec.hard_state, (HardState{Term{3}, NodeId{2}, Index{50}}));
  EXPECT_TRUE(rec.notes.empty());
}

// write() must not overtake batches already handed to submit(): a queued older hard state that
// landed after a newer written one would take the durable term and vote back on recovery.
TEST(Wal, WriteNeverOvertakesQueuedBatchesSoTheNewestHardStateWins) {
  for (int round = 0; round < 20; ++round) {
    TempDir d;
    {
      auto wal = Wal::open(d.path, small(), nullptr);
      ASSERT_TRUE(wal) << wal.error().message;
      for (std::uint64_t t = 1; t <= 5; ++t)
        ASSERT_TRUE((*wal)->submit(WriteBatch{{}, {}, HardState{Term{t}, NodeId{1}, Index{0}}}, nullptr));
      auto r = (*wal)->write(WriteBatch{{}, {}, HardState{Term{9}, NodeId{2}, Index{0}}});
      ASSERT_TRUE(r) << r.error().message;
    }
    Recovered rec;
    auto wal = Wal::open(d.path, small(), &rec);
    ASSERT_TRUE(wal) << wal.error().message;
    ASSERT_EQ(rec.hard_state, (HardState{Term{9}, NodeId{2}, Index{0}})) << "round " << round;
  }
}

TEST(Wal, ConflictingSuffixIsReplacedDurably) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, small(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 10, 1), {}}));
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(6, 8, 2), {}}));
    EXPECT_EQ((*wal)->last_index(), Index{8});
  }
  Recovered rec;
  ASSERT_TRUE(Wal::open(d.path, small(), &rec));
  auto want = entries(1, 5, 1);
  for (auto& e : entries(6, 8, 2)) want.push_back(e);
  EXPECT_EQ(rec.entries, want);
}

TEST(Wal, GapsAreRejected) {
  TempDir d;
  auto wal = Wal::open(d.path, small(), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 3), {}}));
  auto r = (*wal)->write(WriteBatch{{}, entries(5, 6), {}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, StorageErrc::bad_argument);
}

TEST(Wal, CompactionDropsWholeSegmentsAndKeepsTheHardState) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, small(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 50), HardState{Term{7}, NodeId{1}, Index{40}}}));
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(51, 200), {}}));
    std::size_t before = (*wal)->segment_count();
    ASSERT_TRUE((*wal)->compact(Index{150}));
    EXPECT_LT((*wal)->segment_count(), before);
    EXPECT_GT((*wal)->first_index(), Index{1});
    EXPECT_LE((*wal)->first_index(), Index{151});
  }
  Recovered rec;
  ASSERT_TRUE(Wal::open(d.path, small(), &rec));
  EXPECT_EQ(rec.hard_state, (HardState{Term{7}, NodeId{1}, Index{40}}));  // from a newer segment
  ASSERT_FALSE(rec.entries.empty());
  EXPECT_LE(rec.entries.front().index, Index{151});
  EXPECT_EQ(rec.entries.back().index, Index{200});
}

TEST(Wal, ResetAfterSnapshotRestartsTheLog) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, small(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 10), {}}));
    ASSERT_TRUE((*wal)->write(WriteBatch{std::make_pair(Index{30}, Term{4}), entries(31, 32, 4), {}}));
  }
  Recovered rec;
  ASSERT_TRUE(Wal::open(d.path, small(), &rec));
  ASSERT_TRUE(rec.reset.has_value());
  EXPECT_EQ(rec.reset->first, Index{30});
  EXPECT_EQ(rec.entries, entries(31, 32, 4));
}

// ---- recovery: torn tails and corruption ---------------------------------------------------

// Offsets of each record in a segment file (parsed independently of the WAL code).
std::vector<std::pair<std::size_t, std::size_t>> record_spans(const std::string& file) {
  std::string buf;
  {
    std::ifstream in(file, std::ios::binary);
    buf.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  std::size_t off = 28;  // format 2: header 28 bytes, record header 13
  while (off + 13 <= buf.size()) {
    std::uint32_t len;
    std::memcpy(&len, buf.data() + off, 4);
    if (len == 0) break;
    spans.push_back({off, off + 13 + len});
    off += 13 + len;
  }
  return spans;
}

void overwrite(const std::string& file, std::size_t off, const std::string& bytes) {
  int fd = ::open(file.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(off)), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

TEST(Recovery, TornLastRecordAtEveryByteIsTruncatedAndLogged) {
  TempDir base;
  {
    auto wal = Wal::open(base.path + "/w", medium(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 5), {}}));
  }
  std::string seg = only_segment(base.path + "/w");
  auto spans = record_spans(seg);
  ASSERT_EQ(spans.size(), 5u);
  auto [lo, hi] = spans.back();
  std::mt19937 rng(1);
  for (std::size_t cut = lo; cut < hi; ++cut) {
    for (int garbage = 0; garbage < 2; ++garbage) {
      TempDir d;
      fs::copy(base.path + "/w", d.path + "/w");
      std::string s = only_segment(d.path + "/w");
      std::string tail(hi - cut, '\0');
      if (garbage)
        for (auto& c : tail) c = static_cast<char>(rng());
      overwrite(s, cut, tail);  // the bytes after `cut` never reached the disk
      Recovered rec;
      auto wal = Wal::open(d.path + "/w", medium(), &rec);
      ASSERT_TRUE(wal) << "cut " << cut << ": " << wal.error().message;
      EXPECT_EQ(rec.entries, entries(1, 4)) << cut;
      if (cut > lo || garbage) {
        EXPECT_EQ(rec.notes.size(), 1u) << cut;  // reported, with file and offset
      }
      // The log is usable afterwards, and the repair itself is durable.
      ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(5, 6, 2), {}}));
      wal->reset();
      Recovered again;
      ASSERT_TRUE(Wal::open(d.path + "/w", medium(), &again));
      EXPECT_EQ(again.entries.size(), 6u);
      EXPECT_TRUE(again.notes.empty());
    }
  }
}

// A bad record followed by a record written after it was synced is damage, not a cut.
TEST(Recovery, ChecksumFailureFollowedByValidRecordsRefusesToStart) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, medium(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 5), {}}));
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(6, 7), {}}));
  }
  std::string seg = only_segment(d.path);
  auto spans = record_spans(seg);
  overwrite(seg, spans[2].first + 14, "X");  // flip a payload byte of the third record
  auto wal = Wal::open(d.path, medium(), nullptr);
  ASSERT_FALSE(wal);
  EXPECT_EQ(wal.error().code, StorageErrc::corrupt);
  EXPECT_NE(wal.error().message.find(seg), std::string::npos);
  EXPECT_NE(wal.error().message.find("offset " + std::to_string(spans[2].first)), std::string::npos);
}

// The limit of a local check (docs/storage-format.md): damage inside the newest synced batch,
// with nothing written after it, looks exactly like a cut during that batch; it is truncated
// and reported, not refused.
TEST(Recovery, DamageInTheNewestBatchWithNothingAfterItIsTreatedAsATornTail) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, medium(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 5), {}}));
  }
  std::string seg = only_segment(d.path);
  auto spans = record_spans(seg);
  overwrite(seg, spans[2].first + 14, "X");
  Recovered rec;
  auto wal = Wal::open(d.path, medium(), &rec);
  ASSERT_TRUE(wal) << wal.error().message;
  EXPECT_EQ(rec.entries, entries(1, 2));
  EXPECT_EQ(rec.notes.size(), 1u);
}

TEST(Recovery, CorruptionInASealedSegmentRefusesToStart) {
  TempDir d;
  {
    auto wal = Wal::open(d.path, small(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 200), {}}));
  }
  std::vector<std::string> segs;
  for (auto& e : fs::directory_iterator(d.path)) segs.push_back(e.path());
  std::sort(segs.begin(), segs.end());
  auto spans = record_spans(segs.front());
  overwrite(segs.front(), spans.back().first + 14, "X");  // the last record of a sealed segment
  auto wal = Wal::open(d.path, small(), nullptr);
  ASSERT_FALSE(wal);
  EXPECT_EQ(wal.error().code, StorageErrc::corrupt);
}

// ---- fault injection -------------------------------------------------------------------------

// An Io with knobs: short writes, ENOSPC after a byte budget, EIO from fdatasync, EROFS on
// create, and a simulated crash that loses (part of) what was written since the last sync.
struct FaultyIo : Io {
  std::size_t max_write = SIZE_MAX;         // short writes
  std::size_t space_left = SIZE_MAX;        // ENOSPC once exhausted
  bool fail_sync = false;                   // EIO on fdatasync
  bool read_only = false;                   // EROFS on create
  std::atomic<int> syncs{0};
  std::map<int, std::vector<std::pair<off_t, std::size_t>>> unsynced;  // fd -> writes since sync
  std::map<int, std::string> paths;                                    // fd -> file
  std::map<std::string, std::vector<std::pair<off_t, std::size_t>>> closed_unsynced;

  int open(const std::string& path, int flags, int mode) override {
    if (read_only && (flags & O_CREAT)) return -EROFS;
    int fd = Io::open(path, flags, mode);
    if (fd >= 0) paths[fd] = path;
    return fd;
  }
  int close(int fd) override {
    // The page cache outlives the process: unsynced data stays at risk until the "power cut".
    auto it = unsynced.find(fd);
    if (it != unsynced.end()) {
      auto& dst = closed_unsynced[paths[fd]];
      dst.insert(dst.end(), it->second.begin(), it->second.end());
      unsynced.erase(it);
    }
    paths.erase(fd);
    return Io::close(fd);
  }
  ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) override {
    n = std::min(n, max_write);
    if (n > space_left) return -ENOSPC;
    space_left -= n;
    ssize_t r = Io::pwrite(fd, buf, n, off);
    if (r > 0) unsynced[fd].push_back({off, static_cast<std::size_t>(r)});
    return r;
  }
  int fdatasync(int fd) override {
    ++syncs;
    if (fail_sync) return -EIO;
    unsynced.erase(fd);
    return Io::fdatasync(fd);
  }
  // What a power cut does to data the disk never promised to keep: a random prefix survives.
  // Returns the number of bytes lost.
  std::size_t crash(std::mt19937& rng) {
    for (auto& [fd, writes] : unsynced) {
      auto& dst = closed_unsynced[paths[fd]];
      dst.insert(dst.end(), writes.begin(), writes.end());
    }
    unsynced.clear();
    std::size_t lost = 0;
    for (auto& [path, writes] : closed_unsynced) {
      int fd = ::open(path.c_str(), O_WRONLY);
      if (fd < 0) continue;
      std::size_t total = 0;
      for (auto& w : writes) total += w.second;
      std::size_t keep = total ? rng() % (total + 1) : 0;
      for (auto& [off, n] : writes) {
        std::size_t k = std::min(keep, n);
        keep -= k;
        std::string zeros(n - k, '\0');
        lost += zeros.size();
        if (!zeros.empty()) (void)::pwrite(fd, zeros.data(), zeros.size(), off + static_cast<off_t>(k));
      }
      ::close(fd);
    }
    closed_unsynced.clear();
    return lost;
  }
};

TEST(Faults, ShortWritesAreCompleted) {
  TempDir d;
  FaultyIo io;
  io.max_write = 7;
  {
    auto wal = Wal::open(d.path, small(&io), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 30), {}}));
  }
  Recovered rec;
  ASSERT_TRUE(Wal::open(d.path, small(), &rec));
  EXPECT_EQ(rec.entries, entries(1, 30));
}

TEST(Faults, DiskFullIsAClearErrorAndLosesNothingDurable) {
  TempDir d;
  FaultyIo io;
  {
    auto wal = Wal::open(d.path, with_io(&io), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 10), {}}));
    io.space_left = 100;
    auto r = (*wal)->write(WriteBatch{{}, entries(11, 40), {}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, StorageErrc::no_space);
    // After a failed write the WAL accepts nothing more (its tail is uncertain).
    auto again = (*wal)->write(WriteBatch{{}, entries(11, 11), {}});
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, StorageErrc::failed);
  }
  Recovered rec;
  auto wal = Wal::open(d.path, WalOptions{}, &rec);
  ASSERT_TRUE(wal) << wal.error().message;
  ASSERT_GE(rec.entries.size(), 10u);
  EXPECT_EQ(std::vector<Entry>(rec.entries.begin(), rec.entries.begin() + 10), entries(1, 10));
}

TEST(Faults, FsyncErrorIsFatalAndNeverRetried) {
  TempDir d;
  FaultyIo io;
  auto wal = Wal::open(d.path, with_io(&io), nullptr);
  ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 2), {}}));
  io.fail_sync = true;
  int before = io.syncs;
  auto r = (*wal)->write(WriteBatch{{}, entries(3, 4), {}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, StorageErrc::fsync_failed);
  io.fail_sync = false;
  auto again = (*wal)->write(WriteBatch{{}, entries(3, 4), {}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, StorageErrc::failed);
  EXPECT_EQ(io.syncs - before, 1);  // the failed fsync was not retried
  EXPECT_EQ((*wal)->durable_index(), Index{2});
  bool called = false;
  auto s = (*wal)->submit(WriteBatch{{}, entries(3, 3), {}}, [&](auto) { called = true; });
  EXPECT_FALSE(s);
  EXPECT_FALSE(called);
}

TEST(Faults, ReadOnlyDirectoryIsAClearError) {
  TempDir d;
  FaultyIo io;
  io.read_only = true;
  auto wal = Wal::open(d.path + "/w", with_io(&io), nullptr);
  ASSERT_FALSE(wal);
  EXPECT_EQ(wal.error().code, StorageErrc::io_error);
  EXPECT_NE(wal.error().message.find("Read-only"), std::string::npos);
}

TEST(Faults, SimulatedCrashLosesOnlyUnsyncedData) {
  std::mt19937 rng(42);
  std::size_t total_lost = 0;
  for (int round = 0; round < 30; ++round) {
    TempDir d;
    FaultyIo io;
    Index durable;
    std::uint64_t next = 1;
    {
      auto wal = Wal::open(d.path, small(&io), nullptr);
      for (int b = 0; b < 5; ++b) {
        auto n = 1 + rng() % 20;
        auto r = (*wal)->write(WriteBatch{{}, entries(next, next + n - 1), {}});
        ASSERT_TRUE(r);
        durable = *r;
        next += n;
      }
      // Written but never synced: the WAL is abandoned mid-batch (the process dies).
      auto n = 1 + rng() % 20;
      WriteBatch unsynced{{}, entries(next, next + n - 1), {}};
      io.fail_sync = true;  // the "crash" happens before the sync completes
      (void)(*wal)->write(unsynced);
    }
    std::size_t lost = io.crash(rng);
    total_lost += lost;
    Recovered rec;
    auto wal = Wal::open(d.path, small(), &rec);
    ASSERT_TRUE(wal) << "round " << round << ": " << wal.error().message;
    ASSERT_GE(rec.entries.size(), durable.value) << round;
    for (std::uint64_t i = 1; i <= rec.entries.size(); ++i) EXPECT_EQ(rec.entries[i - 1], entry(i)) << round;
  }
  EXPECT_GT(total_lost, 0u);  // the simulated crashes really destroyed unsynced data
}

// ---- group commit --------------------------------------------------------------------------

TEST(GroupCommit, ManyConcurrentBatchesShareFsyncsAndAllBecomeDurable) {
  TempDir d;
  FaultyIo io;
  auto wal = Wal::open(d.path, with_io(&io), nullptr);
  ASSERT_TRUE(wal);
  std::atomic<int> done{0};
  std::atomic<bool> order_ok{true};
  std::mutex mu;
  std::uint64_t next = 1;
  constexpr int batches = 400;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < batches / 8; ++k) {
        std::lock_guard lk(mu);  // entries must arrive in order; the lock only orders submission
        Index mine{next};
        auto r = (*wal)->submit(WriteBatch{{}, entries(next, next), {}}, [&, mine](Result<Index, StorageError> res) {
          if (!res || *res < mine) order_ok = false;
          ++done;
        });
        ASSERT_TRUE(r);
        ++next;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2000 && done < batches; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(done.load(), batches);
  EXPECT_TRUE(order_ok.load());
  EXPECT_LT(io.syncs.load(), batches);  // group commit: fewer fsyncs than batches
  EXPECT_EQ((*wal)->durable_index(), Index{batches});
}

// ---- model-based property ------------------------------------------------------------------

RC_GTEST_PROP(WalModel, RandomAppendTruncateCompactRestartMatchesModel, ()) {
  TempDir d;
  std::vector<Entry> model;  // the log, contiguous
  std::uint64_t term = 1;
  auto wal = Wal::open(d.path, small(), nullptr);
  RC_ASSERT(wal.has_value());
  std::unique_ptr<Wal> w = std::move(*wal);
  Index compacted{0};
  int steps = *rc::gen::inRange(1, 40);
  for (int s = 0; s < steps; ++s) {
    int op = *rc::gen::inRange(0, 10);
    Index last = model.empty() ? Index{0} : model.back().index;
    if (op < 5) {  // append, possibly replacing a suffix
      std::uint64_t from = last.value + 1;
      if (!model.empty() && *rc::gen::inRange(0, 3) == 0)
        from = *rc::gen::inRange<std::uint64_t>(std::max(compacted.value + 1, model.front().index.value), last.value + 1);
      ++term;
      auto n = *rc::gen::inRange<std::uint64_t>(1, 30);
      auto batch = entries(from, from + n - 1, term);
      RC_ASSERT(w->write(WriteBatch{{}, batch, HardState{Term{term}, NodeId{1}, compacted}}).has_value());
      while (!model.empty() && model.back().index.value >= from) model.pop_back();
      for (auto& e : batch) model.push_back(e);
    } else if (op < 7 && !model.empty()) {  // compact
      auto upto = *rc::gen::inRange<std::uint64_t>(model.front().index.value, last.value + 1);
      RC_ASSERT(w->compact(Index{upto}).has_value());
      compacted = std::max(compacted, Index{upto});
    } else {  // restart
      w.reset();
      Recovered rec;
      auto reopened = Wal::open(d.path, small(), &rec);
      RC_ASSERT(reopened.has_value());
      w = std::move(*reopened);
      // Everything above the compaction point is there, exactly; below it may be dropped.
      std::vector<Entry> want;
      for (auto& e : model)
        if (e.index > compacted || (!rec.entries.empty() && e.index >= rec.entries.front().index)) want.push_back(e);
      RC_ASSERT(rec.entries == want);
      RC_ASSERT(rec.notes.empty());
      if (!model.empty()) RC_ASSERT(rec.hard_state.term == Term{term});
    }
  }
}

// ---- snapshots -------------------------------------------------------------------------------

raft::SnapshotMeta meta(std::uint64_t index) {
  return raft::SnapshotMeta{Index{index}, Term{2}, raft::ConfState{{NodeId{1}, NodeId{2}, NodeId{3}}, {NodeId{4}}}};
}

TEST(Snapshots, SaveLoadInChunksAndKeepTwo) {
  TempDir d;
  SnapshotStore store(d.path + "/snap");
  for (std::uint64_t i : {10, 20, 30}) {
    auto w = store.begin(meta(i));
    ASSERT_TRUE(w);
    for (int c = 0; c < 10; ++c) ASSERT_TRUE((*w)->write("chunk" + std::to_string(c) + "@" + std::to_string(i) + ";"));
    ASSERT_TRUE((*w)->finish());
  }
  std::size_t files = 0;
  for (auto& e : fs::directory_iterator(d.path + "/snap")) files += e.path().extension() == ".snap";
  EXPECT_EQ(files, 2u);
  auto newest = store.load_newest();
  ASSERT_TRUE(newest && *newest);
  EXPECT_EQ((*newest)->meta, meta(30));
  auto part = store.read(**newest, 7, 10);
  ASSERT_TRUE(part);
  EXPECT_EQ(*part, std::string("chunk0@30;chunk1@30;").substr(7, 10));
}

TEST(Snapshots, DamagedNewestFallsBackToThePreviousAndIsReported) {
  TempDir d;
  SnapshotStore store(d.path);
  ASSERT_TRUE(store.save(meta(10), "older state"));
  auto newer = store.save(meta(20), "newer state");
  ASSERT_TRUE(newer);
  overwrite(newer->path, newer->data_offset + 2, "#");
  std::vector<std::string> notes;
  auto got = store.load_newest(&notes);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->meta.index, Index{10});
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("data checksum mismatch"), std::string::npos);
  EXPECT_EQ(*store.read_all(**got), "older state");
}

TEST(Snapshots, CompressedSnapshotsRoundTripAndAreSmaller) {
  TempDir d;
  SnapshotStore store(d.path);
  std::string state;
  for (int i = 0; i < 20000; ++i) state += "/config/service-" + std::to_string(i % 50) + "=enabled;";
  auto w = store.begin(meta(40), /*compress=*/true);
  ASSERT_TRUE(w);
  for (std::size_t off = 0; off < state.size(); off += 4096) ASSERT_TRUE((*w)->write(std::string_view(state).substr(off, 4096)));
  auto f = (*w)->finish();
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_TRUE(f->compressed);
  EXPECT_LT(f->data_size * 5, state.size());
  auto loaded = store.load_newest();
  ASSERT_TRUE(loaded && *loaded);
  EXPECT_TRUE((*loaded)->compressed);
  auto back = store.read_all(**loaded);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, state);
}

TEST(Snapshots, UnfinishedTempFileIsIgnored) {
  TempDir d;
  SnapshotStore store(d.path);
  ASSERT_TRUE(store.save(meta(10), "state"));
  {
    auto w = store.begin(meta(20));
    ASSERT_TRUE((*w)->write("partial"));
  }  // abandoned: never renamed
  auto got = store.load_newest();
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->meta.index, Index{10});
}

// ---- data directory --------------------------------------------------------------------------

TEST(DataDirTest, LockAndIdentity) {
  TempDir d;
  {
    auto a = DataDir::open(d.path + "/data", 77, 1);
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_TRUE((*a)->first_use());
    auto b = DataDir::open(d.path + "/data", 77, 1);
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().code, StorageErrc::locked);
  }
  auto again = DataDir::open(d.path + "/data", 77, 1);
  ASSERT_TRUE(again);
  EXPECT_FALSE((*again)->first_use());
  again->reset();
  auto other_node = DataDir::open(d.path + "/data", 77, 2);
  ASSERT_FALSE(other_node);
  EXPECT_EQ(other_node.error().code, StorageErrc::id_mismatch);
  auto other_cluster = DataDir::open(d.path + "/data", 78, 1);
  ASSERT_FALSE(other_cluster);
  EXPECT_EQ(other_cluster.error().code, StorageErrc::id_mismatch);
}

// ---- ternutl -----------------------------------------------------------------------------------

TEST(Ternutl, VerifiesAHealthyDirectoryAndFlagsADamagedSnapshot) {
  TempDir d;
  std::string dir = d.path + "/data";
  {
    auto dd = DataDir::open(dir, 5, 1);
    ASSERT_TRUE(dd);
    auto wal = Wal::open((*dd)->wal_dir(), small(), nullptr);
    ASSERT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 20), HardState{Term{2}, NodeId{1}, Index{20}}}));
    ASSERT_TRUE(SnapshotStore((*dd)->snap_dir()).save(meta(10), "state bytes"));
  }
  std::string tool = TERNUTL_PATH;
  EXPECT_EQ(std::system((tool + " verify " + dir + " > /dev/null").c_str()), 0);
  std::string out = d.path + "/out.txt";
  ASSERT_EQ(std::system((tool + " dump " + dir + " > " + out).c_str()), 0);
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(text.find("entry 20 term 1"), std::string::npos);
  EXPECT_NE(text.find("hard state: term 2 vote 1 commit 20"), std::string::npos);
  EXPECT_NE(text.find("index 10 term 2, 3 voters, 1 learners"), std::string::npos);
  for (auto& e : fs::directory_iterator(dir + "/snap")) overwrite(e.path(), 60, "!");
  EXPECT_NE(std::system((tool + " verify " + dir + " > /dev/null").c_str()), 0);
}

// ternutl verify says what the node will do (issue 15, hole 8): it refuses what the node refuses
// and accepts what the node repairs. Exit 0: the node starts; 1: it refuses.
int verify_exit(const std::string& dir) {
  int st = std::system((std::string(TERNUTL_PATH) + " verify " + dir + " > /dev/null").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string populated(const TempDir& d, const std::string& name) {
  std::string dir = d.path + "/" + name;
  auto dd = DataDir::open(dir, 5, 1);
  EXPECT_TRUE(dd);
  auto wal = Wal::open(dir + "/wal", small(), nullptr);
  EXPECT_TRUE(wal);
  EXPECT_TRUE((*wal)->write(WriteBatch{{}, entries(1, 200), HardState{Term{2}, NodeId{1}, Index{20}}}));
  return dir;
}

TEST(Ternutl, VerifySaysRefuseForAWalCompactedPastAMissingSnapshot) {
  TempDir d;
  std::string dir = populated(d, "a");
  {
    auto wal = Wal::open(dir + "/wal", small(), nullptr);
    ASSERT_TRUE((*wal)->compact(Index{150}));  // no snapshot at 150 exists
  }
  EXPECT_EQ(verify_exit(dir), 1);
}

TEST(Ternutl, VerifySaysRefuseForACorruptedIdentity) {
  TempDir d;
  std::string dir = populated(d, "b");
  overwrite(dir + "/IDENTITY", 27, "9");  // a digit of cluster_id
  EXPECT_EQ(verify_exit(dir), 1);
}

TEST(Ternutl, VerifySaysRefuseForAMissingWalDirectory) {
  TempDir d;
  std::string dir = populated(d, "c");
  fs::remove_all(dir + "/wal");
  EXPECT_EQ(verify_exit(dir), 1);
}

TEST(Ternutl, VerifySaysStartForAZeroFilledNewestSegmentThatTheNodeRepairs) {
  TempDir d;
  std::string dir = populated(d, "e");
  std::string last = only_segment(dir + "/wal");
  std::uint64_t seq = std::stoull(fs::path(last).filename().string().substr(0, 20));
  char name[64];
  std::snprintf(name, sizeof name, "/wal/%020llu.wal", static_cast<unsigned long long>(seq + 1));
  {
    std::ofstream z(dir + name, std::ios::binary);
    z << std::string(4096, '\0');  // created, the cut came before its header was durable
  }
  EXPECT_EQ(verify_exit(dir), 0);
}

// The node's side of the same cases: recover_storage (which verify runs read-only) refuses them
// too, and both agree on what a healthy and a repaired directory hold.
TEST(RecoverStorage, TheNodeRefusesWhatVerifyRefusesAndAgreesOnTheRest) {
  TempDir d;
  auto node = [](const std::string& dir) {
    RecoveryOptions o;
    o.cluster_id = 5;
    o.node_id = 1;
    o.wal = small();
    return recover_storage(dir, o);
  };
  auto verify = [](const std::string& dir) {
    RecoveryOptions o;
    o.read_only = true;
    return recover_storage(dir, o);
  };
  std::string a = populated(d, "a");
  {
    auto wal = Wal::open(a + "/wal", small(), nullptr);
    ASSERT_TRUE((*wal)->compact(Index{150}));
  }
  EXPECT_FALSE(verify(a));
  EXPECT_FALSE(node(a));
  std::string b = populated(d, "b");
  overwrite(b + "/IDENTITY", 27, "9");
  EXPECT_FALSE(verify(b));
  EXPECT_FALSE(node(b));
  std::string c = populated(d, "c");
  fs::remove_all(c + "/wal");
  EXPECT_FALSE(verify(c));
  EXPECT_FALSE(node(c));
  std::string ok = populated(d, "ok");
  auto v = verify(ok);
  ASSERT_TRUE(v) << v.error().message;
  auto n = node(ok);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(v->entries, n->entries);
  EXPECT_EQ(v->entries, entries(1, 200));
  EXPECT_EQ(v->hard_state, n->hard_state);
}

TEST(Recovery, WalFormat1IsRefusedWithAClearMessage) {
  TempDir d;
  {
    std::ofstream f(d.path + "/00000000000000000001.wal", std::ios::binary);
    std::string h = "TERNWAL1";
    h += std::string("\x01\0\0\0\0\0\0\0", 8);
    f << h << std::string(4096, '\0');
  }
  auto wal = Wal::open(d.path, small(), nullptr);
  ASSERT_FALSE(wal);
  EXPECT_EQ(wal.error().code, StorageErrc::corrupt);
  EXPECT_NE(wal.error().message.find("format 1"), std::string::npos) << wal.error().message;
}

}  // namespace
}  // namespace tern::storage
