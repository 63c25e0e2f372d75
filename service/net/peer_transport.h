#pragma once
// The peer transport: Raft messages between ternd nodes as framed Cap'n Proto messages over
// TCP, on the node's asio::io_context (docs/protocol.md).
//
// Each node keeps one outbound connection per peer and only writes on it; it only reads on the
// connections it accepts. Raft messages are one-way and tolerate loss, so the transport never
// retries a message: a full queue drops (and counts) the message, a broken connection drops its
// queue, and the core's own timers resend what matters. Outbound connections are re-established
// with exponential backoff. Snapshots are streamed in chunks, the next chunk queued only when the
// peer's queue has drained below a low-water mark (TCP back-pressure is the flow control).
// Inbound connections (docs/security.md): with a cluster secret, a connection must complete the
// challenge-response handshake (peer_auth.h) within handshake_timeout before a single frame is
// read, and then every frame carries a MAC and must come from the authenticated member to us.
// Without one (--insecure), a connection is bound to the sender of its first frame, which must be
// a member. Before a body is decoded the header is checked (magic, length bound, cluster, from,
// to); buffers grow only as bytes arrive, within a per-node budget, and snapshot reassembly has a
// per-node total. Any violation closes that connection and is counted; warnings are rate-limited.
// Unauthenticated connections have their own slots: when they are full the oldest is evicted, so
// they cannot starve members, who hold one authenticated connection each.
#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "raft/messages.h"
#include "service/net/rate_limited.h"

namespace tern::net {

struct PeerTransportOptions {
  std::uint64_t cluster_id = 0;
  raft::NodeId self;
  std::size_t max_queue_bytes = 64 << 20;         // per peer; beyond it messages are dropped
  std::size_t max_queued_frames = 8192;           // per peer
  std::size_t snapshot_chunk_bytes = 1 << 20;
  std::size_t snapshot_low_water_bytes = 2 << 20; // queue the next chunk below this
  // Peer authentication: the cluster secret (at least kMinSecretBytes). Empty: no
  // authentication (ternd --insecure); any host that can reach the port can speak Raft.
  std::string secret;
  std::size_t max_snapshot_bytes = std::size_t{1} << 30;  // reassembly, all inbound connections together
  std::size_t max_inbound_buffer_bytes = 128 << 20;        // frame buffers, all inbound connections together
  std::size_t max_inbound_connections = 256;  // authenticated (or, insecure, identified) connections
  std::size_t max_pending_connections = 64;   // not yet authenticated; the oldest is evicted when full
  std::chrono::milliseconds handshake_timeout{2000};  // to authenticate (or send a first frame)
  std::chrono::milliseconds idle_timeout{300000};     // an inbound connection with no bytes at all
  std::chrono::milliseconds backoff_min{20};
  std::chrono::milliseconds backoff_max{1000};
  std::function<void(const std::string&)> warn;   // connection errors, rejected frames
};

struct PeerTransportStats {
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t dropped = 0;          // queue full or no connection
  std::uint64_t rejected = 0;         // inbound frames or connections refused (all causes)
  std::uint64_t malformed = 0;        // frames that failed the header checks or decoding
  std::uint64_t auth_failed = 0;      // handshakes or frame MACs that did not verify
  std::uint64_t handshakes = 0;       // inbound connections authenticated
  std::uint64_t timed_out = 0;        // inbound connections closed by the handshake or idle timeout
  std::uint64_t evicted = 0;          // pending connections evicted for a newer one
  std::uint64_t blocked = 0;          // dropped by fault injection
  std::uint64_t connects = 0;
  std::uint64_t snapshots_sent = 0;
  std::uint64_t snapshots_received = 0;
};

class PeerTransport {
 public:
  using Deliver = std::function<void(raft::Message)>;

  static constexpr std::uint32_t kFrameMagic = 0x314e5254;  // "TRN1" little-endian
  static constexpr std::size_t kFrameHeaderBytes = 8;        // magic u32 | length u32
  static constexpr std::size_t kInitialReadBuffer = 4096;    // grows (x2) only as a frame arrives

  PeerTransport(asio::io_context& io, PeerTransportOptions options, Deliver deliver);
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Binds the peer listener; returns the bound port (useful with port 0).
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  void set_peer(raft::NodeId id, const std::string& host, std::uint16_t port);
  void remove_peer(raft::NodeId id);
  bool has_peer(raft::NodeId id) const { return peers_.count(id) != 0; }
  bool authenticated() const { return !opt_.secret.empty(); }
  std::size_t inbound_connections() const { return inbound_.size(); }
  std::size_t inbound_buffered_bytes() const { return buffered_bytes_; }

  // Fault injection for tests (ternd --debug-fault-injection): drop every frame to and from
  // these peers, as a network partition would. Empty: heal.
  void set_blocked(std::set<raft::NodeId> peers) { blocked_ = std::move(peers); }

  void send(const raft::Message& m);
  // An InstallSnapshotRequest with its data attached: streamed in chunks.
  void send_snapshot(const raft::Message& m);
  void stop();

  const PeerTransportStats& stats() const { return stats_; }
  // Round-trip estimate per peer is left to the node (it sees requests and replies).

 private:
  struct Peer;
  struct Inbound;
  void connect(const std::shared_ptr<Peer>& p);
  void handshake(const std::shared_ptr<Peer>& p);
  void on_connected(const std::shared_ptr<Peer>& p);
  void on_broken(const std::shared_ptr<Peer>& p, const std::string& why);
  void enqueue(Peer& p, std::string frame);
  void pump(const std::shared_ptr<Peer>& p);
  void refill_snapshot(Peer& p);
  void accept();
  void read_more(const std::shared_ptr<Inbound>& in);
  bool parse(Inbound& in);
  bool parse_handshake(Inbound& in);
  void close_inbound(Inbound& in);
  void evict_oldest_pending();
  void sweep();
  void warn(const std::string& text);

  asio::io_context& io_;
  PeerTransportOptions opt_;
  Deliver deliver_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::unique_ptr<asio::steady_timer> accept_retry_;
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers_;
  std::map<Inbound*, std::shared_ptr<Inbound>> inbound_;
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  std::uint64_t next_serial_ = 0;
  std::size_t buffered_bytes_ = 0;   // read buffers of every inbound connection
  std::size_t snapshot_bytes_ = 0;   // snapshot reassembly of every inbound connection
  PeerTransportStats stats_;
  RateLimitedWarn warn_;
  std::set<raft::NodeId> blocked_;
  // Shared with every pending Asio handler: a handler that runs after stop() or after this
  // object is gone sees true and does nothing.
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);
};

}  // namespace tern::net
