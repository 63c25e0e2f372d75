// WAL benchmark (issue 3): in one run, the device limit (a raw write + fdatasync loop) and
// tern's WAL with group commit for 128-byte records with 1, 16 and 256 concurrent appenders
// (each appender waits for its record to be durable before appending the next). Reports
// records/s and p50/p99 latency, prints a markdown table and writes it to $TERN_BENCH_OUT.
//   storage_bench [DIR] [SECONDS_PER_CASE]   (DIR defaults to ./storage-bench-data, on disk)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/common/bench_util.h"
#include "raft/storage/wal.h"

using namespace tern::storage;
using tern::bench::percentile;
using Clock = std::chrono::steady_clock;

namespace {

struct Row {
  std::string what;
  double records_per_s;
  double p50_us, p99_us;
};

Row raw_fdatasync(const std::string& dir, double seconds) {
  auto raw = tern::bench::raw_fdatasync(dir, seconds);
  if (raw.ops_per_s == 0) {
    std::fprintf(stderr, "raw write+fdatasync loop failed in %s\n", dir.c_str());
    std::exit(1);
  }
  return Row{"raw write+fdatasync loop (device limit)", raw.ops_per_s, percentile(raw.latencies_us, 0.5),
             percentile(raw.latencies_us, 0.99)};
}

Row wal_appenders(const std::string& dir, int appenders, double seconds) {
  std::filesystem::remove_all(dir + "/wal");
  auto wal = Wal::open(dir + "/wal", WalOptions{}, nullptr);
  if (!wal) {
    std::fprintf(stderr, "%s\n", wal.error().message.c_str());
    std::exit(1);
  }
  std::mutex order_mu;  // appends must be contiguous: allocate the index and submit together
  std::uint64_t next = 1;
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lats(static_cast<std::size_t>(appenders));
  const std::string payload(128 - 17, 'r');  // 128-byte record payload: 17 bytes of header fields + data
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int a = 0; a < appenders; ++a) {
    threads.emplace_back([&, a] {
      std::mutex m;
      std::condition_variable cv;
      while (!stop.load()) {
        bool done = false;
        auto t0 = Clock::now();
        {
          std::lock_guard lk(order_mu);
          WriteBatch b;
          b.entries.push_back(Entry{Term{1}, Index{next++}, tern::raft::EntryType::normal, payload});
          auto r = (*wal)->submit(std::move(b), [&](tern::Result<Index, StorageError> res) {
            if (!res) std::exit(1);
            std::lock_guard l2(m);
            done = true;
            cv.notify_one();
          });
          if (!r) std::exit(1);
        }
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return done; });
        lats[static_cast<std::size_t>(a)].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : lats) all.insert(all.end(), l.begin(), l.end());
  double n = static_cast<double>(all.size());
  return Row{"tern WAL, " + std::to_string(appenders) + " blocking appender thread" + (appenders > 1 ? "s" : ""), n / secs, percentile(all, 0.5),
             percentile(all, 0.99)};
}

// Asynchronous appenders: `outstanding` appends in flight; each completion (on the WAL's disk
// thread) immediately submits that appender's next record, as a pipelining client or the Raft
// driver does. No thread per appender, so this measures the WAL rather than the scheduler.
Row wal_async(const std::string& dir, int outstanding, double seconds) {
  std::filesystem::remove_all(dir + "/wal");
  auto wal = Wal::open(dir + "/wal", WalOptions{}, nullptr);
  if (!wal) std::exit(1);
  std::mutex order_mu;
  std::uint64_t next = 1;
  std::atomic<bool> stop{false};
  std::atomic<int> in_flight{0};
  std::mutex lat_mu;
  std::vector<double> lat;
  lat.reserve(1 << 22);
  const std::string payload(128 - 17, 'r');
  std::function<void()> submit_one;
  submit_one = [&] {
    std::lock_guard lk(order_mu);
    WriteBatch b;
    b.entries.push_back(Entry{Term{1}, Index{next++}, tern::raft::EntryType::normal, payload});
    auto t0 = Clock::now();
    ++in_flight;
    auto r = (*wal)->submit(std::move(b), [&, t0](tern::Result<Index, StorageError> res) {
      if (!res) std::exit(1);
      {
        std::lock_guard l2(lat_mu);
        lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      --in_flight;
      if (!stop.load()) submit_one();
    });
    if (!r) std::exit(1);
  };
  auto start = Clock::now();
  for (int a = 0; a < outstanding; ++a) submit_one();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  while (in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::lock_guard l2(lat_mu);
  double n = static_cast<double>(lat.size());
  return Row{"tern WAL, " + std::to_string(outstanding) + " async appender" + (outstanding > 1 ? "s" : ""), n / secs,
             percentile(lat, 0.5), percentile(lat, 0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "storage-bench-data";
  double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
  std::filesystem::create_directories(dir);
  std::vector<Row> rows;
  rows.push_back(raw_fdatasync(dir, seconds));
  for (int a : {1, 16, 256}) rows.push_back(wal_async(dir, a, seconds));
  for (int a : {1, 16, 256}) rows.push_back(wal_appenders(dir, a, seconds));
  std::string table = "| case | records/s | p50 latency µs | p99 latency µs |\n|---|---|---|---|\n";
  char line[256];
  for (auto& r : rows) {
    std::snprintf(line, sizeof line, "| %s | %.0f | %.0f | %.0f |\n", r.what.c_str(), r.records_per_s, r.p50_us, r.p99_us);
    table += line;
  }
  std::snprintf(line, sizeof line, "\n1 async appender / raw fdatasync rate: %.2f; 1 blocking appender thread / raw: %.2f\n",
                rows[1].records_per_s / rows[0].records_per_s, rows[4].records_per_s / rows[0].records_per_s);
  table += line;
  std::fputs(table.c_str(), stdout);
  if (const char* out = std::getenv("TERN_BENCH_OUT")) std::ofstream(out) << table;
  std::filesystem::remove_all(dir);
  return 0;
}
