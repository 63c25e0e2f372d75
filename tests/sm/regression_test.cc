// Regression tests for the holes of issue 16, one per hole, each named after what it broke.
// Each failed (or crashed) on the code before its fix.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "service/sm/command.h"
#include "service/sm/path.h"
#include "service/sm/state_machine.h"
#include "tests/sm/driver.h"

namespace tern::sm {
namespace {

using test::Driver;

Op multi_of(std::vector<Op> ops) {
  Op m{OpType::multi};
  m.ops = std::move(ops);
  return m;
}

Op create_op(const std::string& path, std::uint32_t flags = 0, std::int64_t ttl = 0) {
  Op op{OpType::create, path};
  op.flags = flags;
  op.ttl_ms = ttl;
  return op;
}

// Hole 1: a create that do_create rejects passed validate_multi, failed in apply and tripped the
// always-on assertion on every replica (and on every replay).
TEST(Regression, InvalidCreateInsideMultiIsRejectedLikeOutsideInsteadOfAbortingEveryReplica) {
  Driver d;
  auto s = d.open_session();
  d.create("/p");
  std::vector<Op> bad = {
      create_op("/p/a", 1u << 7),                          // unknown flag bit
      create_op("/p/a", flag_ttl, 0),                      // TTL without a positive ttl
      create_op("/p/a", flag_ttl, -5),
      create_op("/p/a", flag_ttl | flag_ephemeral, 1000),  // TTL and ephemeral
      create_op("/p/a", flag_container | flag_ephemeral),  // container and ephemeral
  };
  for (const auto& op : bad) {
    std::uint64_t before = d.sm.digest();
    Response outside = d.run(op, s);
    Response inside = d.run(multi_of({create_op("/p/ok"), op}), s);
    EXPECT_EQ(outside.err, Errc::bad_request) << op.flags;
    EXPECT_EQ(inside.err, outside.err) << op.flags;
    ASSERT_EQ(inside.results.size(), 2u);
    EXPECT_EQ(inside.results[1].err, outside.err);
    EXPECT_EQ(d.sm.get("/p/ok").err, Errc::no_node);  // all or nothing
    EXPECT_EQ(d.sm.digest(), before) << op.flags;
  }
}

// Hole 2: empty containers were collected by node id at the end of the entry, and ids are reused
// last-in-first-out: a create in the same entry that got a vanished container's id was deleted
// right after being acknowledged.
TEST(Regression, CreateReusingTheIdOfAContainerThatVanishedInTheSameEntryIsNotDeleted) {
  Driver d;
  Op grant{OpType::grant_lease};
  grant.ttl_ms = 1000;
  auto lease = d.run(grant).id;
  Op c = create_op("/c", flag_container);
  c.id = lease;
  ASSERT_EQ(d.run(c).err, Errc::ok);
  ASSERT_EQ(d.create("/c/x").err, Errc::ok);
  d.tick(900);
  d.time += 900;  // the lease expires at the start of the next entry: /c/x and /c go
  d.events.clear();
  auto r = d.create("/y", "acknowledged");
  ASSERT_EQ(r.err, Errc::ok);
  EXPECT_EQ(d.sm.get("/c").err, Errc::no_node);
  EXPECT_EQ(d.sm.get("/y").data, "acknowledged");
  for (const auto& e : d.events) EXPECT_FALSE(e.type == EventType::deleted && e.path == "/y");
}

TEST(Regression, MultiThatEmptiesAndRecreatesAContainerPathKeepsTheNewNode) {
  Driver d;
  d.create("/c", "", flag_container);
  d.create("/c/x");
  auto r = d.run(multi_of({Op{OpType::remove, "/c/x"}, Op{OpType::remove, "/c"}, create_op("/c")}));
  ASSERT_EQ(r.err, Errc::ok);
  EXPECT_EQ(d.sm.get("/c").err, Errc::ok);  // the new, plain /c stays
}

// Hole 3: a session holding a lock shared that asked for it exclusively got `ok` with its shared
// token while another session still held it shared: both believed they were exclusive.
TEST(Regression, ExclusiveRequestWhileHoldingSharedIsAnErrorNotASecondExclusiveHolder) {
  Driver d;
  auto a = d.open_session(), b = d.open_session(), c = d.open_session();
  ASSERT_EQ(d.lock(a, "m", lock_shared).err, Errc::ok);
  ASSERT_EQ(d.lock(b, "m", lock_shared).err, Errc::ok);
  EXPECT_EQ(d.lock(a, "m").err, Errc::bad_request);
  EXPECT_EQ(d.lock(a, "m", lock_try).err, Errc::bad_request);
  // The same-mode request still answers with the token held, and the other direction is refused too.
  auto again = d.lock(b, "m", lock_shared);
  EXPECT_EQ(again.err, Errc::ok);
  EXPECT_TRUE(d.sm.check_token("m", again.id));
  ASSERT_EQ(d.lock(c, "x").err, Errc::ok);
  EXPECT_EQ(d.lock(c, "x", lock_shared).err, Errc::bad_request);
  // A queued request cannot change its mode either.
  ASSERT_EQ(d.lock(c, "m").id, 0u);  // queued exclusive behind the readers
  EXPECT_EQ(d.lock(c, "m", lock_shared).err, Errc::bad_request);
}

// Found by the semantics model once it put lock operations inside transactions: an operation a
// transaction does not allow was answered by its path — bad_path for a lock named "m" (not a
// path), for a tick or a nested multi (no path), bad_request only when the name happened to be
// a valid path. It is an operation not allowed here: bad_request, and nothing changes.
TEST(Regression, OperationNotAllowedInsideMultiIsBadRequestWhateverItsPath) {
  Driver d;
  auto s = d.open_session();
  d.create("/p");
  Op lock{OpType::lock, "m"};
  Op lock_at_path{OpType::lock, "/p"};
  Op campaign{OpType::campaign, "e", "v"};
  Op nested{OpType::multi};  // (a nested multi with operations does not even decode)
  for (const Op& op : {lock, lock_at_path, campaign, Op{OpType::tick}, nested, Op{OpType::keep_alive}}) {
    std::uint64_t before = d.sm.data_digest();
    Response r = d.run(multi_of({create_op("/p/ok"), op}), s);
    EXPECT_EQ(r.err, Errc::bad_request) << static_cast<int>(op.type) << " " << op.path;
    ASSERT_EQ(r.results.size(), 2u);
    EXPECT_EQ(r.results[1].err, Errc::bad_request);
    EXPECT_EQ(d.sm.get("/p/ok").err, Errc::no_node);  // all or nothing
    EXPECT_EQ(d.sm.data_digest(), before);
  }
  EXPECT_EQ(d.sm.leader("e").err, Errc::no_node);
  EXPECT_FALSE(d.sm.check_token("m", d.index));
}

// Hole 6: client-supplied durations were unbounded: a TTL near INT64_MAX overflowed the expiry
// time (undefined behaviour) and deleted the node at once; a lock-delay near INT64_MAX overflowed
// and was dropped, and a large finite one made the lock unusable forever.
TEST(Regression, DurationsBeyondTheirDocumentedBoundsAreRejectedInsteadOfOverflowing) {
  constexpr std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  Driver d;
  Limits lim;
  EXPECT_EQ(d.create("/t", "", flag_ttl, 0, huge).err, Errc::bad_request);
  EXPECT_EQ(d.create("/t", "", flag_ttl, 0, lim.max_node_ttl_ms + 1).err, Errc::bad_request);
  EXPECT_EQ(d.run(multi_of({create_op("/t", flag_ttl, huge)})).err, Errc::bad_request);
  ASSERT_EQ(d.create("/t", "", flag_ttl, 0, lim.max_node_ttl_ms).err, Errc::ok);
  d.tick(1000);
  EXPECT_EQ(d.sm.get("/t").err, Errc::ok);  // the longest TTL does not expire at once
  auto a = d.open_session(1000), b = d.open_session(60'000);
  for (std::int64_t delay : {huge, std::int64_t{1'000'000'000'000'000}, lim.max_lock_delay_ms + 1, std::int64_t{-1}})
    EXPECT_EQ(d.lock(a, "m", 0, delay).err, Errc::bad_request) << delay;
  Op campaign{OpType::campaign, "e"};
  campaign.ttl_ms = huge;
  EXPECT_EQ(d.run(campaign, a).err, Errc::bad_request);
  // The longest lock-delay is honoured and then passes: the lock is usable again.
  ASSERT_EQ(d.lock(a, "m", 0, lim.max_lock_delay_ms).err, Errc::ok);
  EXPECT_EQ(d.lock(b, "m").id, 0u);  // queued
  d.granted();
  for (int i = 0; i < 2; ++i) {
    d.tick(1000);
    d.run(Op{OpType::keep_alive, "", "", -1, 0, 0, b}, b);
  }
  ASSERT_FALSE(d.sm.has_session(a));  // expired: the lock-delay applies
  EXPECT_TRUE(d.granted_sessions().empty());
  for (std::int64_t waited = 0; waited <= lim.max_lock_delay_ms; waited += 1000) {
    d.tick(1000);
    d.run(Op{OpType::keep_alive, "", "", -1, 0, 0, b}, b);
  }
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{b});
  // Sessions and leases keep their bounds.
  Op open{OpType::open_session};
  open.ttl_ms = huge;
  EXPECT_EQ(d.run(open).err, Errc::bad_request);
  Op grant{OpType::grant_lease};
  grant.ttl_ms = huge;
  EXPECT_EQ(d.run(grant).err, Errc::bad_request);
}

// Item 7: children(path, cursor, limit = 0) called back() on an empty vector.
TEST(Regression, ChildrenWithAPageLimitOfZeroIsRejectedNotACrash) {
  Driver d;
  d.create("/dir");
  d.create("/dir/a");
  EXPECT_EQ(d.sm.children("/dir", "", 0).err, Errc::bad_request);
  auto one = d.sm.children("/dir", "", 1);
  EXPECT_EQ(one.names, std::vector<std::string>{"a"});
  EXPECT_EQ(one.path, "");  // no more pages
}

// Item 7: a request with sequence number UINT64_MAX was accepted, after which every later
// sequence number was "a retry": the session could never make another request.
TEST(Regression, SequenceNumberFarAheadIsRejectedAndDoesNotBrickTheSession) {
  Driver d;
  auto s = d.open_session();
  ASSERT_EQ(d.run(Op{OpType::create, "/a"}, s, 1).err, Errc::ok);
  std::uint64_t before = d.sm.digest();
  for (std::uint64_t seq : {std::numeric_limits<std::uint64_t>::max(), std::uint64_t{(1ull << 32) + 2}})
    EXPECT_EQ(d.run(Op{OpType::create, "/b"}, s, seq).err, Errc::bad_request) << seq;
  EXPECT_EQ(d.sm.digest(), before);  // rejected before the session is touched
  EXPECT_EQ(d.run(Op{OpType::create, "/b"}, s, 2).err, Errc::ok);
  EXPECT_EQ(d.run(Op{OpType::create, "/c"}, s, 2 + (1ull << 32)).err, Errc::ok);  // the largest step
}

// Item 7: deleting "/" inside a transaction answered bad_request where the doc says bad_path.
TEST(Regression, DeletingTheRootInsideMultiIsBadPathAsOutside) {
  Driver d;
  EXPECT_EQ(d.remove("/").err, Errc::bad_path);
  auto r = d.run(multi_of({Op{OpType::remove, "/"}}));
  EXPECT_EQ(r.err, Errc::bad_path);
  ASSERT_EQ(r.results.size(), 1u);
  EXPECT_EQ(r.results[0].err, Errc::bad_path);
}

// Extreme numbers: an expected version below -1 meant "any version"; it is now rejected, inside
// and outside transactions alike.
TEST(Regression, ExpectedVersionBelowMinusOneIsRejectedNotTreatedAsAny) {
  Driver d;
  d.create("/a", "x");
  for (std::int64_t v : {std::int64_t{-2}, std::numeric_limits<std::int64_t>::min()}) {
    EXPECT_EQ(d.set("/a", "y", v).err, Errc::bad_request);
    EXPECT_EQ(d.remove("/a", v).err, Errc::bad_request);
    Op set{OpType::set, "/a", "y"};
    set.version = v;
    EXPECT_EQ(d.run(multi_of({set})).err, Errc::bad_request);
    Op check{OpType::check, "/a"};
    check.version = v;
    EXPECT_EQ(d.run(multi_of({check})).err, Errc::bad_request);
  }
  EXPECT_EQ(d.sm.get("/a").data, "x");
}

// Item 7: the rule for a rejected request and its session (docs/data-model.md, Errors): it
// changes no node, lease, lock or election (data_digest); a request of a live session, accepted
// or rejected, renews the session and keeps its answer for retries; a request whose session,
// sequence or encoding is invalid touches nothing at all (digest).
TEST(Regression, RejectedRequestChangesOnlyItsOwnSessionsRenewalAndRetryCache) {
  Driver d;
  auto s = d.open_session(1000);
  d.create("/a");
  d.tick(900);
  std::uint64_t data = d.sm.data_digest(), all = d.sm.digest();
  auto first = d.run(Op{OpType::create, "/a"}, s, 1);
  EXPECT_EQ(first.err, Errc::node_exists);
  EXPECT_EQ(d.sm.data_digest(), data);
  EXPECT_NE(d.sm.digest(), all);  // renewed, and the answer kept
  d.tick(900);
  EXPECT_TRUE(d.sm.has_session(s));  // 1800 ms after opening: the rejected request renewed it
  d.remove("/a");
  EXPECT_EQ(d.run(Op{OpType::create, "/a"}, s, 1), first);  // a retry gets the same answer
  EXPECT_EQ(d.sm.get("/a").err, Errc::no_node);            // and is not applied
  all = d.sm.digest();
  EXPECT_EQ(d.run(Op{OpType::create, "/z"}, 999, 1).err, Errc::unknown_session);
  EXPECT_EQ(d.raw("\x07garbage").response.err, Errc::bad_request);
  EXPECT_EQ(d.run(Op{OpType::create, "/z"}, s, 1ull << 40).err, Errc::bad_request);
  EXPECT_EQ(d.sm.digest(), all);
}

// Item 7: a retried close_session found its session gone and answered unknown_session instead of
// the ok of the close it repeats.
TEST(Regression, RetriedCloseSessionGetsItsOriginalOk) {
  Driver d;
  auto s = d.open_session();
  Op close{OpType::close_session};
  ASSERT_EQ(d.run(close, s, 1).err, Errc::ok);
  EXPECT_FALSE(d.sm.has_session(s));
  std::uint64_t before = d.sm.digest();
  EXPECT_EQ(d.run(close, s, 1).err, Errc::ok);               // the retry
  EXPECT_EQ(d.sm.digest(), before);
  EXPECT_EQ(d.run(close, s, 2).err, Errc::unknown_session);  // not a retry: the session is gone
  // The memory of closes survives a snapshot.
  Driver e;
  ASSERT_TRUE(e.sm.restore(d.sm.snapshot()));
  e.index = d.index;
  e.secrets = d.secrets;
  EXPECT_EQ(e.run(close, s, 1).err, Errc::ok);
}

// Item 8: any caller could keep alive or close any session by its id, and a third-party close
// skipped the lock-delay. A session is now usable only with the secret its opener chose.
TEST(Regression, OnlyTheOwnerOfASessionCanUseKeepAliveOrCloseIt) {
  Driver d;
  auto a = d.open_session(1000), b = d.open_session(60'000);
  ASSERT_EQ(d.lock(a, "m", 0, /*delay=*/5000).err, Errc::ok);
  ASSERT_EQ(d.lock(b, "m").id, 0u);  // queued
  d.granted();
  std::uint64_t before = d.sm.digest();
  // No secret, or the wrong one: as if the session did not exist. Nothing changes.
  for (OpType t : {OpType::keep_alive, OpType::close_session}) {
    for (std::uint64_t secret : {std::uint64_t{0}, d.secrets[a] + 1}) {
      EXPECT_EQ(d.raw(encode(Command{a, 0, Op{t}, secret})).response.err, Errc::unknown_session);
      Op by_id{t};
      by_id.id = a;
      EXPECT_EQ(d.raw(encode(Command{0, 0, by_id, secret})).response.err, Errc::unknown_session);
    }
  }
  EXPECT_EQ(d.raw(encode(Command{a, 1, Op{OpType::create, "/x"}, 0})).response.err, Errc::unknown_session);
  EXPECT_EQ(d.sm.digest(), before);
  // Another live session cannot act on it either (it only renews itself by asking).
  Op close_a{OpType::close_session};
  close_a.id = a;
  EXPECT_EQ(d.run(close_a, b).err, Errc::bad_request);
  EXPECT_TRUE(d.sm.has_session(a));
  // So the lock is only ever released by a's own clean close or by its expiry, which applies
  // the lock-delay: b gets it 5 s after a expired, not at once.
  d.tick(2000);
  d.run(Op{OpType::keep_alive}, b);
  ASSERT_FALSE(d.sm.has_session(a));
  EXPECT_TRUE(d.granted_sessions().empty());
  for (int i = 0; i < 6; ++i) {
    d.tick(1000);
    d.run(Op{OpType::keep_alive}, b);
  }
  EXPECT_EQ(d.granted_sessions(), std::vector<std::uint64_t>{b});
  // The owner's own requests work, and a re-attaching connection can check the secret locally.
  EXPECT_TRUE(d.sm.owns(b, d.secrets[b]));
  EXPECT_FALSE(d.sm.owns(b, d.secrets[b] + 1));
  EXPECT_EQ(d.run(Op{OpType::close_session}, b).err, Errc::ok);
  // An open without a secret is refused: it would be usable by anyone.
  Op open{OpType::open_session};
  open.ttl_ms = 1000;
  EXPECT_EQ(d.raw(encode(Command{0, 0, open, 0})).response.err, Errc::bad_request);
}

}  // namespace
}  // namespace tern::sm
