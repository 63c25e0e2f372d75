// Client path benchmark (issue 11): the C++ client library (tern/client.h) against a real 3-process
// ternd cluster on loopback running the coordination state machine. For each serving node (the
// leader, and a follower, which forwards writes to the leader and runs ReadIndex through it), each
// operation (create of fresh nodes, set of existing nodes, linearizable get, serializable get;
// ~100-byte values) and 1, 16 and 128 outstanding calls, it runs for a bounded time and reports
// ops/s, p50/p99/p99.9 latency, the CPU time of the three servers per operation and that of this
// process (the library's loop thread plus the driver) per operation. Several interleaved rounds;
// the table shows medians.
//
// Load: one Client (one session) per serving node, whose only endpoint is that node (so a row
// never silently measures another node after a failover); N calls are kept in flight with
// Client::async() from one driver thread. A call's latency is taken when the driver collects its
// future, oldest first: writes of one session are answered in sequence order, so this is exact up
// to the driver's scheduling; a read answered out of order is charged the wait for the older ones.
//
// Usage: client_bench [SECONDS_PER_CELL=3] [ROUNDS=1]; TERND_BIN names ternd (default: the build
// tree's), TERN_BENCH_LEVELS=1,16,128, TERN_BENCH_OUT=file.md also writes the table there.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bench/common/bench_util.h"
#include "tern/client.h"
#include "tests/cluster/harness.h"

using namespace tern::testing;
using tern::bench::loadavg;
using tern::bench::median;
using tern::bench::percentile;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kKeys = 1024;          // existing nodes that set and get cycle through
constexpr std::size_t kValue = 100;  // bytes per value


enum class Op { create, set, get_linearizable, get_serializable };
const char* op_name(Op op) {
  switch (op) {
    case Op::create: return "create";
    case Op::set: return "set";
    case Op::get_linearizable: return "get (linearizable)";
    case Op::get_serializable: return "get (serializable)";
  }
  return "?";
}

struct CellResult {
  double ops_per_s = 0, p50_us = 0, p99_us = 0, p999_us = 0, server_cpu_us = 0, client_cpu_us = 0;
  std::uint64_t errors = 0;
  std::string first_error;
};

std::string key(int i) {
  char b[32];
  std::snprintf(b, sizeof b, "/bench/kv/k%04d", i % kKeys);
  return b;
}

// A ~100-byte value whose first bytes are the counter (distinct values).
std::string value(std::uint64_t n) {
  std::string v(kValue, 'v');
  char b[24];
  int len = std::snprintf(b, sizeof b, "%016llu", static_cast<unsigned long long>(n));
  v.replace(0, static_cast<std::size_t>(len), b);
  return v;
}

struct Driver {
  tern::Client& client;
  std::string create_prefix;  // unique per node, round and cell: fresh paths
  std::uint64_t n = 0;

  std::future<tern::Reply> issue(Op op) {
    auto& a = client.async();
    ++n;
    switch (op) {
      case Op::create: return a.create(create_prefix + std::to_string(n), value(n));
      case Op::set: return a.set(key(static_cast<int>(n)), value(n));
      case Op::get_linearizable: return a.get(key(static_cast<int>(n)), {tern::Consistency::linearizable, 0});
      case Op::get_serializable: return a.get(key(static_cast<int>(n)), {tern::Consistency::serializable, 0});
    }
    return {};
  }
};

double cpu_of(Cluster& c) {
  double s = 0;
  for (auto id : c.ids()) s += process_cpu_seconds(c.node(id).pid);
  return s;
}

CellResult run_cell(Cluster& c, tern::Client& client, const std::string& create_prefix, Op op, int outstanding,
                    double seconds) {
  struct InFlight {
    std::future<tern::Reply> reply;
    Clock::time_point t0;
  };
  Driver d{client, create_prefix, 0};
  std::deque<InFlight> q;
  std::vector<double> lat;
  lat.reserve(1 << 18);
  CellResult r;
  std::uint64_t ok = 0;
  double server0 = cpu_of(c), client0 = process_cpu_seconds(::getpid());
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (;;) {
    // Issue until `outstanding` are in flight; after the end only drain.
    while (static_cast<int>(q.size()) < outstanding && Clock::now() < end) q.push_back({d.issue(op), Clock::now()});
    if (q.empty()) break;
    tern::Reply reply = q.front().reply.get();
    auto done = Clock::now();
    if (reply.ok()) {
      ++ok;
      lat.push_back(std::chrono::duration<double, std::micro>(done - q.front().t0).count());
    } else {
      if (r.errors++ == 0) r.first_error = std::string(tern::error_name(reply.error)) + ": " + reply.message;
    }
    q.pop_front();
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double server1 = cpu_of(c), client1 = process_cpu_seconds(::getpid());
  r.ops_per_s = static_cast<double>(ok) / secs;
  r.p50_us = percentile(lat, 0.5);
  r.p99_us = percentile(lat, 0.99);
  r.p999_us = percentile(lat, 0.999);
  r.server_cpu_us = ok ? (server1 - server0) * 1e6 / static_cast<double>(ok) : 0;
  r.client_cpu_us = ok ? (client1 - client0) * 1e6 / static_cast<double>(ok) : 0;
  return r;
}

std::unique_ptr<tern::Client> connect_to(Cluster& c, std::uint64_t id) {
  tern::ClientOptions o;
  // Only this node: a row measures the node it names. Plaintext: no transport options are set.
  o.endpoints.push_back("127.0.0.1:" + std::to_string(c.node(id).client_port));
  o.session_timeout = std::chrono::milliseconds(10000);
  o.request_timeout = std::chrono::milliseconds(10000);
  std::string err;
  auto client = tern::Client::connect(std::move(o), &err);
  if (!client) std::fprintf(stderr, "connect to node %llu: %s\n", static_cast<unsigned long long>(id), err.c_str());
  return client;
}

// The parents and the kKeys existing nodes that set and get use (128 in flight).
bool populate(tern::Client& client) {
  for (const char* p : {"/bench", "/bench/kv", "/bench/new"}) {
    auto r = client.create(p, "");
    if (!r.ok() && r.error != tern::Error::node_exists) return false;
  }
  std::deque<std::future<tern::Reply>> q;
  int bad = 0;
  for (int i = 0; i < kKeys; ++i) {
    q.push_back(client.async().create(key(i), value(static_cast<std::uint64_t>(i))));
    if (q.size() >= 128) {
      bad += q.front().get().ok() ? 0 : 1;
      q.pop_front();
    }
  }
  for (auto& f : q) bad += f.get().ok() ? 0 : 1;
  return bad == 0;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 1;
  std::string load_before = loadavg();
  ClusterOptions o;
  o.raw_state_machine = false;  // the coordination state machine and its client API
  o.election_timeout_ms = 1000;
  o.heartbeat_interval_ms = 100;
  o.snapshot_entries = 1000000;
  o.log_level = "warn";
  Cluster c(tern::bench::default_ternd(argv[0]), o);
  c.start_all();
  auto leader = c.wait_for_leader(std::chrono::seconds(15));
  if (leader == 0) {
    std::fprintf(stderr, "no leader\n");
    return 1;
  }
  auto term_before = c.status(leader);
  std::uint64_t follower = 0;
  for (auto id : c.ids())
    if (id != leader) follower = id;

  struct Via {
    const char* name;
    std::uint64_t id;
    std::unique_ptr<tern::Client> client;
  };
  std::vector<Via> vias;
  vias.push_back({"leader", leader, connect_to(c, leader)});
  vias.push_back({"follower", follower, connect_to(c, follower)});
  for (auto& v : vias)
    if (!v.client) return 1;
  if (!populate(*vias[0].client)) {
    std::fprintf(stderr, "populating /bench failed\n");
    return 1;
  }

  const std::vector<Op> ops = {Op::create, Op::set, Op::get_linearizable, Op::get_serializable};
  const auto levels = tern::bench::levels_from_env({1, 16, 128});
  // results[via][op][level] over rounds.
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::vector<CellResult>> results;
  // The servers' background CPU (heartbeats, keep-alives of the two idle sessions), to read the
  // per-operation figures against: at 1 outstanding a cell's few hundred ops/s carry this too.
  double idle0 = cpu_of(c);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  double idle_ms_per_s = (cpu_of(c) - idle0) * 1e3;
  int cell = 0;
  for (auto& v : vias)  // warm-up: connections, allocator, page cache, both sessions
    for (auto op : ops) (void)run_cell(c, *v.client, "/bench/new/warm-" + std::to_string(cell++) + "-", op, 16, 0.3);
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t vi = 0; vi < vias.size(); ++vi) {
      for (std::size_t oi = 0; oi < ops.size(); ++oi) {
        for (std::size_t li = 0; li < levels.size(); ++li) {
          auto prefix = "/bench/new/c" + std::to_string(cell++) + "-";
          auto r = run_cell(c, *vias[vi].client, prefix, ops[oi], levels[li], seconds);
          std::fprintf(stderr,
                       "round %d, %-8s %-19s %3d outstanding: %8.0f ops/s, p50 %6.0f p99 %6.0f p99.9 %6.0f us, "
                       "server %6.1f client %6.1f us CPU/op, %llu errors %s\n",
                       round + 1, vias[vi].name, op_name(ops[oi]), levels[li], r.ops_per_s, r.p50_us, r.p99_us,
                       r.p999_us, r.server_cpu_us, r.client_cpu_us, static_cast<unsigned long long>(r.errors),
                       r.first_error.c_str());
          results[{vi, oi, li}].push_back(r);
        }
      }
    }
  }
  // The admin connections sat idle through the run (the servers may have closed them): reconnect.
  for (auto id : c.ids()) c.drop_connection(id);
  auto leader_after = c.wait_for_leader(std::chrono::seconds(5));
  auto term_after = c.status(leader_after == 0 ? leader : leader_after);
  std::string load_after = loadavg();

  std::string out;
  char line[512];
  out +=
      "| via | operation | outstanding | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op (3 nodes) | client CPU "
      "µs/op | errors |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (std::size_t vi = 0; vi < vias.size(); ++vi) {
    for (std::size_t oi = 0; oi < ops.size(); ++oi) {
      for (std::size_t li = 0; li < levels.size(); ++li) {
        std::vector<double> ops_s, p50, p99, p999, scpu, ccpu;
        std::uint64_t errors = 0;
        for (auto& r : results[{vi, oi, li}]) {
          ops_s.push_back(r.ops_per_s);
          p50.push_back(r.p50_us);
          p99.push_back(r.p99_us);
          p999.push_back(r.p999_us);
          scpu.push_back(r.server_cpu_us);
          ccpu.push_back(r.client_cpu_us);
          errors += r.errors;
        }
        std::snprintf(line, sizeof line, "| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f | %llu |\n",
                      vias[vi].name, op_name(ops[oi]), levels[li], median(ops_s), median(p50), median(p99),
                      median(p999), median(scpu), median(ccpu), static_cast<unsigned long long>(errors));
        out += line;
      }
    }
  }
  std::snprintf(line, sizeof line,
                "\n%d round(s) of %.1f s per cell (medians); nproc %ld; load average %s before, %s after; "
                "leader node %llu (term %llu) before, node %llu (term %llu) after; client transport: plaintext; servers "
                "idle: %.1f ms CPU/s (3 nodes).\n",
                rounds, seconds, ::sysconf(_SC_NPROCESSORS_ONLN), load_before.c_str(), load_after.c_str(),
                static_cast<unsigned long long>(leader),
                static_cast<unsigned long long>(term_before ? term_before->term : 0),
                static_cast<unsigned long long>(leader_after),
                static_cast<unsigned long long>(term_after ? term_after->term : 0), idle_ms_per_s);
  out += line;
  std::fputs(out.c_str(), stdout);
  if (const char* f = std::getenv("TERN_BENCH_OUT")) std::ofstream(f) << out;
  return 0;
}
