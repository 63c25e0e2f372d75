// Linearizability checker benchmark (issue 6): generated register histories of 10,000 to
// 1,000,000 operations over 1 to 1,000 keys with 5 to 50 processes; parse + check time and peak
// memory. Each configuration runs in a fresh child process so that peak RSS is its own.
//   check_bench                    runs the matrix, prints and writes bench/results/check.md
//   check_bench OPS KEYS PROCS     runs one configuration and prints "seconds peak_kib verdict"
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"

namespace {

// Concurrent register operations, each taking effect at a random moment between its invocation
// and completion (so the history is linearizable); 1 % of writes end indeterminate.
std::string generate(std::size_t ops, int keys, int procs, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  struct Pending {
    bool write;
    int key;
    std::int64_t value;
    bool applied;
  };
  std::vector<std::int64_t> regs(static_cast<std::size_t>(keys), -1);
  std::map<int, Pending> pending;
  std::string out;
  out.reserve(ops * 140);
  std::size_t issued = 0;
  std::int64_t next = 1;
  char buf[256];
  while (issued < ops || !pending.empty()) {
    int p = static_cast<int>(rng() % static_cast<std::uint64_t>(procs));
    auto it = pending.find(p);
    if (it == pending.end()) {
      if (issued >= ops) continue;
      Pending op{rng() % 2 == 0, static_cast<int>(rng() % static_cast<std::uint64_t>(keys)), 0, false};
      if (op.write) op.value = next++;
      std::snprintf(buf, sizeof buf, "{\"process\":%d,\"type\":\"invoke\",\"f\":\"%s\",\"key\":\"k%d\",\"value\":%s}\n", p,
                    op.write ? "write" : "read", op.key, op.write ? std::to_string(op.value).c_str() : "null");
      out += buf;
      pending[p] = op;
      ++issued;
    } else if (!it->second.applied) {
      Pending& op = it->second;
      auto& reg = regs[static_cast<std::size_t>(op.key)];
      if (op.write) reg = op.value;
      else op.value = reg;
      op.applied = true;
    } else {
      Pending& op = it->second;
      bool info = op.write && rng() % 100 == 0;
      std::string v = op.value < 0 ? "null" : std::to_string(op.value);
      std::snprintf(buf, sizeof buf, "{\"process\":%d,\"type\":\"%s\",\"f\":\"%s\",\"value\":%s}\n", p, info ? "info" : "ok",
                    op.write ? "write" : "read", v.c_str());
      out += buf;
      pending.erase(it);
    }
  }
  return out;
}

int run_one(std::size_t ops, int keys, int procs) {
  std::string text = generate(ops, keys, procs, ops * 31 + static_cast<std::size_t>(keys * 7 + procs));
  auto start = std::chrono::steady_clock::now();
  auto h = tern::check::parse_history(text);
  if (!h) {
    std::printf("parse error line %zu: %s\n", h.error().line, h.error().message.c_str());
    return 3;
  }
  double parsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  tern::check::CheckOptions o;
  o.timeout_seconds = 120;
  auto r = tern::check::check_history(*h, "register", o);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("%.3f %.3f %ld %s\n", total, parsed, ru.ru_maxrss, tern::check::verdict_name(r.verdict));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4) return run_one(std::strtoull(argv[1], nullptr, 10), std::atoi(argv[2]), std::atoi(argv[3]));
  struct Config {
    std::size_t ops;
    int keys, procs;
  };
  const Config matrix[] = {{10'000, 1, 5},      {10'000, 10, 20},    {100'000, 100, 20}, {100'000, 1000, 50},
                           {100'000, 10, 5},    {1'000'000, 1000, 20}, {1'000'000, 100, 50}};
  std::string table =
      "| operations | keys | processes | total s (parse + check) | parse s | peak RSS MiB | verdict |\n"
      "|---|---|---|---|---|---|---|\n";
  for (auto& c : matrix) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      std::string a = std::to_string(c.ops), b = std::to_string(c.keys), d = std::to_string(c.procs);
      execl("/proc/self/exe", argv[0], a.c_str(), b.c_str(), d.c_str(), nullptr);
      _exit(127);
    }
    close(fds[1]);
    char buf[256] = {};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    double total = 0, parse = 0;
    long kib = 0;
    char verdict[64] = {};
    if (n <= 0 || std::sscanf(buf, "%lf %lf %ld %63[^\n]", &total, &parse, &kib, verdict) != 4) {
      std::fprintf(stderr, "configuration %zu/%d/%d failed: %s\n", c.ops, c.keys, c.procs, buf);
      continue;
    }
    char row[256];
    std::snprintf(row, sizeof row, "| %zu | %d | %d | %.2f | %.2f | %.0f | %s |\n", c.ops, c.keys, c.procs, total, parse,
                  static_cast<double>(kib) / 1024.0, verdict);
    std::fputs(row, stdout);
    std::fflush(stdout);
    table += row;
  }
  const char* out = std::getenv("TERN_BENCH_OUT");
  if (out) std::ofstream(out) << table;
  return 0;
}
