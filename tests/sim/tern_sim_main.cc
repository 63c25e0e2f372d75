// tern-sim: run or replay simulated Raft schedules.
//   tern-sim --seed N [--runs K] [--nodes 3|5] [--ticks T] [--verbose] [--history FILE]
//   tern-sim --node --seed N [--runs K] [--voters 1|3|5] [--spares S] [--ms T] [--no-power-cuts] [--verbose]
//     the whole-node simulator (tests/sim/node_sim.h): real Replica, WAL and snapshot store on
//     simulated disks.
// With --runs K, runs seeds N, N+1, ... with random fault schedules drawn from each seed and
// stops at the first failure, printing the seed that replays it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "tests/sim/node_sim.h"
#include "tests/sim/sim.h"

using namespace tern::sim;

// The seed of the run in progress, so that an assertion (abort) still names its replay.
static volatile std::uint64_t g_seed = 0;
static char g_args[512];  // the other options, for the replay line

static void on_abort(int) {
  char buf[768];
  int n = std::snprintf(buf, sizeof buf, "FAIL (abort) seed=%llu\n  replay: tern-sim --node --seed %llu%s\n",
                        (unsigned long long)g_seed, (unsigned long long)g_seed, g_args);
  if (n > 0) (void)!::write(2, buf, static_cast<std::size_t>(n));
  ::signal(SIGABRT, SIG_DFL);
}

static int node_main(int argc, char** argv) {
  std::uint64_t seed = 1, runs = 1;
  NodeSimOptions o;
  for (int i = 2; i < argc; ++i) {
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
    else if (a == "--voters") o.voters = std::atoi(next());
    else if (a == "--spares") o.spares = std::atoi(next());
    else if (a == "--ms") o.fault_ms = static_cast<std::uint32_t>(std::atoi(next()));
    else if (a == "--no-power-cuts") o.power_cuts = false;
    else if (a == "--snapshot-entries") o.snapshot_entries = static_cast<std::uint32_t>(std::atoi(next()));
    else if (a == "--snapshot-slice-bytes") o.snapshot_slice_bytes = static_cast<std::size_t>(std::atoll(next()));
    else if (a == "--fresh-dirs") o.fresh_dirs = true;
    else if (a == "--segment-bytes") o.segment_bytes = static_cast<std::size_t>(std::atoll(next()));
    else if (a == "--remove-leader") o.remove_leader = true;  // the default; kept for old replay lines
    else if (a == "--no-remove-leader") o.remove_leader = false;
    else if (a == "--verbose") o.verbose = true;
    else {
      std::fprintf(stderr, "usage: tern-sim --node --seed N [--runs K] [--voters 1|3|5] [--spares S] [--ms T] [--snapshot-entries E] [--snapshot-slice-bytes B] [--no-power-cuts] [--fresh-dirs] [--no-remove-leader] [--verbose]\n");
      return 2;
    }
  }
  spdlog::set_level(o.verbose ? spdlog::level::info : spdlog::level::off);
  std::string rest;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seed" || a == "--runs") {
      ++i;
      continue;
    }
    rest += " " + a;
  }
  std::snprintf(g_args, sizeof g_args, "%s", rest.c_str());
  ::signal(SIGABRT, on_abort);
  NodeSimOutcome sum;
  for (std::uint64_t r = 0; r < runs; ++r) {
    o.seed = seed + r;
    g_seed = o.seed;
    NodeSimOutcome out = run_node_sim(o);
    sum.acked += out.acked;
    sum.reads_ok += out.reads_ok;
    sum.crashes += out.crashes;
    sum.power_cuts += out.power_cuts;
    sum.snapshots_installed += out.snapshots_installed;
    sum.conf_changes += out.conf_changes;
    sum.disk_faults += out.disk_faults;
    sum.acked_ok += out.acked_ok;
    sum.multi_ok += out.multi_ok;
    sum.ephemerals_created += out.ephemerals_created;
    sum.sessions_expired += out.sessions_expired;
    sum.malformed_rejected += out.malformed_rejected;
    sum.client_addresses_known += out.client_addresses_known;
    sum.events += out.events;
    sum.wal_seconds += out.wal_seconds;
    sum.snapshot_seconds += out.snapshot_seconds;
    sum.check_seconds += out.check_seconds;
    sum.reference_seconds += out.reference_seconds;
    sum.total_seconds += out.total_seconds;
    if (!out.ok) {
      std::printf("FAIL seed=%llu voters=%d: %s\n  replay: tern-sim --node --seed %llu%s --verbose\n", (unsigned long long)o.seed,
                  o.voters, out.error.c_str(), (unsigned long long)o.seed, rest.c_str());
      return 1;
    }
  }
  std::printf("ok: %llu node runs from seed %llu, %d voters + %d spares: %llu acknowledged commands (%llu ok: %llu "
              "transactions, %llu ephemeral creates; %llu sessions expired), %llu reads, "
              "%llu crashes (%llu power cuts, %llu fail-stops on disk errors), %llu snapshots installed, %llu membership changes, "
              "%llu malformed messages refused, %llu client addresses known at the end; %.1f runs/s, "
              "%.1f%% of the time in WAL writes and %.1f%% in snapshot files on the simulated disk, %.0f%% in invariant checks, "
              "%.0f%% in the reference and digests\n",
              (unsigned long long)runs, (unsigned long long)seed, o.voters, o.spares, (unsigned long long)sum.acked,
              (unsigned long long)sum.acked_ok, (unsigned long long)sum.multi_ok, (unsigned long long)sum.ephemerals_created,
              (unsigned long long)sum.sessions_expired,
              (unsigned long long)sum.reads_ok, (unsigned long long)sum.crashes, (unsigned long long)sum.power_cuts,
              (unsigned long long)sum.disk_faults, (unsigned long long)sum.snapshots_installed, (unsigned long long)sum.conf_changes,
              (unsigned long long)sum.malformed_rejected, (unsigned long long)sum.client_addresses_known,
              sum.total_seconds > 0 ? static_cast<double>(runs) / sum.total_seconds : 0.0,
              sum.total_seconds > 0 ? 100.0 * sum.wal_seconds / sum.total_seconds : 0.0,
              sum.total_seconds > 0 ? 100.0 * sum.snapshot_seconds / sum.total_seconds : 0.0,
              sum.total_seconds > 0 ? 100.0 * sum.check_seconds / sum.total_seconds : 0.0,
              sum.total_seconds > 0 ? 100.0 * sum.reference_seconds / sum.total_seconds : 0.0);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--node") return node_main(argc, argv);
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
