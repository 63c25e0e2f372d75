// The library's RAII handles (tern::Lock, Lease, Leadership, Watch; docs/client.md, Handles) and
// the capabilities behind them (client/api/tern.capnp: Session.lock/grantLease/campaign and
// lockOf/leaseOf/leadershipOf), against real 3-node clusters (issue 11): each handle releases
// on destruction, a moved-from handle does nothing, dropping a capability releases nothing, and a
// handle outlives a kill -9 of its server and still releases through another node.
#include <gtest/gtest.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "client/api/tern.capnp.h"
#include "client/connect.h"
#include "tern/client.h"
#include "tests/cluster/client_helpers.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;

// Whether `b` can take lock `name` right now (and gives it back at once).
bool free_for(Client& b, const std::string& name) {
  auto r = b.lock(name, false, true);
  if (!r.ok()) return false;
  EXPECT_TRUE(b.unlock(name).ok());
  return true;
}

TEST(ClientHandles, ALockHandleUnlocksWhenDestroyedAndAMovedFromOneDoesNothing) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto a = connect_client(client_options_timed(c, leader));
  auto b = connect_client(client_options_timed(c, a_follower(c, leader)));
  ASSERT_TRUE(a && b);
  {
    Lock held = a->lock_handle("L");
    ASSERT_TRUE(held) << error_name(held.error());
    EXPECT_GT(held.token(), 0u);
    EXPECT_TRUE(held.still_held());
    EXPECT_EQ(b->lock("L", false, true).error, Error::busy);
    Lock moved = std::move(held);
    {
      Lock gone = std::move(held);  // moved-from twice: empty
      EXPECT_FALSE(gone);
    }
    EXPECT_FALSE(held);  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
    EXPECT_EQ(b->lock("L", false, true).error, Error::busy) << "a moved-from handle released the lock";
    EXPECT_TRUE(moved.still_held());
  }
  EXPECT_TRUE(free_for(*b, "L")) << "the handle's destruction did not unlock";

  // A queued request's handle (token 0) withdraws it when destroyed: the lock never reaches a.
  Lock b_holds = b->lock_handle("M");
  ASSERT_TRUE(b_holds);
  {
    Lock queued = a->lock_handle("M");
    ASSERT_TRUE(queued);
    EXPECT_EQ(queued.token(), 0u);
  }
  ASSERT_TRUE(b_holds.release() == Error::ok);
  EXPECT_EQ(b_holds.release(), Error::ok);  // idempotent
  EXPECT_TRUE(free_for(*b, "M")) << "a destroyed queued handle still waited for the lock";

  // A try-lock of a taken lock is an empty handle saying why.
  Lock mine = a->lock_handle("N");
  Lock busy = b->lock_handle("N", false, true);
  EXPECT_FALSE(busy);
  EXPECT_EQ(busy.error(), Error::busy);
}

TEST(ClientHandles, ALeaseHandleRevokesWhenDestroyedAndItsNodesGo) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto a = connect_client(client_options_timed(c, a_follower(c, leader)));
  auto b = connect_client(client_options_timed(c, leader));
  ASSERT_TRUE(a && b);
  {
    Lease lease = a->lease_handle(20s);
    ASSERT_TRUE(lease) << error_name(lease.error());
    ASSERT_TRUE(a->create("/leased", "", CreateOptions{.lease = lease.id()}).ok());
    auto ttl = lease.ttl();
    ASSERT_TRUE(ttl.ok()) << error_name(ttl.error);
    EXPECT_GT(ttl.ttl_ms, 0);
    EXPECT_TRUE(lease.keep_alive().ok());
    Lease moved = std::move(lease);
    { Lease gone = std::move(lease); }  // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(lease);                 // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(b->exists("/leased").ok()) << "a moved-from lease handle revoked the lease";
    EXPECT_TRUE(b->lease_ttl(moved.id()).ok());
  }
  EXPECT_EQ(b->exists("/leased").error, Error::no_node) << "the lease handle's destruction did not revoke it";

  // A handle adopted from the id (e.g. a lease granted by the id-based call) releases the same way.
  auto granted = a->grant_lease(20s);
  ASSERT_TRUE(granted.ok());
  ASSERT_TRUE(a->create("/leased2", "", CreateOptions{.lease = granted.id}).ok());
  { Lease adopted = a->adopt_lease(granted.id); }
  EXPECT_EQ(b->exists("/leased2").error, Error::no_node);
  EXPECT_EQ(b->lease_ttl(granted.id).error, Error::unknown_lease);
}

TEST(ClientHandles, ALeadershipHandleResignsWhenDestroyedAndTheNextCandidateLeads) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto a = connect_client(client_options_timed(c, leader));
  auto b = connect_client(client_options_timed(c, a_follower(c, leader)));
  ASSERT_TRUE(a && b);
  Leadership second;
  {
    Leadership first = a->leadership_handle("E", "a");
    ASSERT_TRUE(first) << error_name(first.error());
    EXPECT_GT(first.token(), 0u);
    EXPECT_TRUE(first.proclaim("a2").ok());
    second = b->leadership_handle("E", "b");
    ASSERT_TRUE(second);
    EXPECT_EQ(second.token(), 0u);  // queued behind a
    EXPECT_EQ(second.proclaim("not yet").error, Error::not_held);
    Leadership moved = std::move(first);
    { Leadership gone = std::move(first); }  // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(first);                      // NOLINT(bugprone-use-after-move): empty once moved from
    auto l = b->leader("E");
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(l.data, "a2") << "a moved-from leadership handle resigned";
    EXPECT_EQ(moved.leader().data, "a2");
  }
  auto l = second.leader();
  ASSERT_TRUE(l.ok()) << error_name(l.error);
  EXPECT_EQ(l.data, "b") << "the leadership handle's destruction did not resign";
  EXPECT_EQ(l.id, b->session_id());
  EXPECT_TRUE(second.proclaim("b2").ok());
  EXPECT_EQ(second.resign(), Error::ok);
  EXPECT_EQ(a->leader("E").error, Error::no_node);
}

TEST(ClientHandles, AWatchHandleDeliversNothingOnceDestroyedAndAMovedFromOneDoesNothing) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto a = connect_client(client_options_timed(c, a_follower(c, leader)));
  ASSERT_NE(a, nullptr);
  auto created = a->create("/w", "0");
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(a->set("/w", "1").ok());
  Events events;
  {
    // From an index: the replayed change first (it can reach the library before the watch's reply).
    Watch watch = a->watch_handle("/w", WatchKind::data, events.callback(), true, false, created.index);
    ASSERT_TRUE(watch) << error_name(watch.error());
    ASSERT_TRUE(events.wait_for(1, 5s));
    Watch moved = std::move(watch);
    { Watch gone = std::move(watch); }  // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(watch);                 // NOLINT(bugprone-use-after-move)
    ASSERT_TRUE(a->set("/w", "2").ok());
    ASSERT_TRUE(events.wait_for(2, 5s)) << "a moved-from watch handle cancelled the watch";
  }
  ASSERT_TRUE(a->set("/w", "3").ok());
  ASSERT_TRUE(a->set("/w", "4").ok());
  // The ordering guarantee: an event would have come before the replies above.
  std::this_thread::sleep_for(200ms);
  auto got = events.copy();
  ASSERT_EQ(got.size(), 2u) << "the watch handle's destruction did not cancel the watch";
  EXPECT_EQ(got[0].data, "1");
  EXPECT_EQ(got[1].data, "2");
}

// The handles of a client whose server is killed: the session survives (it re-attaches on
// another node), so the lock and the leadership stay held — a connection lost in a failover
// releases nothing — and destroying the handles then releases them through the new server (the
// capabilities are rebuilt there from the ids).
TEST(ClientHandles, HandlesOutliveAKill9OfTheirServerAndThenReleaseThroughAnotherNode) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  std::uint64_t follower = a_follower(c, leader);
  auto a = connect_client(client_options_timed(c, follower, 5000ms));
  auto b = connect_client(client_options_timed(c, leader));
  ASSERT_TRUE(a && b);
  std::optional<Lock> lock(a->lock_handle("K"));
  std::optional<Leadership> leading(a->leadership_handle("F", "a"));
  ASSERT_TRUE(*lock && *leading);
  EXPECT_TRUE(lock->still_held());  // through the capability of the first server

  c.kill9(follower);
  // a's session re-attaches elsewhere; the handles' calls rebuild their capabilities there.
  ASSERT_TRUE(eventually(10s, [&] { return lock->still_held(); })) << "the lock was lost in the failover";
  EXPECT_TRUE(b->check_token("K", lock->token()).ok());
  EXPECT_EQ(b->lock("K", false, true).error, Error::busy);
  auto l = b->leader("F");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l.id, a->session_id());
  EXPECT_TRUE(leading->proclaim("a after the failover").ok());

  lock.reset();
  leading.reset();
  EXPECT_TRUE(free_for(*b, "K")) << "the lock handle did not release after the failover";
  EXPECT_EQ(b->leader("F").error, Error::no_node) << "the leadership handle did not resign after the failover";
}

// The wire API itself: dropping a lock capability, and the whole connection, releases nothing
// (the session lives on); on another connection the session's lock is reached again from its
// ids with a pipelined lockOf, and unlocked through it.
TEST(ClientApi, ADroppedLockCapabilityReleasesNothingAndOneRebuiltFromItsIdsUnlocks) {
  Cluster c(ternd(), sm_cluster());
  c.start_all();
  auto leader = c.wait_for_leader(10s);
  ASSERT_NE(leader, 0u);
  auto b = connect_client(client_options_timed(c, leader));
  ASSERT_NE(b, nullptr);
  auto& io = c.kj_io();
  auto connector = client::Connector::make(c.client_tls());
  ASSERT_TRUE(connector.has_value());
  auto dial = [&](std::uint64_t id) {
    return (*connector)->connect(io.provider->getNetwork(), "127.0.0.1", c.node(id).client_port).wait(io.waitScope);
  };
  std::uint64_t session = 0, token = 0;
  {
    auto stream = dial(a_follower(c, leader));
    capnp::TwoPartyClient rpc(*stream);
    auto tern = rpc.bootstrap().castAs<api::Tern>();
    auto open = tern.openSessionRequest();
    open.setTimeoutMs(10000);
    open.setSecret(77);
    auto opened = open.send().wait(io.waitScope);
    ASSERT_EQ(opened.getResult().getErr(), api::Errc::OK);
    session = opened.getResult().getId();
    auto req = opened.getSession().lockRequest();
    req.setSeq(1);
    req.setName("R");
    auto locked = req.send().wait(io.waitScope);
    ASSERT_EQ(locked.getResult().getErr(), api::Errc::OK) << locked.getResult().getMessage().cStr();
    token = locked.getResult().getId();
    ASSERT_GT(token, 0u);
    auto check = locked.getLock().checkTokenRequest();
    check.setToken(token);
    EXPECT_EQ(check.send().wait(io.waitScope).getResult().getErr(), api::Errc::OK);
  }  // the capability, the session capability and the connection are all dropped here
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(b->lock("R", false, true).error, Error::busy) << "dropping the capability released the lock";
  EXPECT_TRUE(b->check_token("R", token).ok());

  auto stream = dial(leader);
  capnp::TwoPartyClient rpc(*stream);
  auto tern = rpc.bootstrap().castAs<api::Tern>();
  auto attach = tern.attachSessionRequest();
  attach.setId(session);
  attach.setSecret(77);
  auto attached = attach.send();
  auto of = attached.getSession().lockOfRequest();
  of.setName("R");
  auto unlock = of.send().getLock().unlockRequest();  // pipelined: one round trip in all
  unlock.setSeq(2);
  auto unlocked = unlock.send().wait(io.waitScope);
  EXPECT_EQ(unlocked.getResult().getErr(), api::Errc::OK) << unlocked.getResult().getMessage().cStr();
  EXPECT_TRUE(free_for(*b, "R")) << "the rebuilt capability did not unlock";
  auto of_again = attached.getSession().lockOfRequest();
  of_again.setName("R");
  auto again = of_again.send().getLock().unlockRequest();
  again.setSeq(3);
  EXPECT_EQ(again.send().wait(io.waitScope).getResult().getErr(), api::Errc::NOT_HELD);
}

}  // namespace
}  // namespace tern::testing
