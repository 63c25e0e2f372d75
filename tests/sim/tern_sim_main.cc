// tern-sim: run or replay simulated Raft schedules.
//   tern-sim --seed N [--runs K] [--nodes 3|5] [--ticks T] [--verbose] [--history FILE]
// With --runs K, runs seeds N, N+1, ... with random fault schedules drawn from each seed and
// stops at the first failure, printing the seed that replays it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/sim/sim.h"

using namespace tern::sim;

int main(int argc, char** argv) {
  std::uint64_t seed = 1, runs = 1;
  int nodes = 3;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seed") seed = std::strtoull(next(), nullptr, 10);
    else if (a == "--runs") runs = std::strtoull(next(), nullptr, 10);
    else if (a == "--nodes") nodes = std::atoi(next());
    else if (a == "--ticks") o.ticks = static_cast<std::uint32_t>(std::atoi(next()));
    else if (a == "--verbose") o.verbose = true;
    else if (a == "--history") o.history_path = next();
    else {
      std::fprintf(stderr, "usage: tern-sim --seed N [--runs K] [--nodes 3|5] [--ticks T] [--verbose] [--history FILE]\n");
      return 2;
    }
  }
  o.voters = nodes;
  o.spares = 1;
  std::uint64_t writes = 0;
  for (std::uint64_t r = 0; r < runs; ++r) {
    o.seed = seed + r;
    o.faults = random_faults(o.seed, o.ticks, nodes + 1);
    Outcome out = run(o);
    writes += out.writes_ok;
    if (!out.ok) {
      std::printf("FAIL seed=%llu nodes=%d: %s\n  replay: tern-sim --seed %llu --nodes %d\n  schedule:",
                  (unsigned long long)o.seed, nodes, out.error.c_str(), (unsigned long long)o.seed, nodes);
      for (auto& f : o.faults) std::printf(" %s", describe(f).c_str());
      std::printf("\n");
      return 1;
    }
  }
  std::printf("ok: %llu runs from seed %llu, %d nodes, %llu acknowledged writes\n", (unsigned long long)runs,
              (unsigned long long)seed, nodes, (unsigned long long)writes);
  return 0;
}
