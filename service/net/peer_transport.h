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
// Inbound frames are checked (magic, length bound, decodable, our cluster id, addressed to us);
// any violation closes that connection with a logged warning.
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

namespace tern::net {

struct PeerTransportOptions {
  std::uint64_t cluster_id = 0;
  raft::NodeId self;
  std::size_t max_queue_bytes = 64 << 20;         // per peer; beyond it messages are dropped
  std::size_t max_queued_frames = 8192;           // per peer
  std::size_t snapshot_chunk_bytes = 1 << 20;
  std::size_t snapshot_low_water_bytes = 2 << 20; // queue the next chunk below this
  std::size_t max_snapshot_bytes = std::size_t{4} << 30;  // reassembly bound on the receiver
  std::size_t max_inbound_connections = 256;
  std::chrono::milliseconds backoff_min{20};
  std::chrono::milliseconds backoff_max{1000};
  std::function<void(const std::string&)> warn;   // connection errors, rejected frames
};

struct PeerTransportStats {
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t dropped = 0;          // queue full or no connection
  std::uint64_t rejected = 0;         // inbound frames or connections refused
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

  PeerTransport(asio::io_context& io, PeerTransportOptions options, Deliver deliver);
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Binds the peer listener; returns the bound port (useful with port 0).
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  void set_peer(raft::NodeId id, const std::string& host, std::uint16_t port);
  void remove_peer(raft::NodeId id);
  bool has_peer(raft::NodeId id) const { return peers_.count(id) != 0; }

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
  void on_broken(const std::shared_ptr<Peer>& p, const std::string& why);
  void enqueue(Peer& p, std::string frame);
  void pump(const std::shared_ptr<Peer>& p);
  void refill_snapshot(Peer& p);
  void accept();
  void read_more(const std::shared_ptr<Inbound>& in);
  bool parse_frames(Inbound& in);
  void warn(const std::string& text);

  asio::io_context& io_;
  PeerTransportOptions opt_;
  Deliver deliver_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::unique_ptr<asio::steady_timer> accept_retry_;
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers_;
  std::map<Inbound*, std::shared_ptr<Inbound>> inbound_;
  PeerTransportStats stats_;
  std::set<raft::NodeId> blocked_;
  // Shared with every pending Asio handler: a handler that runs after stop() or after this
  // object is gone sees true and does nothing.
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);
};

}  // namespace tern::net
