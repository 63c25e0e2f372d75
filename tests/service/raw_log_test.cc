// The placeholder state machine: opaque commands are counted and hashed; "reg" commands behave
// as registers; snapshots restore everything, and equal histories give equal digests.
#include <gtest/gtest.h>

#include "service/applier.h"

namespace tern::service {
namespace {

std::string run(RawLog& m, std::string_view cmd) { return m.apply(raft::Index{1}, 0, cmd); }

TEST(RawLog, RegistersReadWriteAndCompareAndSet) {
  RawLog m;
  EXPECT_EQ(run(m, "reg r x"), "null");
  EXPECT_EQ(run(m, "reg w x 1"), "ok");
  EXPECT_EQ(run(m, "reg r x"), "1");
  EXPECT_EQ(run(m, "reg c x 2 3"), "fail");
  EXPECT_EQ(run(m, "reg r x"), "1");
  EXPECT_EQ(run(m, "reg c x 1 3"), "ok");
  EXPECT_EQ(run(m, "reg r x"), "3");
  EXPECT_EQ(run(m, "reg c y 1 2"), "fail");  // never written
  EXPECT_EQ(run(m, "reg r y"), "null");
  EXPECT_EQ(run(m, "reg q"), "error: want 'reg w KEY VALUE', 'reg r KEY' or 'reg c KEY OLD NEW'");
  EXPECT_EQ(m.applied_commands(), 10u);
}

TEST(RawLog, SnapshotRestoresRegistersCountAndDigest) {
  RawLog a;
  run(a, "opaque bytes");
  run(a, "reg w k v1");
  run(a, "reg w j v2");
  RawLog b;
  ASSERT_TRUE(b.restore(a.snapshot()));
  EXPECT_EQ(b.digest(), a.digest());
  EXPECT_EQ(b.applied_commands(), 3u);
  EXPECT_EQ(run(b, "reg r k"), "v1");
  run(a, "reg r k");
  EXPECT_EQ(b.digest(), a.digest());  // the same next command keeps them equal
  run(a, "x");
  run(b, "y");
  EXPECT_NE(b.digest(), a.digest());  // different commands: different digests
}

TEST(RawLog, RejectsDamagedSnapshots) {
  RawLog a;
  run(a, "reg w k v");
  auto snap = a.snapshot();
  RawLog b;
  EXPECT_FALSE(b.restore(snap.substr(0, snap.size() - 1)));
  EXPECT_FALSE(b.restore(snap + "x"));
  EXPECT_FALSE(b.restore("garbage"));
  EXPECT_EQ(b.applied_commands(), 0u);  // a failed restore changes nothing
}

}  // namespace
}  // namespace tern::service
