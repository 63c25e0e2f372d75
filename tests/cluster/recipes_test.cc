// The recipes (client/include/tern/recipes.h) against real 3-node ternd clusters running the
// coordination state machine (issue 11): mutual exclusion with increasing fencing tokens,
// read-write sharing, a semaphore's bound, barriers, leader hand-over and loss, the tree cache's
// convergence and the configuration watcher.
#include "tern/recipes.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

#include "tests/cluster/client_helpers.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;
using namespace tern::recipes;

struct Fixture {
  Cluster cluster;
  std::uint64_t leader = 0;
  explicit Fixture(std::uint64_t snapshot_entries = 10000) : cluster(ternd(), [&] {
    ClusterOptions o = sm_cluster();
    o.snapshot_entries = snapshot_entries;
    return o;
  }()) {
    cluster.start_all();
    leader = cluster.wait_for_leader(10s);
  }
  // Client i starts on node ids()[i % 3] (so the clients spread over the nodes).
  // only_there: the client knows node i alone (it cannot fail over to another).
  std::unique_ptr<Client> client(std::size_t i, std::chrono::milliseconds session_timeout = 3000ms,
                                 std::chrono::milliseconds request_timeout = 10s, bool only_there = false) {
    ClientOptions o = client_options_from(cluster, i);
    if (only_there) o.endpoints.resize(1);
    o.session_timeout = session_timeout;
    o.request_timeout = request_timeout;
    return connect_client(std::move(o));
  }
};

// Raises `max` to `v` if larger.
void raise_max(std::atomic<int>& max, int v) {
  int m = max.load();
  while (v > m && !max.compare_exchange_weak(m, v)) {
  }
}

// Client::unwatch, which every recipe's waiting relies on: once it returns, the callback never
// runs again (the recipes' inboxes may be gone).
TEST(Recipes, AnUnwatchedCallbackNeverRunsAgain) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  auto c = f.client(0);
  ASSERT_TRUE(c->create("/u", "0").ok());
  std::atomic<int> calls{0};
  auto w = c->watch("/u", WatchKind::data, [&](const WatchEvent&) { ++calls; });
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(c->set("/u", "1").ok());
  EXPECT_EQ(calls, 1);  // the event comes before the reply (ordering)
  EXPECT_TRUE(c->unwatch(w.id).ok());
  EXPECT_EQ(c->unwatch(w.id).error, Error::no_node);  // once
  for (int i = 2; i < 5; ++i) ASSERT_TRUE(c->set("/u", std::to_string(i)).ok());
  ASSERT_TRUE(c->get("/u").ok());
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(calls, 1);
}

TEST(Recipes, AMutexExcludesAndItsTokensIncreaseAcrossThreeClients) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  std::atomic<int> inside{0}, max_inside{0}, held{0}, failures{0};
  std::mutex mu;
  std::vector<std::uint64_t> tokens;  // in the order the lock was taken
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < 3; ++i)
    threads.emplace_back([&, i] {
      auto c = f.client(i);
      if (!c) return;
      Mutex m(*c, "jobs");
      for (int k = 0; k < 5; ++k) {
        auto g = m.lock(10s);
        if (!g) {
          ++failures;
          continue;
        }
        raise_max(max_inside, ++inside);
        {
          std::lock_guard<std::mutex> l(mu);
          tokens.push_back(g.token());
        }
        if (!g.still_held()) ++failures;
        std::this_thread::sleep_for(20ms);
        --inside;
        ++held;
      }  // each guard released on destruction
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(held, 15);
  EXPECT_EQ(max_inside, 1) << "two clients held the mutex at once";
  ASSERT_EQ(tokens.size(), 15u);
  for (std::size_t i = 1; i < tokens.size(); ++i) EXPECT_GT(tokens[i], tokens[i - 1]) << "fencing tokens must increase";
  // try_lock: busy while another session holds it; a released guard's token is no longer valid.
  auto a = f.client(0), b = f.client(1);
  Mutex ma(*a, "jobs"), mb(*b, "jobs");
  auto ga = ma.try_lock();
  ASSERT_TRUE(ga);
  EXPECT_EQ(mb.try_lock().error(), Error::busy);
  EXPECT_EQ(mb.lock(300ms).error(), Error::timed_out);
  auto old = ga.token();
  EXPECT_EQ(ga.release(), Error::ok);
  EXPECT_EQ(b->check_token("jobs", old).error, Error::not_held);
  auto gb = mb.try_lock();
  ASSERT_TRUE(gb);
  EXPECT_GT(gb.token(), old);
}

TEST(Recipes, AReadWriteLockSharesReadersAndExcludesWriters) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  std::atomic<int> readers_in{0}, max_readers{0};
  std::atomic<bool> release_readers{false}, writer_has_it{false};
  std::atomic<int> writer_saw_readers{-1};
  std::vector<std::uint64_t> reader_tokens(3);
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < 3; ++i)
    readers.emplace_back([&, i] {
      auto c = f.client(i);
      if (!c) return;
      ReadWriteLock rw(*c, "table");
      auto g = rw.read_lock(10s);
      if (!g) return;
      reader_tokens[i] = g.token();
      raise_max(max_readers, ++readers_in);
      eventually(10s, [&] { return release_readers.load(); });
      --readers_in;  // before the guard releases the lock
    });
  ASSERT_TRUE(eventually(10s, [&] { return readers_in == 3; })) << "readers did not hold the lock together";
  auto w = f.client(0);
  ReadWriteLock rw(*w, "table");
  EXPECT_EQ(rw.write_lock(300ms).error(), Error::timed_out);  // readers hold it
  std::uint64_t writer_token = 0;
  std::thread writer([&] {
    auto g = rw.write_lock(10s);
    if (!g) return;
    writer_saw_readers = readers_in.load();
    writer_token = g.token();
    writer_has_it = true;
    eventually(10s, [&] { return !writer_has_it.load(); });
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(writer_has_it) << "a writer got the lock while readers held it";
  // A new reader queues behind the waiting writer (no overtaking).
  auto late = f.client(1);
  ReadWriteLock late_rw(*late, "table");
  EXPECT_EQ(late_rw.try_read_lock().error(), Error::busy);
  release_readers = true;
  for (auto& t : readers) t.join();
  ASSERT_TRUE(eventually(10s, [&] { return writer_has_it.load(); }));
  EXPECT_EQ(writer_saw_readers, 0);
  EXPECT_EQ(late_rw.try_read_lock().error(), Error::busy);  // the writer excludes readers
  for (auto t : reader_tokens) EXPECT_GT(writer_token, t);
  writer_has_it = false;
  writer.join();
  EXPECT_EQ(max_readers, 3);
  EXPECT_TRUE(eventually(5s, [&] { return static_cast<bool>(late_rw.try_read_lock()); }));
}

TEST(Recipes, ASemaphoreNeverExceedsItsCount) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  // The first user creates the semaphore's node and stores its count (2) there.
  auto c0 = f.client(0);
  Semaphore setup(*c0, "/sem/pool", 2);
  {
    auto p = setup.acquire(10s);
    ASSERT_TRUE(p) << error_name(p.error());
  }
  std::atomic<int> inside{0}, max_inside{0}, acquired{0}, failures{0};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      auto c = f.client(i);
      if (!c) return;
      Semaphore s(*c, "/sem/pool", 5);  // the stored count wins
      for (int k = 0; k < 4; ++k) {
        auto p = s.acquire(10s);
        if (!p) {
          ++failures;
          continue;
        }
        if (s.permits() != 2) ++failures;
        raise_max(max_inside, ++inside);
        std::this_thread::sleep_for(60ms);
        --inside;
        ++acquired;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(acquired, 16);
  EXPECT_LE(max_inside, 2) << "more holders than permits";
  EXPECT_EQ(max_inside, 2) << "the permits were never used together";
  auto left = c0->children("/sem/pool");
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left.names.empty()) << "a released permit left its node";
}

TEST(Recipes, BarriersHoldUntilLoweredAndDoubleBarriersEnterAndLeaveTogether) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  auto a = f.client(0), b = f.client(1);
  Barrier raised(*a, "/gate/open");
  ASSERT_EQ(raised.raise(), Error::ok);
  Barrier waiting(*b, "/gate/open");
  EXPECT_EQ(waiting.wait(300ms), Error::timed_out);
  std::atomic<bool> passed{false};
  std::thread t([&] { passed = waiting.wait(10s) == Error::ok; });
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(passed);
  ASSERT_EQ(raised.lower(), Error::ok);
  t.join();
  EXPECT_TRUE(passed);

  std::atomic<int> entering{0}, leaving{0}, early_enter{0}, early_leave{0}, done{0};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < 3; ++i)
    threads.emplace_back([&, i] {
      auto c = f.client(i);
      if (!c) return;
      DoubleBarrier db(*c, "/round-1", 3);
      std::this_thread::sleep_for(std::chrono::milliseconds(300 * i));  // arrive one by one
      ++entering;
      if (db.enter(10s) != Error::ok) return;
      if (entering != 3) ++early_enter;  // entered before everyone arrived
      std::this_thread::sleep_for(std::chrono::milliseconds(300 * (2 - i)));  // finish in the other order
      ++leaving;
      if (db.leave(10s) != Error::ok) return;
      if (leaving != 3) ++early_leave;  // left before everyone was done
      ++done;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(done, 3);
  EXPECT_EQ(early_enter, 0);
  EXPECT_EQ(early_leave, 0);
}

TEST(Recipes, AnElectionHandsLeadershipOverWhenTheLeadersClientIsDestroyed) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  struct Candidate {
    std::unique_ptr<Client> client;
    std::unique_ptr<LeaderElection> election;
    std::atomic<std::uint64_t> elected{0}, lost{0};
  };
  std::atomic<int> leaders{0}, max_leaders{0};
  std::vector<std::unique_ptr<Candidate>> cs;
  for (std::size_t i = 0; i < 3; ++i) {
    auto c = std::make_unique<Candidate>();
    c->client = f.client(i);
    ASSERT_NE(c->client, nullptr);
    Candidate* raw = c.get();
    c->election = std::make_unique<LeaderElection>(
        *c->client, "service", "replica-" + std::to_string(i),
        [&, raw](std::uint64_t token) {
          raise_max(max_leaders, ++leaders);
          raw->elected = token;
        },
        [&, raw](std::uint64_t token) {
          --leaders;
          raw->lost = token;
        });
    cs.push_back(std::move(c));
  }
  auto leader_index = [&]() -> int {
    int found = -1, count = 0;
    for (std::size_t i = 0; i < cs.size(); ++i)
      if (cs[i] && cs[i]->election->is_leader()) found = static_cast<int>(i), ++count;
    return count == 1 ? found : -1;
  };
  ASSERT_TRUE(eventually(10s, [&] { return leader_index() >= 0; }));
  auto first = static_cast<std::size_t>(leader_index());
  auto first_token = cs[first]->election->token();
  EXPECT_EQ(cs[first]->elected, first_token);
  auto seen = cs[(first + 1) % 3]->client->leader("service");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen.id, cs[first]->client->session_id());
  EXPECT_EQ(seen.data, "replica-" + std::to_string(first));

  // The leader's replica goes away: its recipe reports the loss, then resigns; another leads.
  cs[first]->election.reset();
  EXPECT_EQ(cs[first]->lost, first_token);
  cs[first]->client.reset();
  cs[first].reset();
  ASSERT_TRUE(eventually(10s, [&] { return leader_index() >= 0; }));
  auto second = static_cast<std::size_t>(leader_index());
  EXPECT_NE(second, first);
  EXPECT_GT(cs[second]->election->token(), first_token);
  EXPECT_LE(max_leaders, 1) << "two replicas believed they led at once";
  auto now = cs[second]->client->leader("service");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now.id, cs[second]->client->session_id());
  EXPECT_EQ(now.stat.modified_index, cs[second]->election->token());  // the leader's token
}

// A leader that can no longer confirm its leadership (the cluster lost its quorum) reports the loss
// within its window, although its session lives on.
TEST(Recipes, AnElectedLeaderReportsTheLossWhenItCanNoLongerConfirmIt) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  auto c = f.client(0, 8000ms, 2000ms);
  ASSERT_NE(c, nullptr);
  std::atomic<std::uint64_t> elected{0}, lost{0};
  std::atomic<int> elections{0};
  ElectionOptions opt;
  opt.window = 1000ms;
  opt.confirm_interval = 200ms;
  LeaderElection e(
      *c, "solo", "x",
      [&](std::uint64_t t) {
        elected = t;
        ++elections;
      },
      [&](std::uint64_t t) { lost = t; }, opt);
  ASSERT_TRUE(eventually(10s, [&] { return elected != 0; }));
  EXPECT_TRUE(e.is_leader());
  auto ids = f.cluster.ids();
  f.cluster.kill9(ids[1]);
  f.cluster.kill9(ids[2]);
  auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually(5s, [&] { return lost != 0; }));
  auto after = std::chrono::steady_clock::now() - killed;
  EXPECT_EQ(lost, elected);
  EXPECT_FALSE(e.is_leader());
  EXPECT_LT(after, 1500ms) << "the loss was reported later than the window allows";
  // The quorum comes back before the session could expire (an outage is charged at most 2 s of
  // cluster time, far below the 8 s timeout): the same session confirms its leadership again,
  // with the same token.
  auto token = lost.load();
  f.cluster.start(ids[1]);
  f.cluster.start(ids[2]);
  ASSERT_TRUE(eventually(10s, [&] { return elections == 2; }))
      << "failed " << e.failed() << ", leader(): " << error_name(c->leader("solo").error) << " "
      << c->leader("solo").id << " vs session " << c->session_id();
  EXPECT_EQ(elected, token);
  EXPECT_TRUE(e.is_leader());
}

// A loopback TCP proxy to one node's client port that can freeze (stop moving bytes, both ways,
// on every connection): a client behind it is cut off without its connections closing, like a
// partitioned or hung network. Every loop polls with a 50 ms timeout and ends when it is destroyed.
class FreezableProxy {
 public:
  explicit FreezableProxy(std::uint16_t target) : target_(target) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_, 16), 0);
    socklen_t n = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &n);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FreezableProxy() {
    stop_ = true;
    acceptor_.join();  // no pump starts after this
    for (auto& t : pumps_) t.join();
    ::close(listen_);
  }
  std::uint16_t port() const { return port_; }
  void freeze(bool on) { frozen_ = on; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int in = ::accept(listen_, nullptr, nullptr);
      if (in < 0) continue;
      int out = connect_loopback(target_);
      if (out < 0) {
        ::close(in);
        continue;
      }
      pumps_.emplace_back([this, in, out] { pump(in, out); });
    }
  }
  void pump(int a, int b) {
    char buf[1 << 16];
    while (!stop_) {
      if (frozen_) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto got = ::read(p[i].fd, buf, sizeof buf);
        if (got <= 0) done = true;
        for (ssize_t sent = 0; !done && sent < got;) {
          auto w = ::write(p[1 - i].fd, buf + sent, static_cast<std::size_t>(got - sent));
          if (w <= 0) done = true;
          else sent += w;
        }
      }
      if (done) break;
    }
    ::close(a);
    ::close(b);
  }

  std::uint16_t target_, port_ = 0;
  int listen_ = -1;
  std::atomic<bool> stop_{false}, frozen_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // the acceptor's alone until it is joined
};

// The leader's client is cut off from the cluster (its connections hang). Its recipe must report
// the loss (the window runs out) before the server lets the other candidate lead (the session
// expires), and the next leader's token is larger; when the cut heals, the old client learns that
// its session is gone.
TEST(Recipes, ACutOffLeaderReportsTheLossBeforeAnotherCandidateLeads) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  std::vector<std::unique_ptr<FreezableProxy>> proxies;
  ClientOptions cut;
  for (auto id : f.cluster.ids()) {
    proxies.push_back(std::make_unique<FreezableProxy>(f.cluster.node(id).client_port));
    cut.endpoints.push_back("127.0.0.1:" + std::to_string(proxies.back()->port()));
  }
  cut.session_timeout = 2000ms;
  apply_client_tls(f.cluster, cut);
  cut.request_timeout = 1000ms;
  std::string err;
  auto a = Client::connect(cut, &err);
  ASSERT_NE(a, nullptr) << err;
  auto b = f.client(1);
  ASSERT_NE(b, nullptr);
  using Clock = std::chrono::steady_clock;
  std::atomic<std::uint64_t> a_token{0}, b_token{0};
  std::atomic<Clock::rep> a_lost_at{0}, b_elected_at{0};
  auto ea = std::make_unique<LeaderElection>(
      *a, "cut", "a", [&](std::uint64_t t) { a_token = t; },
      [&](std::uint64_t) { a_lost_at = Clock::now().time_since_epoch().count(); });
  ASSERT_TRUE(eventually(10s, [&] { return a_token != 0; }));
  LeaderElection eb(
      *b, "cut", "b",
      [&](std::uint64_t t) {
        b_token = t;
        b_elected_at = Clock::now().time_since_epoch().count();
      },
      [](std::uint64_t) {});
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(b_token, 0u);  // queued behind a
  for (auto& p : proxies) p->freeze(true);
  ASSERT_TRUE(eventually(10s, [&] { return b_token != 0; })) << "the other candidate never led";
  ASSERT_NE(a_lost_at, 0) << "the cut-off leader never reported the loss";
  EXPECT_LT(a_lost_at, b_elected_at) << "two leaders at once: the loss came after the successor was elected";
  EXPECT_GT(b_token, a_token);
  EXPECT_FALSE(ea->is_leader());
  for (auto& p : proxies) p->freeze(false);
  EXPECT_TRUE(eventually(10s, [&] { return ea->failed(); })) << "the old client did not learn its session expired";
  ea.reset();
  a.reset();
}

// Writers on three clients change a subtree concurrently; the cache must end equal to the
// server's subtree.
TEST(Recipes, ATreeCacheConvergesToTheServerStateAfterConcurrentWrites) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  auto reader = f.client(2);
  ASSERT_TRUE(reader->create("/tree", "root").ok());
  std::atomic<int> changes{0};
  TreeCache cache(*reader, "/tree", [&](const std::string&, const std::optional<TreeCache::Node>&) { ++changes; });
  ASSERT_TRUE(cache.wait_loaded(10s));
  std::vector<std::thread> writers;
  for (std::size_t w = 0; w < 3; ++w)
    writers.emplace_back([&, w] {
      auto c = f.client(w);
      if (!c) return;
      std::mt19937 rng(static_cast<unsigned>(w + 1));
      std::string dir = "/tree/w" + std::to_string(w);
      c->create(dir, "d");
      for (int i = 0; i < 40; ++i) {
        std::string p = dir + "/k" + std::to_string(rng() % 6);
        switch (rng() % 4) {
          case 0: c->create(p, std::to_string(i)); break;
          case 1: c->set(p, std::to_string(i)); break;
          case 2: c->remove(p, -1, true); break;
          case 3: c->create(p + "/sub", "s" + std::to_string(i)); break;
        }
      }
    });
  for (auto& t : writers) t.join();
  // The server's subtree, read linearizably.
  std::map<std::string, std::pair<std::string, std::int64_t>> server;
  std::function<void(const std::string&)> walk = [&](const std::string& p) {
    auto g = reader->get(p);
    ASSERT_TRUE(g.ok());
    server[p] = {g.data, g.stat.version};
    auto kids = reader->children(p);
    ASSERT_TRUE(kids.ok());
    for (const auto& n : kids.names) walk(p + "/" + n);
  };
  walk("/tree");
  auto cached = [&] {
    std::map<std::string, std::pair<std::string, std::int64_t>> out;
    for (const auto& [p, n] : cache.snapshot()) out[p] = {n.data, n.stat.version};
    return out;
  };
  bool converged = eventually(10s, [&] { return cached() == server; });
  EXPECT_TRUE(converged);
  if (!converged) {
    auto mine = cached();
    for (const auto& [p, n] : mine)
      if (!server.count(p) || server[p] != n) ADD_FAILURE() << "cache: " << p << " = " << n.first << " v" << n.second;
    for (const auto& [p, n] : server)
      if (!mine.count(p) || mine[p] != n) ADD_FAILURE() << "server: " << p << " = " << n.first << " v" << n.second;
  }
  EXPECT_GT(changes, 0);
  EXPECT_GE(server.size(), 4u);
  auto children = cache.children("/tree");
  EXPECT_EQ(children, (std::vector<std::string>{"w0", "w1", "w2"}));
  // And it keeps following.
  auto s = reader->set("/tree", "changed");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(eventually(5s, [&] { auto n = cache.get("/tree"); return n && n->data == "changed"; }));
  EXPECT_GE(cache.index(), s.index);
  EXPECT_EQ(cache.reloads(), 1u);
}

// One log entry can carry several events of one watch (a transaction's creates, a recursive
// delete): the watch must deliver all of them, not only the first of their shared index.
TEST(Recipes, ATreeCacheSeesEveryEventOfOneEntry) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  auto c = f.client(0);
  ASSERT_TRUE(c->create("/t", "").ok());
  ASSERT_TRUE(c->create("/t/a", "").ok());
  ASSERT_TRUE(c->create("/t/a/b", "").ok());
  ASSERT_TRUE(c->create("/t/a/c", "").ok());
  TreeCache cache(*c, "/t");
  ASSERT_TRUE(cache.wait_loaded(10s));
  EXPECT_EQ(cache.snapshot().size(), 4u);
  ASSERT_TRUE(c->remove("/t/a", -1, true).ok());
  std::vector<TxnOp> txn{{TxnOp::Kind::create, "/t/x", "1", -1, {}}, {TxnOp::Kind::create, "/t/y", "2", -1, {}},
                         {TxnOp::Kind::create, "/t/z", "3", -1, {}}};
  auto m = c->multi(txn);
  ASSERT_TRUE(m.ok()) << error_name(m.error);
  auto paths = [&] {
    std::vector<std::string> out;
    for (const auto& [p, n] : cache.snapshot()) out.push_back(p);
    return out;
  };
  std::vector<std::string> want{"/t", "/t/x", "/t/y", "/t/z"};
  EXPECT_TRUE(eventually(5s, [&] { return paths() == want; }));
  EXPECT_EQ(paths(), want);
  EXPECT_EQ(cache.children("/t"), (std::vector<std::string>{"x", "y", "z"}));
}

// A node that falls behind and installs a snapshot resyncs every watch on it: the cache re-reads
// the subtree and again equals the server's (deletions it never saw as events included). The
// reader's client sits on the leader (opening a session took it there); that node sleeps while a
// new leader takes 260 writes (13 snapshots with a compacted log), then wakes up as a follower
// that can only catch up from a snapshot. The reader knows that node alone: with the others it
// would (rightly) leave the paused node after a keep-alive timed out and resume its watch on a
// live node without a resync.
TEST(Recipes, ATreeCacheReloadsOnResyncAndConvergesAgain) {
  Fixture f(/*snapshot_entries=*/20);
  ASSERT_NE(f.leader, 0u);
  auto ids = f.cluster.ids();
  auto index_of = [&](std::uint64_t id) {
    return static_cast<std::size_t>(std::find(ids.begin(), ids.end(), id) - ids.begin());
  };
  auto reader = f.client(index_of(f.leader), 10000ms, 10s, /*only_there=*/true);
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(reader->create("/r", "").ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(reader->create("/r/old" + std::to_string(i), "x").ok());
  TreeCache cache(*reader, "/r");
  ASSERT_TRUE(cache.wait_loaded(10s));
  EXPECT_EQ(cache.snapshot().size(), 6u);
  f.cluster.pause(f.leader);
  auto next = f.cluster.wait_for_leader(10s, f.leader);
  ASSERT_NE(next, 0u);
  auto writer = f.client(index_of(next));
  ASSERT_NE(writer, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer->remove("/r/old" + std::to_string(i)).ok());
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(writer->create("/r/new" + std::to_string(i), std::to_string(i)).ok());
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(writer->set("/r/new59", std::to_string(i)).ok());
  f.cluster.resume(f.leader);
  std::vector<std::string> want{"/r"};
  for (int i = 0; i < 60; ++i) want.push_back("/r/new" + std::to_string(i));
  std::sort(want.begin(), want.end());
  auto paths = [&] {
    std::vector<std::string> out;
    for (const auto& [p, n] : cache.snapshot()) out.push_back(p);
    return out;
  };
  EXPECT_TRUE(eventually(10s, [&] { return paths() == want; })) << "cache has " << paths().size() << " nodes";
  EXPECT_GE(cache.reloads(), 2u) << "no resync reached the cache";
  if (cache.reloads() < 2) {
    auto st = f.cluster.status(f.leader);
    if (st) std::cerr << "old leader " << st->id << " applied " << st->applied << " snapshot " << st->snapshot << "\n";
  }
  auto last = cache.get("/r/new59");
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->data, "199");
  EXPECT_EQ(last->stat.version, 200);
}

TEST(Recipes, AConfigWatcherSeesEachNewValueInOrderAndTheLastOne) {
  Fixture f;
  ASSERT_NE(f.leader, 0u);
  auto w = f.client(1), writer = f.client(0);
  ASSERT_TRUE(writer->create("/cfg", "0").ok());
  std::mutex mu;
  std::vector<std::pair<std::optional<std::string>, std::uint64_t>> seen;
  ConfigWatcher watcher(*w, "/cfg", [&](const std::optional<std::string>& v, std::uint64_t index) {
    std::lock_guard<std::mutex> g(mu);
    seen.emplace_back(v, index);
  });
  auto last = [&] {
    std::lock_guard<std::mutex> g(mu);
    return seen.empty() ? std::optional<std::string>("<none>") : seen.back().first;
  };
  ASSERT_TRUE(eventually(10s, [&] { return last() == std::optional<std::string>("0"); }));
  for (int i = 1; i <= 50; ++i) ASSERT_TRUE(writer->set("/cfg", std::to_string(i)).ok());
  EXPECT_TRUE(eventually(10s, [&] { return last() == std::optional<std::string>("50"); }));
  ASSERT_TRUE(writer->remove("/cfg").ok());
  EXPECT_TRUE(eventually(10s, [&] { return !last().has_value(); }));
  ASSERT_TRUE(writer->create("/cfg", "back").ok());
  EXPECT_TRUE(eventually(10s, [&] { return last() == std::optional<std::string>("back"); }));
  std::lock_guard<std::mutex> g(mu);
  int prev = -1;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(seen[i].second, seen[i - 1].second) << "values out of order";
    }
    if (seen[i].first && *seen[i].first != "back") {
      int v = std::stoi(*seen[i].first);
      EXPECT_GT(v, prev);
      prev = v;
    }
  }
}

}  // namespace
}  // namespace tern::testing
