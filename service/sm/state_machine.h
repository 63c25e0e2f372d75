#pragma once
// StateMachine: tern's replicated coordination state (design.md §4). Deterministic: the same
// sequence of apply(index, cluster_time, command) calls gives the same state, responses, events
// and digest on every replica. No clocks, threads or I/O; time arrives as the cluster time the
// leader stamped into each entry.
//
// Holds: the namespace (a tree of nodes with data and stat; persistent, ephemeral, sequential,
// container and TTL nodes), sessions (timeouts, exactly-once responses, ephemeral nodes) and
// leases (TTL, attached nodes). Multi-op transactions are all-or-nothing.
//
// TIME. Each entry carries the leader's wall-clock time. The state machine's clock advances by
// the difference to the previous entry's stamp, but by at most Limits::max_time_step_ms per
// entry and never backwards. The leader appends a tick entry every few hundred milliseconds, so
// in a healthy cluster the clock follows real time; a gap longer than the step (no leader, a
// clock jump forward) is not charged to sessions and leases, so an election or a jumping clock
// cannot expire them en masse, while a new leader cannot extend them either (their deadlines
// are part of the replicated state). A clock that jumps back simply stalls expiry.
//
// Invariants: every node but the root has an existing parent; an ephemeral node's owner is a
// live session; child_count equals the number of children.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "service/sm/command.h"
#include "service/sm/locks.h"
#include "service/sm/types.h"

namespace tern::sm {

class Writer;  // service/sm/codec.h

struct Limits {
  std::size_t max_value_bytes = 1 << 20;             // one limit for values ...
  std::size_t max_request_bytes = (1 << 20) + 8192;  // ... and whole requests (value + overhead)
  std::int64_t max_time_step_ms = 2000;              // see TIME above
  // Answers retained per session for exactly-once retries: the highest this many sequence
  // numbers. A client keeps at most this many writes unsettled (the library does).
  std::size_t responses_per_session = 64;
  // Every duration a client supplies is bounded (docs/data-model.md), so no deadline overflows.
  std::int64_t min_timeout_ms = 100;               // session timeouts and lease TTLs
  std::int64_t max_timeout_ms = 24 * 3600 * 1000;
  std::int64_t max_node_ttl_ms = 30ll * 24 * 3600 * 1000;  // TTL nodes: 1 ms .. 30 days
  std::int64_t max_lock_delay_ms = 60'000;                 // lock-delay: 0 .. 60 s
  // A sequence number may run ahead of the session's last one by at most this much, so no
  // request can use up the sequence space (UINT64_MAX would make every later request a retry).
  std::uint64_t max_seq_step = std::uint64_t{1} << 32;
  std::size_t closed_sessions_kept = 1024;  // closes remembered for retries
};

struct ApplyResult {
  Response response;
  std::vector<Event> events;  // in order; consumed by the watch hub
};

class StateMachine {
 public:
  explicit StateMachine(Limits limits = {});
  ~StateMachine();
  // Nodes point at their names inside children_: moves keep those addresses, copies would not.
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;
  StateMachine(StateMachine&&);
  StateMachine& operator=(StateMachine&&);

  ApplyResult apply(std::uint64_t index, std::int64_t cluster_time_ms, std::string_view command);

  // Queries (served locally; linearizable when issued after a ReadIndex).
  Response get(std::string_view path) const;
  Response exists(std::string_view path) const;
  // Children in byte order after `cursor` (exclusive), at most `limit` (>= 1, else bad_request);
  // response.path holds the cursor for the next page, empty when there is none.
  Response children(std::string_view path, std::string_view cursor = {}, std::size_t limit = SIZE_MAX) const;
  Response lease_ttl(std::uint64_t lease) const;
  // Is `token` the fencing token of a current holder of lock `name`? (for downstream services)
  bool check_token(std::string_view name, std::uint64_t token) const;
  // The current leader of election `name`: id = its session, data = its value, stat.modified_index
  // = its token; no_node if nobody leads.
  Response leader(std::string_view name) const;
  bool has_session(std::uint64_t session) const { return sessions_.count(session) > 0; }
  // Sessions looked at by expiry so far (every entry checks expiry first): for a test that the
  // check costs the sessions that expire plus one per entry, not every session (issue 14).
  std::uint64_t expiry_checks() const { return expiry_checks_; }
  // Does `secret` open `session`? For a server re-attaching a session to a new connection: a
  // connection (or capability) may act for a session only after presenting its secret.
  bool owns(std::uint64_t session, std::uint64_t secret) const {
    auto it = sessions_.find(session);
    return it != sessions_.end() && it->second.secret == secret;
  }

  // The whole state at once (stop-the-world: about 1 s per million nodes).
  std::string snapshot() const;
  // The same bytes in slices (issue 14), so a large state does not stall the caller's loop:
  // begin_snapshot() fixes the state as it is now (it serializes the sessions, leases and locks,
  // which grow with the clients, not the data, and copies one bit per node slot); each
  // continue_snapshot() writes about `budget_bytes` more of the namespace and, once all of it is
  // written, returns the pieces: their concatenation is exactly what snapshot() returned when
  // begin_snapshot() was called. apply() may run between the calls: a node is saved (its
  // "before image") the first time an entry changes or deletes it while it is still to be
  // written, and nodes created meanwhile are skipped (copy-on-first-write). One capture at a
  // time; restore() abandons it.
  void begin_snapshot();
  std::optional<std::vector<std::string>> continue_snapshot(std::size_t budget_bytes);
  void abandon_snapshot();
  bool snapshot_in_progress() const { return capture_ != nullptr; }
  // Before images the capture holds (for tests: their cost is the writes during a capture).
  std::size_t snapshot_images() const;

  bool restore(std::string_view bytes);
  // Over the whole replicated state (header aside). A rejected request leaves it unchanged unless
  // it is a request of a live session, whose renewal and retry cache it updates.
  std::uint64_t digest() const;
  // Over everything but the sessions' bookkeeping (deadlines, last sequence, cached responses):
  // no rejected request ever changes it.
  std::uint64_t data_digest() const;

  std::uint64_t applied_index() const { return applied_; }
  const Limits& limits() const { return limits_; }
  std::int64_t now_ms() const { return now_; }
  std::size_t node_count() const { return nodes_.size(); }

 private:
  struct Node {
    std::uint64_t parent = 0;
    const std::string* name = nullptr;  // the key in children_ (stable): names are stored once
    std::string data;
    Stat stat;
    std::uint32_t flags = 0;
  };
  struct Session {
    std::uint64_t secret = 0;  // chosen by the opener; every request of the session carries it
    std::int64_t timeout_ms = 0;
    std::int64_t deadline_ms = 0;
    std::uint64_t last_seq = 0;  // the highest sequence number applied
    // seq -> response of the highest responses_per_session sequence numbers applied (the window
    // of exactly-once retries; see classify_seq).
    std::map<std::uint64_t, Response> responses;
    std::set<std::string> ephemerals;
  };
  struct Lease {
    std::int64_t ttl_ms = 0;
    std::int64_t deadline_ms = 0;
    std::set<std::string> nodes;
  };
  struct Context;  // one command's execution: index, events, touched containers

  // What a session's request with sequence number `seq` (nonzero) is (docs/data-model.md).
  enum class SeqClass : std::uint8_t { fresh, retry, stale, too_far };
  SeqClass classify_seq(const Session& s, std::uint64_t seq) const;

  void advance_clock(std::int64_t stamp);
  void expire(Context& cx);
  Response execute(Context& cx, const Command& c);
  Response execute_op(Context& cx, const Command& c, const Op& op);
  Errc check_create(const Command& c, const Op& op, bool in_multi) const;
  Response do_create(Context& cx, const Command& c, const Op& op);
  Errc check_set(const Op& op) const;
  Errc check_remove(const Op& op, bool in_multi) const;
  Response do_set(Context& cx, const Op& op);
  Response do_remove(Context& cx, const Op& op);
  Response do_multi(Context& cx, const Command& c, const Op& op);
  Errc validate_multi(const Command& c, const Op& op, std::size_t* failed) const;
  void remove_node(Context& cx, std::uint64_t id, const std::string& path);
  void remove_subtree(Context& cx, std::uint64_t id, const std::string& path);
  void collect_empty_containers(Context& cx);
  void end_session(Context& cx, std::uint64_t id, EventType why);
  void end_lease(Context& cx, std::uint64_t id, EventType why);
  Response do_lock(Context& cx, const Command& c, const Op& op);
  void write_state(class Writer& w, bool bookkeeping) const;
  void write_tail(Writer& w, bool bookkeeping) const;  // sessions, closes, leases, locks
  // The capture's copy-on-first-write hooks: called before an entry changes node `id` (its
  // data, stat, flags, children, TTL or sequence), before it removes it, and after it creates it.
  void before_change(std::uint64_t id);
  void before_remove(std::uint64_t id);
  void after_create(std::uint64_t id);
  struct Capture;
  struct NextChild;
  std::optional<NextChild> next_child(Capture& c, std::size_t* work, std::size_t budget);
  std::size_t write_captured(Capture& c, const NextChild& next, const std::string& path);
  void emit_grants(Context& cx, const std::vector<Grant>& grants);
  void emit_leader_change(Context& cx, const std::string& election);

  std::optional<std::uint64_t> find(std::string_view path) const;
  std::string path_of(std::uint64_t id) const;

  Limits limits_;
  // Nodes in a slot vector indexed by id: no per-node allocation or hash bucket, which keeps the
  // overhead per node small. Ids of deleted nodes are reused, but only from the next entry on
  // (end_entry): within one entry an id names one node, so the containers an entry may have
  // emptied can be collected by id without hitting a node created later in the same entry.
  class NodeStore {
   public:
    std::uint64_t add(Node n) {
      if (!free_.empty()) {
        std::uint64_t id = free_.back();
        free_.pop_back();
        slots_[id] = std::move(n);
        live_[id] = true;
        ++count_;
        return id;
      }
      slots_.push_back(std::move(n));
      live_.push_back(true);
      ++count_;
      return slots_.size() - 1;
    }
    Node& at(std::uint64_t id) { return slots_.at(id); }
    const Node& at(std::uint64_t id) const { return slots_.at(id); }
    bool contains(std::uint64_t id) const { return id < live_.size() && live_[id]; }
    void erase(std::uint64_t id) {
      slots_[id] = Node{};
      live_[id] = false;
      freed_in_entry_.push_back(id);
      --count_;
    }
    void end_entry() {
      free_.insert(free_.end(), freed_in_entry_.begin(), freed_in_entry_.end());
      freed_in_entry_.clear();
    }
    std::size_t size() const { return count_; }
    const std::vector<bool>& live() const { return live_; }
    template <class F>
    void for_each(F f) {
      for (std::uint64_t id = 0; id < slots_.size(); ++id)
        if (live_[id]) f(id, slots_[id]);
    }

   private:
    std::vector<Node> slots_{Node{}};  // slot 0 unused: the root is id 1
    std::vector<bool> live_{false};
    std::vector<std::uint64_t> free_;
    std::vector<std::uint64_t> freed_in_entry_;  // reusable from the next entry on
    std::size_t count_ = 0;
  };
  NodeStore nodes_;
  std::map<std::pair<std::uint64_t, std::string>, std::uint64_t> children_;  // (parent, name) -> id
  std::map<std::uint64_t, Session> sessions_;
  // (deadline_ms, id) of every session, soonest first: every entry expires sessions before it
  // applies, and scanning all of them per entry made 100,000 sessions cost the loop most of its
  // time (issue 14). Derived from sessions_ (not in snapshots); set_deadline keeps it in step.
  std::set<std::pair<std::int64_t, std::uint64_t>> session_deadlines_;
  std::uint64_t expiry_checks_ = 0;
  void set_deadline(std::uint64_t id, Session& s, std::int64_t deadline);
  // Sessions closed by their owner, newest last (at most Limits::closed_sessions_kept), so that
  // a retried close answers its original ok instead of unknown_session.
  struct Closed {
    std::uint64_t session = 0, seq = 0, secret = 0;
  };
  std::deque<Closed> closed_;
  std::map<std::uint64_t, Lease> leases_;
  std::map<std::string, std::int64_t> ttl_nodes_;   // TTL node path -> ttl_ms (rare: kept aside)
  std::map<std::uint64_t, std::uint64_t> sequences_; // node id -> next sequential suffix of its children
  LockTable locks_;
  std::int64_t now_ = 0;
  std::int64_t last_stamp_ = 0;
  bool stamped_ = false;
  bool closing_ = false;  // end_session from close_session (no lock-delay)
  std::uint64_t applied_ = 0;
  std::unique_ptr<Capture> capture_;  // a snapshot being captured in slices, if any
};

}  // namespace tern::sm
