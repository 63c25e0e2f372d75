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

const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";

PeerTransportOptions options(std::uint64_t self, std::uint64_t cluster = kCluster, std::string secret = "") {
  PeerTransportOptions o;
  o.secret = std::move(secret);
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
void le_put(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

bool run_until(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) {
    io.restart();
    io.run_for(5ms);
  }
  return done();
}

struct Fixture {
  explicit Fixture(std::string secret = "", PeerTransportOptions ob = options(2))
      : a{io, options(1, kCluster, secret), [](Message) {}},
        b{io, with_secret(ob, secret), [this](Message m) { got_b.push_back(std::move(m)); }} {
    port_b = b.listen("127.0.0.1", 0);
    a.set_peer(NodeId{2}, "127.0.0.1", port_b);
    // b accepts frames only from members; it never sends in these tests, so the port is moot.
    b.set_peer(NodeId{1}, "127.0.0.1", 1);
    b.set_peer(NodeId{3}, "127.0.0.1", 1);
  }
  static PeerTransportOptions with_secret(PeerTransportOptions o, const std::string& secret) {
    o.secret = secret;
    return o;
  }
  asio::io_context io;
  std::vector<Message> got_b;
  PeerTransport a;
  PeerTransport b;
  std::uint16_t port_b = 0;
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
  b->set_peer(NodeId{1}, "127.0.0.1", 1);
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
  b2->set_peer(NodeId{1}, "127.0.0.1", 1);
  ASSERT_TRUE(run_until(io, [&] {
    a.send(heartbeat(1, 2, 200));
    for (auto& g : got)
      if (std::get<raft::HeartbeatRequest>(g.body).read_seq == 200) return true;
    return false;
  }));
  EXPECT_GE(a.stats().connects, 2u);
}

// ---- issue 17: authentication, header checks, bounded buffers, slots and timeouts ----------

// A raw TCP client on the io_context: sends bytes, never reads.
struct Raw {
  explicit Raw(asio::io_context& io, std::uint16_t port) : sock(io) {
    sock.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& bytes) { asio::write(sock, asio::buffer(bytes)); }
  bool closed_by_peer(asio::io_context& io) {
    // The transport closes a refused connection: a read sees EOF or a reset.
    return run_until(io, [&] {
      sock.non_blocking(true);
      char c;
      asio::error_code ec;
      sock.read_some(asio::buffer(&c, 1), ec);
      return ec && ec != asio::error::would_block;
    }, 3s);
  }
  asio::ip::tcp::socket sock;
};

std::string framed(const std::string& payload) {
  std::string f;
  le_put(f, PeerTransport::kFrameMagic);
  le_put(f, static_cast<std::uint32_t>(payload.size()));
  return f + payload;
}

TEST(PeerTransportSecurity, AuthenticatedPeersDeliverAndTheSenderIsBound) {
  Fixture f(kSecret);
  for (std::uint64_t i = 1; i <= 200; ++i) f.a.send(heartbeat(1, 2, i));
  ASSERT_TRUE(run_until(f.io, [&] { return f.got_b.size() == 200; })) << f.got_b.size();
  EXPECT_EQ(f.b.stats().handshakes, 1u);
  EXPECT_EQ(f.b.stats().auth_failed, 0u);
  // A member that claims to be another member on its authenticated connection is cut off.
  f.a.send(heartbeat(3, 2, 999));
  ASSERT_TRUE(run_until(f.io, [&] { return f.b.stats().malformed >= 1; }));
  EXPECT_EQ(f.got_b.size(), 200u);
}

TEST(PeerTransportSecurity, WrongSecretAndRawFramesAreRefusedAtTheHandshake) {
  Fixture f(kSecret);
  PeerTransport impostor{f.io, options(1, kCluster, std::string(kSecret).replace(0, 1, "X")), [](Message) {}};
  impostor.set_peer(NodeId{2}, "127.0.0.1", f.port_b);
  impostor.send(heartbeat(1, 2, 1));
  // The impostor fails to verify b's proof (and never proves its own): no frame is read.
  ASSERT_TRUE(run_until(f.io, [&] { return impostor.stats().auth_failed >= 1; }));
  // A well-formed, correctly addressed frame without the handshake (the 88-byte forged heartbeat
  // of issue 17) is refused before it is decoded.
  Raw raw(f.io, f.port_b);
  raw.send(framed(encode_peer_frame(kCluster, heartbeat(1, 2, 7))));
  EXPECT_TRUE(raw.closed_by_peer(f.io));
  EXPECT_GE(f.b.stats().auth_failed, 1u);
  EXPECT_TRUE(f.got_b.empty());
  f.a.send(heartbeat(1, 2, 5));  // members are unaffected
  EXPECT_TRUE(run_until(f.io, [&] { return f.got_b.size() == 1; }));
}

TEST(PeerTransportSecurity, InsecureConnectionIsBoundToItsFirstSenderWhoMustBeAMember) {
  Fixture f;
  Raw stranger(f.io, f.port_b);
  stranger.send(framed(encode_peer_frame(kCluster, heartbeat(9, 2, 1))));  // 9 is no member
  EXPECT_TRUE(stranger.closed_by_peer(f.io));
  Raw switcher(f.io, f.port_b);
  switcher.send(framed(encode_peer_frame(kCluster, heartbeat(1, 2, 1))) +
                framed(encode_peer_frame(kCluster, heartbeat(3, 2, 2))));
  EXPECT_TRUE(switcher.closed_by_peer(f.io));
  EXPECT_EQ(f.got_b.size(), 1u);  // only the first frame of the switcher
  EXPECT_GE(f.b.stats().malformed, 2u);
}

TEST(PeerTransportSecurity, ALengthClaimAllocatesOnlyWhatArrives) {
  Fixture f;
  std::vector<std::unique_ptr<Raw>> conns;
  for (int i = 0; i < 50; ++i) {
    conns.push_back(std::make_unique<Raw>(f.io, f.port_b));
    std::string header;
    le_put(header, PeerTransport::kFrameMagic);
    le_put(header, static_cast<std::uint32_t>(max_peer_frame_bytes));  // the largest allowed frame...
    conns.back()->send(header + std::string(100, 'x'));                // ...of which 108 bytes arrive
  }
  run_until(f.io, [&] { return f.b.inbound_connections() == 50; });
  run_until(f.io, [] { return false; }, 100ms);
  EXPECT_EQ(f.b.inbound_connections(), 50u);
  // Before issue 17: 50 x 16 MiB (64 MiB each with the old limit). Now a few KiB each.
  EXPECT_LE(f.b.inbound_buffered_bytes(), 50 * PeerTransport::kInitialReadBuffer);
  // A claim over the frame limit closes the connection at once.
  Raw big(f.io, f.port_b);
  std::string header;
  le_put(header, PeerTransport::kFrameMagic);
  le_put(header, static_cast<std::uint32_t>(64u << 20));
  big.send(header);
  EXPECT_TRUE(big.closed_by_peer(f.io));
}

TEST(PeerTransportSecurity, PendingSlotsEvictTheOldestAndTimeOut) {
  auto ob = options(2);
  ob.max_pending_connections = 4;
  ob.handshake_timeout = 300ms;
  Fixture f(kSecret, ob);
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(std::make_unique<Raw>(f.io, f.port_b));
  run_until(f.io, [&] { return f.b.stats().evicted >= 6; });
  EXPECT_GE(f.b.stats().evicted, 6u);
  EXPECT_LE(f.b.inbound_connections(), 4u);
  // A member still gets in while the pending slots are full of idle sockets.
  f.a.send(heartbeat(1, 2, 1));
  EXPECT_TRUE(run_until(f.io, [&] { return f.got_b.size() == 1; }));
  // The idle sockets are closed by the handshake timeout; the member's connection stays.
  EXPECT_TRUE(run_until(f.io, [&] { return f.b.inbound_connections() == 1; }));
  EXPECT_GE(f.b.stats().timed_out, 1u);
}

TEST(PeerTransportSecurity, StructurallyMalformedMessagesCloseTheConnectionBeforeTheCore) {
  Fixture f(kSecret);
  // From an authenticated member, an AppendRequest whose entry does not follow prev_index (the
  // "wrong entry index" frame of issue 17 that aborted a follower): refused, counted, not delivered.
  Message bad{NodeId{1}, NodeId{2}, Term{3},
              raft::AppendRequest{Index{10}, Term{3}, {raft::Entry{Term{3}, Index{17}, raft::EntryType::normal, "x"}}, Index{10}}};
  f.a.send(bad);
  ASSERT_TRUE(run_until(f.io, [&] { return f.b.stats().malformed >= 1; }));
  EXPECT_TRUE(f.got_b.empty());
  // The member reconnects and well-formed traffic flows again.
  EXPECT_TRUE(run_until(f.io, [&] {
    f.a.send(heartbeat(1, 2, 1));
    return !f.got_b.empty();
  }));
}

}  // namespace
}  // namespace tern::net
