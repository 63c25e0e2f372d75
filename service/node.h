#pragma once
// Node: the driver that turns the pure Raft core into a server (design.md §1a, §5).
//
// One asio::io_context thread owns everything here: the core, the state machine (through the
// Applier interface), the peer transport, the pending proposals and the timers. The WAL's disk
// thread does the writes and the group-commit fdatasync and posts the result back. The Ready
// loop follows raft/ready.h: persist, then send, then apply, then advance; only one Ready is in
// flight, so proposals arriving during a write batch up into the next one (group commit).
// Snapshot files are written on a snapshot thread (one at a time); a received snapshot holds its
// Ready until its file is durable.
// The leader's AppendEntries leave before its own write completes (Raft thesis §10.2.1): the
// core counts the leader's own entries only once they are durable (Core::advance).
//
// Log entry payloads (docs/protocol.md): byte 0 is the kind;
//   1 = command:        cluster_time_ms u64 LE | command bytes   (to the Applier)
//   2 = member address: node id u64 LE | "host:port"             (the replicated address book)
#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "raft/core.h"
#include "raft/storage/data_dir.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"
#include "service/applier.h"
#include "service/metrics.h"
#include "service/net/peer_transport.h"

namespace tern::service {

struct NodeOptions {
  raft::NodeId id;
  std::uint64_t cluster_id = 0;
  std::string data_dir;
  std::map<raft::NodeId, std::string> initial_cluster;  // id -> "host:port"
  bool bootstrap = true;  // a new cluster of initial_cluster; false: join an existing one
  std::chrono::milliseconds tick{100};
  std::uint32_t election_ticks = 10;
  std::uint64_t snapshot_entries = 10000;
  std::size_t max_pending_proposals = 65536;
  std::size_t inline_write_max_entries = 2;
  std::size_t max_pending_reads = 65536;
  std::string peer_secret;  // cluster secret for the peer handshake (net/peer_auth.h); empty: insecure
  bool fault_injection = false;  // allow inject_partition (tests only)  // smaller batches are written on the loop thread
};

enum class NodeErrc : std::uint8_t {
  not_leader,           // leader_hint names the leader this node believes in (0: none known)
  unknown_outcome,      // the entry was overwritten or the node stopped: it may or may not apply
  busy,                 // too many pending proposals or uncommitted bytes; retry later
  too_large,
  conf_change_pending,  // one membership change at a time
  transfer_in_progress,
  invalid,              // e.g. removing a node that is not a member
  shutting_down,
  timed_out,            // a read found no confirmed leader in time; nothing changed
};
const char* node_errc_name(NodeErrc e);

struct NodeError {
  NodeErrc code;
  raft::NodeId leader_hint;
  std::string message;
};

struct Committed {
  raft::Index index;
  raft::Term term;
  std::string response;  // the Applier's response (empty for membership changes)
};
using ProposeCallback = std::function<void(Result<Committed, NodeError>)>;

struct ReadResult {
  raft::Index index;     // the read index: the state read includes every entry up to it
  std::string response;  // the Applier's answer to the query
};
using ReadCallback = std::function<void(Result<ReadResult, NodeError>)>;

struct MemberStatus {
  raft::NodeId id;
  std::string address;
  bool voter = false;
  raft::Index match;  // known on the leader only
};

struct NodeStatus {
  raft::NodeId id;
  std::string role;
  raft::Term term;
  raft::NodeId leader;
  raft::Index commit, applied, last, snapshot;
  std::vector<MemberStatus> members;
  std::uint64_t applied_commands = 0;
  std::uint64_t digest = 0;
  std::size_t pending = 0;
};

class Node {
 public:
  // Opens the data directory (checking the recorded cluster and node ids), recovers the newest
  // snapshot and the WAL, and rebuilds the core. Errors are operator-readable text.
  static Result<std::unique_ptr<Node>, std::string> open(asio::io_context& io, NodeOptions options,
                                                         std::unique_ptr<Applier> applier, Metrics& metrics);
  ~Node();

  // Starts the peer listener (on this node's address in the cluster) and the tick timer.
  void start();
  // Fails every pending proposal with shutting_down and stops timers and connections.
  void stop();

  void propose(std::string command, ProposeCallback done);
  void add_member(raft::NodeId id, std::string address, bool learner, ProposeCallback done);
  void promote_member(raft::NodeId id, ProposeCallback done);
  void remove_member(raft::NodeId id, ProposeCallback done);
  Result<void, NodeError> transfer_leadership(raft::NodeId to);
  // A linearizable read without a log entry (ReadIndex, thesis §6.4), on the leader or on a
  // follower (which asks the leader for the read index and waits until it has applied it).
  void read(std::string query, ReadCallback done);

  // Tests: drop all peer traffic to and from `peers` (empty heals). Refused unless enabled.
  Result<void, NodeError> inject_partition(const std::vector<raft::NodeId>& peers);

  NodeStatus status() const;
  std::string status_json() const;
  // /readyz: a leader is known and the applied index is close to the commit index.
  bool is_ready() const;
  void update_metrics();  // copies the hot-path counters into the registry before rendering

 private:
  Node(asio::io_context& io, NodeOptions options, std::unique_ptr<Applier> applier, Metrics& metrics);
  Result<void, std::string> recover();

  void on_tick();
  void on_message(raft::Message m);
  void flush_deferred_hard_state(bool now);
  void expire_orphaned_proposals();
  void on_read_states(std::vector<raft::ReadState>& states);
  void serve_reads();
  void expire_reads();
  void schedule_drive();
  void drive();
  void write_ready(const std::shared_ptr<raft::Ready>& rd);
  void persisted(const std::shared_ptr<raft::Ready>& rd);
  void send(const raft::Message& m);
  void apply_entry(const raft::Entry& e);
  void apply_snapshot(const raft::Snapshot& s);
  void maybe_snapshot();
  void snapshot_saved(const raft::SnapshotMeta& meta, const std::shared_ptr<const std::string>& data,
                      const Result<storage::SnapshotFile, storage::StorageError>& f);
  void resolve(raft::Index index, raft::Term term, std::string response);
  void propose_raw(std::string payload, ProposeCallback done);
  void propose_conf(const raft::ConfChange& cc, ProposeCallback done);
  void track(raft::Index index, ProposeCallback done);
  NodeError error_from(const raft::ProposeError& e) const;
  void set_address(raft::NodeId id, const std::string& address);
  void observe_leader();
  [[noreturn]] void fatal(const std::string& what);

  std::string encode_state() const;
  Result<void, std::string> decode_state(std::string_view data);
  std::shared_ptr<const std::string> snapshot_data(raft::Index index);

  asio::io_context& io_;
  NodeOptions opt_;
  std::unique_ptr<Applier> applier_;
  Metrics& metrics_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::unique_ptr<storage::Wal> wal_;
  std::unique_ptr<raft::Core> core_;
  std::unique_ptr<net::PeerTransport> transport_;
  asio::steady_timer tick_timer_;
  std::chrono::steady_clock::time_point next_tick_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards handlers posted by the disk thread

  std::map<raft::NodeId, std::string> addresses_;  // the replicated address book
  struct Pending {
    raft::Term term;
    ProposeCallback done;
    std::chrono::steady_clock::time_point start;
  };
  std::map<raft::Index, Pending> pending_;
  struct PendingRead {
    std::string query;
    ReadCallback done;
    std::chrono::steady_clock::time_point start;
  };
  std::map<std::uint64_t, PendingRead> reads_;               // by read id (the ReadIndex context)
  std::multimap<raft::Index, std::uint64_t> reads_at_;       // confirmed, waiting to apply the index
  std::uint64_t next_read_id_ = 0;
  std::uint64_t reads_served_ = 0;
  bool drive_posted_ = false;
  bool persisting_ = false;
  bool stopped_ = false;
  raft::Index applied_;
  raft::HardState written_hs_;                 // the newest hard state handed to the WAL
  std::optional<raft::HardState> deferred_hs_;  // a newer commit index not yet written
  int ticks_since_flush_ = 0;
  std::uint64_t last_cluster_time_ms_ = 0;

  // Snapshots on disk this node can send (the two newest), and a cache of one's bytes.
  std::map<raft::Index, storage::SnapshotFile> snapshot_files_;
  raft::Index snapshot_cache_index_;
  std::shared_ptr<const std::string> snapshot_cache_;
  raft::Index last_snapshot_index_;
  bool snapshot_saving_ = false;
  asio::thread_pool snapshot_pool_{1};  // writes this node's own snapshot files

  // Hot-path counters (copied into metrics_ by update_metrics()).
  raft::NodeId last_leader_;
  std::uint64_t leader_changes_ = 0;
  std::uint64_t proposals_committed_ = 0;
  std::uint64_t proposals_failed_ = 0;
  std::uint64_t entries_applied_ = 0;
  std::uint64_t snapshots_taken_ = 0;
  std::uint64_t snapshots_installed_ = 0;
  LatencyHistogram& fsync_hist_;
  LatencyHistogram& commit_hist_;
  LatencyHistogram& rtt_hist_;
  std::map<raft::NodeId, std::chrono::steady_clock::time_point> heartbeat_sent_;
};

}  // namespace tern::service
