// The node driver (service/node.cc) on a real data directory: recovery from crash states and
// the persist-before-send rule (issue 10, holes 1, 2 and 4). Loopback only, bounded run time.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>

#include "common/le.h"
#include "raft/core.h"
#include "raft/storage/data_dir.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"
#include "service/metrics.h"
#include "service/node.h"
#include "service/sm/command.h"
#include "service/sm/state_machine.h"
#include "service/sm_applier.h"
#include "tests/common/loopback.h"

namespace tern::service {
namespace {

using namespace std::chrono_literals;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Index;
using raft::NodeId;
using raft::Term;

constexpr std::uint64_t kCluster = 7;

struct TempDir {
  std::string path;
  TempDir() {
    std::random_device rd;
    path = (std::filesystem::temp_directory_path() / ("tern-node-test-" + std::to_string(rd()))).string();
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

NodeOptions options(const std::string& dir, std::map<NodeId, std::string> cluster) {
  NodeOptions o;
  o.id = NodeId{1};
  o.cluster_id = kCluster;
  o.data_dir = dir;
  o.initial_cluster = std::move(cluster);
  o.tick = 10ms;
  o.election_ticks = 5;
  return o;
}

std::string addr() { return "127.0.0.1:" + std::to_string(testing::free_port()); }

// Runs the loop until pred() holds or the time is up.
template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < end) {
    io.restart();
    io.run_for(5ms);
  }
  return pred();
}

// What the WAL holds right now (written and synced by the node, which syncs inside each write).
storage::Recovered wal_contents(const std::string& dir) {
  storage::WalOptions wo;
  wo.read_only = true;
  storage::Recovered rec;
  auto w = storage::Wal::open(dir + "/wal", wo, &rec);
  EXPECT_TRUE(w.has_value());
  return rec;
}

// Hole 1: the bootstrap membership was kept only in memory until a commit index was written;
// a node restarted before that forgot it (members: [] forever, no election).
TEST(NodeRecovery, BootstrapMembershipSurvivesARestartAtAnyPoint) {
  TempDir d;
  auto o = options(d.path, {{NodeId{1}, addr()}, {NodeId{2}, addr()}, {NodeId{3}, addr()}});
  for (int round = 0; round < 3; ++round) {
    asio::io_context io;
    Metrics metrics;
    auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
    ASSERT_TRUE(n.has_value()) << n.error();
    // Right after open (before the loop ran): the membership is already durable.
    EXPECT_EQ((*n)->status().members.size(), 3u) << "round " << round;
    auto rec = wal_contents(d.path);
    EXPECT_FALSE(rec.entries.empty()) << "round " << round << ": the initial membership is not in the WAL";
    if (!rec.entries.empty()) {
      EXPECT_EQ(rec.entries.front().type, EntryType::conf_change);
    }
    EXPECT_GE(rec.hard_state.commit, Index{1}) << "round " << round;
    (*n)->start();
    run_until(io, [] { return false; }, 30ms * (round + 1));
    EXPECT_EQ((*n)->status().members.size(), 3u) << "round " << round;
    // Dropped without a clean stop between rounds is covered by the real-process test; here the
    // node is destroyed (its deferred commit index is 0: no leader without the other two).
  }
}

// Hole 2: a one-voter leader became candidate and leader inside one tick and sent AppendEntries
// of the new term before its term and vote were durable. Every message a leader sends must be
// for a term that is durable on this node's disk when it leaves.
TEST(NodeDurability, AOneVoterLeaderNeverSendsForATermThatIsNotDurable) {
  TempDir d;
  auto self = addr();
  auto learner = addr();  // nobody listens there: messages are dropped after the check
  auto o = options(d.path, {{NodeId{1}, self}});
  int checked = 0;
  std::string violation;
  o.on_send = [&](const raft::Message& m) {
    if (!raft::sent_by_leader(m.body)) return;
    ++checked;
    auto hs = wal_contents(d.path).hard_state;
    if (hs.term < m.term && violation.empty())
      violation = "sent a message of term " + std::to_string(m.term.value) + " with durable term " +
                  std::to_string(hs.term.value);
  };
  for (int incarnation = 0; incarnation < 4; ++incarnation) {
    asio::io_context io;
    Metrics metrics;
    auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
    ASSERT_TRUE(n.has_value()) << n.error();
    auto& node = **n;
    node.start();
    ASSERT_TRUE(run_until(io, [&] { return node.status().role == "leader"; })) << "no leader";
    if (incarnation == 0) {
      bool done = false;
      node.add_member(NodeId{2}, learner, /*learner=*/true, [&](Result<Committed, NodeError> r) {
        EXPECT_TRUE(r.has_value());
        done = true;
      });
      ASSERT_TRUE(run_until(io, [&] { return done; }));
    }
    // Leader with a learner: a proposal and its appends, then a restart (a new term).
    bool committed = false;
    node.propose("x" + std::to_string(incarnation), [&](Result<Committed, NodeError> r) { committed = r.has_value(); });
    ASSERT_TRUE(run_until(io, [&] { return committed; }));
    node.stop();
  }
  EXPECT_GT(checked, 0);
  EXPECT_EQ(violation, "");
}

// Writes a data directory as a crash left it: a WAL holding `entries` and `hs`, and a snapshot
// file at (snap_index, snap_term) whose WAL reset record never became durable (hole 4).
void plant_stale_wal_after_snapshot(const std::string& dir, const std::vector<Entry>& entries, HardState hs,
                                    Index snap_index, Term snap_term) {
  {
    auto dd = storage::DataDir::open(dir, kCluster, 1);
    ASSERT_TRUE(dd.has_value());
    storage::Recovered rec;
    auto w = storage::Wal::open((*dd)->wal_dir(), storage::WalOptions{}, &rec);
    ASSERT_TRUE(w.has_value());
    storage::WriteBatch b;
    b.entries = entries;
    b.hard_state = hs;
    ASSERT_TRUE((*w)->write(b).has_value());
    std::string state = "TNS1";
    le::put_u32(state, 0);
    le::put_u64(state, 0);
    state += RawLog().snapshot();
    raft::ConfState conf;
    conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
    storage::SnapshotStore snaps((*dd)->snap_dir());
    ASSERT_TRUE(snaps.save(raft::SnapshotMeta{snap_index, snap_term, conf}, state).has_value());
  }
}

std::vector<Entry> log_with_terms(const std::vector<std::uint64_t>& terms) {
  std::vector<Entry> out;
  raft::ConfState conf;
  conf.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
  for (std::size_t i = 0; i < terms.size(); ++i) {
    Index idx{i + 1};
    if (i == 0) {
      out.push_back(Entry{Term{terms[i]}, idx, EntryType::conf_change, raft::encode_conf_state(conf)});
    } else {
      out.push_back(Entry{Term{terms[i]}, idx, EntryType::noop, ""});
    }
  }
  return out;
}

// Hole 4, first form: the stale suffix has lower terms than the snapshot; the core asserted at
// start (a crash loop). Now recovery drops it and the node starts from the snapshot.
TEST(NodeRecovery, AStaleWalSuffixWithLowerTermsAfterAReceivedSnapshotIsDropped) {
  TempDir d;
  plant_stale_wal_after_snapshot(d.path, log_with_terms({1, 2, 2, 2, 2, 2, 2, 2}), HardState{Term{2}, NodeId{2}, Index{3}},
                                 Index{5}, Term{3});
  asio::io_context io;
  Metrics metrics;
  auto o = options(d.path, {{NodeId{1}, addr()}, {NodeId{2}, addr()}, {NodeId{3}, addr()}});
  auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
  ASSERT_TRUE(n.has_value()) << n.error();
  auto s = (*n)->status();
  EXPECT_EQ(s.last, Index{5});
  EXPECT_EQ(s.snapshot, Index{5});
  EXPECT_GE(s.term, Term{3});
  EXPECT_EQ(s.members.size(), 3u);
}

// Hole 4, second form: the stale suffix's terms are not lower, so nothing asserted and the node
// silently built a log whose entry after the snapshot came from a different history.
TEST(NodeRecovery, AStaleWalSuffixThatDoesNotExtendTheSnapshotIsDroppedEvenWithHigherTerms) {
  TempDir d;
  // WAL entry 5 has term 2, the snapshot at 5 has term 3: entries 6..8 (term 4) do not extend it.
  plant_stale_wal_after_snapshot(d.path, log_with_terms({1, 2, 2, 2, 2, 4, 4, 4}), HardState{Term{4}, NodeId{2}, Index{3}},
                                 Index{5}, Term{3});
  asio::io_context io;
  Metrics metrics;
  auto o = options(d.path, {{NodeId{1}, addr()}, {NodeId{2}, addr()}, {NodeId{3}, addr()}});
  {
    auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
    ASSERT_TRUE(n.has_value()) << n.error();
    EXPECT_EQ((*n)->status().last, Index{5});
    EXPECT_EQ((*n)->status().term, Term{4});  // the durable term and vote are kept
  }
  // The installation was completed (a reset record): the next recovery needs no repair.
  auto rec = wal_contents(d.path);
  ASSERT_TRUE(rec.reset.has_value());
  EXPECT_EQ(*rec.reset, std::make_pair(Index{5}, Term{3}));
  EXPECT_TRUE(rec.entries.empty());
}

// Hole 4, third form (found by the whole-node simulator): the WAL ends before the received
// snapshot. Nothing to drop, but without the reset record the next append (snapshot + 1) left
// a gap in the WAL and the node died on its first write after the restart.
TEST(NodeRecovery, AReceivedSnapshotAheadOfTheWholeWalIsRecordedInTheWal) {
  TempDir d;
  plant_stale_wal_after_snapshot(d.path, log_with_terms({1, 2, 2}), HardState{Term{2}, NodeId{2}, Index{3}}, Index{5},
                                 Term{3});
  {
    asio::io_context io;
    Metrics metrics;
    auto o = options(d.path, {{NodeId{1}, addr()}, {NodeId{2}, addr()}, {NodeId{3}, addr()}});
    auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
    ASSERT_TRUE(n.has_value()) << n.error();
    EXPECT_EQ((*n)->status().last, Index{5});
  }
  auto rec = wal_contents(d.path);
  ASSERT_TRUE(rec.reset.has_value()) << "the WAL does not know the snapshot: the next append leaves a gap";
  EXPECT_EQ(*rec.reset, std::make_pair(Index{5}, Term{3}));
}

// Entries that do extend the snapshot are kept: the WAL's entry at the snapshot index has its term.
TEST(NodeRecovery, AWalSuffixThatExtendsTheSnapshotIsKept) {
  TempDir d;
  plant_stale_wal_after_snapshot(d.path, log_with_terms({1, 2, 2, 3, 3, 3, 3, 3}), HardState{Term{3}, NodeId{2}, Index{8}},
                                 Index{5}, Term{3});
  asio::io_context io;
  Metrics metrics;
  auto o = options(d.path, {{NodeId{1}, addr()}, {NodeId{2}, addr()}, {NodeId{3}, addr()}});
  auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
  ASSERT_TRUE(n.has_value()) << n.error();
  EXPECT_EQ((*n)->status().last, Index{8});
}

// Issue 14: a snapshot is captured over many loop turns (a node or two per turn here) while
// writes keep committing and applying in between, yet each snapshot file holds exactly the
// state at its index: restored, it has the digest a replay of the same entries has there.
TEST(NodeSnapshot, ASnapshotCapturedInSlicesWhileWritesApplyIsTheStateAtItsIndex) {
  TempDir d;
  auto o = options(d.path, {{NodeId{1}, addr()}});
  o.snapshot_entries = 500;
  o.snapshot_slice_bytes = 1;  // a node per loop turn
  std::vector<Entry> applied;  // replayed afterwards, without any capture, up to the snapshot
  o.on_apply = [&](const Entry& e) { applied.push_back(e); };
  asio::io_context io;
  Metrics metrics;
  auto n = Node::open(io, o, std::make_unique<SmApplier>(), metrics);
  ASSERT_TRUE(n.has_value()) << n.error();
  auto& node = **n;
  node.start();
  ASSERT_TRUE(run_until(io, [&] { return node.status().role == "leader"; })) << "no leader";
  // 1,500 creates, then creates and sets, 32 in flight at a time, until a snapshot at 2,000 or
  // later is durable: the captures up to it ran while writes applied between their slices.
  const std::string value(100, 'v');
  std::mt19937_64 rng(14);
  int sent = 0, done = 0, failed = 0;
  const int max_writes = 20'000;
  auto next = [&] {
    sm::Command c;
    bool create = sent < 1500 || rng() % 2;
    c.op.type = create ? sm::OpType::create : sm::OpType::set;
    c.op.path = "/n" + std::to_string(create ? sent : static_cast<int>(rng() % 1500));
    c.op.data = create ? value : std::to_string(sent);
    ++sent;
    node.propose(sm::encode(c), [&](Result<Committed, NodeError> r) {
      ++done;
      if (!r) ++failed;
    });
  };
  ASSERT_TRUE(run_until(io, [&] {
    while (sent < max_writes && sent - done < 32) next();
    return node.status().snapshot >= Index{2000};
  }, 60s)) << "no snapshot at 2,000 or later";
  ASSERT_TRUE(run_until(io, [&] { return done == sent; }));
  EXPECT_EQ(failed, 0);
  node.stop();
  // The newest snapshot file: the node's part (address book, cluster time, client addresses),
  // then the state machine's.
  storage::SnapshotStore snaps(d.path + "/snap");
  auto f = snaps.load_newest();
  ASSERT_TRUE(f.has_value() && f->has_value());
  auto data = snaps.read_all(**f);
  ASSERT_TRUE(data.has_value());
  std::string_view rest(*data);
  ASSERT_EQ(rest.substr(0, 4), "TNS2");
  rest.remove_prefix(4);
  auto skip_book = [&] {
    std::uint32_t count = le::get_u32(rest.data());
    rest.remove_prefix(4);
    for (std::uint32_t i = 0; i < count; ++i) rest.remove_prefix(12 + le::get_u32(rest.data() + 8));
  };
  skip_book();  // peer addresses
  rest.remove_prefix(8);  // cluster time
  skip_book();  // client addresses
  sm::StateMachine restored;
  ASSERT_TRUE(restored.restore(rest));
  Index at = (*f)->meta.index;
  sm::StateMachine reference;
  std::size_t later = 0;  // command entries applied after the snapshot's index
  for (const auto& e : applied) {
    if (e.type != EntryType::normal || e.data.size() < 9 || e.data[0] != 1) continue;
    if (e.index > at) {
      ++later;
      continue;
    }
    reference.apply(e.index.value, static_cast<std::int64_t>(le::get_u64(e.data.data() + 1)), std::string_view(e.data).substr(9));
  }
  EXPECT_EQ(restored.digest(), reference.digest()) << "the snapshot at " << at.value << " is not the state at its index";
  EXPECT_GT(later, 0u) << "no write applied after the snapshot's index";
}

// Issue 13: a node's client address is replicated state. Announced through the log, it is in
// the snapshot ("TNS2"), so a node restored from the snapshot alone (before it replays or
// applies anything) reports it; a node told nothing about it afterwards keeps it.
TEST(NodeSnapshot, ClientAddressesSurviveInTheSnapshot) {
  TempDir d;
  auto o = options(d.path, {{NodeId{1}, addr()}});
  o.client_address = "127.0.0.1:7777";
  {
    asio::io_context io;
    Metrics metrics;
    auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
    ASSERT_TRUE(n.has_value()) << n.error();
    Node& node = **n;
    EXPECT_EQ(node.status().members.at(0).client_address, "");
    node.start();
    ASSERT_TRUE(run_until(io, [&] { return node.status().members.at(0).client_address == "127.0.0.1:7777"; }))
        << "the leader did not announce its client address";
    bool saved = false;
    node.snapshot_now([&](Result<storage::SnapshotFile, NodeError> r) {
      ASSERT_TRUE(r.has_value()) << r.error().message;
      saved = true;
    });
    ASSERT_TRUE(run_until(io, [&] { return saved; }));
    EXPECT_NE(node.status_json().find("\"client_address\":\"127.0.0.1:7777\""), std::string::npos) << node.status_json();
    node.stop();
  }
  o.client_address.clear();  // restarted knowing nothing of it: only the snapshot can tell
  asio::io_context io;
  Metrics metrics;
  auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
  ASSERT_TRUE(n.has_value()) << n.error();
  ASSERT_GT((*n)->status().snapshot, Index{0});
  EXPECT_EQ((*n)->status().members.at(0).client_address, "127.0.0.1:7777") << "the snapshot lost the client address";
  (*n)->start();
  run_until(io, [] { return false; }, 100ms);
  EXPECT_EQ((*n)->status().members.at(0).client_address, "127.0.0.1:7777");
}

// Issue 13: client-address entries (kind 3) from a hostile or broken leader are checked when
// applied: a truncated one, a bad host:port, an oversized or unprintable one, one for a node not
// in the address book are ignored (the same on every replica: a pure function of the entry and
// the replicated book), never a crash; a valid one is applied, and a later bad one leaves it.
TEST(NodeRecovery, BadClientAddressEntriesAreIgnoredWhenApplied) {
  TempDir d;
  auto o = options(d.path, {{NodeId{1}, addr()}});
  auto kind3 = [](std::uint64_t id, const std::string& a) {
    std::string p(1, '\x03');
    le::put_u64(p, id);
    return p + a;
  };
  std::vector<std::string> payloads = {
      std::string("\x03\x01\x00", 3),          // truncated id
      kind3(1, "127.0.0.1:7777"),               // valid
      kind3(1, "no-port"),                      // not host:port
      kind3(1, "127.0.0.1:99999"),              // port out of range
      kind3(1, std::string(400, 'a') + ":1"),   // too long
      kind3(1, "bad\"quote:1"),                 // would break /status JSON
      kind3(1, "127.0.0.1:1 x"),                // a space
      kind3(9, "127.0.0.1:9999"),               // not a member
  };
  {
    auto dd = storage::DataDir::open(d.path, kCluster, 1);
    ASSERT_TRUE(dd.has_value());
    storage::Recovered rec;
    auto w = storage::Wal::open((*dd)->wal_dir(), storage::WalOptions{}, &rec);
    ASSERT_TRUE(w.has_value());
    storage::WriteBatch b;
    raft::ConfState conf;
    conf.voters = {NodeId{1}};
    b.entries.push_back(Entry{Term{1}, Index{1}, EntryType::conf_change, raft::encode_conf_state(conf)});
    for (const auto& p : payloads) b.entries.push_back(Entry{Term{1}, Index{b.entries.size() + 1}, EntryType::normal, p});
    b.hard_state = HardState{Term{1}, NodeId{1}, Index{b.entries.size()}};
    ASSERT_TRUE((*w)->write(b).has_value());
  }
  asio::io_context io;
  Metrics metrics;
  auto n = Node::open(io, o, std::make_unique<RawLog>(), metrics);
  ASSERT_TRUE(n.has_value()) << n.error();
  Node& node = **n;
  node.start();
  ASSERT_TRUE(run_until(io, [&] { return node.status().applied >= Index{payloads.size() + 1}; }));
  auto s = node.status();
  ASSERT_EQ(s.members.size(), 1u);
  EXPECT_EQ(s.members[0].client_address, "127.0.0.1:7777");
  EXPECT_EQ(node.status_json().find("9999"), std::string::npos) << node.status_json();
}

}  // namespace
}  // namespace tern::service
