// The simulated file system's crash semantics (tests/common/sim_fs.h): what a power cut may and
// may not do to synced and unsynced data, sizes and names; faults; descriptors; traces.
#include "tests/common/sim_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <set>

#include "raft/storage/data_dir.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"

namespace tern::testing {
namespace {

using storage::write_full;

std::string pattern(std::size_t n, char c) { return std::string(n, c); }

int create(SimFs& fs, const std::string& p) { return fs.open(p, O_RDWR | O_CREAT, 0644); }

TEST(SimFs, ReadsWhatWasWrittenAndListsNames) {
  SimFs fs;
  fs.mkdirs_durable("/a/b");
  int fd = create(fs, "/a/b/f");
  ASSERT_GE(fd, 3);
  ASSERT_EQ(write_full(fs, fd, "hello", 5, 10), 0);
  EXPECT_EQ(fs.size(fd), 15);
  char buf[15];
  ASSERT_EQ(storage::read_full(fs, fd, buf, 15, 0), 0);
  EXPECT_EQ(std::string(buf, 15), std::string(10, '\0') + "hello");
  EXPECT_EQ(fs.list("/a/b"), std::vector<std::string>{"f"});
  EXPECT_EQ(fs.list("/a"), std::vector<std::string>{"b"});
  EXPECT_EQ(fs.open("/a/nope", O_RDONLY, 0), -ENOENT);
  EXPECT_EQ(fs.open("/x/y", O_RDWR | O_CREAT, 0644), -ENOENT);
}

TEST(SimFs, SyncedDataAndNamesSurviveEveryCrash) {
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    SimFs fs;
    fs.mkdirs_durable("/d");
    int fd = create(fs, "/d/f");
    std::string data = pattern(10000, 'x');
    ASSERT_EQ(write_full(fs, fd, data.data(), data.size(), 0), 0);
    ASSERT_EQ(fs.fdatasync(fd), 0);
    ASSERT_EQ(fs.fsync_dir("/d"), 0);
    std::mt19937_64 rng(seed);
    fs.crash(rng);
    EXPECT_EQ(fs.read_file("/d/f"), data) << "seed " << seed;
    EXPECT_EQ(fs.open_fds(), 0u);
  }
}

TEST(SimFs, UnsyncedPagesSurviveInAnyOrderAndSectorsTear) {
  // Three pages written in one call, never synced: every subset of them (and torn ones) can be
  // what the disk holds; the file size may or may not have grown.
  std::set<std::string> seen;
  bool torn = false;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    SimFs fs;
    fs.mkdirs_durable("/d");
    fs.write_file_durable("/d/f", "");
    int fd = fs.open("/d/f", O_RDWR, 0);
    std::string data = pattern(4096, 'a') + pattern(4096, 'b') + pattern(4096, 'c');
    ASSERT_EQ(write_full(fs, fd, data.data(), data.size(), 0), 0);
    std::mt19937_64 rng(seed);
    fs.crash(rng);
    std::string got = fs.read_file("/d/f");
    if (got.size() == data.size()) {
      std::string shape;
      for (int p = 0; p < 3; ++p) {
        std::string page = got.substr(p * 4096, 4096);
        if (page == pattern(4096, "abc"[p])) shape += "1";
        else if (page == pattern(4096, '\0')) shape += "0";
        else {
          shape += "t";
          torn = true;
          for (int s = 0; s < 8; ++s) {
            std::string sec = page.substr(s * 512, 512);
            EXPECT_TRUE(sec == pattern(512, "abc"[p]) || sec == pattern(512, '\0'));  // sector-atomic
          }
        }
      }
      seen.insert(shape);
    } else {
      EXPECT_EQ(got.size(), 0u);  // the old size
    }
  }
  for (const char* s : {"000", "001", "010", "100", "011", "101", "110", "111"}) EXPECT_TRUE(seen.count(s)) << s;
  EXPECT_TRUE(torn);
}

TEST(SimFs, PreallocatedSpaceReadsZerosAndSizeNeedsASync) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  int fd = create(fs, "/d/f");
  ASSERT_EQ(fs.fsync_dir("/d"), 0);
  ASSERT_EQ(fs.fallocate(fd, 1 << 16), 0);
  EXPECT_EQ(fs.size(fd), 1 << 16);
  {
    auto c = fs.clone();
    c->crash_lose_all();  // the size change was never synced
    EXPECT_EQ(c->read_file("/d/f").size(), 0u);
  }
  ASSERT_EQ(fs.fdatasync(fd), 0);  // fdatasync persists the size (Linux semantics)
  ASSERT_EQ(write_full(fs, fd, "abc", 3, 5000), 0);
  fs.crash_lose_all();
  std::string got = fs.read_file("/d/f");
  EXPECT_EQ(got, std::string(1 << 16, '\0'));  // the unsynced write is gone; zeros remain
}

TEST(SimFs, TruncateIsDurableOnlyAfterSync) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  fs.write_file_durable("/d/f", pattern(9000, 'q'));
  int fd = fs.open("/d/f", O_RDWR, 0);
  ASSERT_EQ(fs.ftruncate(fd, 100), 0);
  auto lose = fs.clone();
  lose->crash_lose_all();
  EXPECT_EQ(lose->read_file("/d/f"), pattern(9000, 'q'));
  fs.crash_keep_all();
  EXPECT_EQ(fs.read_file("/d/f"), pattern(100, 'q'));
}

TEST(SimFs, UnsyncedRenameCanVanishASyncedOneCannot) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  fs.write_file_durable("/d/tmp", "new");
  ASSERT_EQ(fs.rename("/d/tmp", "/d/final"), 0);
  auto lost = fs.clone();
  lost->crash_lose_all();
  EXPECT_TRUE(lost->exists("/d/tmp"));
  EXPECT_FALSE(lost->exists("/d/final"));
  auto kept = fs.clone();
  kept->crash_keep_all();
  EXPECT_EQ(kept->read_file("/d/final"), "new");
  ASSERT_EQ(fs.fsync_dir("/d"), 0);
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    auto c = fs.clone();
    std::mt19937_64 rng(seed);
    c->crash(rng);
    EXPECT_EQ(c->read_file("/d/final"), "new");
    EXPECT_FALSE(c->exists("/d/tmp"));
  }
}

TEST(SimFs, UnlinksPersistIndependentlyUntilTheDirectoryIsSynced) {
  // Two unlinks, one directory sync missing: a later one may persist while an earlier one does not.
  bool later_only = false;
  for (std::uint64_t seed = 0; seed < 100 && !later_only; ++seed) {
    SimFs fs;
    fs.mkdirs_durable("/d");
    fs.write_file_durable("/d/1", "1");
    fs.write_file_durable("/d/2", "2");
    ASSERT_EQ(fs.unlink("/d/1"), 0);
    ASSERT_EQ(fs.unlink("/d/2"), 0);
    std::mt19937_64 rng(seed);
    fs.crash(rng);
    later_only = fs.exists("/d/1") && !fs.exists("/d/2");
  }
  EXPECT_TRUE(later_only);
}

TEST(SimFs, AFileInAnUnsyncedDirectoryVanishesWithIt) {
  SimFs fs;
  fs.mkdirs_durable("/data");
  ASSERT_EQ(fs.mkdir("/data/wal"), 0);
  fs.write_file_durable("/data/wal/1", "acknowledged");  // file and its name synced, /data not
  auto c = fs.clone();
  c->crash_lose_all();
  EXPECT_FALSE(c->exists("/data/wal"));
  EXPECT_FALSE(c->exists("/data/wal/1"));
  ASSERT_EQ(fs.fsync_dir("/data"), 0);
  fs.crash_lose_all();
  EXPECT_EQ(fs.read_file("/data/wal/1"), "acknowledged");
}

TEST(SimFs, FsyncOfAFileDoesNotMakeItsNameDurable) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  int fd = create(fs, "/d/f");
  ASSERT_EQ(write_full(fs, fd, "x", 1, 0), 0);
  ASSERT_EQ(fs.fsync(fd), 0);
  fs.crash_lose_all();
  EXPECT_FALSE(fs.exists("/d/f"));
}

TEST(SimFs, FaultsFailTheChosenOperation) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  int fd = create(fs, "/d/f");
  fs.fail_nth(SimFs::Op::fdatasync, 2, EIO);
  EXPECT_EQ(fs.fdatasync(fd), 0);
  EXPECT_EQ(write_full(fs, fd, "x", 1, 0), 0);
  EXPECT_EQ(fs.fdatasync(fd), -EIO);
  EXPECT_EQ(fs.fdatasync(fd), 0);
  fs.set_fault([](const SimFs::Record& r) { return r.op == SimFs::Op::pwrite || r.op == SimFs::Op::fallocate ? ENOSPC : 0; });
  EXPECT_EQ(fs.pwrite(fd, "y", 1, 0), -ENOSPC);
  EXPECT_EQ(fs.fallocate(fd, 1 << 20), -ENOSPC);
  EXPECT_EQ(fs.size(fd), 1);
  EXPECT_EQ(fs.read_file("/d/f"), "x");  // the failed write changed nothing
}

TEST(SimFs, DescriptorsAreReusedLikePosixAndStaleClosesAreCounted) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  int a = create(fs, "/d/a");
  ASSERT_EQ(fs.close(a), 0);
  int b = create(fs, "/d/b");
  EXPECT_EQ(a, b);  // lowest free number, like the kernel
  EXPECT_EQ(fs.bad_closes(), 0u);
  EXPECT_EQ(fs.close(b), 0);
  EXPECT_EQ(fs.close(b), -EBADF);
  EXPECT_EQ(fs.bad_closes(), 1u);
}

TEST(SimFs, LocksExcludeUntilClosedOrCrashed) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  int l = fs.lock("/d/LOCK");
  ASSERT_GE(l, 0);
  EXPECT_EQ(fs.lock("/d/LOCK"), -EWOULDBLOCK);
  fs.close(l);
  int l2 = fs.lock("/d/LOCK");
  ASSERT_GE(l2, 0);
  fs.crash_keep_all();
  EXPECT_GE(fs.lock("/d/LOCK"), 0);
}

TEST(SimFs, TraceRecordsOperationsMarksAndObserverSeesThem) {
  SimFs fs;
  fs.set_trace(true);
  std::vector<SimFs::Op> seen;
  fs.set_observer([&](const SimFs::Record& r) { seen.push_back(r.op); });
  fs.mkdirs_durable("/d");
  int fd = create(fs, "/d/f");
  fs.pwrite(fd, "abc", 3, 0);
  fs.mark("ack 1");
  auto t = fs.trace();
  ASSERT_GE(t.size(), 4u);
  EXPECT_EQ(t.back().op, SimFs::Op::mark);
  EXPECT_EQ(t.back().path2, "ack 1");
  EXPECT_EQ(t[t.size() - 2].op, SimFs::Op::pwrite);
  EXPECT_EQ(t[t.size() - 2].length, 3u);
  EXPECT_EQ(seen.size(), t.size());
  for (std::size_t i = 1; i < t.size(); ++i) EXPECT_EQ(t[i].seq, t[i - 1].seq + 1);
}

TEST(SimFs, EnumerationProducesEveryCrashStateOnce) {
  SimFs fs;
  fs.mkdirs_durable("/d");
  fs.write_file_durable("/d/1", "1");
  fs.write_file_durable("/d/2", "2");
  ASSERT_EQ(fs.unlink("/d/1"), 0);
  ASSERT_EQ(fs.unlink("/d/2"), 0);
  std::set<std::string> shapes;
  std::size_t n = fs.enumerate_crashes(100, [&](SimFs& s) {
    shapes.insert(std::string(s.exists("/d/1") ? "1" : "-") + (s.exists("/d/2") ? "2" : "-"));
  });
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(shapes, (std::set<std::string>{"12", "1-", "-2", "--"}));
  // A dirty page (torn, durable, 1 version) with 8 sector choices when torn: bounded by limit.
  int fd = fs.open("/d/f", O_RDWR | O_CREAT, 0644);
  std::string page(4096, 'x');
  ASSERT_EQ(write_full(fs, fd, page.data(), page.size(), 0), 0);
  EXPECT_EQ(fs.enumerate_crashes(10, [](SimFs&) {}), 10u);
}

TEST(SimFs, CrashesAreDeterministicForASeed) {
  auto run = [](std::uint64_t seed) {
    SimFs fs;
    fs.mkdirs_durable("/d");
    int fd = create(fs, "/d/f");
    std::string data = pattern(5 * 4096, 'z');
    write_full(fs, fd, data.data(), data.size(), 0);
    std::mt19937_64 rng(seed);
    fs.crash(rng);
    return fs.read_file("/d/f") + (fs.exists("/d/f") ? "+" : "-");
  };
  EXPECT_EQ(run(7), run(7));
}

TEST(SimFs, TheRealStorageRunsOnIt) {
  using namespace storage;
  SimFs fs;
  fs.mkdirs_durable("/n1");
  for (int round = 0; round < 2; ++round) {
    auto dd = DataDir::open("/n1/data", 7, 1, fs);
    ASSERT_TRUE(dd) << dd.error().message;
    EXPECT_EQ((*dd)->first_use(), round == 0);
    EXPECT_FALSE(DataDir::open("/n1/data", 7, 1, fs));  // locked
    WalOptions o;
    o.io = &fs;
    o.segment_bytes = 16 << 10;
    Recovered rec;
    auto wal = Wal::open((*dd)->wal_dir(), o, &rec);
    ASSERT_TRUE(wal) << wal.error().message;
    if (round == 0) {
      std::vector<raft::Entry> es;
      for (std::uint64_t i = 1; i <= 100; ++i) es.push_back(raft::Entry{raft::Term{1}, raft::Index{i}, raft::EntryType::normal, "v" + std::to_string(i)});
      ASSERT_TRUE((*wal)->write(WriteBatch{{}, es, raft::HardState{raft::Term{1}, raft::NodeId{1}, raft::Index{100}}}));
      raft::SnapshotMeta m;
      m.index = raft::Index{50};
      m.term = raft::Term{1};
      ASSERT_TRUE(SnapshotStore((*dd)->snap_dir(), fs).save(m, "state"));
    } else {
      EXPECT_EQ(rec.entries.size(), 100u);
      EXPECT_EQ(rec.hard_state.commit, raft::Index{100});
      auto snap = SnapshotStore((*dd)->snap_dir(), fs).load_newest();
      ASSERT_TRUE(snap && *snap);
      EXPECT_EQ((**snap).meta.index, raft::Index{50});
    }
    wal->reset();
    dd->reset();
    fs.crash_keep_all();
  }
}

}  // namespace
}  // namespace tern::testing
