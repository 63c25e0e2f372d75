#pragma once
// Core: the Raft protocol as a pure, deterministic state machine (design.md §2).
//
// No I/O, clocks, threads or global randomness: time arrives as tick(), the network as
// step(message), the application as propose()/read_index()/compact(), and the randomness of
// election timeouts comes from a PRNG seeded through Config. All output leaves through ready();
// see raft/ready.h for the contract a driver must follow (persist, then send, then apply, then
// advance). The same inputs always give the same outputs.
//
// Implements: leader election with randomized timeouts (§5.2), pre-vote (thesis §9.6),
// check-quorum and leader stickiness (thesis §6.2, §4.2.3), log replication with fast back-off,
// batching and pipelining (§5.3), the commitment rule (§5.4.2), ReadIndex (thesis §6.4),
// leadership transfer (thesis §3.10), single-server membership changes with learners (thesis
// §4.1, §4.2.1) and snapshots (§7). docs/raft.md describes each and the deviations from the paper.
//
// Thread affinity: none; the driver calls it from one thread at a time.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"
#include "raft/log.h"
#include "raft/messages.h"
#include "raft/progress.h"
#include "raft/ready.h"
#include "raft/types.h"

namespace tern::raft {

struct Config {
  NodeId id;
  // An election starts after a random number of ticks in [election_ticks, 2 * election_ticks).
  std::uint32_t election_ticks = 10;
  std::uint32_t heartbeat_ticks = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  std::size_t max_inflight_msgs = 256;            // appends in flight per follower (replicate state)
  std::size_t max_inflight_bytes = 32 << 20;      // bytes of entries in flight per follower
  std::size_t max_msg_bytes = 1 << 20;            // batching bound: entry bytes per AppendRequest
  std::size_t max_entry_bytes = 8 << 20;          // a single proposal
  std::size_t max_uncommitted_bytes = 64 << 20;   // proposals not yet committed (leader)
  // Thesis §4.2.1: a learner is promoted to voter only once its match index is within this
  // many entries of the leader's last index, so that a new voter never holds up commitment
  // while it catches up (a voter cannot be added directly; see propose_conf_change).
  std::uint64_t max_promote_lag = 64;
  std::uint64_t seed = 1;
  std::function<void(std::string_view)> log;      // optional diagnostic sink
};

// The durable state a core restarts from (all of it as reported durable by the driver).
struct RestoreState {
  HardState hard_state;
  std::optional<SnapshotMeta> snapshot;  // the newest durable snapshot, if any
  std::vector<Entry> entries;            // the log after the snapshot, contiguous
  // Membership of a brand-new cluster, given identically to every initial member on its first
  // start (empty log, no snapshot, zero hard state); empty for a node that joins later. The
  // core then starts at term 1 with the membership as committed log entry 1 (term 1).
  ConfState bootstrap;
};

enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };
const char* role_name(Role r);

enum class ConfChangeType : std::uint8_t { add_learner = 0, add_voter = 1, promote_learner = 2, remove_node = 3 };
struct ConfChange {
  ConfChangeType type;
  NodeId node;
};
// A conf_change entry holds either one change (9 bytes: type, node id little-endian) or, as the
// first entry of a new cluster, the whole initial membership (byte 0xff, then voter count, voter
// ids, learner count, learner ids; all u64 little-endian), so that a node joining later learns
// the full membership from the log.
std::string encode_conf_change(const ConfChange& cc);
std::optional<ConfChange> decode_conf_change(std::string_view data);
std::string encode_conf_state(const ConfState& conf);
std::optional<ConfState> decode_conf_state(std::string_view data);
// The membership after applying cc to conf (voters and learners stay sorted and disjoint).
ConfState apply_conf_change(ConfState conf, const ConfChange& cc);

enum class RaftError : std::uint8_t {
  not_leader,                 // see leader_hint
  transfer_in_progress,       // leadership transfer under way; retry on the new leader
  too_many_uncommitted_bytes, // back-pressure: uncommitted proposals exceed the bound
  entry_too_large,
  conf_change_pending,        // one membership change at a time (thesis §4.1)
  invalid_conf_change,
  no_leader,                  // a follower that knows no leader cannot forward a read
  learner_behind,             // promote_learner: the learner has not caught up yet; retry later
};
const char* error_name(RaftError e);

struct ProposeError {
  RaftError code;
  NodeId leader_hint;  // the leader this node believes in, or no_node
};

// Core::step rejected a peer message (docs/raft.md "Peer input"): it was malformed or claims
// something no correct peer can send. The core's state is exactly as before the call; the driver
// counts it, logs `reason` and may drop the connection.
struct StepError {
  std::string reason;
};

class Core {
 public:
  Core(Config config, RestoreState restore);

  // Inputs.
  void tick();
  // A message from a peer. A malformed one (raft/message_check.h, plus the checks that need
  // this core's state) is rejected as a StepError and changes nothing.
  Result<void, StepError> step(Message m);
  Result<Index, ProposeError> propose(std::string data);
  Result<Index, ProposeError> propose_conf_change(const ConfChange& cc);
  // Linearizable read (thesis §6.4): a ReadState{context, index} appears in a later Ready once
  // leadership is confirmed. On a follower the request is forwarded to the leader.
  Result<void, ProposeError> read_index(std::string context);
  // Proposal forwarding (thesis §6.2). On a follower: send `command` to the leader (no_leader
  // if none is known); a Placed{context, ...} appears in a later Ready when the leader answers.
  // On the leader, forwarded commands appear in Ready::forwarded; the driver proposes each and
  // answers with answer_forwarded (the index it got, or the error).
  // `trace` (a client's request id) travels with it for the leader's log lines only; `kind`
  // tells the leader's driver what the command is (ProposeRequest::kind).
  Result<void, ProposeError> forward(std::uint64_t context, std::string command, std::uint64_t trace = 0,
                                     std::uint8_t kind = 0);
  void answer_forwarded(NodeId to, std::uint64_t context, const Result<Index, ProposeError>& placed);
  Result<void, ProposeError> transfer_leadership(NodeId target);
  // The application holds a snapshot of everything up to `upto` (<= applied); drop that prefix.
  void compact(Index upto);

  // Output.
  bool has_ready() const;
  Ready ready();
  void advance(const Ready& ready);

  // Read-only views (tests, invariant checks, status pages).
  NodeId id() const { return config_.id; }
  Role role() const { return role_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId leader() const { return leader_; }
  Index commit_index() const { return log_.committed(); }
  Index applied_index() const { return applied_; }
  Index first_index() const { return log_.first_index(); }
  Index last_index() const { return log_.last_index(); }
  Index stable_index() const { return log_.stable(); }
  std::optional<Term> term_at(Index i) const { return log_.term_at(i); }
  const Entry& entry_at(Index i) const { return log_.at(i); }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  const ConfState& conf_state() const { return conf_; }
  SnapshotMeta snapshot_meta() const;
  bool is_learner() const;
  bool is_voter() const;
  NodeId transfer_target() const { return transfer_target_; }
  // Leader only: the follower's progress, or nullptr.
  const Progress* progress(NodeId id) const;
  const std::map<NodeId, Progress>& progress_map() const { return progress_; }
  // Membership changes in the log after the snapshot, committed or not (they take effect when
  // appended, thesis §4.1), as (index, membership after it).
  const std::vector<std::pair<Index, ConfState>>& conf_history() const { return conf_history_; }
  const ConfState& snapshot_conf() const { return snapshot_conf_; }
  std::uint32_t randomized_election_ticks() const { return randomized_election_ticks_; }

 private:
  Core(Config config, RestoreState restore, bool bootstrapped);

  // Roles (§5.2).
  void become_follower(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate(bool transfer);
  void become_leader();
  void campaign(bool transfer);
  void reset(Term term);
  void reset_randomized_election_timeout();
  bool promotable() const;
  bool in_leader_lease() const;

  // Message handling.
  bool step_term(const Message& m);
  void step_leader(Message& m);
  void step_candidate(Message& m);
  void step_follower(Message& m);
  void handle_vote_request(const Message& m, const VoteRequest& req);
  void handle_vote_reply(const Message& m, const VoteReply& rep);
  void handle_append(const Message& m, AppendRequest& req);
  void handle_append_reply(const Message& m, const AppendReply& rep);
  void handle_heartbeat(const Message& m, const HeartbeatRequest& req);
  void handle_commit_notice(const Message& m, const CommitNotice& n);
  void handle_heartbeat_reply(const Message& m, const HeartbeatReply& rep);
  void handle_snapshot(const Message& m, const InstallSnapshotRequest& req);
  void handle_snapshot_reply(const Message& m, const InstallSnapshotReply& rep);
  void handle_read_index_request(NodeId from, std::string context);
  void on_propose_reply(const Message& m, const ProposeReply& r);

  // Leader replication.
  void broadcast_append();
  void broadcast_heartbeat();
  bool send_append(NodeId to, Progress& pr, bool allow_empty);
  void send_heartbeat(NodeId to, Progress& pr);
  // After the commit index moved: new entries (which carry it) or a CommitNotice to each follower.
  void broadcast_commit();
  // A CommitNotice if this follower may apply more than it was told (min(match, commit)).
  void maybe_send_commit(NodeId to, Progress& pr);
  bool maybe_commit();
  void append_leader_entry(EntryType type, std::string data);
  void tick_leader();
  void tick_election();
  std::vector<Index> voter_matches() const;
  Index own_match() const;

  // Membership (thesis §4.1: a configuration takes effect when its entry is appended).
  void log_changed_from(Index from);
  void set_conf(ConfState conf);
  std::optional<std::string> check_against_state(const Message& m) const;

  // ReadIndex.
  struct PendingRead {
    NodeId from;          // no_node: local; else the follower that forwarded it
    std::string context;
    Index index;
    std::uint64_t seq;
  };
  void release_reads();
  void deliver_read(const PendingRead& r);

  void send(NodeId to, MessageBody body);
  void logf(const char* fmt, ...) const __attribute__((format(printf, 2, 3)));

  Config config_;
  std::mt19937_64 rng_;
  Term term_;
  NodeId vote_;
  NodeId leader_;
  Role role_ = Role::follower;
  RaftLog log_;
  Index applied_;            // entries handed to the application in a Ready
  ConfState conf_;           // the membership in effect: that of the last conf entry in the log
  ConfState snapshot_conf_;  // the membership at the snapshot index
  std::vector<std::pair<Index, ConfState>> conf_history_;  // (index, conf after it) per conf entry after the snapshot
  Index pending_conf_index_; // leader: last conf change appended

  std::map<NodeId, Progress> progress_;  // leader: every voter and learner except self
  std::map<NodeId, bool> votes_;         // candidate / pre-candidate
  std::uint32_t election_elapsed_ = 0;
  std::uint32_t heartbeat_elapsed_ = 0;
  std::uint32_t randomized_election_ticks_ = 0;
  std::size_t uncommitted_bytes_ = 0;

  NodeId transfer_target_;
  std::uint32_t transfer_elapsed_ = 0;  // ticks since the transfer began; its own clock, so that
                                        // transfer requests never delay check-quorum (§6.2)

  std::uint64_t read_seq_ = 0;                // last ReadIndex round started
  std::map<NodeId, std::uint64_t> read_acks_; // highest round each peer echoed
  std::vector<PendingRead> pending_reads_;    // waiting for a current-term commit or quorum ack

  // Output under construction.
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  std::vector<Forwarded> forwarded_;  // leader: commands forwarded to it, for the next Ready
  std::vector<Placed> placed_;        // follower: answers to its forwarded commands
  std::optional<Snapshot> pending_snapshot_;
  HardState persisted_hs_;
  bool ready_outstanding_ = false;
  bool pending_broadcast_ = false;  // new entries to send at the next ready()
};

}  // namespace tern::raft
