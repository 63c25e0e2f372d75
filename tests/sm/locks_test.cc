// Locks and elections in the state machine (issue 5): fairness, shared/exclusive, try-lock,
// fencing tokens, session end and lock-delay, elections; a model-based property of the queues.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

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
  e.secrets = d.secrets;
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

// ---- fencing tokens: one per grant, strictly increasing per lock ---------------------------------

// Regression: the token was the entry's index, so when one entry handed a lock on twice (here the
// holder's and the first waiter's sessions expire in the same tick: a -> b -> c) both grants got
// the same token, and b's stale token still passed check_token while c held the lock.
TEST(Locks, TwoGrantsInOneEntryGetDistinctIncreasingTokens) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(1000), c = d.open_session(60'000);
  std::uint64_t ta = d.lock(a, "m").id;
  d.lock(b, "m");
  d.lock(c, "m");
  d.events.clear();
  d.tick(1001);  // a and b expire while applying this one entry
  ASSERT_FALSE(d.sm.has_session(a));
  ASSERT_FALSE(d.sm.has_session(b));
  auto g = d.granted();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].session, b);
  EXPECT_EQ(g[1].session, c);
  EXPECT_GT(g[0].token, ta);
  EXPECT_GE(g[0].token, d.index);  // never below the entry's index
  EXPECT_LT(g[0].token, g[1].token);
  EXPECT_TRUE(d.sm.check_token("m", g[1].token));
  EXPECT_FALSE(d.sm.check_token("m", g[0].token));  // b no longer holds it
  EXPECT_FALSE(d.sm.check_token("m", ta));
}

// The same through an expiry and then the entry's own command (close_session of the new holder).
TEST(Locks, GrantsByExpiryAndByTheCommandOfOneEntryGetDistinctTokens) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(60'000), c = d.open_session(60'000);
  d.lock(a, "m");
  d.lock(b, "m");
  d.lock(c, "m");
  d.events.clear();
  d.time += 1001;  // a expires at the start of the next entry, which then closes b
  d.run(Op{OpType::close_session, "", "", -1, 0, 0, b});
  auto g = d.granted();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].session, b);
  EXPECT_EQ(g[1].session, c);
  EXPECT_LT(g[0].token, g[1].token);
  EXPECT_TRUE(d.sm.check_token("m", g[1].token));
  EXPECT_FALSE(d.sm.check_token("m", g[0].token));
}

// A lock that falls idle must still remember its last token while that token is not below the
// index of the entry being applied: otherwise a grant later in the same entry, or in the next
// entries, would fall back to the entry's index and repeat a token already issued.
TEST(Locks, TokensKeepIncreasingWhenTheLockFallsIdleAfterSeveralGrantsInOneEntry) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(1000), c = d.open_session(1000);
  auto x = d.open_session(60'000), y = d.open_session(60'000);
  d.lock(a, "m");
  d.lock(b, "m");
  d.lock(c, "m");
  d.events.clear();
  d.time += 1001;  // a, b and c expire in this entry (b and c are granted, then released) ...
  auto rx = d.lock(x, "m");  // ... and x takes the idle lock in the same entry
  auto g = d.granted();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_LT(g[0].token, g[1].token);
  EXPECT_GT(rx.id, g[1].token);
  EXPECT_TRUE(d.sm.check_token("m", rx.id));
  EXPECT_FALSE(d.sm.check_token("m", g[1].token));
  ASSERT_EQ(d.unlock(x, "m").err, Errc::ok);  // idle again, one entry later
  auto ry = d.lock(y, "m");                   // the next entry's index alone would repeat rx
  EXPECT_GT(ry.id, rx.id);
  EXPECT_FALSE(d.sm.check_token("m", rx.id));
  EXPECT_TRUE(d.sm.check_token("m", ry.id));
}

// The last token of each lock is replicated state: a replica restored from a snapshot taken right
// after the grants of one entry ran ahead of the index issues the same, still increasing, tokens.
TEST(Locks, SnapshotKeepsTheLastTokenOfHeldAndIdleLocks) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(1000), c = d.open_session(1000);
  auto h1 = d.open_session(1000), h2 = d.open_session(60'000), w = d.open_session(60'000);
  auto y = d.open_session(60'000);
  d.lock(a, "idle");
  d.lock(b, "idle");
  d.lock(c, "idle");
  d.lock(h1, "held");
  d.lock(h2, "held");
  d.lock(w, "held");
  d.events.clear();
  d.tick(1001);  // "idle": a -> b -> c -> nobody; "held": h1 -> h2, w still waits
  auto g = d.granted();
  std::map<std::string, std::uint64_t> last;
  for (auto& x : g) {
    EXPECT_GT(x.token, last[x.name]) << x.name;
    last[x.name] = x.token;
  }
  ASSERT_EQ(last.size(), 2u);
  ASSERT_GT(last["idle"], d.index);  // the tokens ran ahead of the index

  Driver e;
  ASSERT_TRUE(e.sm.restore(d.sm.snapshot()));
  e.index = d.index;
  e.time = d.time;
  e.secrets = d.secrets;
  EXPECT_EQ(e.sm.digest(), d.sm.digest());
  EXPECT_TRUE(e.sm.check_token("held", last["held"]));
  std::vector<std::uint64_t> tokens[2];
  int k = 0;
  for (Driver* r : {&d, &e}) {
    r->events.clear();
    tokens[k].push_back(r->lock(y, "idle").id);
    r->unlock(h2, "held");  // hands "held" to w
    auto gw = r->granted();
    ASSERT_EQ(gw.size(), 1u);
    EXPECT_EQ(gw[0].session, w);
    tokens[k].push_back(gw[0].token);
    ++k;
  }
  EXPECT_EQ(tokens[0], tokens[1]);
  EXPECT_GT(tokens[1][0], last["idle"]);
  EXPECT_GT(tokens[1][1], last["held"]);
  EXPECT_EQ(e.sm.digest(), d.sm.digest());
}

// ---- model-based: queues, grants and tokens -----------------------------------------------------

RC_GTEST_PROP(LockModel, GrantsMatchAFifoModelAndNeverConflict, ()) {
  Driver d;
  // Every live session's deadline is now + timeout: time only moves in the expiry step below,
  // which keeps the survivors alive and replaces the victims, so that step can end any subset of
  // sessions in one entry (a lock then changes hands several times within that entry).
  constexpr std::int64_t timeout = 10'000;
  std::vector<std::uint64_t> sessions;
  for (int i = 0; i < 4; ++i) sessions.push_back(d.open_session(timeout));
  struct Req {
    std::uint64_t session;
    bool shared;
    std::uint64_t token = 0;
  };
  struct L {
    std::vector<Req> holders;
    std::deque<Req> queue;
    std::uint64_t last_token = 0;
    std::set<std::uint64_t> issued;
  };
  std::map<std::string, L> model;
  auto compatible = [](const L& l, bool shared) { return l.holders.empty() || (shared && l.holders.front().shared); };
  // The fencing rule: each grant gets max(entry index, the lock's last token + 1).
  auto next_token = [&](L& l) {
    l.last_token = std::max(d.index, l.last_token + 1);
    l.issued.insert(l.last_token);
    return l.last_token;
  };
  std::vector<Grant> want;
  auto grant = [&](const std::string& lock_name, L& l) {
    while (!l.queue.empty() && compatible(l, l.queue.front().shared)) {
      Req r = l.queue.front();
      l.queue.pop_front();
      r.token = next_token(l);
      l.holders.push_back(r);
      want.push_back(Grant{lock_name, r.session, r.token});
      if (!r.shared) break;
    }
  };
  auto end_in_model = [&](std::uint64_t s) {
    for (auto& [n, ml] : model) {
      std::erase_if(ml.holders, [&](const Req& x) { return x.session == s; });
      std::erase_if(ml.queue, [&](const Req& x) { return x.session == s; });
      grant(n, ml);
    }
  };
  int steps = *rc::gen::inRange(1, 80);
  for (int i = 0; i < steps; ++i) {
    std::string name = *rc::gen::element<std::string>("a", "b");
    std::uint64_t s = sessions[static_cast<std::size_t>(*rc::gen::inRange(0, 4))];
    L& l = model[name];
    want.clear();
    d.events.clear();
    auto held = std::find_if(l.holders.begin(), l.holders.end(), [&](const Req& r) { return r.session == s; });
    bool holds = held != l.holders.end();
    bool waits = std::any_of(l.queue.begin(), l.queue.end(), [&](const Req& r) { return r.session == s; });
    int what = *rc::gen::inRange(0, 8);
    if (what == 6) {
      // The session ends (closed: no lock-delay): all its holds and requests go, waiters advance.
      d.run(Op{OpType::close_session, "", "", -1, 0, 0, s});
      end_in_model(s);
      std::replace(sessions.begin(), sessions.end(), s, d.open_session(timeout));
    } else if (what == 7) {
      // Some sessions expire together, in one entry, in id order (no lock-delay was asked for).
      auto mask = *rc::gen::inRange(1, 16);
      std::vector<std::uint64_t> victims, survivors;
      for (std::size_t k = 0; k < sessions.size(); ++k) (mask >> k & 1 ? victims : survivors).push_back(sessions[k]);
      std::sort(victims.begin(), victims.end());
      for (std::int64_t waited = 0; waited <= timeout; waited += 2000) {  // 2000: the largest clock step
        d.tick(2000);
        if (waited + 2000 > timeout) {
          for (auto v : victims) RC_ASSERT(!d.sm.has_session(v));
          for (auto v : victims) end_in_model(v);
        }
        for (auto k : survivors) d.run(Op{OpType::keep_alive, "", "", -1, 0, 0, k});
      }
      for (auto v : victims) std::replace(sessions.begin(), sessions.end(), v, d.open_session(timeout));
    } else if (what < 4) {
      // Elections are exclusive locks on their own names: "a" is a lock, "b" an election.
      bool election = name == "b";
      bool shared = !election && *rc::gen::arbitrary<bool>();
      bool try_only = !election && *rc::gen::inRange(0, 3) == 0;
      std::uint32_t flags = (shared ? lock_shared : 0) | (try_only ? lock_try : 0);
      auto r = election ? d.run(Op{OpType::campaign, name, "v" + std::to_string(s)}, s) : d.lock(s, name, flags);
      auto queued = std::find_if(l.queue.begin(), l.queue.end(), [&](const Req& q) { return q.session == s; });
      if (holds && held->shared != shared) {
        RC_ASSERT(r.err == Errc::bad_request);  // no upgrade or downgrade, try or not
      } else if (holds) {
        RC_ASSERT(r.err == Errc::ok);
        RC_ASSERT(r.id == held->token);  // re-acquiring returns the token held
      } else if (waits && queued->shared != shared) {
        RC_ASSERT(r.err == Errc::bad_request);
      } else if (waits) {
        RC_ASSERT(r.err == (try_only ? Errc::busy : Errc::ok));
        RC_ASSERT(r.id == 0u);
      } else if (l.queue.empty() && compatible(l, shared)) {
        std::uint64_t token = next_token(l);
        l.holders.push_back({s, shared, token});
        RC_ASSERT(r.err == Errc::ok);
        RC_ASSERT(r.id == token);
      } else if (try_only) {
        RC_ASSERT(r.err == Errc::busy);  // never queued
      } else {
        l.queue.push_back({s, shared});
        RC_ASSERT(r.err == Errc::ok);
        RC_ASSERT(r.id == 0u);
      }
    } else {
      auto r = name == "b" ? d.run(Op{OpType::resign, name}, s) : d.unlock(s, name);
      RC_ASSERT((r.err == Errc::ok) == (holds || waits));
      std::erase_if(l.holders, [&](const Req& x) { return x.session == s; });
      std::erase_if(l.queue, [&](const Req& x) { return x.session == s; });
      grant(name, l);
    }
    // The election's leader is the model's holder of "b", with its value and token.
    auto leader = d.sm.leader("b");
    if (model["b"].holders.empty()) {
      RC_ASSERT(leader.err == Errc::no_node);
    } else {
      RC_ASSERT(leader.id == model["b"].holders.front().session);
      RC_ASSERT(leader.data == "v" + std::to_string(leader.id));
      RC_ASSERT(leader.stat.modified_index == model["b"].holders.front().token);
    }
    for (auto& e : d.events)
      if (e.type == EventType::leader_changed && e.id != 0) RC_ASSERT(model["b"].issued.count(e.token) == 1u);
    // Grants handed over from the queue, with their tokens: lock_granted events for the lock,
    // leader_changed for the election (whose leader is checked above).
    std::vector<Grant> got = d.granted(), want_locks;
    for (auto& g : want)
      if (g.name == "a") want_locks.push_back(g);
    RC_ASSERT(got == want_locks);
    // A token is valid exactly while its holder holds the lock: never for an earlier holder.
    for (auto t : model["a"].issued) {
      bool current = std::any_of(model["a"].holders.begin(), model["a"].holders.end(), [&](const Req& h) { return h.token == t; });
      RC_ASSERT(d.sm.check_token("a", t) == current);
    }
    // Safety: one exclusive holder, or only shared holders.
    for (auto& [n, m] : model)
      if (m.holders.size() > 1)
        for (auto& h : m.holders) RC_ASSERT(h.shared);
  }
}

}  // namespace
}  // namespace tern::sm
