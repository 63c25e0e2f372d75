// Many open sessions (issue 14: "100,000 open sessions: keep-alive CPU per session per second
// reported; no expiry storm after a leader change"). A real 3-process ternd cluster on loopback;
// N sessions opened over raw client-API connections spread over the nodes (the library would need
// a thread per session), each kept alive every third of its timeout for a bounded time, with a
// leadership transfer in the middle. Reports each server's CPU per session per second (leader and
// followers, before and after the transfer), the log entries the keep-alives cost, the servers'
// memory per session, and every keep-alive that failed (an expired session fails with
// unknown_session: any after the transfer would be an expiry storm).
//
// A client with many sessions on one connection must bound its calls in flight there: the server
// closes a connection holding more than 1,024 replies not yet released with Finish
// (docs/security.md), and replies not yet read count — a batch of keep-alives committed at once
// answers hundreds of calls of one connection in one go. So each connection keeps at most
// kInFlightPerConn calls outstanding (opens and keep-alives together), and the session capability
// is taken from the open's answer, not pipelined (a pipelined capability keeps its call
// unfinished).
//
// Usage: sessions_bench [SESSIONS=100000] [SECONDS=30] [TIMEOUT_MS=10000] [CONNS_PER_NODE=16];
// TERND_BIN names ternd; TERN_BENCH_ROOT keeps the nodes' directories and info logs there.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
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

// Calls outstanding per connection: a quarter of the server's 1,024 unfinished replies.
constexpr int kInFlightPerConn = 256;
constexpr int kOpensInFlight = 1000;  // session opens in flight at once, all connections together
constexpr auto kRetryAfter = std::chrono::milliseconds(100);  // a refused keep-alive or open

struct Conn {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  api::Tern::Client tern = nullptr;
  int in_flight = 0;
  int opening = 0;  // opens among in_flight
  std::deque<std::uint32_t> ring;  // its open sessions, the least recently kept alive first
  std::deque<std::pair<Clock::time_point, std::uint32_t>> retry;  // refused keep-alives, in order
  std::deque<std::pair<Clock::time_point, std::uint32_t>> to_open;
};

std::uint64_t last_index(Cluster& c) {
  std::uint64_t last = 0;
  for (auto id : c.ids())
    if (auto s = c.status(id)) last = std::max(last, s->last);
  return last;
}

// Resident set of a process in bytes (VmRSS), 0 if unreadable.
double rss_bytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  double kb = 0;
  while (f >> key) {
    if (key == "VmRSS:") {
      f >> kb;
      return kb * 1024;
    }
    f.ignore(1 << 12, '\n');
  }
  return 0;
}

enum Phase { kOpening = 0, kBefore = 1, kAfter = 2 };
const char* phase_name(int p) { return p == kOpening ? "opening" : p == kBefore ? "before transfer" : "after transfer"; }

}  // namespace

int main(int argc, char** argv) {
  const int sessions = argc > 1 ? std::atoi(argv[1]) : 100000;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 30;
  const std::int64_t timeout_ms = argc > 3 ? std::atoll(argv[3]) : 10000;
  const int conns_per_node = argc > 4 ? std::atoi(argv[4]) : 16;

  ClusterOptions o;
  o.raw_state_machine = false;
  o.log_level = "warn";
  // ternd's own defaults, not the harness's test timings (300/30 ms): with 100,000 sessions on a
  // shared 2-core machine a node's loop can stall past 300 ms and the leadership churned.
  o.election_timeout_ms = 1000;
  o.heartbeat_interval_ms = 100;
  if (const char* root = std::getenv("TERN_BENCH_ROOT")) o.root = root, o.log_level = "info";  // keep the nodes' logs
  Cluster c(bench::default_ternd(argv[0]), o);
  c.start_all();
  auto leader = c.wait_for_leader(std::chrono::seconds(15));
  if (leader == 0) return (std::fprintf(stderr, "no leader\n"), 1);
  auto& io = c.kj_io();
  auto& ws = io.waitScope;
  auto& timer = io.provider->getTimer();

  std::vector<Conn> conns;
  std::vector<std::uint64_t> conn_node;
  for (auto id : c.ids())
    for (int k = 0; k < conns_per_node; ++k) {
      auto connector = client::Connector::make(c.client_tls());
      Conn x;
      x.stream = (*connector)->connect(io.provider->getNetwork(), "127.0.0.1", c.node(id).client_port).wait(ws);
      x.rpc = kj::heap<capnp::TwoPartyClient>(*x.stream);
      x.tern = x.rpc->bootstrap().castAs<api::Tern>();
      conns.push_back(kj::mv(x));
      conn_node.push_back(id);
    }
  std::map<std::uint64_t, double> rss0;
  for (auto id : c.ids()) rss0[id] = rss_bytes(c.node(id).pid);

  const auto period = std::chrono::milliseconds(timeout_ms / 3);
  std::vector<api::Session::Client> all;
  all.reserve(static_cast<std::size_t>(sessions));
  for (int i = 0; i < sessions; ++i) all.emplace_back(nullptr);
  std::vector<Clock::time_point> touched(static_cast<std::size_t>(sessions));  // last keep-alive (or open) sent
  auto start = Clock::now();
  for (int i = 0; i < sessions; ++i) conns[static_cast<std::size_t>(i) % conns.size()].to_open.emplace_back(start, i);

  int phase = kOpening;
  std::array<std::map<api::Errc, std::uint64_t>, 3> answers;  // keep-alive answers by the phase they were sent in
  std::array<std::uint64_t, 3> sent{}, exceptions{};
  std::map<api::Errc, std::uint64_t> open_errors;
  std::uint64_t open_exceptions = 0;
  int opening = 0, opened = 0;
  struct Ignore final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // each task handles its own failure
  } ignore;
  kj::TaskSet pending(ignore);

  auto keep_alive = [&](Conn& cn, std::uint32_t i, Clock::time_point now) {
    int ph = phase;
    Conn* pc = &cn;
    ++sent[ph];
    ++cn.in_flight;
    touched[i] = now;
    pending.add(all[i].keepAliveRequest().send().then(
        [&, pc, ph, i](auto r) {
          --pc->in_flight;
          auto e = r.getResult().getErr();
          ++answers[ph][e];
          // Refused, not expired (not_leader, unavailable, unknown_outcome around the transfer):
          // again shortly, as the library would.
          if (e != api::Errc::OK && e != api::Errc::UNKNOWN_SESSION) pc->retry.emplace_back(Clock::now() + kRetryAfter, i);
        },
        [&, pc, ph](kj::Exception&& e) {
          --pc->in_flight;
          if (exceptions[ph]++ == 0) std::fprintf(stderr, "keep-alive call failed: %s\n", e.getDescription().cStr());
        }));  // a task runs as soon as its reply arrives, which releases the reply (Finish)
  };
  auto open = [&](Conn& cn, std::uint32_t i) {
    ++opening;
    ++cn.opening;
    ++cn.in_flight;
    Conn* pc = &cn;
    auto req = cn.tern.openSessionRequest();
    req.setTimeoutMs(timeout_ms);
    req.setSecret(0x5e55000000000000ull + static_cast<std::uint64_t>(i) + 1);
    // The session capability is taken from the answer, not pipelined: a pipelined capability
    // keeps its call open (no Finish), and the server closes a connection holding 1,024 of those.
    pending.add(req.send().then(
        [&, pc, i](auto r) {
          --opening;
          --pc->opening;
          --pc->in_flight;
          auto e = r.getResult().getErr();
          if (e == api::Errc::OK) {
            all[i] = r.getSession();
            ++opened;
            touched[i] = Clock::now();
            pc->ring.push_back(i);
          } else {
            ++open_errors[e];
            pc->to_open.emplace_back(Clock::now() + kRetryAfter, i);  // retried, like the library would
          }
        },
        [&, pc, i](kj::Exception&& e) {
          --opening;
          --pc->opening;
          --pc->in_flight;
          if (open_exceptions++ == 0) std::fprintf(stderr, "session open failed: %s\n", e.getDescription().cStr());
          pc->to_open.emplace_back(Clock::now() + kRetryAfter, i);
        }));
  };
  // Sends what is due on every connection, within its bound: refused keep-alives, then due
  // keep-alives (the ring's front is the least recently kept alive), then opens.
  auto pump = [&] {
    auto now = Clock::now();
    for (auto& cn : conns) {
      while (cn.in_flight < kInFlightPerConn) {
        if (!cn.retry.empty() && cn.retry.front().first <= now) {
          auto i = cn.retry.front().second;
          cn.retry.pop_front();
          keep_alive(cn, i, now);
        } else if (!cn.ring.empty() && now - touched[cn.ring.front()] >= period) {
          auto i = cn.ring.front();
          cn.ring.pop_front();
          cn.ring.push_back(i);
          keep_alive(cn, i, now);
        } else if (!cn.to_open.empty() && cn.to_open.front().first <= now &&
                   cn.opening < std::max<int>(1, kOpensInFlight / static_cast<int>(conns.size()))) {  // every node its share
          auto i = cn.to_open.front().second;
          cn.to_open.pop_front();
          open(cn, i);
        } else {
          break;
        }
      }
    }
  };
  // A progress line on stderr every 5 s: a long run shows where it is.
  auto next_report = Clock::now() + std::chrono::seconds(5);
  auto report = [&] {
    std::uint64_t ok = 0, expired = 0, other = 0, in_flight = 0;
    for (auto& a : answers)
      for (auto& [e, n] : a) (e == api::Errc::OK ? ok : e == api::Errc::UNKNOWN_SESSION ? expired : other) += n;
    for (auto& cn : conns) in_flight += static_cast<std::uint64_t>(cn.in_flight);
    std::fprintf(stderr, "%6.1f s %s: opened %d, keep-alives ok %llu, unknown_session %llu, other %llu, in flight %llu\n",
                 std::chrono::duration<double>(Clock::now() - start).count(), phase_name(phase), opened,
                 static_cast<unsigned long long>(ok), static_cast<unsigned long long>(expired), static_cast<unsigned long long>(other),
                 static_cast<unsigned long long>(in_flight));
  };
  auto tick = [&] {
    pump();
    timer.afterDelay(5 * kj::MILLISECONDS).wait(ws);
    if (Clock::now() >= next_report) {
      report();
      next_report += std::chrono::seconds(5);
    }
  };

  // Open every session; those already open are kept alive meanwhile (opening 100,000 takes longer
  // than a session timeout). Bounded: 10 minutes.
  for (auto open_deadline = start + std::chrono::minutes(10); opened < sessions && Clock::now() < open_deadline;) tick();
  double open_s = std::chrono::duration<double>(Clock::now() - start).count();
  // Settle for one keep-alive period, so that the measured phase starts in the steady state.
  for (auto settle = Clock::now() + period; Clock::now() < settle;) tick();
  std::map<std::uint64_t, double> rss1;
  for (auto id : c.ids()) rss1[id] = rss_bytes(c.node(id).pid);

  // The measured phase: every session kept alive every third of its timeout; the leadership
  // transferred half-way through.
  auto cpu_now = [&] {
    std::map<std::uint64_t, double> m;
    for (auto id : c.ids()) m[id] = process_cpu_seconds(c.node(id).pid);
    m[0] = process_cpu_seconds(::getpid());  // this client
    return m;
  };
  phase = kBefore;
  auto cpu0 = cpu_now();
  auto index0 = last_index(c);
  auto t0 = Clock::now(), end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::uint64_t new_leader = 0;
  std::map<std::uint64_t, double> cpu_mid;
  Clock::time_point t_mid;
  while (Clock::now() < end) {
    if (phase == kBefore && Clock::now() - t0 > (end - t0) / 2) {
      for (auto id : c.ids())
        if (id != leader) new_leader = id;
      cpu_mid = cpu_now();
      t_mid = Clock::now();
      phase = kAfter;
      c.transfer_leadership(leader, new_leader);
    }
    tick();
  }
  auto cpu1 = cpu_now();
  auto t1 = Clock::now();
  auto entries = last_index(c) - index0;
  auto after = c.wait_for_leader(std::chrono::seconds(5));
  bool drained = pending.onEmpty().then([] { return true; }).exclusiveJoin(timer.afterDelay(30 * kj::SECONDS).then([] { return false; })).wait(ws);

  double secs = std::chrono::duration<double>(t1 - t0).count();
  double secs_before = std::chrono::duration<double>(t_mid - t0).count(), secs_after = std::chrono::duration<double>(t1 - t_mid).count();
  std::uint64_t sent_all = sent[kBefore] + sent[kAfter], ok_all = answers[kBefore][api::Errc::OK] + answers[kAfter][api::Errc::OK];
  std::printf("%d sessions, timeout %lld ms (keep-alive every %lld ms), %zu connections (%d per node, at most %d calls in flight each)\n",
              sessions, static_cast<long long>(timeout_ms), static_cast<long long>(period.count()), conns.size(), conns_per_node,
              kInFlightPerConn);
  std::printf("opening: %d opened in %.1f s (%.0f/s), not opened %d; refused and retried:", opened, open_s, opened / open_s, sessions - opened);
  for (auto& [e, n] : open_errors) std::printf(" error %u x %llu", static_cast<unsigned>(e), static_cast<unsigned long long>(n));
  std::printf("; failed calls %llu\n", static_cast<unsigned long long>(open_exceptions));
  std::printf("measured: %.1f s, leader n%llu → n%llu (transfer at %.1f s), log entries %llu (%.0f/s), keep-alives %llu sent, %llu ok\n\n",
              secs, static_cast<unsigned long long>(leader), static_cast<unsigned long long>(after), secs_before,
              static_cast<unsigned long long>(entries), static_cast<double>(entries) / secs, static_cast<unsigned long long>(sent_all),
              static_cast<unsigned long long>(ok_all));

  std::printf("| phase | keep-alives sent | ok | unknown_session (expired) | other errors (retried) | failed calls |\n|---|---|---|---|---|---|\n");
  for (int p = kOpening; p <= kAfter; ++p) {
    auto& a = answers[static_cast<std::size_t>(p)];
    std::uint64_t ok = a[api::Errc::OK], expired = a[api::Errc::UNKNOWN_SESSION], answered = 0;
    for (auto& [e, n] : a) answered += n;
    std::printf("| %s | %llu | %llu | %llu | %llu | %llu |\n", phase_name(p), static_cast<unsigned long long>(sent[static_cast<std::size_t>(p)]),
                static_cast<unsigned long long>(ok), static_cast<unsigned long long>(expired),
                static_cast<unsigned long long>(answered - ok - expired), static_cast<unsigned long long>(exceptions[static_cast<std::size_t>(p)]));
  }
  std::printf("\n| node | role before → after | CPU cores before | µs per session per second before | CPU cores after | "
              "µs per session per second after | RSS MiB before opening → after | RSS bytes per session |\n|---|---|---|---|---|---|---|---|\n");
  double total = 0;
  for (auto id : c.ids()) {
    double before = (cpu_mid[id] - cpu0[id]) / secs_before, after_cores = (cpu1[id] - cpu_mid[id]) / secs_after;
    total += (cpu1[id] - cpu0[id]) / secs;
    std::printf("| n%llu | %s → %s | %.2f | %.2f | %.2f | %.2f | %.0f → %.0f | %.0f |\n", static_cast<unsigned long long>(id),
                id == leader ? "leader" : "follower", id == after ? "leader" : "follower", before, 1e6 * before / sessions, after_cores,
                1e6 * after_cores / sessions, rss0[id] / (1 << 20), rss1[id] / (1 << 20), (rss1[id] - rss0[id]) / sessions);
  }
  double client = (cpu1[0] - cpu0[0]) / secs;
  std::printf("\nall servers: %.2f cores, %.2f µs per session per second, %.1f µs per keep-alive; this client: %.2f cores\n", total,
              1e6 * total / sessions, 1e6 * total * secs / static_cast<double>(std::max<std::uint64_t>(1, sent_all)), client);
  std::printf("load average %s; replies drained: %s\n", bench::loadavg().c_str(), drained ? "yes" : "no (30 s)");

  std::uint64_t expired = 0, failed = open_exceptions;
  for (int p = kOpening; p <= kAfter; ++p) {
    expired += answers[static_cast<std::size_t>(p)][api::Errc::UNKNOWN_SESSION];
    failed += exceptions[static_cast<std::size_t>(p)];
  }
  return expired == 0 && failed == 0 && opened == sessions && drained && after != 0 ? 0 : 1;
}
