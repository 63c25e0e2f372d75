// Many open sessions (issue 14: "100,000 open sessions: keep-alive CPU per session per second
// reported; no expiry storm after a leader change"). A real 3-process ternd cluster on loopback;
// N sessions opened over a few raw client-API connections per node (the library would need a
// thread per session), each kept alive every third of its timeout for a bounded time, with a
// leadership transfer in the middle. Reports the servers' CPU per session per second, the log
// entries the keep-alives cost, and every keep-alive that failed (an expired session fails with
// unknown_session: any would be an expiry storm).
//
// Usage: sessions_bench [SESSIONS=100000] [SECONDS=30] [TIMEOUT_MS=10000]; TERND_BIN names ternd.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "bench/common/bench_util.h"
#include "client/api/tern.capnp.h"
#include "client/connect.h"
#include "tests/cluster/harness.h"

using namespace tern;
using namespace tern::testing;
using Clock = std::chrono::steady_clock;

namespace {

struct Conn {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  api::Tern::Client tern = nullptr;
};

double cluster_cpu(Cluster& c) {
  double s = 0;
  for (auto id : c.ids()) s += process_cpu_seconds(c.node(id).pid);
  return s;
}

std::uint64_t last_index(Cluster& c) {
  std::uint64_t last = 0;
  for (auto id : c.ids())
    if (auto s = c.status(id)) last = std::max(last, s->last);
  return last;
}

}  // namespace

int main(int argc, char** argv) {
  const int sessions = argc > 1 ? std::atoi(argv[1]) : 100000;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 30;
  const std::int64_t timeout_ms = argc > 3 ? std::atoll(argv[3]) : 10000;
  constexpr int kConnsPerNode = 4;
  constexpr int kOpenChunk = 2000;  // session opens in flight at once

  ClusterOptions o;
  o.raw_state_machine = false;
  o.log_level = "warn";
  Cluster c(bench::default_ternd(argv[0]), o);
  c.start_all();
  auto leader = c.wait_for_leader(std::chrono::seconds(15));
  if (leader == 0) return (std::fprintf(stderr, "no leader\n"), 1);
  auto& io = c.kj_io();
  auto& ws = io.waitScope;

  std::vector<Conn> conns;
  for (auto id : c.ids())
    for (int k = 0; k < kConnsPerNode; ++k) {
      auto connector = client::Connector::make(c.client_tls());
      Conn x;
      x.stream = (*connector)->connect(io.provider->getNetwork(), "127.0.0.1", c.node(id).client_port).wait(ws);
      x.rpc = kj::heap<capnp::TwoPartyClient>(*x.stream);
      x.tern = x.rpc->bootstrap().castAs<api::Tern>();
      conns.push_back(kj::mv(x));
    }

  // Open every session, spread over the connections (and so over the nodes).
  auto t_open = Clock::now();
  std::vector<api::Session::Client> all;
  all.reserve(static_cast<std::size_t>(sessions));
  int open_failed = 0;
  for (int base = 0; base < sessions; base += kOpenChunk) {
    kj::Vector<kj::Promise<void>> opens;
    for (int i = base; i < std::min(sessions, base + kOpenChunk); ++i) {
      auto req = conns[static_cast<std::size_t>(i) % conns.size()].tern.openSessionRequest();
      req.setTimeoutMs(timeout_ms);
      req.setSecret(0x5e55000000000000ull + static_cast<std::uint64_t>(i) + 1);
      auto p = req.send();
      all.push_back(p.getSession());
      opens.add(p.then([&](auto r) { open_failed += r.getResult().getErr() != api::Errc::OK; }));
    }
    kj::joinPromises(opens.releaseAsArray()).wait(ws);
  }
  double open_s = std::chrono::duration<double>(Clock::now() - t_open).count();
  if (open_failed > 0) std::fprintf(stderr, "%d session opens failed\n", open_failed);

  // Keep every session alive every third of its timeout, in 100 ms slices; transfer the
  // leadership half-way through.
  const auto slice = std::chrono::milliseconds(100);
  const auto period = std::chrono::milliseconds(timeout_ms / 3);
  const std::size_t per_slice = std::max<std::size_t>(1, all.size() * static_cast<std::size_t>(slice.count()) /
                                                              static_cast<std::size_t>(period.count()));
  std::map<api::Errc, std::uint64_t> answers;
  std::uint64_t sent = 0, exceptions = 0;
  double cpu0 = cluster_cpu(c);
  auto index0 = last_index(c);
  auto t0 = Clock::now(), end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  bool transferred = false;
  std::uint64_t new_leader = 0;
  std::size_t next = 0;
  kj::Vector<kj::Promise<void>> pending;
  for (auto tick = t0; tick < end; tick += slice) {
    if (!transferred && tick - t0 > (end - t0) / 2) {
      transferred = true;
      for (auto id : c.ids())
        if (id != leader) new_leader = id;
      c.transfer_leadership(leader, new_leader);
    }
    for (std::size_t k = 0; k < per_slice; ++k, ++next) {
      ++sent;
      pending.add(all[next % all.size()].keepAliveRequest().send().then(
          [&](auto r) { ++answers[r.getResult().getErr()]; }, [&](kj::Exception&& e) {
            if (exceptions++ == 0) std::fprintf(stderr, "keep-alive call failed: %s\n", e.getDescription().cStr());
          }).eagerlyEvaluate(nullptr));  // each reply is released (Finish) as soon as it arrives
    }
    while (Clock::now() < tick + slice) io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(ws);
  }
  kj::joinPromises(pending.releaseAsArray()).wait(ws);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double cpu = cluster_cpu(c) - cpu0;
  auto entries = last_index(c) - index0;
  auto after = c.wait_for_leader(std::chrono::seconds(5));

  std::uint64_t ok = answers[api::Errc::OK], expired = answers[api::Errc::UNKNOWN_SESSION];
  std::printf("| sessions | timeout ms | seconds | keep-alives sent | ok | unknown_session (expired) | other errors | "
              "log entries | entries/s | server CPU cores | server CPU µs per session per second | µs per keep-alive | "
              "leader before → after | open time s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::printf("| %d | %lld | %.1f | %llu | %llu | %llu | %llu | %llu | %.0f | %.2f | %.2f | %.1f | n%llu → n%llu | %.1f |\n", sessions,
              static_cast<long long>(timeout_ms), secs, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(ok),
              static_cast<unsigned long long>(expired), static_cast<unsigned long long>(sent - ok - expired),  // errors and failed calls
              static_cast<unsigned long long>(entries), static_cast<double>(entries) / secs, cpu / secs,
              1e6 * cpu / secs / sessions, 1e6 * cpu / static_cast<double>(sent), static_cast<unsigned long long>(leader),
              static_cast<unsigned long long>(after), open_s);
  for (auto& [e, n] : answers)
    if (e != api::Errc::OK) std::printf("answers with error %u: %llu\n", static_cast<unsigned>(e), static_cast<unsigned long long>(n));
  std::printf("\nload average %s; sessions opened %d (failed %d)\n", bench::loadavg().c_str(), sessions - open_failed, open_failed);
  return expired == 0 && sent == ok ? 0 : 1;
}
