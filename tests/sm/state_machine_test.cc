// Tests of the coordination state machine (issue 5, first part): namespace, validation and
// errors, transactions, sessions and ephemerals, exactly-once, leases, containers, TTL nodes,
// time handling, snapshot/restore/digest; and model-based properties.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "service/sm/command.h"
#include "service/sm/path.h"
#include "service/sm/state_machine.h"
#include "tests/sm/driver.h"

namespace tern::sm {
namespace {

using test::Driver;

TEST(Path, Validation) {
  for (const char* ok : {"/", "/a", "/a/b", "/a.b/c-d_e", "/0000000001"}) EXPECT_EQ(validate_path(ok), Errc::ok) << ok;
  for (const std::string& bad : std::vector<std::string>{"", "a", "a/b", "/a/", "//", "/a//b", "/./a", "/a/..", std::string("/a\0b", 4), "/" + std::string(5000, 'x')})
    EXPECT_EQ(validate_path(bad), Errc::bad_path) << bad;
  EXPECT_EQ(parent_of("/a/b"), "/a");
  EXPECT_EQ(parent_of("/a"), "/");
  EXPECT_TRUE(in_subtree("/a/b", "/a"));
  EXPECT_FALSE(in_subtree("/ab", "/a"));
}

TEST(Namespace, CreateGetSetDeleteWithVersionsAndStat) {
  Driver d;
  auto c = d.create("/app", "v0");
  ASSERT_EQ(c.err, Errc::ok);
  EXPECT_EQ(c.path, "/app");
  auto g = d.sm.get("/app");
  EXPECT_EQ(g.data, "v0");
  EXPECT_EQ(g.stat.version, 0);
  EXPECT_EQ(g.stat.created_index, 1u);
  EXPECT_EQ(g.stat.data_length, 2u);
  EXPECT_EQ(d.set("/app", "v1", 0).stat.version, 1);
  EXPECT_EQ(d.set("/app", "v2", 0).err, Errc::bad_version);  // a rejected command changes nothing
  EXPECT_EQ(d.sm.get("/app").data, "v1");
  EXPECT_EQ(d.sm.get("/app").stat.modified_index, 2u);
  d.create("/app/x");
  EXPECT_EQ(d.sm.get("/app").stat.child_count, 1u);
  EXPECT_EQ(d.sm.get("/app").stat.child_version, 1);
  EXPECT_EQ(d.remove("/app").err, Errc::not_empty);
  EXPECT_EQ(d.remove("/app/x", 3).err, Errc::bad_version);
  EXPECT_EQ(d.remove("/app/x", 0).err, Errc::ok);
  EXPECT_EQ(d.remove("/app", 1).err, Errc::ok);
  EXPECT_EQ(d.sm.get("/app").err, Errc::no_node);
}

TEST(Namespace, EveryErrorIsDistinct) {
  Driver d;
  EXPECT_EQ(d.create("relative").err, Errc::bad_path);
  EXPECT_EQ(d.create("/a/").err, Errc::bad_path);
  EXPECT_EQ(d.create("/").err, Errc::bad_path);
  EXPECT_EQ(d.create("/missing/child").err, Errc::no_parent);
  EXPECT_EQ(d.create("/a").err, Errc::ok);
  EXPECT_EQ(d.create("/a").err, Errc::node_exists);
  EXPECT_EQ(d.create("/big", std::string((1 << 20) + 1, 'x')).err, Errc::too_large);
  EXPECT_EQ(d.set("/nope", "x").err, Errc::no_node);
  EXPECT_EQ(d.remove("/").err, Errc::bad_path);
  EXPECT_EQ(d.raw("garbage").response.err, Errc::bad_request);
  EXPECT_EQ(d.raw(std::string(2 << 20, 'x')).response.err, Errc::too_large);
  EXPECT_EQ(d.create("/e", "", flag_ephemeral, /*session=*/12345).err, Errc::unknown_session);
  EXPECT_EQ(d.create("/l", "", 0, 0, 0, /*lease=*/999).err, Errc::unknown_lease);
  EXPECT_EQ(d.run(Op{OpType::check, "/a"}).err, Errc::bad_request);  // check only inside multi
}

TEST(Namespace, RejectedCommandsLeaveTheDigestUnchanged) {
  Driver d;
  d.create("/a", "1");
  std::uint64_t before = d.sm.digest();
  EXPECT_EQ(d.create("/a").err, Errc::node_exists);
  EXPECT_EQ(d.set("/a", "x", 7).err, Errc::bad_version);
  EXPECT_EQ(d.remove("/zzz").err, Errc::no_node);
  EXPECT_EQ(d.raw("\x01\x02").response.err, Errc::bad_request);
  Op multi{OpType::multi};
  multi.ops = {Op{OpType::create, "/b"}, Op{OpType::set, "/zzz", "x"}};
  EXPECT_EQ(d.run(multi).err, Errc::no_node);
  EXPECT_EQ(d.sm.digest(), before);
  EXPECT_EQ(d.sm.get("/b").err, Errc::no_node);
  d.set("/a", "2");
  EXPECT_NE(d.sm.digest(), before);  // and an accepted one does change it
}

TEST(Namespace, SequentialNodesUseAPerParentCounter) {
  Driver d;
  d.create("/q");
  d.create("/r");
  EXPECT_EQ(d.create("/q/job-", "", flag_sequential).path, "/q/job-0000000000");
  EXPECT_EQ(d.create("/q/job-", "", flag_sequential).path, "/q/job-0000000001");
  EXPECT_EQ(d.create("/r/x", "", flag_sequential).path, "/r/x0000000000");
  d.remove("/q/job-0000000001");
  EXPECT_EQ(d.create("/q/job-", "", flag_sequential).path, "/q/job-0000000002");  // never reused
}

TEST(Namespace, ChildrenAreSortedAndPaged) {
  Driver d;
  d.create("/dir");
  for (int i = 9; i >= 0; --i) d.create("/dir/n" + std::to_string(i));
  auto all = d.sm.children("/dir");
  EXPECT_EQ(all.names.size(), 10u);
  EXPECT_TRUE(std::is_sorted(all.names.begin(), all.names.end()));
  std::vector<std::string> paged;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto r = d.sm.children("/dir", cursor, 3);
    paged.insert(paged.end(), r.names.begin(), r.names.end());
    if (r.path.empty()) break;
    cursor = r.path;
  }
  EXPECT_EQ(paged, all.names);
}

TEST(Namespace, RecursiveDeleteRemovesTheSubtreeWithEvents) {
  Driver d;
  d.create("/t");
  d.create("/t/a");
  d.create("/t/a/b");
  d.create("/t/c");
  d.events.clear();
  EXPECT_EQ(d.remove("/t", -1, true).err, Errc::ok);
  EXPECT_EQ(d.sm.node_count(), 1u);  // only the root
  std::vector<std::string> deleted;
  for (auto& e : d.events)
    if (e.type == EventType::deleted) deleted.push_back(e.path);
  EXPECT_EQ(deleted, (std::vector<std::string>{"/t/a/b", "/t/a", "/t/c", "/t"}));
}

TEST(Namespace, ContainerVanishesWithItsLastChild) {
  Driver d;
  d.create("/locks", "", flag_container);
  d.create("/locks/a");
  d.create("/locks/b");
  d.remove("/locks/a");
  EXPECT_EQ(d.sm.get("/locks").err, Errc::ok);
  d.remove("/locks/b");
  EXPECT_EQ(d.sm.get("/locks").err, Errc::no_node);
}

TEST(Namespace, TtlNodeExpiresWhenUnchangedAndChildless) {
  Driver d;
  d.create("/cache", "x", flag_ttl, 0, /*ttl=*/1000);
  d.tick(600);
  d.set("/cache", "y");  // a change restarts the clock
  d.tick(600);
  EXPECT_EQ(d.sm.get("/cache").err, Errc::ok);
  d.tick(600);
  EXPECT_EQ(d.sm.get("/cache").err, Errc::no_node);
}

TEST(Transactions, AllOrNothing) {
  Driver d;
  d.create("/cfg", "1");
  Op multi{OpType::multi};
  Op check{OpType::check, "/cfg"};
  check.version = 0;
  check.flags = check_value;
  check.data = "1";
  multi.ops = {check, Op{OpType::set, "/cfg", "2"}, Op{OpType::create, "/cfg/a", "x"}, Op{OpType::create, "/cfg/a/b"}};
  auto ok = d.run(multi);
  ASSERT_EQ(ok.err, Errc::ok);
  EXPECT_EQ(ok.results.size(), 4u);
  EXPECT_EQ(d.sm.get("/cfg").data, "2");
  EXPECT_EQ(d.sm.get("/cfg/a/b").err, Errc::ok);
  // The same transaction again fails at its first op (the check), and changes nothing.
  auto bad = d.run(multi);
  EXPECT_EQ(bad.err, Errc::bad_version);
  ASSERT_EQ(bad.results.size(), 1u);
  Op partial{OpType::multi};
  partial.ops = {Op{OpType::set, "/cfg", "3"}, Op{OpType::remove, "/cfg/a"}};  // /cfg/a has a child
  auto r = d.run(partial);
  EXPECT_EQ(r.err, Errc::not_empty);
  EXPECT_EQ(r.results.size(), 2u);
  EXPECT_EQ(d.sm.get("/cfg").data, "2");  // the set was not applied
}

TEST(Sessions, ExpiryRemovesEphemeralsAtomically) {
  Driver d;
  auto s = d.open_session(1000);
  ASSERT_NE(s, 0u);
  d.create("/members");
  EXPECT_EQ(d.create("/members/me", "host:1", flag_ephemeral, s).err, Errc::ok);
  EXPECT_EQ(d.sm.get("/members/me").stat.ephemeral_owner, s);
  EXPECT_EQ(d.create("/members/me/child", "", 0, s).err, Errc::ephemeral_parent);
  d.tick(800);
  d.run(Op{OpType::keep_alive, "", "", -1, 0, 0, s});
  d.tick(800);
  EXPECT_TRUE(d.sm.has_session(s));
  d.events.clear();
  d.tick(800);
  d.tick(800);
  EXPECT_FALSE(d.sm.has_session(s));
  EXPECT_EQ(d.sm.get("/members/me").err, Errc::no_node);
  bool expired = false, deleted = false;
  for (auto& e : d.events) {
    expired |= e.type == EventType::session_expired && e.id == s;
    deleted |= e.type == EventType::deleted && e.path == "/members/me";
  }
  EXPECT_TRUE(expired);
  EXPECT_TRUE(deleted);
  EXPECT_EQ(d.create("/x", "", 0, s).err, Errc::unknown_session);
}

// A node's batch of keep-alives (service/client_api.cc): each renewal stands alone.
Op keep_alive_of(std::uint64_t session, std::uint64_t secret) {
  Op k{OpType::keep_alive};
  k.id = session;
  k.data = secret_bytes(secret);
  return k;
}

// Issue 14: every entry checks expiry first, and it used to look at every session — with
// 100,000 sessions that scan took most of a node's loop. Now it looks at the soonest deadlines
// only, and sessions still expire when they should, in id order, renewed ones later.
TEST(Sessions, ExpiryLooksAtTheSessionsThatExpireNotAtEverySession) {
  Driver d;
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(d.open_session(i % 2 ? 2000 : 4000));
  d.tick(1000);
  Op batch{OpType::keep_alive_batch};  // renew the first 10 two-second sessions
  for (int i = 1; i < 20; i += 2) batch.ops.push_back(keep_alive_of(ids[static_cast<std::size_t>(i)], d.secrets[ids[static_cast<std::size_t>(i)]]));
  ASSERT_EQ(d.raw(encode(Command{0, 0, batch, 0})).response.err, Errc::ok);
  auto before = d.sm.expiry_checks();
  for (int i = 0; i < 500; ++i) d.tick(0);
  EXPECT_LE(d.sm.expiry_checks() - before, 500u);  // one look per entry: nothing is due
  d.events.clear();
  d.tick(1500);  // 2,500 ms: the 490 two-second sessions not renewed expire
  std::vector<std::uint64_t> expired;
  for (auto& e : d.events)
    if (e.type == EventType::session_expired) expired.push_back(e.id);
  ASSERT_EQ(expired.size(), 490u);
  EXPECT_TRUE(std::is_sorted(expired.begin(), expired.end()));
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(d.sm.has_session(ids[i]), i % 2 == 0 || i < 20) << i;
  // The renewed ones (deadline 3,000 ms) and the four-second ones (4,000) after a restore,
  // which rebuilds the deadlines from the sessions.
  StateMachine restored;
  ASSERT_TRUE(restored.restore(d.sm.snapshot()));
  d.sm = std::move(restored);
  d.tick(1000);  // 3,500 ms
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(d.sm.has_session(ids[i]), i % 2 == 0) << i;
  d.tick(1000);  // 4,500 ms
  for (auto id : ids) EXPECT_FALSE(d.sm.has_session(id));
}


TEST(Sessions, AKeepAliveBatchRenewsOnlyTheSessionsItsOwnersNamed) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(1000), c = d.open_session(1000);
  ASSERT_TRUE(a && b && c);
  d.create("/a", "", flag_ephemeral, a);
  d.tick(800);
  Op batch{OpType::keep_alive_batch};
  batch.ops.push_back(keep_alive_of(a, d.secrets[a]));
  batch.ops.push_back(keep_alive_of(b, d.secrets[b] ^ 1));  // not b's secret
  batch.ops.push_back(keep_alive_of(4242, 7));              // no such session
  Op wrong{OpType::set, "/a", "x"};                         // not a keep-alive
  wrong.data = secret_bytes(d.secrets[c]);
  wrong.id = c;
  batch.ops.push_back(wrong);
  auto r = d.raw(encode(Command{0, 0, batch, 0})).response;
  ASSERT_EQ(r.err, Errc::ok);
  ASSERT_EQ(r.results.size(), 4u);
  EXPECT_EQ(r.results[0].err, Errc::ok);
  EXPECT_EQ(r.results[1].err, Errc::unknown_session);
  EXPECT_EQ(r.results[2].err, Errc::unknown_session);
  EXPECT_EQ(r.results[3].err, Errc::bad_request);
  EXPECT_EQ(d.sm.get("/a").data, "");  // the non-keep-alive did nothing
  d.tick(800);                         // 1,600 ms after the opens: only a was renewed
  EXPECT_TRUE(d.sm.has_session(a));
  EXPECT_FALSE(d.sm.has_session(b));
  EXPECT_FALSE(d.sm.has_session(c));
  EXPECT_EQ(d.sm.get("/a").err, Errc::ok);
}

TEST(Sessions, AKeepAliveBatchLeavesTheStateOneKeepAlivePerSessionWould) {
  // The same renewals, batched in one entry or sent one by one at the same cluster time: equal
  // snapshots (tick entries keep the indexes aligned).
  Driver batched, single;
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(batched.open_session(1000 + 100 * i));
    ASSERT_EQ(single.open_session(1000 + 100 * i), ids.back());
  }
  batched.tick(700);
  single.tick(700);
  Op batch{OpType::keep_alive_batch};
  for (auto id : ids) batch.ops.push_back(keep_alive_of(id, batched.secrets[id]));
  batched.index += ids.size() - 1;  // the entries the batch saves: it lands where the last single one does
  batched.raw(encode(Command{0, 0, batch, 0}));
  for (auto id : ids) single.run(Op{OpType::keep_alive, "", "", -1, 0, 0, id});
  EXPECT_EQ(batched.sm.snapshot(), single.sm.snapshot());  // deadlines included (the digest has none)
  batched.tick(900);
  single.tick(900);
  for (auto id : ids) EXPECT_EQ(batched.sm.has_session(id), single.sm.has_session(id)) << id;
  EXPECT_TRUE(batched.sm.has_session(ids.front()));
  Driver copy;
  ASSERT_TRUE(copy.sm.restore(batched.sm.snapshot()));
  EXPECT_EQ(copy.sm.digest(), single.sm.digest());
}

TEST(Sessions, KeepAliveBatchesDecodeWithinTheirBounds) {
  EXPECT_EQ(secret_from_bytes(secret_bytes(0x0123456789abcdefull)), 0x0123456789abcdefull);
  EXPECT_FALSE(secret_from_bytes("1234567").has_value());
  Op batch{OpType::keep_alive_batch};
  for (std::size_t i = 0; i < max_keep_alives_per_batch; ++i) batch.ops.push_back(keep_alive_of(i + 1, i));
  auto bytes = encode(Command{0, 0, batch, 0});
  auto back = decode(bytes);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->op, batch);
  Op nested{OpType::multi};
  nested.ops.push_back(batch);  // a batch inside a transaction: refused like any nesting
  EXPECT_FALSE(decode(encode(Command{0, 0, nested, 0})).has_value());
  Op other{OpType::keep_alive};  // only multi and keep_alive_batch carry operations
  other.ops.push_back(keep_alive_of(1, 1));
  EXPECT_FALSE(decode(encode(Command{0, 0, other, 0})).has_value());
}

TEST(Sessions, AGapInClusterTimeIsNotChargedToSessions) {
  // A leader change (or a clock jump) leaves a long gap between stamps: sessions survive it.
  Driver d;
  auto s = d.open_session(5000);
  d.tick(60'000);  // one entry a minute later
  EXPECT_TRUE(d.sm.has_session(s));
  d.time -= 30'000;  // and a clock that jumps back does not shorten anything either
  d.tick(0);
  EXPECT_TRUE(d.sm.has_session(s));
  // Normal time passing still expires it.
  for (int i = 0; i < 5; ++i) d.tick(1000);
  EXPECT_FALSE(d.sm.has_session(s));
}

TEST(Sessions, RetriedRequestIsAppliedExactlyOnce) {
  Driver d;
  auto s = d.open_session(10'000);
  d.create("/counter", "0");
  Op set{OpType::set, "/counter", "1"};
  auto first = d.run(set, s, 1);
  ASSERT_EQ(first.err, Errc::ok);
  auto retry = d.run(set, s, 1);
  EXPECT_EQ(retry, first);
  EXPECT_EQ(d.sm.get("/counter").stat.version, 1);  // not 2
  Op create{OpType::create, "/job-", "", -1, flag_sequential};
  auto c1 = d.run(create, s, 2);
  auto c2 = d.run(create, s, 2);
  EXPECT_EQ(c1.path, c2.path);
  EXPECT_EQ(d.sm.children("/").names.size(), 2u);  // /counter and one job
  // Beyond the retained window a retry is refused, never re-applied.
  for (std::uint64_t q = 3; q < 100; ++q) d.run(Op{OpType::tick}, s, q);
  EXPECT_EQ(d.run(set, s, 1).err, Errc::stale_request);
}

// Writes in flight across a failover reach the log out of order (docs/data-model.md, Sessions):
// a number below the highest that was never applied is new, not a retry.
TEST(Sessions, SequenceNumbersOutOfOrderApplyOnceEachAndRetriesGetTheFirstAnswer) {
  Driver d;
  auto s = d.open_session(10'000);
  d.create("/c");
  Op set{OpType::set, "/c", "x"};
  auto r5 = d.run(set, s, 5);
  auto r3 = d.run(set, s, 3);  // overtaken by 5, not applied yet: applies now
  ASSERT_EQ(r5.err, Errc::ok);
  ASSERT_EQ(r3.err, Errc::ok);
  EXPECT_EQ(r5.stat.version, 1);
  EXPECT_EQ(r3.stat.version, 2);
  EXPECT_EQ(d.run(set, s, 5), r5);  // retries, in any order: the first answers
  EXPECT_EQ(d.run(set, s, 3), r3);
  EXPECT_EQ(d.run(set, s, 4).stat.version, 3);
  EXPECT_EQ(d.sm.get("/c").stat.version, 3);
  // The window: with responses_per_session answers kept, a number below all of them is stale
  // (it may have applied and been forgotten), one inside it but unused is new.
  const auto n = Limits{}.responses_per_session;
  for (std::uint64_t q = 100; q < 100 + n; ++q) ASSERT_EQ(d.run(Op{OpType::tick}, s, q).err, Errc::ok);
  EXPECT_EQ(d.run(set, s, 3).err, Errc::stale_request);
  EXPECT_EQ(d.run(set, s, 99).err, Errc::stale_request);
  EXPECT_EQ(d.run(set, s, 100 + n + 5).err, Errc::ok);  // slides the window: 100 goes
  EXPECT_EQ(d.run(set, s, 100).err, Errc::stale_request);
  EXPECT_EQ(d.run(set, s, 100 + n + 1).err, Errc::ok);  // inside the window, never used: new
  EXPECT_EQ(d.sm.get("/c").stat.version, 5);
  // Too far ahead of the highest is still refused, and a low new number is not "too far".
  EXPECT_EQ(d.run(set, s, 100 + n + 5 + Limits{}.max_seq_step + 1).err, Errc::bad_request);
}

// The rule against a client that keeps at most responses_per_session writes unsettled and
// delivers them (and duplicates of them, as retries after failovers do) in any order: every
// write applies exactly once, every delivery gets the answer of the first, none is stale; and
// the same holds after a snapshot and restore in the middle.
RC_GTEST_PROP(Sessions, WritesInFlightInAnyOrderWithRetriesApplyExactlyOnce, ()) {
  const auto window = static_cast<std::uint64_t>(Limits{}.responses_per_session);
  const auto writes = *rc::gen::inRange<std::uint64_t>(1, 400);
  const auto in_flight = *rc::gen::inRange<std::uint64_t>(1, window + 1);
  // The schedule's choices come from a PRNG seeded by the case (RapidCheck's seed replays it).
  std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
  auto pick = [&](std::uint64_t n) { return rng() % n; };
  Driver d;
  auto s = d.open_session(10'000);
  d.create("/c");
  std::uint64_t next = 1;                 // the next sequence number to send
  std::map<std::uint64_t, int> unsettled;  // seq -> deliveries so far
  std::map<std::uint64_t, Response> first;
  std::set<std::int64_t> versions;
  while (next <= writes || !unsettled.empty()) {
    // Send new writes while the window allows (the lowest unsettled number bounds it).
    std::uint64_t low = unsettled.empty() ? next : unsettled.begin()->first;
    if (next <= writes && next - low < in_flight && pick(3) != 0) {
      unsettled[next++] = 0;
      continue;
    }
    if (unsettled.empty()) continue;
    // Deliver one unsettled write (any of them), maybe more than once; settle it sometimes.
    auto it = unsettled.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(pick(unsettled.size())));
    auto seq = it->first;
    auto r = d.run(Op{OpType::set, "/c", std::to_string(seq)}, s, seq);
    RC_ASSERT(r.err == Errc::ok);
    if (first.count(seq)) {
      RC_ASSERT(r == first[seq]);
    } else {
      first[seq] = r;
      RC_ASSERT(versions.insert(r.stat.version).second);
    }
    ++it->second;  // the client has an answer now: it may settle (or retry anyway)
    if (pick(2) == 0) unsettled.erase(it);
    if (pick(50) == 0) {
      StateMachine copy;
      RC_ASSERT(copy.restore(d.sm.snapshot()));
      RC_ASSERT(copy.digest() == d.sm.digest());
      d.sm = std::move(copy);
    }
  }
  RC_ASSERT(d.sm.get("/c").stat.version == static_cast<std::int64_t>(writes));  // each exactly once
}

TEST(Leases, AttachedNodesGoWithTheLease) {
  Driver d;
  Op grant{OpType::grant_lease};
  grant.ttl_ms = 2000;
  auto lease = d.run(grant).id;
  ASSERT_NE(lease, 0u);
  d.create("/svc");
  d.create("/svc/a", "", 0, 0, 0, lease);
  d.create("/svc/b", "", 0, 0, 0, lease);
  EXPECT_EQ(d.sm.lease_ttl(lease).names.size(), 2u);
  d.tick(1500);
  d.run(Op{OpType::keep_alive_lease, "", "", -1, 0, 0, lease});
  d.tick(1500);
  EXPECT_EQ(d.sm.get("/svc/a").err, Errc::ok);
  EXPECT_GT(d.sm.lease_ttl(lease).ttl_ms, 0);
  d.run(Op{OpType::revoke_lease, "", "", -1, 0, 0, lease});
  EXPECT_EQ(d.sm.get("/svc/a").err, Errc::no_node);
  EXPECT_EQ(d.sm.get("/svc/b").err, Errc::no_node);
  EXPECT_EQ(d.sm.lease_ttl(lease).err, Errc::unknown_lease);
}

TEST(Snapshots, RestoreGivesTheSameDigestAndFutureBehaviour) {
  Driver d;
  auto s = d.open_session(3000);
  d.create("/a", "1");
  d.create("/a/e", "eph", flag_ephemeral, s);
  d.create("/q", "", flag_container);
  d.create("/q/x-", "", flag_sequential);
  d.run(Op{OpType::set, "/a", "2"}, s, 1);
  Driver e;
  ASSERT_TRUE(e.sm.restore(d.sm.snapshot()));
  e.index = d.index;
  e.time = d.time;
  e.secrets = d.secrets;
  EXPECT_EQ(e.sm.digest(), d.sm.digest());
  for (Driver* x : {&d, &e}) {
    x->create("/q/x-", "", flag_sequential);
    x->run(Op{OpType::set, "/a", "2"}, s, 1);  // a retry, answered from the restored cache
    for (int t = 0; t < 3; ++t) x->tick(1500);  // the session expires the same way
  }
  EXPECT_EQ(e.sm.digest(), d.sm.digest());
  EXPECT_EQ(e.sm.get("/a").stat.version, 1);
  EXPECT_EQ(e.sm.get("/a/e").err, Errc::no_node);
  EXPECT_FALSE(StateMachine().restore("not a snapshot"));
}

// ---- model-based properties --------------------------------------------------------------------

// A reference model: a map of paths to (data, version), with ephemeral owners.
struct Model {
  struct N {
    std::string data;
    std::int64_t version = 0;
    std::uint64_t owner = 0;
  };
  std::map<std::string, N> nodes{{"/", {}}};
  bool has_children(const std::string& p) const {
    auto it = nodes.upper_bound(p == "/" ? "/" : p + "/");
    return it != nodes.end() && in_subtree(it->first, p) && it->first != p;
  }
};

const std::vector<std::string> paths = {"/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z"};

rc::Gen<Op> gen_simple_op() {
  return rc::gen::apply(
      [](int kind, int p, int v, int data, bool eph) {
        Op op;
        op.path = paths[static_cast<std::size_t>(p)];
        op.data = "d" + std::to_string(data);
        op.version = v - 1;
        if (kind == 0) op.type = OpType::create, op.flags = eph ? flag_ephemeral : 0;
        if (kind == 1) op.type = OpType::set;
        if (kind == 2) op.type = OpType::remove;
        return op;
      },
      rc::gen::inRange(0, 3), rc::gen::inRange(0, static_cast<int>(paths.size())), rc::gen::inRange(0, 3),
      rc::gen::inRange(0, 4), rc::gen::arbitrary<bool>());
}

// Applies op to the model; returns the expected error.
Errc model_apply(Model& m, const Op& op, std::uint64_t session) {
  auto it = m.nodes.find(op.path);
  switch (op.type) {
    case OpType::create: {
      if ((op.flags & flag_ephemeral) && session == 0) return Errc::unknown_session;
      auto parent = m.nodes.find(std::string(parent_of(op.path)));
      if (parent == m.nodes.end()) return Errc::no_parent;
      if (parent->second.owner) return Errc::ephemeral_parent;
      if (it != m.nodes.end()) return Errc::node_exists;
      m.nodes[op.path] = Model::N{op.data, 0, (op.flags & flag_ephemeral) ? session : 0};
      return Errc::ok;
    }
    case OpType::set:
      if (it == m.nodes.end()) return Errc::no_node;
      if (op.version >= 0 && op.version != it->second.version) return Errc::bad_version;
      it->second.data = op.data;
      it->second.version++;
      return Errc::ok;
    default:
      if (it == m.nodes.end()) return Errc::no_node;
      if (op.version >= 0 && op.version != it->second.version) return Errc::bad_version;
      if (m.has_children(op.path)) return Errc::not_empty;
      m.nodes.erase(it);
      return Errc::ok;
  }
}

void compare(const Model& m, const StateMachine& sm) {
  for (const auto& p : paths) {
    auto g = sm.get(p);
    auto it = m.nodes.find(p);
    if (it == m.nodes.end()) {
      RC_ASSERT(g.err == Errc::no_node);
    } else {
      RC_ASSERT(g.err == Errc::ok);
      RC_ASSERT(g.data == it->second.data);
      RC_ASSERT(g.stat.version == it->second.version);
      RC_ASSERT(g.stat.ephemeral_owner == it->second.owner);
    }
  }
}

RC_GTEST_PROP(Model, NamespaceSessionsAndTransactionsMatchAMapOfPaths, ()) {
  Driver d;
  Model m;
  std::uint64_t session = 0, next_seq = 0;
  int steps = *rc::gen::inRange(1, 60);
  for (int i = 0; i < steps; ++i) {
    int what = *rc::gen::inRange(0, 10);
    if (what < 6) {
      Op op = *gen_simple_op();
      Errc want = model_apply(m, op, session);
      std::uint64_t seq = session ? ++next_seq : 0;
      Response got = d.run(op, session, seq);
      RC_ASSERT(got.err == want);
      if (session && *rc::gen::inRange(0, 4) == 0) {
        // A client retry of the same (session, sequence): same answer, applied once.
        std::uint64_t digest = d.sm.digest();
        RC_ASSERT(d.run(op, session, seq) == got);
        RC_ASSERT(d.sm.digest() == digest);
      }
    } else if (what < 8) {
      // A transaction of up to 4 simple ops: all-or-nothing against a copy of the model.
      Op multi{OpType::multi};
      multi.ops = *rc::gen::container<std::vector<Op>>(static_cast<std::size_t>(*rc::gen::inRange(1, 5)), gen_simple_op());
      Model trial = m;
      Errc want = Errc::ok;
      for (auto& o : multi.ops)
        if ((want = model_apply(trial, o, session)) != Errc::ok) break;
      if (want == Errc::ok) m = trial;
      RC_ASSERT(d.run(multi, session).err == want);
    } else if (what == 8) {
      if (session == 0) {
        session = d.open_session(2000);
        next_seq = 0;
      } else {
        for (int t = 0; t < 3; ++t) d.tick(1500);  // let the session expire: its ephemerals go with it
        for (auto it = m.nodes.begin(); it != m.nodes.end();) it = it->second.owner == session ? m.nodes.erase(it) : std::next(it);
        session = 0;
      }
    } else {
      std::uint64_t before = d.sm.digest();
      StateMachine copy;
      RC_ASSERT(copy.restore(d.sm.snapshot()));
      RC_ASSERT(copy.digest() == before);
      d.tick(100);
    }
    compare(m, d.sm);
  }
}

RC_GTEST_PROP(Model, ReplicasFedTheSameCommandsAgreeAndRejectionsChangeNothing, ()) {
  Driver a, b;
  auto ops = *rc::gen::container<std::vector<Op>>(gen_simple_op());
  for (const auto& op : ops) {
    auto before = a.sm.get(op.path);
    std::uint64_t digest_before = a.sm.digest();
    auto ra = a.run(op);
    if (ra.err != Errc::ok) RC_ASSERT(a.sm.digest() == digest_before);
    auto rb = b.run(op);
    RC_ASSERT(ra == rb);
    RC_ASSERT(a.sm.digest() == b.sm.digest());
    if (ra.err != Errc::ok) {
      RC_ASSERT(a.sm.get(op.path) == before);
    }
  }
}

}  // namespace
}  // namespace tern::sm

namespace tern::sm {
namespace {

// Leases against a model of deadlines and attached nodes, including expiry on cluster time.
RC_GTEST_PROP(LeaseModel, GrantKeepAliveRevokeAndExpiryMatchTheModel, ()) {
  Driver d;
  struct L {
    std::int64_t ttl, deadline;
    std::set<std::string> nodes;
  };
  std::map<std::uint64_t, L> model;
  std::set<std::string> nodes;
  std::int64_t now = d.time;  // the state machine's clock starts at the first stamp
  bool started = false;
  auto step_clock = [&](std::int64_t delta) {
    d.time += delta;
    if (!started) {
      now = d.time;
      started = true;
    } else {
      now += std::min<std::int64_t>(delta, 2000);
    }
    for (auto it = model.begin(); it != model.end();) {
      if (now > it->second.deadline) {
        for (auto& p : it->second.nodes) nodes.erase(p);
        it = model.erase(it);
      } else {
        ++it;
      }
    }
  };
  int steps = *rc::gen::inRange(1, 50);
  int counter = 0;
  for (int i = 0; i < steps; ++i) {
    int what = *rc::gen::inRange(0, 5);
    std::int64_t delta = *rc::gen::inRange<std::int64_t>(0, 900);
    step_clock(delta);
    std::uint64_t some = model.empty() ? 424242 : std::next(model.begin(), *rc::gen::inRange<int>(0, static_cast<int>(model.size())))->first;
    if (what == 0) {
      std::int64_t ttl = *rc::gen::inRange<std::int64_t>(200, 3000);
      Op op{OpType::grant_lease};
      op.ttl_ms = ttl;
      auto r = d.raw(encode(Command{0, 0, op})).response;
      RC_ASSERT(r.err == Errc::ok);
      model[r.id] = L{ttl, now + ttl, {}};
    } else if (what == 1) {
      std::string p = "/n" + std::to_string(counter++);
      Op op{OpType::create, p};
      op.id = some;
      auto r = d.raw(encode(Command{0, 0, op})).response;
      if (model.count(some)) {
        RC_ASSERT(r.err == Errc::ok);
        model[some].nodes.insert(p);
        nodes.insert(p);
      } else {
        RC_ASSERT(r.err == Errc::unknown_lease);
      }
    } else if (what == 2) {
      auto r = d.raw(encode(Command{0, 0, Op{OpType::keep_alive_lease, "", "", -1, 0, 0, some}})).response;
      RC_ASSERT((r.err == Errc::ok) == (model.count(some) > 0));
      if (model.count(some)) model[some].deadline = now + model[some].ttl;
    } else if (what == 3) {
      auto r = d.raw(encode(Command{0, 0, Op{OpType::revoke_lease, "", "", -1, 0, 0, some}})).response;
      RC_ASSERT((r.err == Errc::ok) == (model.count(some) > 0));
      if (model.count(some)) {
        for (auto& p : model[some].nodes) nodes.erase(p);
        model.erase(some);
      }
    } else {
      d.raw(encode(Command{0, 0, Op{OpType::tick}}));
    }
    for (auto& [id, l] : model) {
      auto t = d.sm.lease_ttl(id);
      RC_ASSERT(t.err == Errc::ok);
      RC_ASSERT(t.ttl_ms == l.deadline - now);
    }
    for (int k = 0; k < counter; ++k) {
      std::string p = "/n" + std::to_string(k);
      RC_ASSERT((d.sm.get(p).err == Errc::ok) == (nodes.count(p) > 0));
    }
  }
}

}  // namespace
}  // namespace tern::sm
