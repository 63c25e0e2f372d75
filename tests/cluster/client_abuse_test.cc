// Hostile and careless clients on the client API (issue 11, "Bad input"), against real 3-node
// clusters: thousands of idle sessions on one connection, a watcher that never answers its
// notifications, and operations no library would send. Other clients must be unaffected.
#include <gtest/gtest.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "client/api/tern.capnp.h"
#include "client/connect.h"
#include "tern/client.h"
#include "tests/cluster/client_helpers.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;

// A raw Cap'n Proto connection to a node's client port, on the harness's KJ loop.
struct Raw {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  api::Tern::Client tern = nullptr;
  Raw(Cluster& c, std::uint64_t id) {
    auto& io = c.kj_io();
    auto connector = client::Connector::make(c.client_tls());  // the harness's TLS, if any
    KJ_ASSERT(connector.has_value());
    stream = (*connector)->connect(io.provider->getNetwork(), "127.0.0.1", c.node(id).client_port).wait(io.waitScope);
    rpc = kj::heap<capnp::TwoPartyClient>(*stream);
    tern = rpc->bootstrap().castAs<api::Tern>();
  }
};

// Sends `n` requests at once (`send(i)` sends the i-th and returns its promise) and counts the
// answers: (ok, slow_down).
template <class Send>
std::pair<int, int> send_all_and_count(kj::WaitScope& ws, int n, Send send) {
  int ok = 0, slowed = 0;
  kj::Vector<kj::Promise<void>> calls;
  for (int i = 0; i < n; ++i)
    calls.add(send(i).then([&](auto r) {
      if (r.getResult().getErr() == api::Errc::OK) ++ok;
      if (r.getResult().getErr() == api::Errc::SLOW_DOWN) ++slowed;
    }));
  kj::joinPromises(calls.releaseAsArray()).wait(ws);
  return {ok, slowed};
}

std::unique_ptr<Client> library_client(Cluster& c, std::uint64_t first) {
  return connect_client(client_options_at(c, first));
}

// Request ids (docs/client.md): a write sent to a follower is logged with its id by the
// follower and, once forwarded, by the leader where it proposes it (and answers the follower).
TEST(ClientApi, AForwardedWritesRequestIdAppearsInTheLeadersLog) {
  auto o = sm_cluster();
  o.log_level = "debug";
  Cluster c(ternd(), o);
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto follower = a_follower(c, leader);
  Raw raw(c, follower);
  auto& ws = c.kj_io().waitScope;
  auto open = raw.tern.openSessionRequest();
  open.setTimeoutMs(10000);
  open.setSecret(42);
  open.setRequestId(0x7e57c0de00000001);
  auto opened = open.send().wait(ws);
  ASSERT_EQ(opened.getResult().getErr(), api::Errc::OK);
  auto w = opened.getSession().writeRequest();
  w.setSeq(1);
  w.setRequestId(0x7e57c0de0000002a);
  w.initOp().setType(api::OpType::CREATE);
  w.getOp().setPath("/traced");
  auto r = w.send().wait(ws);
  ASSERT_EQ(r.getResult().getErr(), api::Errc::OK) << r.getResult().getMessage().cStr();
  auto index = std::to_string(r.getResult().getIndex());
  auto logged = [&](std::uint64_t id, const std::string& what) { return c.log_of(id).find(what) != std::string::npos; };
  for (int i = 0; i < 50 && !logged(leader, "request 7e57c0de0000002a forwarded by n" + std::to_string(follower)); ++i)
    std::this_thread::sleep_for(20ms);  // bounded: 1 s
  EXPECT_TRUE(logged(leader, "request 7e57c0de0000002a forwarded by n" + std::to_string(follower) +
                                 ": proposed at index " + index));
  EXPECT_TRUE(logged(leader, "request 7e57c0de00000001 forwarded by n" + std::to_string(follower)));  // the open
  EXPECT_TRUE(logged(follower, "request 7e57c0de0000002a: committed at index " + index));
}

// The admission limit (--client-rate-limit, requests per second per connection): a connection
// that floods — through two sessions — gets slowDown for the excess of the two together, and
// nothing else changes; another connection has its own bucket; the library backs off from
// slowDown, so its calls all succeed, only slower.
TEST(ClientApi, AConnectionOverItsRateLimitIsToldToSlowDownAndTheLibraryBacksOff) {
  auto o = sm_cluster();
  o.extra_args = {"--client-rate-limit", "50"};
  Cluster c(ternd(), o);
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto& ws = c.kj_io().waitScope;
  auto open = [&](Raw& raw, std::uint64_t secret) {
    auto req = raw.tern.openSessionRequest();
    req.setTimeoutMs(10000);
    req.setSecret(secret);
    return req.send().wait(ws).getSession();
  };
  // Floods `n` reads over `sessions` (round robin); returns (ok, slowed).
  auto flood = [&](std::vector<api::Session::Client>& sessions, int n) {
    return send_all_and_count(ws, n, [&](int i) {
      auto get = sessions[static_cast<std::size_t>(i) % sessions.size()].readRequest();
      get.initQuery().setType(api::QueryType::EXISTS);
      get.getQuery().setPath("/");
      get.initOptions().setConsistency(api::Consistency::SERIALIZABLE);
      return get.send();
    });
  };
  Raw one(c, leader), two(c, leader);
  std::vector<api::Session::Client> three;  // the opens take 3 of the 50 tokens
  for (std::uint64_t secret : {5, 6, 8}) three.push_back(open(one, secret));
  auto [ok, slowed] = flood(three, 300);
  EXPECT_EQ(ok + slowed, 300);
  EXPECT_GE(ok, 40);   // the burst, less the opens
  // One bucket for the three sessions: one burst and its refill meanwhile (a bucket per session
  // would admit 150 and more).
  EXPECT_LE(ok, 100);
  EXPECT_GT(slowed, 0);
  // Another connection is not charged for the first one's flood.
  std::vector<api::Session::Client> other;
  other.push_back(open(two, 7));
  auto [ok2, slowed2] = flood(other, 100);
  EXPECT_EQ(ok2 + slowed2, 100);
  EXPECT_GE(ok2, 45);
  // Through the library: every call succeeds, paced by the limit.
  auto client = library_client(c, leader);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->create("/paced", "").ok());
  for (int i = 0; i < 120; ++i) ASSERT_TRUE(client->set("/paced", std::to_string(i)).ok()) << i;
  EXPECT_EQ(client->get("/paced").stat.version, 120);
}

// --client-max-in-flight bounds what one connection has waiting for answers: a pipelined flood
// of writes gets its first N admitted and the rest slowDown, never an unbounded queue; another
// connection is not charged for it.
TEST(ClientApi, AConnectionOverItsInFlightBoundIsToldToSlowDown) {
  auto o = sm_cluster();
  o.extra_args = {"--client-max-in-flight", "8"};
  Cluster c(ternd(), o);
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto& ws = c.kj_io().waitScope;
  auto flood = [&](Raw& raw, int n, const std::string& prefix) {
    return send_all_and_count(ws, n, [&](int i) {
      auto w = raw.tern.writeRequest();
      auto op = w.initOp();
      op.setType(api::OpType::CREATE);
      op.setPath(prefix + std::to_string(i));
      return w.send();
    });
  };
  Raw one(c, leader), two(c, leader);
  auto [ok, slowed] = flood(one, 200, "/a");
  EXPECT_EQ(ok + slowed, 200);
  EXPECT_GE(ok, 8);
  EXPECT_GT(slowed, 50) << "200 writes sent at once, at most 8 may wait: many must be refused";
  auto [ok2, slowed2] = flood(two, 8, "/b");
  EXPECT_EQ(ok2, 8) << "another connection's bound is its own";
  EXPECT_EQ(slowed2, 0);
}

// A client may keep as many replies as it may have calls in flight: one that pipelines 2,000
// writes (under the 4,096 in-flight default) and keeps every reply until the last arrives holds
// 2,000 answers without Finish. That is within its rights; it was closed at 1,024 held replies.
TEST(ClientApi, AClientKeepingAllItsInFlightRepliesIsNotCutOff) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto& ws = c.kj_io().waitScope;
  Raw raw(c, leader);
  constexpr int kCalls = 2000;
  kj::Vector<kj::Promise<capnp::Response<api::Tern::WriteResults>>> calls;
  for (int i = 0; i < kCalls; ++i) {
    auto w = raw.tern.writeRequest();
    auto op = w.initOp();
    op.setType(api::OpType::CREATE);
    op.setPath("/held" + std::to_string(i));
    calls.add(w.send());
  }
  // Every Response kept until the last arrives; a disconnect throws here.
  auto replies = kj::joinPromises(calls.releaseAsArray()).wait(ws);
  int ok = 0;
  for (auto& r : replies)
    if (r.getResult().getErr() == api::Errc::OK) ++ok;
  EXPECT_EQ(ok, kCalls);  // a closed connection would have failed the wait above
}

// Keep-alives are batched by the node that receives them (service/client_api.h): 300 sessions
// keeping alive at once through a follower cost a handful of log entries, not 300, and each
// session still gets its own answer (a closed one: unknown_session, the others ok).
TEST(ClientApi, KeepAlivesOfManySessionsShareLogEntries) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto follower = a_follower(c, leader);
  Raw raw(c, follower);
  auto& ws = c.kj_io().waitScope;
  constexpr int kSessions = 300;
  std::vector<api::Session::Client> sessions;
  {
    kj::Vector<kj::Promise<void>> opens;
    for (int i = 0; i < kSessions; ++i) {
      auto open = raw.tern.openSessionRequest();
      open.setTimeoutMs(10000);
      open.setSecret(1000 + static_cast<std::uint64_t>(i));
      auto p = open.send();
      sessions.push_back(p.getSession());
      opens.add(p.then([](auto r) { KJ_ASSERT(r.getResult().getErr() == api::Errc::OK); }));
    }
    kj::joinPromises(opens.releaseAsArray()).wait(ws);
  }
  auto closed = sessions[7].closeRequest();
  closed.setSeq(1);
  ASSERT_EQ(closed.send().wait(ws).getResult().getErr(), api::Errc::OK);
  auto before = c.status(leader);
  ASSERT_TRUE(before.has_value());
  int ok = 0, unknown = 0;
  kj::Vector<kj::Promise<void>> calls;
  for (auto& s : sessions)
    calls.add(s.keepAliveRequest().send().then([&](auto r) {
      if (r.getResult().getErr() == api::Errc::OK) ++ok;
      if (r.getResult().getErr() == api::Errc::UNKNOWN_SESSION) ++unknown;
    }));
  kj::joinPromises(calls.releaseAsArray()).wait(ws);
  auto after = c.status(leader);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(ok, kSessions - 1);
  EXPECT_EQ(unknown, 1) << "the closed session's keep-alive fails alone";
  // The leader also appends a clock tick now and then; one entry per keep-alive would be 300.
  EXPECT_LE(after->last - before->last, 40u) << "keep-alives must share entries";
  // A batch is the nodes' own operation: a client cannot send one (it could renew sessions in
  // bulk, past the per-session bounds).
  auto w = sessions[0].writeRequest();
  w.setSeq(1);
  w.initOp().setType(static_cast<api::OpType>(18));
  EXPECT_EQ(w.send().wait(ws).getResult().getErr(), api::Errc::BAD_REQUEST);
}

// A leader handing over refuses new proposals for a moment (thesis §3.10). That is not the
// client's fault: the library must retry and every write succeed (it was answered bad_request).
TEST(ClientApi, WritesDuringLeadershipTransfersAllSucceed) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto client = connect_client(client_options_at(c, leader));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::thread writer([&] {
    std::deque<std::future<Reply>> q;
    auto settle = [&] {
      auto r = q.front().get();
      q.pop_front();
      if (r.ok()) {
        ++ok;
      } else {
        std::lock_guard<std::mutex> g(mu);
        failures.push_back(std::string(error_name(r.error)) + ": " + r.message);
      }
    };
    for (int i = 0; i < 200000 && !stop; ++i) {  // bounded: stops at the end of the transfers
      q.push_back(client->async().create("/t" + std::to_string(i), "v"));
      if (q.size() >= 32) settle();
    }
    while (!q.empty()) settle();
  });
  // Each transfer happens with writes in flight, and writes go on succeeding after it: the test
  // waits for progress (a count, with a deadline) rather than for a time, so a slow build (ASan)
  // proves the same thing as a fast one.
  auto wait_for_writes = [&](int more) {
    const int target = ok.load() + more;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (ok.load() < target && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return ok.load() >= target;
  };
  int stalled = 0;
  if (!wait_for_writes(20)) ++stalled;
  for (int t = 0; t < 6; ++t) {
    auto from = c.wait_for_leader(10s);
    ASSERT_NE(from, 0u);
    std::uint64_t to = 0;
    for (auto id : c.ids())
      if (id != from) to = id;
    c.transfer_leadership(from, to);
    c.wait_for_leader(10s, from);
    if (!wait_for_writes(20)) ++stalled;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(stalled, 0) << "writes stopped succeeding after a transfer (" << ok.load() << " in all)";
  std::lock_guard<std::mutex> g(mu);
  EXPECT_TRUE(failures.empty()) << failures.size() << " writes failed, the first: " << failures.front();
}

// A WatchSink that never returns from notify: it holds one call open forever.
class StuckSink final : public api::WatchSink::Server {
 public:
  explicit StuckSink(std::atomic<int>& calls) : calls_(calls) {}
  kj::Promise<void> notify(NotifyContext) override {
    ++calls_;
    return kj::NEVER_DONE;
  }

 private:
  std::atomic<int>& calls_;
};

TEST(ClientAbuse, AWatcherThatNeverReadsIsCutOffAndStallsNobodyElse) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto writer = library_client(c, leader);
  auto reader = library_client(c, leader);
  ASSERT_TRUE(writer && reader);
  ASSERT_TRUE(writer->create("/hot", "").ok());

  // The stuck watcher, on its own raw connection.
  Raw raw(c, leader);
  auto& ws = c.kj_io().waitScope;
  auto open = raw.tern.openSessionRequest();
  open.setTimeoutMs(60000);
  open.setSecret(77);
  auto opened = open.send().wait(ws);
  ASSERT_EQ(opened.getResult().getErr(), api::Errc::OK);
  auto stuck_session = opened.getSession();
  std::atomic<int> stuck_calls{0};
  auto w = stuck_session.watchRequest();
  w.initSpec().setPath("/hot");
  w.getSpec().setKind(api::WatchKind::DATA);
  w.getSpec().setPersistent(true);
  w.setResumeFrom(UINT64_MAX);
  w.setSink(kj::heap<StuckSink>(stuck_calls));
  ASSERT_EQ(w.send().wait(ws).getResult().getErr(), api::Errc::OK);

  // A well-behaved watcher of the same node.
  std::mutex mu;
  std::uint64_t last_seen = 0;
  int seen = 0;
  ASSERT_TRUE(reader->watch("/hot", WatchKind::data, [&](const WatchEvent& e) {
    std::lock_guard<std::mutex> g(mu);
    if (e.type == WatchEvent::Type::data_changed) {
      ++seen;
      last_seen = e.index;
    }
  }).ok());

  constexpr int kWrites = 1500;  // more than a watcher's queue holds (1,000 notifications)
  std::string value(1024, 'v');
  std::uint64_t last_index = 0;
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kWrites; ++i) {
    auto r = writer->set("/hot", value);
    ASSERT_TRUE(r.ok()) << i << ": " << error_name(r.error);
    last_index = r.index;
    if (i % 100 == 0) kj::evalLater([] {}).wait(ws);  // let the raw connection's loop run
  }
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 60s);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> g(mu);
      if (last_seen >= last_index) break;
    }
    std::this_thread::sleep_for(20ms);
  }
  {
    std::lock_guard<std::mutex> g(mu);
    EXPECT_EQ(seen, kWrites) << "the good watcher missed events";
    EXPECT_GE(last_seen, last_index);
  }
  kj::evalLater([] {}).wait(ws);
  EXPECT_EQ(stuck_calls.load(), 1) << "the stuck sink got a second call while its first was open";
  for (auto id : c.ids()) EXPECT_TRUE(c.status(id).has_value()) << "node " << id;
}

}  // namespace
}  // namespace tern::testing
