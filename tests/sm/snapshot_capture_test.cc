// A snapshot captured in slices while entries keep applying (issue 14; StateMachine::
// begin_snapshot) is exactly the stop-the-world snapshot at the index where it began: the same
// bytes, hence the same decoded state and digest. And the capture does not change what the
// entries do.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "service/sm/command.h"
#include "service/sm/state_machine.h"
#include "tests/sm/driver.h"

namespace tern::sm {
namespace {

using test::Driver;

std::string join(const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += p;
  return out;
}

// Runs a capture to its end, applying `between(i)` before slice i (i = 0, 1, ...).
template <class F>
std::string capture(StateMachine& sm, std::size_t budget, F between) {
  sm.begin_snapshot();
  for (int i = 0;; ++i) {
    between(i);
    if (auto pieces = sm.continue_snapshot(budget)) return join(*pieces);
  }
}

void expect_same_state(const std::string& captured, const std::string& oracle) {
  EXPECT_EQ(captured.size(), oracle.size());
  EXPECT_TRUE(captured == oracle) << "the captured bytes differ from the stop-the-world snapshot";
  StateMachine a, b;
  ASSERT_TRUE(a.restore(captured));
  ASSERT_TRUE(b.restore(oracle));
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(a.applied_index(), b.applied_index());
}

Driver tree() {
  Driver d;
  for (const char* p : {"/a", "/a/x", "/a/y", "/a/y/deep", "/b", "/b/z", "/c"}) EXPECT_EQ(d.create(p, std::string("v") + p).err, Errc::ok);
  return d;
}

TEST(SnapshotCapture, WithoutWritesItIsTheStopTheWorldSnapshot) {
  for (std::size_t budget : {std::size_t{1}, std::size_t{100}, std::size_t{1} << 20}) {
    Driver d = tree();
    std::string oracle = d.sm.snapshot();
    expect_same_state(capture(d.sm, budget, [](int) {}), oracle);
    EXPECT_FALSE(d.sm.snapshot_in_progress());
  }
}

TEST(SnapshotCapture, ASetDuringTheCaptureIsNotInIt) {
  Driver d = tree();
  std::string oracle = d.sm.snapshot();
  std::string got = capture(d.sm, 1, [&](int i) {
    if (i == 0) {
      EXPECT_EQ(d.set("/b/z", "changed").err, Errc::ok);
    }
  });
  expect_same_state(got, oracle);
  EXPECT_EQ(d.sm.get("/b/z").data, "changed");
}

TEST(SnapshotCapture, ADeleteAndARecreateOfTheSamePathDuringTheCaptureAreNotInIt) {
  Driver d = tree();
  std::string oracle = d.sm.snapshot();
  std::string got = capture(d.sm, 1, [&](int i) {
    if (i != 1) return;
    // The walk has written /a (budget 1: a node a slice) but none of its children.
    EXPECT_EQ(d.remove("/a", -1, /*recursive=*/true).err, Errc::ok);
    EXPECT_EQ(d.create("/a", "new").err, Errc::ok);                    // same names, reused slots
    EXPECT_EQ(d.create("/a/y", "new").err, Errc::ok);
    EXPECT_EQ(d.create("/a/w", "new").err, Errc::ok);
    EXPECT_EQ(d.create("/bb", "new").err, Errc::ok);
  });
  expect_same_state(got, oracle);
}

TEST(SnapshotCapture, RestoreAbandonsTheCapture) {
  Driver d = tree();
  std::string snap = d.sm.snapshot();
  d.sm.begin_snapshot();
  EXPECT_FALSE(d.sm.continue_snapshot(1));
  ASSERT_TRUE(d.sm.restore(snap));
  EXPECT_FALSE(d.sm.snapshot_in_progress());
  d.sm.begin_snapshot();  // a new one may start
  d.sm.abandon_snapshot();
}

// ---- the property -------------------------------------------------------------------------------------

// One command, drawn once and applied the same way to two state machines in the same state.
struct Cmd {
  int kind = 0;
  std::string path;
  std::string data;
  std::uint32_t flags = 0;
  std::int64_t n = 0;
  std::size_t pick = 0;
};

Cmd gen_cmd() {
  Cmd c;
  c.kind = *rc::gen::inRange(0, 14);
  // Few names, so creates, deletes and recreates keep meeting the same paths and slots.
  int depth = *rc::gen::inRange(1, 4);
  for (int i = 0; i < depth; ++i) c.path += "/" + *rc::gen::element<std::string>("a", "b", "c", "d");
  c.data = *rc::gen::element<std::string>("", "x", "yy", std::string(300, 'z'));
  c.flags = *rc::gen::element<std::uint32_t>(0, 0, 0, flag_sequential, flag_container, flag_ephemeral, flag_ttl);
  c.n = *rc::gen::inRange<std::int64_t>(0, 3000);
  c.pick = *rc::gen::inRange<std::size_t>(0, 8);
  return c;
}

// Sessions and leases the commands may name (the same ids in both state machines).
struct Ids {
  std::vector<std::uint64_t> sessions, leases;
  std::uint64_t session(std::size_t pick) const { return sessions.empty() ? 0 : sessions[pick % sessions.size()]; }
  std::uint64_t lease(std::size_t pick) const { return leases.empty() ? 0 : leases[pick % leases.size()]; }
};

Response run(Driver& d, Ids& ids, const Cmd& c) {
  switch (c.kind) {
    case 0:
    case 1:
    case 2:
    case 3: {
      std::uint64_t session = (c.flags & flag_ephemeral) ? ids.session(c.pick) : 0;
      std::int64_t ttl = (c.flags & flag_ttl) ? 300 + c.n : 0;
      std::uint64_t lease = c.pick % 3 == 0 ? ids.lease(c.pick) : 0;
      return d.create(c.path, c.data, c.flags, session, ttl, lease);
    }
    case 4:
    case 5: return d.set(c.path, c.data);
    case 6: return d.remove(c.path);
    case 7: return d.remove(c.path, -1, /*recursive=*/true);
    case 8: {
      std::uint64_t s = d.open_session(1000 + c.n);
      if (s) ids.sessions.push_back(s);
      return Response{};
    }
    case 9: {
      std::uint64_t s = ids.session(c.pick);
      if (s == 0) return Response{};
      Op op{OpType::close_session};
      return d.run(op, s);
    }
    case 10:
      d.tick(c.n);  // sessions, leases and TTL nodes expire; empty containers go
      return Response{};
    case 11: {
      Op op{OpType::grant_lease};
      op.ttl_ms = 500 + c.n;
      auto r = d.run(op);
      if (r.err == Errc::ok) ids.leases.push_back(r.id);
      return r;
    }
    case 12: {
      Op op{OpType::revoke_lease};
      op.id = ids.lease(c.pick);
      return d.run(op);
    }
    default: {
      Op multi{OpType::multi};
      Op set{OpType::set, c.path, c.data};
      Op create{OpType::create, c.path + "/m", c.data};
      multi.ops = {create, set};
      return d.run(multi);
    }
  }
}

RC_GTEST_PROP(SnapshotCapture, ASliceByCaptureWithWritesBetweenSlicesIsTheStopTheWorldSnapshotAtItsIndex, ()) {
  Driver a, b;  // a captures; b applies the same commands without a capture
  Ids ids_a, ids_b;
  const int before = *rc::gen::inRange(0, 300);
  for (int i = 0; i < before; ++i) {
    Cmd c = gen_cmd();
    RC_ASSERT(run(a, ids_a, c) == run(b, ids_b, c));
  }
  const std::size_t budget = *rc::gen::inRange<std::size_t>(1, 300);
  std::string oracle = a.sm.snapshot();  // stop the world, at the index where the capture begins
  std::uint64_t index = a.sm.applied_index();
  std::size_t images = 0;
  std::string got = capture(a.sm, budget, [&](int) {
    const int n = *rc::gen::inRange(0, 6);
    for (int k = 0; k < n; ++k) {
      Cmd c = gen_cmd();
      RC_ASSERT(run(a, ids_a, c) == run(b, ids_b, c));
    }
    images = std::max(images, a.sm.snapshot_images());
  });
  RC_CLASSIFY(images > 0, "before images taken");
  RC_ASSERT(got == oracle);
  StateMachine x, y;
  RC_ASSERT(x.restore(got));
  RC_ASSERT(y.restore(oracle));
  RC_ASSERT(x.digest() == y.digest());
  RC_ASSERT(x.applied_index() == index);
  // The capture changed nothing the entries did.
  RC_ASSERT(a.sm.digest() == b.sm.digest());
  RC_ASSERT(a.sm.snapshot() == b.sm.snapshot());
}

}  // namespace
}  // namespace tern::sm
