// Cluster benchmark (issue 4): raw 100-byte proposals through a real 3-process ternd cluster on
// loopback, with 1, 16 and 128 proposals outstanding on one admin RPC connection to the leader.
// Reports committed entries/s, p50/p99 commit latency (propose call to committed-and-applied
// reply), and the CPU time the three servers spent per committed entry (from /proc/<pid>/stat),
// next to the raw pwrite+fdatasync rate of the same disk measured in the same run. Several
// interleaved rounds; the table shows medians.
//
// Usage: cluster_bench [SECONDS_PER_CASE=3] [ROUNDS=3]; TERND_BIN names ternd (default: the
// build tree's), TERN_BENCH_OUT=file.md also writes the table there. The client connection is
// mutual TLS like the harness's default (issue 17); TERN_BENCH_CLIENT_TLS=0 runs it in plaintext
// (--insecure client port, peers still authenticated) to compare.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench/common/bench_util.h"
#include "tests/cluster/harness.h"

using namespace tern::testing;
using tern::bench::median;
using tern::bench::percentile;
using Clock = std::chrono::steady_clock;

namespace {


struct CaseResult {
  double entries_per_s = 0, p50_us = 0, p99_us = 0, cpu_us_per_entry = 0;
  std::uint64_t errors = 0;
};

struct Load {
  tern::proto::Admin::Client admin;
  std::string payload;
  Clock::time_point end;
  std::vector<double> latencies_us;
  std::uint64_t ok = 0, errors = 0, seq = 0;
};

kj::Promise<void> slot(Load& l) {
  if (Clock::now() >= l.end) return kj::READY_NOW;
  auto req = l.admin.proposeRequest();
  // Distinct payloads: the sequence number in the first bytes.
  std::snprintf(l.payload.data(), l.payload.size(), "%016llu", static_cast<unsigned long long>(++l.seq));
  req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(l.payload.data()), l.payload.size()));
  auto t0 = Clock::now();
  return req.send().then([&l, t0](capnp::Response<tern::proto::Admin::ProposeResults>&& r) {
    if (r.getResult().getCode() == tern::proto::AdminCode::OK) {
      ++l.ok;
      l.latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    } else {
      ++l.errors;
    }
    return slot(l);
  });
}

CaseResult run_case(Cluster& c, std::uint64_t leader, int outstanding, double seconds) {
  double cpu0 = 0, cpu1 = 0;
  for (auto id : c.ids()) cpu0 += process_cpu_seconds(c.node(id).pid);
  Load l{c.admin(leader), std::string(100, 'x'), Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)), {}, 0, 0, 0};
  auto t0 = Clock::now();
  auto slots = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<std::size_t>(outstanding));
  for (int i = 0; i < outstanding; ++i) slots.add(slot(l));
  kj::joinPromises(slots.finish()).wait(c.kj_io().waitScope);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto id : c.ids()) cpu1 += process_cpu_seconds(c.node(id).pid);
  CaseResult r;
  r.entries_per_s = static_cast<double>(l.ok) / secs;
  r.p50_us = percentile(l.latencies_us, 0.5);
  r.p99_us = percentile(l.latencies_us, 0.99);
  r.cpu_us_per_entry = l.ok ? (cpu1 - cpu0) * 1e6 / static_cast<double>(l.ok) : 0;
  r.errors = l.errors;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  ClusterOptions o;
  o.election_timeout_ms = 1000;
  o.heartbeat_interval_ms = 100;
  o.snapshot_entries = 1000000;
  o.log_level = "warn";
  if (const char* t = std::getenv("TERN_BENCH_CLIENT_TLS")) o.client_tls = std::string(t) != "0";
  Cluster c(tern::bench::default_ternd(argv[0]), o);
  c.start_all();
  auto leader = c.wait_for_leader(std::chrono::seconds(15));
  if (leader == 0) {
    std::fprintf(stderr, "no leader\n");
    return 1;
  }
  run_case(c, leader, 16, 1.0);  // warm-up: connections, allocator, page cache

  const auto levels = tern::bench::levels_from_env({1, 16, 128});
  std::vector<std::vector<CaseResult>> results(levels.size());
  std::vector<double> raw;
  for (int round = 0; round < rounds; ++round) {
    raw.push_back(tern::bench::raw_fdatasync(c.node(leader).dir, 1.0).ops_per_s);
    for (std::size_t i = 0; i < levels.size(); ++i) {
      auto r = run_case(c, leader, levels[i], seconds);
      std::fprintf(stderr, "round %d, %3d outstanding: %9.0f entries/s, p50 %6.0f us, p99 %6.0f us, %5.1f us CPU/entry, %llu errors\n",
                   round + 1, levels[i], r.entries_per_s, r.p50_us, r.p99_us, r.cpu_us_per_entry,
                   static_cast<unsigned long long>(r.errors));
      results[i].push_back(r);
    }
  }
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "| outstanding | committed entries/s | p50 commit µs | p99 commit µs | server CPU µs/entry (3 nodes) | errors |\n"
                "|---|---|---|---|---|---|\n");
  out += line;
  for (std::size_t i = 0; i < levels.size(); ++i) {
    std::vector<double> eps, p50, p99, cpu;
    std::uint64_t errors = 0;
    for (auto& r : results[i]) {
      eps.push_back(r.entries_per_s);
      p50.push_back(r.p50_us);
      p99.push_back(r.p99_us);
      cpu.push_back(r.cpu_us_per_entry);
      errors += r.errors;
    }
    std::snprintf(line, sizeof line, "| %d | %.0f | %.0f | %.0f | %.1f | %llu |\n", levels[i], median(eps), median(p50),
                  median(p99), median(cpu), static_cast<unsigned long long>(errors));
    out += line;
  }
  std::snprintf(line, sizeof line, "\nRaw pwrite+fdatasync loop on the same disk, same run: %.0f/s (median of %d).\n",
                median(raw), rounds);
  out += line;
  std::fputs(out.c_str(), stdout);
  if (const char* f = std::getenv("TERN_BENCH_OUT")) std::ofstream(f) << out;
  return 0;
}
