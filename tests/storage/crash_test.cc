// The real crash test (issue 3): a child process appends through the WAL's group commit and
// reports every index it was told is durable; the parent kills it with SIGKILL at random moments
// and, after each kill, checks that every reported index is present and intact and that the log
// is still usable (the next child appends to it). Bounded: 40 kills or 60 seconds.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "raft/storage/wal.h"

namespace tern::storage {
namespace {

std::string value_of(std::uint64_t i) { return "value-" + std::to_string(i) + std::string(i % 97, 'x'); }

[[noreturn]] void child(const std::string& dir, int out_fd, std::uint64_t seed) {
  WalOptions o;
  o.segment_bytes = 256 << 10;  // several segment rolls per run
  Recovered rec;
  auto wal = Wal::open(dir, o, &rec);
  if (!wal) _exit(3);
  std::uint64_t next = rec.entries.empty() ? 1 : rec.entries.back().index.value + 1;
  std::mt19937_64 rng(seed);
  std::atomic<int> outstanding{0};
  while (true) {
    if (outstanding.load() > 64) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;
    }
    WriteBatch b;
    auto n = 1 + rng() % 8;
    for (std::uint64_t k = 0; k < n; ++k, ++next)
      b.entries.push_back(Entry{Term{1}, Index{next}, raft::EntryType::normal, value_of(next)});
    ++outstanding;
    auto r = (*wal)->submit(std::move(b), [&, out_fd](Result<Index, StorageError> res) {
      if (!res) _exit(4);
      std::uint64_t v = res->value;
      if (::write(out_fd, &v, sizeof v) != sizeof v) _exit(5);
      --outstanding;
    });
    if (!r) _exit(6);
  }
}

TEST(CrashTest, EveryReportedDurableIndexSurvivesSigkill) {
  char tmpl[] = "/work/tern-crash-XXXXXX";
  char* made = ::mkdtemp(tmpl);
  std::string base = made ? made : "";
  if (base.empty()) {
    char tmp2[] = "/tmp/tern-crash-XXXXXX";
    base = ::mkdtemp(tmp2);
  }
  std::string dir = base + "/wal";
  std::mt19937_64 rng(20261122);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::uint64_t reported_max = 0;
  int kills = 0;
  for (; kills < 40 && std::chrono::steady_clock::now() < deadline; ++kills) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      child(dir, fds[1], rng());
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(15 + rng() % 70));  // open syncs twice (issue 15)
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited on its own with " << WEXITSTATUS(status);
    std::uint64_t v;
    while (::read(fds[0], &v, sizeof v) == sizeof v) reported_max = std::max(reported_max, v);
    ::close(fds[0]);
    // Everything ever reported durable is present and intact.
    Recovered rec;
    auto wal = Wal::open(dir, WalOptions{}, &rec);
    ASSERT_TRUE(wal) << "after kill " << kills << ": " << wal.error().message;
    ASSERT_GE(rec.entries.size(), reported_max) << "after kill " << kills;
    for (std::uint64_t i = 1; i <= rec.entries.size(); ++i) {
      ASSERT_EQ(rec.entries[i - 1].index, Index{i});
      ASSERT_EQ(rec.entries[i - 1].data, value_of(i)) << "index " << i;
    }
  }
  EXPECT_GT(reported_max, 100u);  // the children really made progress
  EXPECT_GE(kills, 10);
  std::printf("crash test: %d kills, %llu entries reported durable\n", kills, (unsigned long long)reported_max);
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace tern::storage
