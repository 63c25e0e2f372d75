// Hostile and careless clients on the client API (issue 11, "Bad input"), against real 3-node
// clusters: thousands of idle sessions on one connection, a watcher that never answers its
// notifications, and operations no library would send. Other clients must be unaffected.
#include <gtest/gtest.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "client/api/tern.capnp.h"
#include "client/connect.h"
#include "tern/client.h"
#include "tests/cluster/client_tls.h"
#include "tests/cluster/harness.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;

std::string ternd() {
  const char* bin = std::getenv("TERND_BIN");
  return bin != nullptr ? bin : "ternd";
}

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

std::unique_ptr<Client> library_client(Cluster& c, std::uint64_t first) {
  ClientOptions o;
  o.endpoints.push_back("127.0.0.1:" + std::to_string(c.node(first).client_port));
  for (auto id : c.ids())
    if (id != first) o.endpoints.push_back("127.0.0.1:" + std::to_string(c.node(id).client_port));
  apply_client_tls(c, o);
  std::string err;
  auto client = Client::connect(o, &err);
  EXPECT_NE(client, nullptr) << err;
  return client;
}

ClusterOptions sm_cluster() {
  ClusterOptions o;
  o.raw_state_machine = false;
  return o;
}

TEST(ClientAbuse, TenThousandIdleSessionsOnOneConnectionLeaveOtherClientsServed) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  Raw raw(c, leader);
  auto& ws = c.kj_io().waitScope;
  constexpr int kSessions = 10000;
  std::vector<api::Session::Client> held;  // idle: never used again, never closed
  int opened = 0;
  for (int batch = 0; batch < kSessions / 500; ++batch) {
    kj::Vector<kj::Promise<void>> calls;
    for (int i = 0; i < 500; ++i) {
      auto req = raw.tern.openSessionRequest();
      req.setTimeoutMs(60000);
      req.setSecret(static_cast<std::uint64_t>(batch) * 1000 + static_cast<std::uint64_t>(i) + 1);
      calls.add(req.send().then([&](auto r) {
        if (r.getResult().getErr() == api::Errc::OK) {
          ++opened;
          held.push_back(r.getSession());
        }
      }));
    }
    kj::joinPromises(calls.releaseAsArray()).wait(ws);
  }
  EXPECT_EQ(opened, kSessions);
  auto client = library_client(c, leader);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->create("/alive", "yes").ok());
  EXPECT_EQ(client->get("/alive").data, "yes");
  for (auto id : c.ids()) EXPECT_TRUE(c.status(id).has_value()) << "node " << id;
}

// Any node serves any client (issue 11): a follower forwards a session's writes to the leader
// (thesis §6.2) instead of answering notLeader, and reads its own writes back.
TEST(ClientApi, AFollowerForwardsWritesSoTheClientNeverSeesNotLeader) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  std::uint64_t follower = 0;
  for (auto id : c.ids())
    if (id != leader) follower = id;
  Raw raw(c, follower);
  auto& ws = c.kj_io().waitScope;
  auto open = raw.tern.openSessionRequest();
  open.setTimeoutMs(10000);
  open.setSecret(99);
  auto opened = open.send().wait(ws);
  ASSERT_EQ(opened.getResult().getErr(), api::Errc::OK) << opened.getResult().getMessage().cStr();
  auto session = opened.getSession();
  for (int i = 0; i < 20; ++i) {
    auto w = session.writeRequest();
    w.setSeq(static_cast<std::uint64_t>(i) + 1);
    auto op = w.initOp();
    op.setType(api::OpType::CREATE);
    op.setPath("/f" + std::to_string(i));
    auto r = w.send().wait(ws);
    ASSERT_EQ(r.getResult().getErr(), api::Errc::OK) << i << ": " << r.getResult().getMessage().cStr();
    auto get = session.readRequest();
    get.initQuery().setType(api::QueryType::GET);
    get.getQuery().setPath("/f" + std::to_string(i));
    get.initOptions().setConsistency(api::Consistency::AT_LEAST);
    get.getOptions().setMinIndex(r.getResult().getIndex());
    auto g = get.send().wait(ws);
    EXPECT_EQ(g.getResult().getErr(), api::Errc::OK);
    EXPECT_GE(g.getResult().getIndex(), r.getResult().getIndex());
  }
  // A retry of the last write (same seq) through the follower answers as the first time.
  auto again = session.writeRequest();
  again.setSeq(20);
  auto op = again.initOp();
  op.setType(api::OpType::CREATE);
  op.setPath("/f19");
  EXPECT_EQ(again.send().wait(ws).getResult().getErr(), api::Errc::OK);
}

// The admission limit (--client-rate-limit, requests per second per session): a session that
// floods gets slowDown for the excess and nothing else changes; the library backs off from
// slowDown, so its calls all succeed, only slower.
TEST(ClientApi, ASessionOverItsRateLimitIsToldToSlowDownAndTheLibraryBacksOff) {
  auto o = sm_cluster();
  o.extra_args = {"--client-rate-limit", "50"};
  Cluster c(ternd(), o);
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  Raw raw(c, leader);
  auto& ws = c.kj_io().waitScope;
  auto open = raw.tern.openSessionRequest();
  open.setTimeoutMs(10000);
  open.setSecret(5);
  auto session = open.send().wait(ws).getSession();
  int ok = 0, slowed = 0;
  kj::Vector<kj::Promise<void>> calls;
  for (int i = 0; i < 200; ++i) {
    auto get = session.readRequest();
    get.initQuery().setType(api::QueryType::EXISTS);
    get.getQuery().setPath("/");
    get.initOptions().setConsistency(api::Consistency::SERIALIZABLE);
    calls.add(get.send().then([&](auto r) {
      if (r.getResult().getErr() == api::Errc::OK) ++ok;
      if (r.getResult().getErr() == api::Errc::SLOW_DOWN) ++slowed;
    }));
  }
  kj::joinPromises(calls.releaseAsArray()).wait(ws);
  EXPECT_EQ(ok + slowed, 200);
  EXPECT_GE(ok, 50);   // the burst
  EXPECT_LE(ok, 120);  // not much more than the burst and what refilled meanwhile
  EXPECT_GT(slowed, 0);
  // Through the library: every call succeeds, paced by the limit.
  auto client = library_client(c, leader);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->create("/paced", "").ok());
  for (int i = 0; i < 120; ++i) ASSERT_TRUE(client->set("/paced", std::to_string(i)).ok()) << i;
  EXPECT_EQ(client->get("/paced").stat.version, 120);
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
