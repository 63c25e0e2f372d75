// Linearizability of a real 3-node ternd cluster under faults — kill -9 and restart, SIGSTOP and
// SIGCONT, isolation (all others paused) and network partitions (ternd's test-only transport
// fault injection), of any node including the leader — checked with tern-check's register
// model (jepsen-like/checker). Clients run on their own threads and KJ loops, read and write
// registers (writes and compare-and-set through the log, reads through the log or by ReadIndex
// on any node, followers included), and record a
// history; an operation whose outcome is unknown (timeout, broken connection, unknown_outcome)
// is recorded as "info" and its client continues as a new process, as in Jepsen.
//
// Seeded: the seed is printed; TERN_FAULT_SEED=N replays the same choices of operations and
// faults (the timing of real processes still varies). TERN_FAULT_HISTORY=FILE keeps the history.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"
#include "tests/cluster/harness.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;
using proto::AdminCode;
using Clock = std::chrono::steady_clock;

std::string ternd() {
  const char* bin = std::getenv("TERND_BIN");
  return bin != nullptr ? bin : "ternd";
}

class Recorder {
 public:
  void add(std::int64_t process, const char* type, const std::string& f, const std::string& key,
           const std::string& value_json) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0_).count();
    std::string line = "{\"process\":" + std::to_string(process) + ",\"type\":\"" + type + "\",\"f\":\"" + f +
                       "\",\"key\":\"" + key + "\",\"value\":" + value_json + ",\"time\":" + std::to_string(ns) + "}";
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(std::move(line));
  }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (auto& l : lines_) out += l + "\n";
    return out;
  }

 private:
  Clock::time_point t0_ = Clock::now();
  std::mutex mu_;
  std::vector<std::string> lines_;
};

struct Counts {
  std::atomic<int> ok{0}, fail{0}, info{0};
};

// One client: a thread with its own KJ loop and connection, one operation at a time.
void client(int index, int clients, std::uint64_t seed, std::vector<std::uint16_t> ports, Clock::time_point end,
            Recorder& rec, Counts& counts, client::TlsOptions tls) {
  auto io = kj::setupAsyncIo();
  auto connector = client::Connector::make(tls);  // TLS like the harness's own client (issue 17)
  if (!connector) throw std::runtime_error(connector.error());
  std::mt19937_64 rng(seed * 1000003 + static_cast<std::uint64_t>(index));
  std::int64_t process = index;
  std::size_t target = static_cast<std::size_t>(index) % ports.size();
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  kj::Maybe<proto::Admin::Client> admin;
  auto disconnect = [&] {
    admin = nullptr;
    rpc = nullptr;
    stream = nullptr;
  };
  auto next_node = [&] { target = (target + 1) % ports.size(); };
  while (Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 8000));
    if (admin == nullptr) {
      try {
        stream = io.provider->getTimer()
                     .timeoutAfter(500 * kj::MILLISECONDS,
                                   (*connector)->connect(io.provider->getNetwork(), "127.0.0.1", ports[target]))
                     .wait(io.waitScope);
        rpc = kj::heap<capnp::TwoPartyClient>(*stream);
        admin = rpc->bootstrap().castAs<proto::Admin>();
      } catch (const kj::Exception&) {
        disconnect();
        next_node();
        continue;  // nothing was invoked
      }
    }
    std::string key = std::string(1, static_cast<char>('a' + rng() % 4));
    int kind = static_cast<int>(rng() % 3);
    int v1 = static_cast<int>(rng() % 5), v2 = static_cast<int>(rng() % 5);
    std::string f, cmd, input;
    if (kind == 0) {
      f = "read", cmd = "reg r " + key, input = "null";
    } else if (kind == 1) {
      f = "write", cmd = "reg w " + key + " " + std::to_string(v1), input = std::to_string(v1);
    } else {
      f = "cas", cmd = "reg c " + key + " " + std::to_string(v1) + " " + std::to_string(v2);
      input = "[" + std::to_string(v1) + "," + std::to_string(v2) + "]";
    }
    rec.add(process, "invoke", f, key, input);
    auto& a = KJ_ASSERT_NONNULL(admin);
    // Half of the reads go through the log, half are ReadIndex reads on whichever node this
    // client is connected to (followers included).
    bool read_index = f == "read" && rng() % 2 == 0;
    // Copy the answer out while its Response is alive (a Reader must not outlive it).
    struct Answer {
      AdminCode code;
      std::string response;
      std::uint64_t hint;
    };
    auto answer_of = [](proto::AdminResult::Reader res) {
      auto d = res.getResponse();
      return Answer{res.getCode(), std::string(reinterpret_cast<const char*>(d.begin()), d.size()),
                    res.getLeaderHint()};
    };
    auto send = [&]() -> kj::Promise<Answer> {
      if (read_index) {
        auto req = a.readRequest();
        req.setQuery(kj::arrayPtr(reinterpret_cast<const kj::byte*>(cmd.data()), cmd.size()));
        return req.send().then(
            [answer_of](capnp::Response<proto::Admin::ReadResults>&& r) { return answer_of(r.getResult()); });
      }
      auto req = a.proposeRequest();
      req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(cmd.data()), cmd.size()));
      return req.send().then(
          [answer_of](capnp::Response<proto::Admin::ProposeResults>&& r) { return answer_of(r.getResult()); });
    };
    AdminCode code = AdminCode::INVALID;
    std::string response;
    std::uint64_t hint = 0;
    bool answered = false;
    try {
      auto ans = io.provider->getTimer().timeoutAfter(2 * kj::SECONDS, send()).wait(io.waitScope);
      code = ans.code;
      response = std::move(ans.response);
      hint = ans.hint;
      answered = true;
    } catch (const kj::Exception&) {
    }
    if (answered && code == AdminCode::OK) {
      if (f == "read") {
        // A number or null as such; anything else (a wrong answer) as a JSON string.
        bool number = !response.empty() && response.find_first_not_of("0123456789") == std::string::npos;
        rec.add(process, "ok", f, key, response == "null" || number ? response : "\"" + response + "\"");
        ++counts.ok;
      } else if (f == "write" || response == "ok") {
        rec.add(process, "ok", f, key, input);
        ++counts.ok;
      } else {
        rec.add(process, "fail", f, key, input);  // cas applied, condition false: no effect
        ++counts.fail;
      }
    } else if (answered && (code == AdminCode::NOT_LEADER || code == AdminCode::BUSY ||
                            code == AdminCode::TRANSFER_IN_PROGRESS || code == AdminCode::TIMED_OUT)) {
      rec.add(process, "fail", f, key, input);  // refused before it entered the log
      ++counts.fail;
      disconnect();
      if (hint != 0 && hint <= ports.size()) {
        target = static_cast<std::size_t>(hint - 1);
      } else {
        next_node();
      }
    } else {
      // Timeout, broken connection, unknown_outcome, shutting_down: it may or may not apply.
      rec.add(process, "info", f, key, input);
      ++counts.info;
      process += clients;  // this process never returns; a new one takes over
      disconnect();
      next_node();
      continue;
    }
    if (rng() % 4 == 0) {  // wander: reads then land on followers too
      disconnect();
      next_node();
    }
  }
}

TEST(FaultTest, RegistersStayLinearizableUnderKillPauseAndRestart) {
  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("TERN_FAULT_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("fault test seed: %llu (replay with TERN_FAULT_SEED=%llu)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  ClusterOptions o;
  o.election_timeout_ms = 300;
  o.heartbeat_interval_ms = 30;
  o.snapshot_entries = 500;  // snapshots and compaction happen during the run, too
  o.fault_injection = true;  // network partitions
  Cluster c(ternd(), o);
  c.start_all();
  ASSERT_NE(c.wait_for_leader(10s), 0u);

  const int clients = 6;
  const auto run_for = 12s;
  std::vector<std::uint16_t> ports;
  for (auto id : c.ids()) ports.push_back(c.node(id).client_port);
  Recorder rec;
  Counts counts;
  auto end = Clock::now() + run_for;
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back(client, i, clients, seed, ports, end, std::ref(rec), std::ref(counts), c.client_tls());

  // The nemesis: one fault at a time, so a majority can make progress between faults.
  std::mt19937_64 rng(seed);
  int kills = 0, pauses = 0, isolations = 0, partitions = 0;
  while (Clock::now() + 1500ms < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 700));
    auto ids = c.ids();
    auto victim = ids[rng() % ids.size()];
    auto leader_now = c.wait_for_leader(300ms);
    if (rng() % 3 == 0 && leader_now != 0) victim = leader_now;  // the leader, often
    auto hold = std::chrono::milliseconds(200 + rng() % 1000);
    auto action = rng() % 10;
    if (action < 3) {
      c.kill9(victim);
      ++kills;
      std::this_thread::sleep_for(hold);
      c.start(victim);
    } else if (action < 5) {
      c.pause(victim);
      ++pauses;
      std::this_thread::sleep_for(hold);
      c.resume(victim);
    } else if (action < 6) {
      // Isolate `victim` (usually the leader) by pausing everyone else: it keeps accepting
      // proposals it cannot commit, and a new leader may overwrite them after the resume.
      for (auto id : ids)
        if (id != victim) c.pause(id);
      ++isolations;
      std::this_thread::sleep_for(hold);
      for (auto id : ids)
        if (id != victim) c.resume(id);
    } else {
      // A network partition (fault injection in the transport): `victim` keeps running and
      // serving its clients on one side; the majority elects a new leader on the other.
      // Often shorter than the deposed leader's bound for answering its stranded proposals, so
      // they are overwritten by the new leader's log after the heal and must not report success.
      c.partition(victim);
      ++partitions;
      std::this_thread::sleep_for(hold);
      c.heal();
    }
  }
  for (auto& t : threads) t.join();
  std::printf("operations: %d ok, %d fail, %d info; faults: %d kill -9, %d pause, %d isolation, %d partition\n",
              counts.ok.load(), counts.fail.load(), counts.info.load(), kills, pauses, isolations, partitions);

  auto text = rec.text();
  if (const char* path = std::getenv("TERN_FAULT_HISTORY")) std::ofstream(path) << text;
  auto history = check::parse_history(text);
  ASSERT_TRUE(history) << history.error().message << " at line " << history.error().line;
  check::CheckOptions opt;
  opt.timeout_seconds = 120;
  auto result = check::check_history(*history, "register", opt);
  EXPECT_EQ(result.verdict, check::Verdict::linearizable)
      << check::verdict_name(result.verdict) << ": " << result.reason
      << (result.violation ? " (key " + result.violation->key + ")" : std::string());
  EXPECT_GT(counts.ok.load(), 200) << "the cluster made too little progress under faults";

  // After the faults, every node converges to the same state.
  ASSERT_NE(c.wait_for_leader(10s), 0u);
  auto last = c.propose_anywhere("reg w z done", 10s);
  ASSERT_TRUE(last);
  ASSERT_EQ(last->code, AdminCode::OK);
  ASSERT_TRUE(c.wait_applied(c.ids(), last->index, 20s));
  bool converged = false;
  for (int attempt = 0; attempt < 100 && !converged; ++attempt) {
    std::set<std::pair<std::uint64_t, std::uint64_t>> states;  // (applied index, digest)
    std::size_t answered = 0;
    for (auto id : c.ids())
      if (auto s = c.status(id)) {
        ++answered;
        states.insert({s->applied, s->digest});
      }
    converged = answered == c.ids().size() && states.size() == 1;
    if (!converged) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(converged) << "replicas did not converge to one state";
}

}  // namespace
}  // namespace tern::testing
