#pragma once
// Node: the Asio shell around one Replica (service/replica.h) that ternd runs (design.md §1a, §5).
//
// One asio::io_context thread owns the replica, the peer transport and the tick timer. The shell
// implements the replica's interfaces and nothing more: the transport over net::PeerTransport,
// the steady and system clocks, and an executor that writes small WAL batches inline on the loop
// thread and larger ones through the WAL's disk thread (group commit, the result posted back),
// and writes snapshot files on a snapshot thread, one at a time. Every decision about what to
// persist, send or apply, and when, is the replica's: no behaviour lives only here.
#include <asio.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "service/applier.h"
#include "service/metrics.h"
#include "service/net/peer_transport.h"
#include "service/replica.h"

namespace tern::service {

class Node final : ReplicaTransport, ReplicaClock, ReplicaExecutor {
 public:
  // Opens the data directory and recovers the replica (Replica::open). Errors are
  // operator-readable text.
  static Result<std::unique_ptr<Node>, std::string> open(asio::io_context& io, NodeOptions options,
                                                         std::unique_ptr<Applier> applier, Metrics& metrics);
  ~Node() override;

  // Starts the peer listener (on this node's address in the cluster) and the tick timer.
  void start();
  // Fails every pending proposal with shutting_down and stops timers and connections.
  void stop();

  // `request_id` (0: none) names the client's request in this node's and the leader's log lines.
  void propose(std::string command, ProposeCallback done, std::uint64_t request_id = 0) {
    replica_->propose(std::move(command), std::move(done), request_id);
  }
  void add_member(raft::NodeId id, std::string address, bool learner, ProposeCallback done) {
    replica_->add_member(id, std::move(address), learner, std::move(done));
  }
  void promote_member(raft::NodeId id, ProposeCallback done) { replica_->promote_member(id, std::move(done)); }
  void remove_member(raft::NodeId id, ProposeCallback done) { replica_->remove_member(id, std::move(done)); }
  Result<void, NodeError> transfer_leadership(raft::NodeId to) { return replica_->transfer_leadership(to); }
  void read(std::string query, ReadCallback done) { replica_->read(std::move(query), std::move(done)); }
  void snapshot_now(SnapshotCallback done) { replica_->snapshot_now(std::move(done)); }

  // Tests: drop all peer traffic to and from `peers` (empty heals). Refused unless enabled.
  Result<void, NodeError> inject_partition(const std::vector<raft::NodeId>& peers);

  NodeStatus status() const { return replica_->status(); }
  std::string status_json() const { return replica_->status_json(); }
  std::uint64_t digest() const { return replica_->digest(); }
  // /readyz: a leader is known and the applied index is close to the commit index.
  bool is_ready() const { return replica_->is_ready(); }
  void update_metrics();  // copies the hot-path counters into the registry before rendering

 private:
  Node(asio::io_context& io, NodeOptions options, Metrics& metrics);
  void on_tick();

  // ReplicaTransport
  void send(const raft::Message& m) override;
  void set_peer(raft::NodeId id, const std::string& address) override;
  void remove_peer(raft::NodeId id) override;
  // ReplicaClock
  std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now(); }
  std::uint64_t wall_ms() override;
  // ReplicaExecutor
  void post(std::function<void()> fn) override;
  void write(storage::Wal& wal, storage::WriteBatch batch, WalDone done) override;
  void save_snapshot(std::function<SnapshotResult()> work, std::function<void(SnapshotResult)> done) override;

  asio::io_context& io_;
  NodeOptions opt_;
  Metrics& metrics_;
  std::unique_ptr<net::PeerTransport> transport_;
  std::unique_ptr<Replica> replica_;
  asio::steady_timer tick_timer_;
  std::chrono::steady_clock::time_point next_tick_;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards handlers posted from other threads
  asio::thread_pool snapshot_pool_{1};  // writes snapshot files, one at a time
};

}  // namespace tern::service
