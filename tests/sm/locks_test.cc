// Locks and elections in the state machine (issue 5): fairness, shared/exclusive, try-lock,
// fencing tokens, session end and lock-delay, elections; a model-based property of the queues.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <deque>
#include <map>

#include "service/sm/command.h"
#include "service/sm/state_machine.h"
#include "tests/sm/driver.h"

namespace tern::sm {
namespace {

using test::Driver;

TEST(Locks, ExclusiveLockIsFairFifoWithoutHerd) {
  Driver d;
  auto a = d.open_session(), b = d.open_session(), c = d.open_session();
  auto ra = d.lock(a, "db");
  ASSERT_EQ(ra.err, Errc::ok);
  EXPECT_EQ(ra.id, d.index);  // token = log index of the grant
  EXPECT_EQ(d.lock(b, "db").id, 0u);  // queued
  EXPECT_EQ(d.lock(c, "db").id, 0u);
  d.events.clear();
  ASSERT_EQ(d.unlock(a, "db").err, Errc::ok);
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{b});  // only the next waiter
  EXPECT_TRUE(d.sm.check_token("db", d.index));
  EXPECT_FALSE(d.sm.check_token("db", ra.id));  // the old holder's token is stale
  ASSERT_EQ(d.unlock(b, "db").err, Errc::ok);
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{c});
  EXPECT_GT(d.index, ra.id);
}

TEST(Locks, SharedHoldersTogetherButNeverAheadOfAQueuedWriter) {
  Driver d;
  auto r1 = d.open_session(), r2 = d.open_session(), w = d.open_session(), r3 = d.open_session();
  EXPECT_NE(d.lock(r1, "t", lock_shared).id, 0u);
  EXPECT_NE(d.lock(r2, "t", lock_shared).id, 0u);  // readers share
  EXPECT_EQ(d.lock(w, "t").id, 0u);                // the writer waits
  EXPECT_EQ(d.lock(r3, "t", lock_shared).id, 0u);  // and a later reader waits behind it
  d.events.clear();
  d.unlock(r1, "t");
  EXPECT_TRUE(d.granted_sessions().empty());
  d.unlock(r2, "t");
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{w});
  d.unlock(w, "t");
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{r3});
}

TEST(Locks, TryLockFailsInsteadOfQueueing) {
  Driver d;
  auto a = d.open_session(), b = d.open_session();
  d.lock(a, "x");
  EXPECT_EQ(d.lock(b, "x", lock_try).err, Errc::busy);
  d.unlock(a, "x");
  EXPECT_TRUE(d.granted_sessions().empty());  // b never queued
  EXPECT_NE(d.lock(b, "x", lock_try).id, 0u);
  EXPECT_EQ(d.unlock(a, "x").err, Errc::not_held);
  EXPECT_EQ(d.lock(999, "x").err, Errc::unknown_session);
}

TEST(Locks, ExpiredHolderReleasesAfterTheLockDelay) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(60'000);
  d.lock(a, "m", 0, /*lock-delay=*/1500);
  d.lock(b, "m");
  d.events.clear();
  for (int i = 0; i < 3; ++i) {  // a stops keeping alive; b keeps alive
    d.tick(500);
    d.run(Op{OpType::keep_alive, "", "", -1, 0, 0, b});
  }
  EXPECT_FALSE(d.sm.has_session(a));
  EXPECT_TRUE(d.granted_sessions().empty());  // within the lock-delay
  for (int i = 0; i < 4; ++i) d.tick(500);
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{b});
}

TEST(Locks, ClosedSessionReleasesAtOnce) {
  Driver d;
  auto a = d.open_session(), b = d.open_session();
  d.lock(a, "m", 0, 5000);
  d.lock(b, "m");
  d.events.clear();
  d.run(Op{OpType::close_session, "", "", -1, 0, 0, a});
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{b});
}

TEST(Elections, CampaignLeaderProclaimResignAndExpiry) {
  Driver d;
  auto a = d.open_session(2000), b = d.open_session(60'000);
  Op camp{OpType::campaign, "svc", "host-a"};
  EXPECT_NE(d.run(camp, a).id, 0u);
  auto l = d.sm.leader("svc");
  EXPECT_EQ(l.id, a);
  EXPECT_EQ(l.data, "host-a");
  camp.data = "host-b";
  EXPECT_EQ(d.run(camp, b).id, 0u);  // queued
  EXPECT_EQ(d.run(Op{OpType::proclaim, "svc", "x"}, b).err, Errc::not_held);
  d.events.clear();
  EXPECT_EQ(d.run(Op{OpType::proclaim, "svc", "host-a2"}, a).err, Errc::ok);
  EXPECT_EQ(d.sm.leader("svc").data, "host-a2");
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(d.events[0].type, EventType::leader_changed);
  d.events.clear();
  d.run(Op{OpType::resign, "svc"}, a);
  EXPECT_EQ(d.sm.leader("svc").id, b);
  EXPECT_EQ(d.sm.leader("svc").data, "host-b");
  ASSERT_FALSE(d.events.empty());
  EXPECT_EQ(d.events.back().id, b);
  d.events.clear();
  d.run(Op{OpType::close_session, "", "", -1, 0, 0, b});
  EXPECT_EQ(d.sm.leader("svc").err, Errc::no_node);
  bool none = false;
  for (auto& e : d.events) none |= e.type == EventType::leader_changed && e.id == 0;
  EXPECT_TRUE(none);
}

TEST(Locks, SnapshotKeepsQueuesTokensAndDelays) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(60'000), c = d.open_session(60'000);
  d.lock(a, "m", 0, 1500);
  d.lock(b, "m");
  d.lock(c, "m", lock_shared);
  d.run(Op{OpType::campaign, "e", "v"}, b);
  Driver e;
  ASSERT_TRUE(e.sm.restore(d.sm.snapshot()));
  e.index = d.index;
  e.time = d.time;
  EXPECT_EQ(e.sm.digest(), d.sm.digest());
  for (Driver* x : {&d, &e}) {
    x->events.clear();
    for (int i = 0; i < 8; ++i) {
      x->tick(500);
      x->run(Op{OpType::keep_alive, "", "", -1, 0, 0, b});
      x->run(Op{OpType::keep_alive, "", "", -1, 0, 0, c});
    }
  }
  EXPECT_EQ(e.events, d.events);
  EXPECT_EQ(e.sm.digest(), d.sm.digest());
  EXPECT_EQ(e.sm.leader("e").id, b);
}

// ---- model-based: queues, grants and tokens -----------------------------------------------------

RC_GTEST_PROP(LockModel, GrantsMatchAFifoModelAndNeverConflict, ()) {
  Driver d;
  std::vector<std::uint64_t> sessions;
  for (int i = 0; i < 4; ++i) sessions.push_back(d.open_session(1'000'000));
  struct Req {
    std::uint64_t session;
    bool shared;
  };
  struct L {
    std::vector<Req> holders;
    std::deque<Req> queue;
    std::uint64_t last_token = 0;
  };
  std::map<std::string, L> model;
  auto compatible = [](const L& l, bool shared) { return l.holders.empty() || (shared && l.holders.front().shared); };
  std::vector<std::pair<std::uint64_t, std::string>> want_named;
  auto grant = [&](const std::string& lock_name, L& l) {
    while (!l.queue.empty() && compatible(l, l.queue.front().shared)) {
      Req r = l.queue.front();
      l.queue.pop_front();
      l.holders.push_back(r);
      want_named.push_back({r.session, lock_name});
      if (!r.shared) break;
    }
  };
  int steps = *rc::gen::inRange(1, 80);
  for (int i = 0; i < steps; ++i) {
    std::string name = *rc::gen::element<std::string>("a", "b");
    std::uint64_t s = sessions[static_cast<std::size_t>(*rc::gen::inRange(0, 4))];
    L& l = model[name];
    want_named.clear();
    bool holds = std::any_of(l.holders.begin(), l.holders.end(), [&](const Req& r) { return r.session == s; });
    bool waits = std::any_of(l.queue.begin(), l.queue.end(), [&](const Req& r) { return r.session == s; });
    int what = *rc::gen::inRange(0, 7);
    if (what == 6) {
      // The session ends (closed: no lock-delay): all its holds and requests go, waiters advance.
      d.run(Op{OpType::close_session, "", "", -1, 0, 0, s});
      for (auto& [n, ml] : model) {
        std::erase_if(ml.holders, [&](const Req& x) { return x.session == s; });
        std::erase_if(ml.queue, [&](const Req& x) { return x.session == s; });
        grant(n, ml);
      }
      std::replace(sessions.begin(), sessions.end(), s, d.open_session(1'000'000));
    } else if (what < 4) {
      // Elections are exclusive locks on their own names: "a" is a lock, "b" an election.
      bool election = name == "b";
      bool shared = !election && *rc::gen::arbitrary<bool>();
      auto r = election ? d.run(Op{OpType::campaign, name, "v" + std::to_string(s)}, s) : d.lock(s, name, shared ? lock_shared : 0);
      if (!holds && !waits) {
        if (l.queue.empty() && compatible(l, shared)) {
          l.holders.push_back({s, shared});
          RC_ASSERT(r.id == d.index);
        } else {
          l.queue.push_back({s, shared});
          RC_ASSERT(r.id == 0u);
        }
      }
    } else {
      auto r = name == "b" ? d.run(Op{OpType::resign, name}, s) : d.unlock(s, name);
      RC_ASSERT((r.err == Errc::ok) == (holds || waits));
      std::erase_if(l.holders, [&](const Req& x) { return x.session == s; });
      std::erase_if(l.queue, [&](const Req& x) { return x.session == s; });
      grant(name, l);
    }
    // Tokens of a lock never decrease (grants in one entry share the entry's index) and each
    // is valid for its holder.
    for (auto& e : d.events) {
      if (e.type != EventType::lock_granted && e.type != EventType::leader_changed) continue;
      if (e.type == EventType::leader_changed) {
        if (e.id != 0) RC_ASSERT(e.token >= model[e.path].last_token);
        if (e.id != 0) model[e.path].last_token = e.token;
        continue;
      }
      RC_ASSERT(e.token >= model[e.path].last_token);
      RC_ASSERT(e.token == e.index);  // the log index of the grant
      RC_ASSERT(d.sm.check_token(e.path, e.token));
      model[e.path].last_token = e.token;
    }
    // The election's leader is the model's holder of "b", with its value.
    auto leader = d.sm.leader("b");
    if (model["b"].holders.empty()) {
      RC_ASSERT(leader.err == Errc::no_node);
    } else {
      RC_ASSERT(leader.id == model["b"].holders.front().session);
      RC_ASSERT(leader.data == "v" + std::to_string(leader.id));
    }
    // Grants handed over from the queue: lock_granted events for the lock, leader_changed for
    // the election (whose leader is checked above).
    std::vector<std::uint64_t> got, want_locks;
    for (auto& e : d.events)
      if (e.type == EventType::lock_granted) got.push_back(e.id);
    for (auto& [who, lock_name] : want_named)
      if (lock_name == "a") want_locks.push_back(who);
    d.events.clear();
    RC_ASSERT(got == want_locks);
    // Safety: one exclusive holder, or only shared holders.
    for (auto& [n, m] : model)
      if (m.holders.size() > 1)
        for (auto& h : m.holders) RC_ASSERT(h.shared);
  }
}

}  // namespace
}  // namespace tern::sm
