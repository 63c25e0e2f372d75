#pragma once
// Replica: one tern node's logic, deterministic and free of Asio (issue 10, docs/architecture.md).
//
// It owns the Raft core, the state machine (through the Applier interface), the pending
// proposals and reads, the Ready loop (persist, then send, then apply, then advance;
// raft/ready.h), snapshots, recovery and the replicated address book. It reaches the world only
// through the interfaces below: storage on storage::Io through the real DataDir, Wal and
// SnapshotStore; a ReplicaTransport; a ReplicaClock; and a ReplicaExecutor that decides where
// and when a WAL batch or a snapshot file is written and when posted work runs. ternd's Asio
// shell (service/node.h) implements them with sockets, timers and threads; the whole-node
// simulator (tests/sim/node_sim.h) with a simulated network, virtual time and a simulated
// file system, so the code that runs in ternd is the code under simulation.
//
// One Ready is in flight at a time, so proposals arriving during a write batch up into the next
// one (group commit). The leader's AppendEntries leave before its own write completes (Raft
// thesis §10.2.1) only when the Ready does not change the term or vote: the core counts the
// leader's own entries only once they are durable (Core::advance).
//
// Log entry payloads (docs/protocol.md): byte 0 is the kind;
//   1 = command:        cluster_time_ms u64 LE | command bytes   (to the Applier)
//   2 = member address: node id u64 LE | "host:port"             (the replicated address book)
//   3 = client address: node id u64 LE | "host:port"             (where its clients connect)
// A kind-3 entry is proposed by the leader for itself, or for a follower that forwarded its own
// client address (raft::ProposeRequest::kind 3): the id is always the announcing node's.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "raft/core.h"
#include "raft/storage/data_dir.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"
#include "service/applier.h"
#include "service/metrics.h"

namespace tern::service {

struct NodeOptions {
  raft::NodeId id;
  std::uint64_t cluster_id = 0;
  std::string data_dir;
  std::map<raft::NodeId, std::string> initial_cluster;  // id -> "host:port"
  // This node's client address (ternd --client-addr), made replicated state so that clients
  // can learn every member's (issue 13). Empty: none announced.
  std::string client_address;
  bool bootstrap = true;  // a new cluster of initial_cluster; false: join an existing one
  std::chrono::milliseconds tick{100};
  std::uint32_t election_ticks = 10;
  // As etcd's --snapshot-count and ZooKeeper's snapCount (100,000): each snapshot writes the whole
  // state, so its cost per entry is the state's size over this (issue 14: at 10,000 snapshots were
  // ~15 % of a 1-node write run's throughput and tripled its p99).
  std::uint64_t snapshot_entries = 100000;
  // A snapshot's state is captured on the loop in slices of about this many bytes, other work
  // running between them (issue 14: about 1 ms each for the coordination state machine).
  std::size_t snapshot_slice_bytes = 256 << 10;
  std::size_t max_pending_proposals = 65536;
  std::size_t inline_write_max_entries = 2;  // smaller batches are written on the loop thread
  std::size_t max_pending_reads = 65536;
  std::string peer_secret;  // cluster secret for the peer handshake (net/peer_auth.h); empty: insecure
  bool fault_injection = false;  // allow inject_partition (tests only)
  std::size_t wal_segment_bytes = 64 << 20;  // WAL segment size (preallocated)
  // The state machine's clock moves only with entries (service/sm/state_machine.h, TIME): a
  // leader that proposed nothing for clock_tick_every ticks proposes this command (if not empty).
  std::string clock_tick_command;
  std::uint32_t clock_tick_every = 3;
  // The seed of the core's election timer; 0: drawn from the clock at open.
  std::uint64_t raft_seed = 0;
  // Recovery from a lost quorum (ternd --force-new-cluster, docs/operations.md): at open, a
  // data dir with state gets one more log entry making this node the only voter, committed.
  bool force_new_cluster = false;
  // Tests: observers of every message just before it is handed to the transport, of every
  // entry applied (in order, after the Applier) and of every snapshot restored.
  std::function<void(const raft::Message&)> on_send;
  std::function<void(const raft::Entry&)> on_apply;
  std::function<void(const raft::SnapshotMeta&)> on_restore;
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
// A durable snapshot file of this node (snapshot_now).
using SnapshotCallback = std::function<void(Result<storage::SnapshotFile, NodeError>)>;

struct MemberStatus {
  raft::NodeId id;
  std::string address;
  std::string client_address;  // as the cluster announced it (empty: not yet known)
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
  std::size_t pending = 0;
};

// The peer network as the replica sees it. An InstallSnapshotRequest carries its data.
class ReplicaTransport {
 public:
  virtual ~ReplicaTransport() = default;
  virtual void send(const raft::Message& m) = 0;
  virtual void set_peer(raft::NodeId id, const std::string& address) = 0;
  virtual void remove_peer(raft::NodeId id) = 0;
};

class ReplicaClock {
 public:
  virtual ~ReplicaClock() = default;
  virtual std::chrono::steady_clock::time_point now() = 0;  // deadlines, latencies
  virtual std::uint64_t wall_ms() = 0;                       // seeds cluster time in a fresh cluster
};

using WalDone = std::function<void(Result<raft::Index, storage::StorageError>)>;
using SnapshotResult = Result<storage::SnapshotFile, storage::StorageError>;

// Where and when the replica's writes happen. Every `done` and every posted function runs on
// the replica's thread, one at a time; `done` may run inside the call (an inline write).
class ReplicaExecutor {
 public:
  virtual ~ReplicaExecutor() = default;
  // Runs fn later (never inside this call).
  virtual void post(std::function<void()> fn) = 0;
  // Writes and syncs one WAL batch through `wal` (batches in submission order), then done.
  virtual void write(storage::Wal& wal, storage::WriteBatch batch, WalDone done) = 0;
  // Writes one snapshot file (work), then done with its result.
  virtual void save_snapshot(std::function<SnapshotResult()> work, std::function<void(SnapshotResult)> done) = 0;
};

struct ReplicaEnv {
  storage::Io* io = nullptr;  // nullptr: the real file system
  ReplicaTransport* transport = nullptr;
  ReplicaClock* clock = nullptr;
  ReplicaExecutor* executor = nullptr;
  // A failed write or fsync: never continue (fail-stop, design.md §3). Must not return; the
  // default logs and exits the process. The simulator crashes the replica instead.
  std::function<void(const std::string&)> fatal;
};

class Replica {
 public:
  // Opens the data directory (checking the recorded cluster and node ids), recovers the newest
  // snapshot and the WAL, and rebuilds the core. A brand-new member of a new cluster writes the
  // initial membership durably here, before it takes part. Errors are operator-readable text.
  static Result<std::unique_ptr<Replica>, std::string> open(ReplicaEnv env, NodeOptions options,
                                                            std::unique_ptr<Applier> applier, Metrics& metrics);
  ~Replica();

  void start();  // begins driving the Ready loop
  // Fails every pending proposal and read with shutting_down.
  void stop();
  bool stopped() const { return stopped_; }
  // The simulator's kill -9: drops everything in memory without writing or answering anyone.
  void crash();

  void tick();
  // A peer message. A malformed one (raft/message_check.h, Core::step) changes nothing: it is
  // counted (tern_peer_messages_rejected_total), logged and returned so the transport may drop
  // the connection.
  Result<void, raft::StepError> step(raft::Message m);

  void propose(std::string command, ProposeCallback done, std::uint64_t request_id = 0);
  void add_member(raft::NodeId id, std::string address, bool learner, ProposeCallback done);
  void promote_member(raft::NodeId id, ProposeCallback done);
  void remove_member(raft::NodeId id, ProposeCallback done);
  Result<void, NodeError> transfer_leadership(raft::NodeId to);
  // A linearizable read without a log entry (ReadIndex, thesis §6.4), on the leader or on a
  // follower (which asks the leader for the read index and waits until it has applied it).
  void read(std::string query, ReadCallback done);
  // A durable snapshot file holding at least everything this node has applied now: its newest
  // one if that is recent enough, else one taken now, bypassing snapshot_entries (for `tern
  // snapshot save`). `done` runs once the file is durable; the file may be replaced by newer
  // snapshots later (two are kept), so the caller opens it at once.
  void snapshot_now(SnapshotCallback done);

  // Cheap (no pass over the state): health probes and every client connection call it.
  NodeStatus status() const;
  std::string status_json() const;
  // The applied state's digest: a pass over the whole state on the loop thread (about a second
  // at a million nodes), so only the admin Status call computes it, never a probe.
  std::uint64_t digest() const { return applier_->digest(); }
  bool is_ready() const;
  void update_metrics();

  // Views for the simulator's checks.
  const raft::Core& core() const { return *core_; }
  raft::Index applied() const { return applied_; }
  const Applier& applier() const { return *applier_; }
  bool persisting() const { return persisting_; }

 private:
  Replica(ReplicaEnv env, NodeOptions options, std::unique_ptr<Applier> applier, Metrics& metrics);
  Result<void, std::string> recover();

  void flush_deferred_hard_state(bool now);
  void maybe_propose_clock_tick();
  void expire_orphaned_proposals();
  void on_read_states(std::vector<raft::ReadState>& states);
  void serve_reads();
  void expire_reads();
  void schedule_drive();
  void drive();
  void write_ready(const std::shared_ptr<raft::Ready>& rd);
  void persisted(const std::shared_ptr<raft::Ready>& rd, bool sent_early);
  void send(const raft::Message& m);
  void apply_entry(const raft::Entry& e);
  void apply_snapshot(const raft::Snapshot& s);
  void maybe_snapshot();
  bool start_snapshot();
  void continue_capture();
  void abandon_capture();
  void serve_snapshot_waiters(const std::optional<NodeError>& failed = std::nullopt);
  Result<void, std::string> force_new_cluster(raft::RestoreState& rs);
  void snapshot_saved(const raft::SnapshotMeta& meta, const std::shared_ptr<const std::string>& data,
                      const SnapshotResult& f);
  void resolve(raft::Index index, raft::Term term, std::string response);
  void propose_raw(std::string payload, ProposeCallback done);
  void propose_conf(const raft::ConfChange& cc, ProposeCallback done);
  void track(raft::Index index, ProposeCallback done);
  void track(raft::Index index, raft::Term term, ProposeCallback done);
  std::string stamped(std::string_view command);
  std::uint64_t cluster_time_now();
  void on_forwarded(std::vector<raft::Forwarded>& forwarded);
  void on_placed(std::vector<raft::Placed>& placed);
  void expire_forwarding();
  NodeError error_from(const raft::ProposeError& e) const;
  void set_address(raft::NodeId id, const std::string& address);
  void maybe_announce_client_address();
  static std::string client_address_payload(raft::NodeId id, std::string_view address);
  void apply_client_address(raft::Index index, std::string_view data);
  void observe_leader();
  [[noreturn]] void fatal(const std::string& what);

  std::string encode_prefix() const;
  Result<void, std::string> decode_state(std::string_view data);
  std::shared_ptr<const std::string> snapshot_data(raft::Index index);

  ReplicaEnv env_;
  storage::Io& io_;
  NodeOptions opt_;
  std::unique_ptr<Applier> applier_;
  Metrics& metrics_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::unique_ptr<storage::Wal> wal_;
  std::unique_ptr<raft::Core> core_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted work and write callbacks

  std::map<raft::NodeId, std::string> addresses_;  // the replicated address book
  // The members' client addresses (entry kind 3), replicated like the book; a member's goes
  // with its removal. In snapshots from "TNS2" on.
  std::map<raft::NodeId, std::string> client_addresses_;
  bool announcing_ = false;                 // this node's client address is being proposed
  std::uint32_t announce_backoff_ = 0;  // ticks until the next try
  std::uint32_t announce_attempts_ = 0;
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
  // Commands this follower forwarded to its leader (thesis §6.2), by forward id, until the
  // leader says where it put them; then they wait in pending_ like the leader's own.
  struct Forwarding {
    ProposeCallback done;
    std::chrono::steady_clock::time_point start;
  };
  std::map<std::uint64_t, Forwarding> forwarding_;
  std::uint64_t next_forward_id_ = 0;
  std::multimap<raft::Index, std::uint64_t> reads_at_;       // confirmed, waiting to apply the index
  std::uint64_t next_read_id_ = 0;
  // Read contexts are (nonce, id): ids restart at every start, the nonce does not repeat, so a
  // ReadIndex answer meant for an earlier incarnation never serves a read of this one (found by
  // the whole-node simulator: tern-sim --node --seed 511 --voters 1 --spares 1).
  std::uint64_t read_nonce_ = 0;
  std::uint64_t reads_served_ = 0;
  bool started_ = false;
  bool drive_posted_ = false;
  bool persisting_ = false;
  bool stopped_ = false;
  raft::Index applied_;
  raft::HardState written_hs_;                 // the newest hard state handed to the WAL
  std::optional<raft::HardState> deferred_hs_;  // a newer commit index not yet written
  int ticks_since_flush_ = 0;
  std::uint32_t ticks_since_command_ = 0;  // for clock_tick_command
  std::uint64_t last_cluster_time_ms_ = 0;
  // The leader's cluster clock (cluster_time_now): cluster time `anchor_ms_` at monotonic time
  // `anchor_at_`, set in term `anchor_term_` (0: not set).
  std::uint64_t anchor_ms_ = 0;
  std::chrono::steady_clock::time_point anchor_at_;
  raft::Term anchor_term_;

  // Snapshots on disk this node can send (the two newest), and a cache of one's bytes.
  std::map<raft::Index, storage::SnapshotFile> snapshot_files_;
  raft::Index snapshot_cache_index_;
  std::shared_ptr<const std::string> snapshot_cache_;
  raft::Index last_snapshot_index_;
  bool snapshot_saving_ = false;  // a snapshot of this node is being captured or saved
  // The snapshot being captured in slices (the applier holds the state): its meta, the node's
  // own part of the state (encode_prefix) and an id, so a slice posted for an abandoned capture
  // does nothing.
  struct Capture {
    raft::SnapshotMeta meta;
    std::string prefix;
    std::uint64_t id = 0;
  };
  std::optional<Capture> capture_;
  std::uint64_t captures_ = 0;
  struct SnapshotWaiter {
    raft::Index at;  // the applied index when asked: the file must hold at least this
    SnapshotCallback done;
  };
  std::vector<SnapshotWaiter> snapshot_waiters_;

  // Hot-path counters (copied into metrics_ by update_metrics()).
  raft::NodeId last_leader_;
  std::uint64_t leader_changes_ = 0;
  std::uint64_t proposals_committed_ = 0;
  std::uint64_t proposals_failed_ = 0;
  std::uint64_t entries_applied_ = 0;
  std::uint64_t snapshots_taken_ = 0;
  std::uint64_t snapshots_installed_ = 0;
  std::uint64_t peer_messages_rejected_ = 0;
  LatencyHistogram& fsync_hist_;
  LatencyHistogram& commit_hist_;
  LatencyHistogram& rtt_hist_;
  std::map<raft::NodeId, std::chrono::steady_clock::time_point> heartbeat_sent_;
};

}  // namespace tern::service
