// Throughput of the Raft core alone (issue 2): small entries committed through an in-memory
// 3-node cluster with batching, and heap allocations per committed entry. Messages move
// directly between cores; "persisting" is instantaneous. Run:
//   build/bench/raft/raft_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <vector>

#include "raft/core.h"

// Count heap allocations made by the code under test.
static std::atomic<std::uint64_t> g_allocs{0};
void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {
using namespace tern::raft;

struct Cluster {
  std::map<NodeId, std::unique_ptr<Core>> cores;
  std::vector<Message> wire;
  std::uint64_t applied = 0;

  explicit Cluster(int n) {
    ConfState conf;
    for (int i = 1; i <= n; ++i) conf.voters.push_back(NodeId(i));
    for (int i = 1; i <= n; ++i) {
      Config c;
      c.id = NodeId(i);
      c.seed = 1;
      c.max_uncommitted_bytes = 1 << 30;
      RestoreState rs;
      rs.bootstrap = conf;
      cores[NodeId(i)] = std::make_unique<Core>(c, rs);
    }
    Core& l = *cores[NodeId(1)];
    while (l.role() != Role::leader) {
      l.tick();
      pump();
    }
    pump();
  }

  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool any = false;
      for (auto& [id, c] : cores) {
        while (c->has_ready()) {
          any = true;
          Ready rd = c->ready();
          for (auto& m : rd.messages) wire.push_back(std::move(m));
          if (id == NodeId(1)) applied += rd.committed.size();
          c->advance(rd);
        }
      }
      if (wire.empty() && !any) return;
      std::vector<Message> batch;
      batch.swap(wire);
      for (auto& m : batch) cores[m.to]->step(std::move(m));
    }
  }
};

void BM_CommitThroughCluster(benchmark::State& state) {
  const auto batch = static_cast<int>(state.range(0));
  const auto size = static_cast<std::size_t>(state.range(1));
  Cluster cluster(3);
  Core& leader = *cluster.cores[NodeId(1)];
  std::string payload(size, 'x');
  std::uint64_t entries = 0, allocs = 0;
  std::uint64_t compact_every = 100000;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      auto r = leader.propose(payload);
      if (!r) state.SkipWithError("propose failed");
    }
    std::uint64_t before = g_allocs.load(std::memory_order_relaxed);
    cluster.pump();
    allocs += g_allocs.load(std::memory_order_relaxed) - before;
    entries += batch;
    if (leader.applied_index().value > compact_every) {
      state.PauseTiming();
      for (auto& [id, c] : cluster.cores) c->compact(c->applied_index());
      compact_every += 100000;
      state.ResumeTiming();
    }
  }
  if (leader.commit_index() < leader.last_index()) state.SkipWithError("not everything committed");
  state.SetItemsProcessed(static_cast<std::int64_t>(entries));
  state.counters["entries/s"] = benchmark::Counter(static_cast<double>(entries), benchmark::Counter::kIsRate);
  state.counters["allocs/entry"] = static_cast<double>(allocs) / static_cast<double>(entries);
}
BENCHMARK(BM_CommitThroughCluster)
    ->ArgNames({"batch", "bytes"})
    ->Args({1, 16})
    ->Args({16, 16})
    ->Args({256, 16})
    ->Args({1024, 16})
    ->Args({256, 128})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
