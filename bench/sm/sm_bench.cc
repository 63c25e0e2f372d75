// State machine benchmark (issue 5): commands applied per second for create / set / get mixes,
// memory per node for 1 million nodes with 100-byte values, and snapshot / restore time for
// that tree, stop-the-world and captured in slices (issue 14: the longest slice and the total).
// Prints a markdown table (and writes it to $TERN_BENCH_OUT).
//   sm_bench [NODES]   (default 1,000,000)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "service/sm/command.h"
#include "service/sm/state_machine.h"

using namespace tern::sm;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// This thread's CPU time: on a shared machine, wall time also counts the time others ran.
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::string node_path(std::size_t i) {
  // 1,000 directories of 1,000 nodes each: /d123/n456789
  return "/d" + std::to_string(i % 1000) + "/n" + std::to_string(i);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  std::string table = "| measurement | value |\n|---|---|\n";
  char row[512];
  auto add = [&](const char* what, const std::string& v) {
    std::snprintf(row, sizeof row, "| %s | %s |\n", what, v.c_str());
    table += row;
    std::fputs(row, stdout);
    std::fflush(stdout);
  };
  const std::string value(100, 'v');
  // Encoded commands are prepared up front: the measurement is apply(), not encoding.
  std::vector<std::string> creates;
  creates.reserve(n);
  for (std::size_t i = 0; i < n; ++i) creates.push_back(encode(Command{0, 0, Op{OpType::create, node_path(i), value}}));
  std::uint64_t index = 0;
  long rss_before = rss_kib();
  StateMachine sm;
  for (std::size_t d = 0; d < 1000; ++d) sm.apply(++index, 1000, encode(Command{0, 0, Op{OpType::create, "/d" + std::to_string(d)}}));
  auto t0 = Clock::now();
  for (auto& c : creates) {
    auto r = sm.apply(++index, 1000, c);
    if (r.response.err != Errc::ok) return 1;
  }
  double create_s = secs(t0);
  long rss_after = rss_kib();
  creates.clear();
  creates.shrink_to_fit();
  std::snprintf(row, sizeof row, "%.0f", static_cast<double>(n) / create_s);
  add("create, 100-byte values (commands/s)", row);
  std::size_t key_bytes = 0;
  for (std::size_t i = 0; i < n; ++i) key_bytes += node_path(i).size();
  double per_node = (static_cast<double>(rss_after - rss_before) * 1024.0) / static_cast<double>(n);
  double overhead = per_node - 100.0 - static_cast<double>(key_bytes) / static_cast<double>(n);
  std::snprintf(row, sizeof row, "%.0f B (of which path %.1f B and data 100 B; overhead %.0f B)", per_node,
                static_cast<double>(key_bytes) / static_cast<double>(n), overhead);
  add("memory per node, 1M nodes (RSS delta / nodes)", row);

  std::mt19937_64 rng(1);
  std::vector<std::string> sets;
  for (int i = 0; i < 200000; ++i)
    sets.push_back(encode(Command{0, 0, Op{OpType::set, node_path(rng() % n), value}}));
  t0 = Clock::now();
  for (auto& c : sets) sm.apply(++index, 1000, c);
  std::snprintf(row, sizeof row, "%.0f", static_cast<double>(sets.size()) / secs(t0));
  add("set (commands/s)", row);
  std::vector<std::string> paths;
  for (int i = 0; i < 500000; ++i) paths.push_back(node_path(rng() % n));
  t0 = Clock::now();
  std::size_t found = 0;
  for (auto& p : paths) found += sm.get(p).err == Errc::ok;
  std::snprintf(row, sizeof row, "%.0f", static_cast<double>(paths.size()) / secs(t0));
  add("get (queries/s)", row);
  if (found != paths.size()) return 1;
  // A mix: 10 % create, 30 % set, 60 % get.
  t0 = Clock::now();
  std::size_t ops = 300000;
  for (std::size_t i = 0; i < ops; ++i) {
    auto r = rng() % 10;
    if (r == 0) sm.apply(++index, 1000, encode(Command{0, 0, Op{OpType::create, "/d1/m" + std::to_string(i), value}}));
    else if (r < 4) sm.apply(++index, 1000, encode(Command{0, 0, Op{OpType::set, node_path(rng() % n), value}}));
    else (void)sm.get(node_path(rng() % n));
  }
  std::snprintf(row, sizeof row, "%.0f", static_cast<double>(ops) / secs(t0));
  add("mix 10% create / 30% set / 60% get (ops/s, encoding included)", row);

  t0 = Clock::now();
  double c0 = cpu_now();
  std::string snap = sm.snapshot();
  double snap_s = secs(t0), snap_cpu = cpu_now() - c0;
  std::snprintf(row, sizeof row, "%.2f s (%.2f s CPU; %.0f MiB)", snap_s, snap_cpu, static_cast<double>(snap.size()) / (1 << 20));
  add("snapshot of the tree", row);
  StateMachine restored;
  t0 = Clock::now();
  bool ok = restored.restore(snap);
  std::snprintf(row, sizeof row, "%.2f s", secs(t0));
  add("restore of the tree", row);
  if (!ok || restored.digest() != sm.digest()) return 1;

  // The same snapshot captured in slices (issue 14), as the replica does it: a slice, then other
  // work on the loop. `snap` is the stop-the-world snapshot of the state the captures begin at.
  const std::size_t slice_bytes = 256 << 10;  // NodeOptions::snapshot_slice_bytes
  auto capture = [&](std::size_t writes_between, const char* label) -> bool {
    std::vector<double> slices, cpu;  // begin_snapshot and every continue_snapshot: wall, CPU seconds
    double total = 0, total_cpu = 0, writes_s = 0;
    std::size_t writes = 0, images = 0;
    auto t = Clock::now();
    double c = cpu_now();
    sm.begin_snapshot();
    cpu.push_back(cpu_now() - c);
    slices.push_back(secs(t));
    std::optional<std::vector<std::string>> pieces;
    while (!pieces) {
      auto w0 = Clock::now();
      for (std::size_t k = 0; k < writes_between; ++k, ++writes)
        sm.apply(++index, 1000, encode(Command{0, 0, Op{OpType::set, node_path(rng() % n), value}}));
      writes_s += secs(w0);
      images = std::max(images, sm.snapshot_images());
      t = Clock::now();
      c = cpu_now();
      pieces = sm.continue_snapshot(slice_bytes);
      cpu.push_back(cpu_now() - c);
      slices.push_back(secs(t));
    }
    for (double x : slices) total += x;
    for (double x : cpu) total_cpu += x;
    t = Clock::now();
    std::string joined;  // the replica joins the pieces on its snapshot thread
    std::size_t size = 0;
    for (auto& p : *pieces) size += p.size();
    joined.reserve(size);
    for (auto& p : *pieces) joined.append(p);
    double join_s = secs(t);
    std::vector<double> sorted = slices, sorted_cpu = cpu;
    std::sort(sorted.begin(), sorted.end());
    std::sort(sorted_cpu.begin(), sorted_cpu.end());
    auto p99 = [](const std::vector<double>& v) { return v[std::min(v.size() - 1, v.size() * 99 / 100)]; };
    std::snprintf(row, sizeof row,
                  "longest slice %.2f ms wall / %.2f ms CPU (p99 %.2f / %.2f ms; begin %.2f ms); %zu slices, "
                  "%.2f s wall / %.2f s CPU in all; %zu writes between slices (%.2f us each, at most %zu "
                  "before images held); join off the loop %.2f s",
                  sorted.back() * 1e3, sorted_cpu.back() * 1e3, p99(sorted) * 1e3, p99(sorted_cpu) * 1e3,
                  slices.front() * 1e3, slices.size(), total, total_cpu, writes,
                  writes ? writes_s * 1e6 / static_cast<double>(writes) : 0.0, images, join_s);
    add(label, row);
    return joined == snap;
  };
  if (!capture(0, "snapshot captured in 256 KiB slices, no writes")) return 1;
  // The writes change the state, so the second capture is compared with a fresh oracle.
  snap = sm.snapshot();
  if (!capture(20, "snapshot captured in 256 KiB slices, 20 random sets between slices")) return 1;
  if (const char* out = std::getenv("TERN_BENCH_OUT")) std::ofstream(out) << table;
  return 0;
}
