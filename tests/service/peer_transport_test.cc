// The peer transport on one io_context over loopback: delivery, chunked snapshots, rejection of
// frames from other clusters or for other nodes, bounded queues, reconnect after a restart.
#include "service/net/peer_transport.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>

#include "service/net/peer_codec.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::Term;

constexpr std::uint64_t kCluster = 77;

PeerTransportOptions options(std::uint64_t self, std::uint64_t cluster = kCluster) {
  PeerTransportOptions o;
  o.cluster_id = cluster;
  o.self = NodeId{self};
  o.snapshot_chunk_bytes = 256 * 1024;
  o.backoff_min = 5ms;
  o.backoff_max = 50ms;
  return o;
}

Message heartbeat(std::uint64_t from, std::uint64_t to, std::uint64_t seq) {
  return Message{NodeId{from}, NodeId{to}, Term{3}, raft::HeartbeatRequest{Index{seq}, seq}};
}

// Runs the loop until `done` or a bounded time passes.
bool run_until(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) {
    io.restart();
    io.run_for(5ms);
  }
  return done();
}

struct Fixture {
  asio::io_context io;
  std::vector<Message> got_b;
  PeerTransport a{io, options(1), [](Message) {}};
  PeerTransport b{io, options(2), [this](Message m) { got_b.push_back(std::move(m)); }};
  std::uint16_t port_b = b.listen("127.0.0.1", 0);
  Fixture() { a.set_peer(NodeId{2}, "127.0.0.1", port_b); }
};

TEST(PeerTransport, DeliversMessagesInOrder) {
  Fixture f;
  for (std::uint64_t i = 1; i <= 500; ++i) f.a.send(heartbeat(1, 2, i));
  ASSERT_TRUE(run_until(f.io, [&] { return f.got_b.size() == 500; })) << f.got_b.size();
  for (std::uint64_t i = 0; i < 500; ++i) {
    const auto* h = std::get_if<raft::HeartbeatRequest>(&f.got_b[i].body);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->read_seq, i + 1);
    EXPECT_EQ(f.got_b[i].from, NodeId{1});
  }
  EXPECT_EQ(f.b.stats().rejected, 0u);
}

TEST(PeerTransport, StreamsALargeSnapshotInChunksAndReassemblesIt) {
  Fixture f;
  std::string data(5 * 1024 * 1024 + 3, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 11));
  raft::SnapshotMeta meta{Index{1000}, Term{3}, raft::ConfState{{NodeId{1}, NodeId{2}}, {}}};
  Message m{NodeId{1}, NodeId{2}, Term{3},
            raft::InstallSnapshotRequest{meta, std::make_shared<const std::string>(data)}};
  f.a.send_snapshot(m);
  f.a.send(heartbeat(1, 2, 9));  // other traffic interleaves with the chunks
  ASSERT_TRUE(run_until(f.io, [&] {
    for (auto& g : f.got_b)
      if (std::holds_alternative<raft::InstallSnapshotRequest>(g.body)) return true;
    return false;
  }));
  int snapshots = 0;
  for (auto& g : f.got_b) {
    if (const auto* s = std::get_if<raft::InstallSnapshotRequest>(&g.body)) {
      ++snapshots;
      ASSERT_NE(s->data, nullptr);
      EXPECT_EQ(s->meta.index, Index{1000});
      EXPECT_EQ(s->meta.conf.voters.size(), 2u);
      EXPECT_TRUE(*s->data == data) << "reassembled " << s->data->size() << " bytes";
    }
  }
  EXPECT_EQ(snapshots, 1);
  EXPECT_EQ(f.b.stats().snapshots_received, 1u);
  EXPECT_GE(f.b.stats().frames_received, 21u);  // 5 MiB in 256 KiB chunks, plus the heartbeat
}

TEST(PeerTransport, RejectsFramesFromAnotherClusterAndForAnotherNode) {
  Fixture f;
  PeerTransport stranger{f.io, options(1, /*cluster=*/78), [](Message) {}};
  stranger.set_peer(NodeId{2}, "127.0.0.1", f.port_b);
  stranger.send(heartbeat(1, 2, 1));
  ASSERT_TRUE(run_until(f.io, [&] { return f.b.stats().rejected >= 1; }));
  PeerTransport misaddressed{f.io, options(1), [](Message) {}};
  misaddressed.set_peer(NodeId{3}, "127.0.0.1", f.port_b);  // node 3's address points at node 2
  misaddressed.send(heartbeat(1, 3, 1));
  ASSERT_TRUE(run_until(f.io, [&] { return f.b.stats().rejected >= 2; }));
  EXPECT_TRUE(f.got_b.empty());
  // The listener still serves well-behaved peers.
  f.a.send(heartbeat(1, 2, 5));
  EXPECT_TRUE(run_until(f.io, [&] { return f.got_b.size() == 1; }));
}

TEST(PeerTransport, QueueIsBoundedWhileAPeerIsUnreachable) {
  asio::io_context io;
  auto o = options(1);
  o.max_queued_frames = 16;
  PeerTransport a{io, o, [](Message) {}};
  // A port with no listener: connecting fails, then backoff.
  asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto dead_port = probe.local_endpoint().port();
  probe.close();
  a.set_peer(NodeId{2}, "127.0.0.1", dead_port);
  for (std::uint64_t i = 0; i < 1000; ++i) a.send(heartbeat(1, 2, i));
  EXPECT_GE(a.stats().dropped, 1000u - 16u);
  run_until(io, [&] { return false; }, 100ms);
  EXPECT_EQ(a.stats().frames_sent, 0u);
}

TEST(PeerTransport, ReconnectsWithBackoffAfterThePeerRestarts) {
  asio::io_context io;
  std::vector<Message> got;
  PeerTransport a{io, options(1), [](Message) {}};
  auto b = std::make_unique<PeerTransport>(io, options(2), [&](Message m) { got.push_back(std::move(m)); });
  auto port = b->listen("127.0.0.1", 0);
  a.set_peer(NodeId{2}, "127.0.0.1", port);
  a.send(heartbeat(1, 2, 1));
  ASSERT_TRUE(run_until(io, [&] { return got.size() == 1; }));
  b->stop();
  b.reset();
  // While the peer is down, sends fail and back off; after it is back, they get through again.
  for (int i = 0; i < 20; ++i) {
    a.send(heartbeat(1, 2, 100));
    run_until(io, [&] { return false; }, 5ms);
  }
  auto b2 = std::make_unique<PeerTransport>(io, options(2), [&](Message m) { got.push_back(std::move(m)); });
  b2->listen("127.0.0.1", port);
  ASSERT_TRUE(run_until(io, [&] {
    a.send(heartbeat(1, 2, 200));
    for (auto& g : got)
      if (std::get<raft::HeartbeatRequest>(g.body).read_seq == 200) return true;
    return false;
  }));
  EXPECT_GE(a.stats().connects, 2u);
}

}  // namespace
}  // namespace tern::net
