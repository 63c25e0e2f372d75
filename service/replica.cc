#include "service/replica.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "common/assert.h"
#include "common/le.h"
#include "common/overloaded.h"
#include "raft/storage/recovery.h"
#include "service/config.h"

namespace tern::service {

using raft::Index;
using raft::NodeId;
using raft::Term;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint8_t kKindCommand = 1;
constexpr std::uint8_t kKindAddress = 2;
constexpr std::uint8_t kKindClientAddress = 3;
constexpr std::size_t kMaxClientAddressBytes = 300;  // a 253-byte DNS name, brackets, ":65535"
constexpr std::uint64_t kReadyLagEntries = 1000;  // /readyz: applied within this many entries of commit

std::uint64_t micros_between(Clock::time_point t, Clock::time_point now) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - t).count());
}

// Messages a leader may send before its own write is durable (thesis §10.2.1): they vouch for
// nothing on this node's disk. Replies and votes must wait (raft/ready.h).
bool sendable_before_persist(const raft::Message& m) { return raft::sent_by_leader(m.body); }

// A commit notice only carries the new commit index to followers, so it can leave after this
// node has answered its clients.
bool is_commit_notice(const raft::Message& m) { return std::holds_alternative<raft::CommitNotice>(m.body); }

// Removes every entry of `waiting` (values with a `start` time) that started before `limit`,
// and only then hands it to `expire`, so a callback never sees a half-updated map.
template <class Map, class Expire>
void expire_started_before(Map& waiting, Clock::time_point limit, Expire expire) {
  for (auto it = waiting.begin(); it != waiting.end();) {
    if (it->second.start > limit) {
      ++it;
      continue;
    }
    auto v = std::move(it->second);
    it = waiting.erase(it);
    expire(v);
  }
}

// A client address as entries and snapshots may carry it: "host:port" (service/config.h), at
// most kMaxClientAddressBytes, printable ASCII without quotes, backslashes or spaces (it goes
// into JSON and to clients as is). Checked before proposing and again when applying or
// restoring, where a bad one (a hostile or corrupt peer) is ignored the same way everywhere.
bool valid_client_address(std::string_view a) {
  if (a.empty() || a.size() > kMaxClientAddressBytes) return false;
  for (char c : a)
    if (c <= ' ' || c > '~' || c == '"' || c == '\\') return false;
  return parse_host_port(std::string(a)).has_value();
}

}  // namespace

const char* node_errc_name(NodeErrc e) {
  switch (e) {
    case NodeErrc::not_leader: return "not_leader";
    case NodeErrc::unknown_outcome: return "unknown_outcome";
    case NodeErrc::busy: return "busy";
    case NodeErrc::too_large: return "too_large";
    case NodeErrc::conf_change_pending: return "conf_change_pending";
    case NodeErrc::transfer_in_progress: return "transfer_in_progress";
    case NodeErrc::invalid: return "invalid";
    case NodeErrc::shutting_down: return "shutting_down";
    case NodeErrc::timed_out: return "timed_out";
  }
  return "?";
}

Replica::Replica(ReplicaEnv env, NodeOptions options, std::unique_ptr<Applier> applier, Metrics& metrics)
    : env_(std::move(env)),
      io_(env_.io != nullptr ? *env_.io : storage::posix_io()),
      opt_(std::move(options)),
      applier_(std::move(applier)),
      metrics_(metrics),
      fsync_hist_(metrics.histogram("tern_wal_write_seconds")),
      commit_hist_(metrics.histogram("tern_commit_latency_seconds")),
      rtt_hist_(metrics.histogram("tern_peer_rtt_seconds")) {
  TERN_ASSERT(env_.transport != nullptr && env_.clock != nullptr && env_.executor != nullptr);
}

Replica::~Replica() {
  stop();
  *alive_ = false;
  wal_.reset();  // joins a disk thread if the executor used one; its callbacks see alive_ == false
}

Result<std::unique_ptr<Replica>, std::string> Replica::open(ReplicaEnv env, NodeOptions options,
                                                            std::unique_ptr<Applier> applier, Metrics& metrics) {
  std::unique_ptr<Replica> n(new Replica(std::move(env), std::move(options), std::move(applier), metrics));
  if (auto r = n->recover(); !r) return fail(r.error());
  return n;
}

Result<void, std::string> Replica::recover() {
  // The storage half of recovery is raft/storage/recovery.h, the same code `ternutl verify` runs,
  // so the tool says exactly what the node does (issue 15): identity, the newest valid snapshot,
  // the WAL's repairs, and entries kept only if they provably continue the snapshot (hole 4).
  storage::RecoveryOptions ro;
  ro.io = &io_;
  ro.cluster_id = opt_.cluster_id;
  ro.node_id = opt_.id.value;
  ro.wal.segment_bytes = opt_.wal_segment_bytes;
  ro.wal.log = [](const std::string& s) { spdlog::warn("wal: {}", s); };
  auto recovered = storage::recover_storage(opt_.data_dir, std::move(ro));
  if (!recovered) return fail("data dir " + opt_.data_dir + ": " + recovered.error().message);
  auto& rec = *recovered;
  for (const auto& n : rec.repairs) spdlog::warn("recovery: {}", n);
  for (const auto& n : rec.damage) spdlog::warn("recovery: skipped damaged {}", n);
  data_dir_ = std::move(rec.dir);
  snapshots_ = std::move(rec.snapshots);
  wal_ = std::move(rec.wal);

  for (const auto& [id, addr] : opt_.initial_cluster) addresses_[id] = addr;
  raft::RestoreState rs;
  rs.hard_state = rec.hard_state;
  written_hs_ = rec.hard_state;
  if (rec.snapshot) {
    const auto& f = *rec.snapshot;
    auto data = snapshots_->read_all(f);
    if (!data) return fail("snapshot " + f.path + ": " + data.error().message);
    if (auto r = decode_state(*data); !r) return fail("snapshot " + f.path + ": " + r.error());
    rs.snapshot = f.meta;
    applied_ = f.meta.index;
    last_snapshot_index_ = f.meta.index;
    snapshot_files_[f.meta.index] = f;
  }
  rs.entries = std::move(rec.entries);
  bool empty = rec.hard_state.term == Term{0} && rs.entries.empty() && !rs.snapshot;
  if (opt_.force_new_cluster) {
    if (empty) return fail(std::string("--force-new-cluster: the data dir holds no state to recover"));
    if (auto r = force_new_cluster(rs); !r) return r;
  }
  if (empty && opt_.bootstrap) {
    // The initial membership is made durable here, before this node takes part: entry 1 (term
    // 1) holds it and the hard state marks it committed. Every initial member writes the same
    // entry and no leader exists at term 1, so it is committed by construction; a restart at
    // any later crash point finds it in the WAL (never in a deferred commit-only hard state).
    raft::ConfState conf;
    for (const auto& [id, addr] : opt_.initial_cluster) conf.voters.push_back(id);
    storage::WriteBatch b;
    b.entries.push_back(raft::Entry{Term{1}, Index{1}, raft::EntryType::conf_change, raft::encode_conf_state(conf)});
    b.hard_state = raft::HardState{Term{1}, NodeId{}, Index{1}};
    if (auto r = wal_->write(b); !r) return fail("wal: cannot write the initial membership: " + r.error().message);
    rs.hard_state = *b.hard_state;
    written_hs_ = rs.hard_state;
    rs.entries = std::move(b.entries);
    spdlog::info("bootstrapping a new cluster of {} members", conf.voters.size());
  }

  raft::Config rc;
  rc.id = opt_.id;
  rc.election_ticks = opt_.election_ticks;
  rc.heartbeat_ticks = 1;
  rc.seed = opt_.raft_seed != 0 ? opt_.raft_seed
                                : opt_.id.value * 0x9e3779b97f4a7c15ULL ^
                                      static_cast<std::uint64_t>(env_.clock->now().time_since_epoch().count());
  rc.log = [](std::string_view s) { spdlog::debug("raft {}", s); };
  read_nonce_ = rc.seed ^ (env_.clock->wall_ms() * 0x9e3779b97f4a7c15ULL);
  // Forward ids count up from a base that differs per start, so a leader's answer meant for a
  // previous run of this node never matches a command of this run (found by tern-sim --node
  // --seed 1360 --voters 1 --spares 2 --fresh-dirs: an answer to the old run's forward id 1
  // acknowledged the new run's command 1 with another command's (index, term)).
  next_forward_id_ = (read_nonce_ * 0xbf58476d1ce4e5b9ULL) ^ (read_nonce_ >> 31);
  core_ = std::make_unique<raft::Core>(rc, std::move(rs));
  last_leader_ = core_->leader();
  spdlog::info("recovered: term {}, commit {}, last index {}, snapshot {}", core_->term().value,
               core_->commit_index().value, core_->last_index().value, last_snapshot_index_.value);

  for (const auto& [id, addr] : addresses_) set_address(id, addr);
  return {};
}

// Recovery from a lost quorum (etcd's --force-new-cluster; docs/operations.md). The old
// configuration can no longer form a majority, so no change through the log (thesis §4.1, one
// server at a time, each committed by the old majority) can replace it. Instead this node's own
// log gets one more entry, written durably before the core starts: a whole configuration with
// this node as its only voter, at a term above every term it has seen, and a hard state that
// marks it (and so every entry before it) committed. The core adopts the newest configuration in
// its log at restart (thesis §4.1: a server uses the latest configuration in its log, committed
// or not), so the node is a one-node cluster and elects itself; members are added back one at a
// time by the normal path. Entries above the old durable commit index are committed too: the
// durable commit index is a restart hint that may lag (docs/architecture.md §1a), so writes
// that were acknowledged may lie above it, and an entry that was never committed had no
// acknowledged outcome (its client saw a timeout or unknown outcome). Safe only when the other
// old members never run again with their data (their logs may hold other entries at these
// indices and terms: Log Matching, Raft §5.3, would not hold between them and this node).
Result<void, std::string> Replica::force_new_cluster(raft::RestoreState& rs) {
  Index last = rs.snapshot ? rs.snapshot->index : Index{0};
  Term last_term = rs.snapshot ? rs.snapshot->term : Term{0};
  if (!rs.entries.empty()) {
    last = rs.entries.back().index;
    last_term = rs.entries.back().term;
  }
  Term term{std::max(rs.hard_state.term.value, last_term.value) + 1};
  raft::ConfState conf;
  conf.voters.push_back(opt_.id);
  raft::Entry e{term, last.next(), raft::EntryType::conf_change, raft::encode_conf_state(conf)};
  storage::WriteBatch b;
  b.entries.push_back(e);
  b.hard_state = raft::HardState{term, NodeId{}, e.index};
  if (auto r = wal_->write(b); !r) return fail("--force-new-cluster: cannot write the new membership: " + r.error().message);
  rs.entries.push_back(std::move(e));
  rs.hard_state = *b.hard_state;
  written_hs_ = rs.hard_state;
  spdlog::warn("--force-new-cluster: this node ({}) is now the only member, from log index {} at term {}; "
               "everything up to index {} is committed. Restart without the flag; add members back one at a time",
               opt_.id.value, last.next().value, term.value, last.value);
  return {};
}

void Replica::crash() {
  stopped_ = true;
  *alive_ = false;
  pending_.clear();
  forwarding_.clear();
  reads_.clear();
  reads_at_.clear();
}

void Replica::start() {
  started_ = true;
  schedule_drive();
}

void Replica::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (wal_ && !persisting_) flush_deferred_hard_state(true);
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [i, p] : pending)
    p.done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "the node is shutting down; the outcome is unknown"}));
  auto forwarding = std::move(forwarding_);
  forwarding_.clear();
  for (auto& [id, f] : forwarding)
    f.done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "the node is shutting down; the outcome is unknown"}));
  auto reads = std::move(reads_);
  reads_.clear();
  reads_at_.clear();
  for (auto& [id, r] : reads) r.done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "the node is shutting down"}));
  auto waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  for (auto& w : waiters) w.done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "the node is shutting down"}));
}

void Replica::tick() {
  if (stopped_) return;
  core_->tick();
  flush_deferred_hard_state(false);
  maybe_propose_clock_tick();
  maybe_announce_client_address();
  expire_orphaned_proposals();
  expire_forwarding();
  expire_reads();
  observe_leader();
  schedule_drive();
}

void Replica::maybe_propose_clock_tick() {
  if (opt_.clock_tick_command.empty() || core_->role() != raft::Role::leader) {
    ticks_since_command_ = 0;
    return;
  }
  if (++ticks_since_command_ < opt_.clock_tick_every) return;
  // Best effort: a busy or transferring leader has other entries carrying the time, or will.
  propose(opt_.clock_tick_command, [](const Result<Committed, NodeError>&) {});
}

void Replica::expire_orphaned_proposals() {
  // A node that lost leadership cannot tell whether its pending entries will commit until it
  // hears from a new leader; partitioned, it may never hear. Answer "unknown outcome" after a
  // bound instead of leaving the callers waiting (a retry with the same request id is safe).
  if (pending_.empty() || core_->role() == raft::Role::leader) return;
  expire_started_before(pending_, env_.clock->now() - opt_.tick * (opt_.election_ticks * 4), [&](Pending& p) {
    ++proposals_failed_;
    p.done(fail(NodeError{NodeErrc::unknown_outcome, core_->leader(), "leadership lost before the entry committed"}));
  });
}

void Replica::flush_deferred_hard_state(bool now) {
  if (!deferred_hs_ || persisting_) return;
  if (!now && ++ticks_since_flush_ < 10) return;
  ticks_since_flush_ = 0;
  storage::WriteBatch b;
  b.hard_state = deferred_hs_;
  written_hs_ = *deferred_hs_;
  deferred_hs_.reset();
  // Synchronous, like every write made while no batch is queued: an asynchronous one could land
  // after a later inline write of a newer term and vote and take the durable hard state back.
  if (auto r = wal_->write(b); !r) fatal("WAL write failed: " + r.error().message);
}

Result<void, raft::StepError> Replica::step(raft::Message m) {
  if (stopped_) return {};
  if (std::holds_alternative<raft::HeartbeatReply>(m.body)) {
    auto it = heartbeat_sent_.find(m.from);
    if (it != heartbeat_sent_.end()) {
      rtt_hist_.observe_us(micros_between(it->second, env_.clock->now()));
      heartbeat_sent_.erase(it);
    }
  }
  NodeId from = m.from;
  if (auto r = core_->step(std::move(m)); !r) {
    ++peer_messages_rejected_;
    spdlog::warn("[n{} t{}] rejected a message from n{}: {}", opt_.id.value, core_->term().value, from.value, r.error().reason);
    return r;
  }
  schedule_drive();
  return {};
}

void Replica::schedule_drive() {
  if (drive_posted_ || stopped_) return;
  drive_posted_ = true;
  env_.executor->post([this, alive = alive_] {
    if (!*alive) return;
    drive_posted_ = false;
    drive();
  });
}

void Replica::drive() {
  if (!started_ || persisting_ || stopped_ || !core_->has_ready()) return;
  auto rd = std::make_shared<raft::Ready>(core_->ready());
  observe_leader();
  // Forwarding needs no ordering with the write (raft/ready.h): handled at once, so forwarded
  // commands join the next Ready.
  on_forwarded(rd->forwarded);
  on_placed(rd->placed);
  if (rd->snapshot) {
    // A snapshot from the leader: its file must be durable before the WAL points past it. It is
    // written on the snapshot thread (which also writes this node's own snapshots, one at a
    // time); the Ready waits, as for any write.
    persisting_ = true;
    env_.executor->save_snapshot(
        [this, rd] { return snapshots_->save(rd->snapshot->meta, *rd->snapshot->data); },
        [this, rd, alive = alive_](SnapshotResult f) {
          if (!*alive) return;
          if (!f) fatal("cannot save the received snapshot: " + f.error().message);
          snapshot_files_[rd->snapshot->meta.index] = *f;
          while (snapshot_files_.size() > 2) snapshot_files_.erase(snapshot_files_.begin());
          persisting_ = false;
          write_ready(rd);
        });
    return;
  }
  write_ready(rd);
}

void Replica::write_ready(const std::shared_ptr<raft::Ready>& rd) {
  storage::WriteBatch batch;
  if (rd->snapshot) batch.reset_to = std::make_pair(rd->snapshot->meta.index, rd->snapshot->meta.term);
  // Everything handed to the WAL before this Ready is durable (one Ready in flight; the deferred
  // flush is synchronous), so written_hs_ holds the durable term and vote.
  bool term_vote_durable = !rd->hard_state || (rd->hard_state->term == written_hs_.term &&
                                                rd->hard_state->vote == written_hs_.vote);
  // The early send (thesis §10.2.1) vouches for the leader's term: only when that term and the
  // vote that won it are already durable. A one-voter leader elected inside one tick would
  // otherwise ship entries of a term it could forget, and re-win it with different entries.
  if (term_vote_durable)
    for (const auto& m : rd->messages)
      if (sendable_before_persist(m) && !is_commit_notice(m)) send(m);
  // The commit index in the hard state is only a hint for restarts (raft/types.h): a Ready that
  // changes nothing else need not wait for a disk flush. Its commit index rides along with the
  // next write (or the periodic flush in on_tick), saving one fdatasync per commit. Not when it
  // commits a membership change: the membership a restarted node counts votes with is the one
  // its durable commit index covers, so that index is written before the change is applied.
  bool commits_conf = std::any_of(rd->committed.begin(), rd->committed.end(),
                                  [](const raft::Entry& e) { return e.type == raft::EntryType::conf_change; });
  bool commit_only = rd->hard_state && !rd->snapshot && rd->entries.empty() && term_vote_durable && !commits_conf;
  if (commit_only) {
    deferred_hs_ = rd->hard_state;
    persisted(rd, term_vote_durable);
    return;
  }
  if (!rd->snapshot && rd->entries.empty() && !rd->hard_state) {
    persisted(rd, term_vote_durable);
    return;
  }
  batch.entries = rd->entries;
  batch.hard_state = rd->hard_state ? rd->hard_state : deferred_hs_;
  deferred_hs_.reset();
  if (batch.hard_state) written_hs_ = *batch.hard_state;
  auto t0 = env_.clock->now();
  // The executor decides where and when (ternd: small batches inline on the loop thread, larger
  // ones on the WAL's disk thread with group commit; the simulator: when its disk says so).
  persisting_ = true;
  env_.executor->write(*wal_, std::move(batch),
                       [this, rd, t0, term_vote_durable, alive = alive_](Result<Index, storage::StorageError> res) {
                         if (!*alive) return;
                         if (!res) fatal("WAL write failed: " + res.error().message);
                         fsync_hist_.observe_us(micros_between(t0, env_.clock->now()));
                         persisting_ = false;
                         persisted(rd, term_vote_durable);
                       });
}

void Replica::persisted(const std::shared_ptr<raft::Ready>& rd, bool sent_early) {
  if (stopped_) return;
  std::vector<raft::Message> notices;
  for (auto& m : rd->messages) {
    if (is_commit_notice(m)) {
      notices.push_back(std::move(m));
    } else if (!sent_early || !sendable_before_persist(m)) {
      send(m);
    }
  }
  if (rd->snapshot) apply_snapshot(*rd->snapshot);
  for (const auto& e : rd->committed) apply_entry(e);
  on_read_states(rd->read_states);
  if (!notices.empty()) {
    // Followers learn the new commit index after the replies to this node's clients are out:
    // the clients' answers then do not queue behind two followers waking up on a 2-core host.
    // Two hops, because a reply is flushed from a handler posted by the KJ turn that writes it.
    env_.executor->post([this, alive = alive_, notices = std::move(notices)]() mutable {
      if (!*alive) return;
      env_.executor->post([this, alive, notices = std::move(notices)] {
        if (!*alive || stopped_) return;
        for (const auto& m : notices) send(m);
      });
    });
  }
  core_->advance(*rd);
  maybe_snapshot();
  schedule_drive();
}

void Replica::send(const raft::Message& m) {
  if (opt_.on_send) opt_.on_send(m);
  if (const auto* req = std::get_if<raft::InstallSnapshotRequest>(&m.body)) {
    auto data = snapshot_data(req->meta.index);
    if (!data) return;  // the core retries; snapshot_data logged why
    raft::Message full = m;
    std::get<raft::InstallSnapshotRequest>(full.body).data = std::move(data);
    env_.transport->send(full);
    return;
  }
  if (std::holds_alternative<raft::HeartbeatRequest>(m.body)) {
    // One probe per peer in flight; a probe unanswered for a second (peer down) is replaced, so
    // a returning peer does not report its downtime as round-trip time.
    auto now = env_.clock->now();
    auto [it, inserted] = heartbeat_sent_.try_emplace(m.to, now);
    if (!inserted && now - it->second > std::chrono::seconds(1)) it->second = now;
  }
  env_.transport->send(m);
}

std::shared_ptr<const std::string> Replica::snapshot_data(Index index) {
  if (snapshot_cache_ && snapshot_cache_index_ == index) return snapshot_cache_;
  auto it = snapshot_files_.find(index);
  if (it == snapshot_files_.end()) {
    spdlog::warn("no snapshot file for index {} to send", index.value);
    return nullptr;
  }
  auto data = snapshots_->read_all(it->second);
  if (!data) {
    spdlog::error("cannot read snapshot {}: {}", it->second.path, data.error().message);
    return nullptr;
  }
  snapshot_cache_index_ = index;
  snapshot_cache_ = std::make_shared<const std::string>(std::move(*data));
  return snapshot_cache_;
}

void Replica::apply_snapshot(const raft::Snapshot& s) {
  abandon_capture();  // the leader's snapshot replaces the state being captured
  if (auto r = decode_state(*s.data); !r) fatal("cannot restore the snapshot at index " + std::to_string(s.meta.index.value) + ": " + r.error());
  applied_ = s.meta.index;
  last_snapshot_index_ = s.meta.index;
  ++snapshots_installed_;
  if (opt_.on_restore) opt_.on_restore(s.meta);
  // Proposals at or below the snapshot can no longer be matched to their entries.
  while (!pending_.empty() && pending_.begin()->first <= s.meta.index) {
    auto p = std::move(pending_.begin()->second);
    pending_.erase(pending_.begin());
    ++proposals_failed_;
    p.done(fail(NodeError{NodeErrc::unknown_outcome, core_->leader(), "replaced by a snapshot"}));
  }
  spdlog::info("installed a snapshot at index {} term {}", s.meta.index.value, s.meta.term.value);
}

void Replica::apply_entry(const raft::Entry& e) {
  applied_ = e.index;
  ++entries_applied_;
  std::string response;
  if (e.type == raft::EntryType::normal && !e.data.empty()) {
    auto kind = static_cast<std::uint8_t>(e.data[0]);
    if (kind == kKindCommand && e.data.size() >= 9) {
      std::uint64_t t = le::get_u64(e.data.data() + 1);
      last_cluster_time_ms_ = std::max(last_cluster_time_ms_, t);
      response = applier_->apply(e.index, t, std::string_view(e.data).substr(9));
    } else if (kind == kKindAddress && e.data.size() >= 9) {
      NodeId id{le::get_u64(e.data.data() + 1)};
      set_address(id, e.data.substr(9));
    } else if (kind == kKindClientAddress) {
      apply_client_address(e.index, std::string_view(e.data).substr(1));
    } else {
      spdlog::error("entry {} has an unknown payload kind {}; skipped", e.index.value, kind);
    }
  } else if (e.type == raft::EntryType::conf_change) {
    if (auto cc = raft::decode_conf_change(e.data); cc && cc->type == raft::ConfChangeType::remove_node) {
      addresses_.erase(cc->node);
      client_addresses_.erase(cc->node);
      if (cc->node != opt_.id) env_.transport->remove_peer(cc->node);
      if (cc->node == opt_.id) spdlog::warn("this node was removed from the cluster at index {}", e.index.value);
    }
  }
  if (opt_.on_apply) opt_.on_apply(e);
  resolve(e.index, e.term, std::move(response));
}

void Replica::resolve(Index index, Term term, std::string response) {
  // Pending proposals below this index were overwritten and their slots reused (or compacted).
  while (!pending_.empty() && pending_.begin()->first <= index) {
    auto it = pending_.begin();
    auto p = std::move(it->second);
    Index i = it->first;
    pending_.erase(it);
    if (i == index && p.term == term) {
      ++proposals_committed_;
      commit_hist_.observe_us(micros_between(p.start, env_.clock->now()));
      p.done(Committed{index, term, std::move(response)});
    } else {
      ++proposals_failed_;
      p.done(fail(NodeError{NodeErrc::unknown_outcome, core_->leader(),
                            "entry " + std::to_string(i.value) + " was overwritten by a new leader"}));
    }
  }
}

void Replica::maybe_snapshot() {
  if (snapshot_saving_ || applied_.value < last_snapshot_index_.value + opt_.snapshot_entries) return;
  start_snapshot();
}

void Replica::snapshot_now(SnapshotCallback done) {
  if (stopped_) return done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "the node is shutting down"}));
  snapshot_waiters_.push_back(SnapshotWaiter{applied_, std::move(done)});
  if (!snapshot_saving_) serve_snapshot_waiters();
}

// Answers the waiters that the newest file satisfies; starts a snapshot for the others (one at a
// time: the next waits for the file being written, then is served or starts its own).
void Replica::serve_snapshot_waiters(const std::optional<NodeError>& failed) {
  if (snapshot_waiters_.empty()) return;
  auto waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  auto newest = snapshot_files_.empty() ? snapshot_files_.end() : std::prev(snapshot_files_.end());
  for (auto& w : waiters) {
    if (failed) w.done(fail(*failed));
    else if (newest != snapshot_files_.end() && newest->first >= w.at) w.done(newest->second);
    else snapshot_waiters_.push_back(std::move(w));
  }
  if (snapshot_waiters_.empty() || snapshot_saving_) return;
  if (!start_snapshot()) {
    auto left = std::move(snapshot_waiters_);
    snapshot_waiters_.clear();
    for (auto& w : left) w.done(fail(NodeError{NodeErrc::busy, core_->leader(), "cannot take a snapshot now; retry"}));
  }
}

bool Replica::start_snapshot() {
  Index at = applied_;
  if (at == Index{0}) return false;
  auto term = core_->term_at(at);
  if (!term) return false;
  raft::SnapshotMeta meta{at, *term, core_->snapshot_conf()};
  for (const auto& [i, conf] : core_->conf_history())
    if (i <= at) meta.conf = conf;
  // The state at `at` is captured on the loop in slices (Applier::begin_snapshot: entries
  // applied meanwhile do not change what is captured), the first one now, so a small state is
  // done at once; the file is written and synced on the snapshot thread (design.md §1a).
  // snapshot_saving_ covers both: one snapshot of this node at a time.
  snapshot_saving_ = true;
  capture_ = Capture{meta, encode_prefix(), ++captures_};
  applier_->begin_snapshot();
  continue_capture();
  return true;
}

void Replica::continue_capture() {
  auto pieces = applier_->continue_snapshot(opt_.snapshot_slice_bytes);
  if (!pieces) {
    env_.executor->post([this, alive = alive_, id = capture_->id] {
      if (!*alive || stopped_ || !capture_ || capture_->id != id) return;
      continue_capture();
    });
    return;
  }
  raft::SnapshotMeta meta = capture_->meta;
  pieces->insert(pieces->begin(), std::move(capture_->prefix));
  capture_.reset();
  // The pieces are joined on the snapshot thread: copying a large state is loop time too.
  auto parts = std::make_shared<std::vector<std::string>>(std::move(*pieces));
  auto data = std::make_shared<std::string>();
  env_.executor->save_snapshot(
      [this, meta, parts, data] {
        std::size_t size = 0;
        for (const auto& p : *parts) size += p.size();
        data->reserve(size);
        for (auto& p : *parts) {
          data->append(p);
          std::string().swap(p);
        }
        return snapshots_->save(meta, *data);
      },
      [this, meta, data, alive = alive_](SnapshotResult f) {
        if (!*alive) return;
        snapshot_saved(meta, data, f);
      });
}

void Replica::abandon_capture() {
  if (!capture_) return;
  applier_->abandon_snapshot();
  capture_.reset();
  snapshot_saving_ = false;  // nothing of it reached the snapshot thread
  // `tern snapshot save` waiters: served by the installed snapshot's file, or a new capture,
  // once the installation is over.
  env_.executor->post([this, alive = alive_] {
    if (*alive && !stopped_ && !snapshot_saving_) serve_snapshot_waiters();
  });
}

void Replica::snapshot_saved(const raft::SnapshotMeta& meta, const std::shared_ptr<const std::string>& data,
                             const SnapshotResult& f) {
  snapshot_saving_ = false;
  if (!f) {
    // A failed sync leaves the file's (or its directory entry's) durability unknown: fail-stop,
    // like every other sync failure (never retry an fsync). Anything else: try again later.
    if (f.error().code == storage::StorageErrc::fsync_failed) fatal("snapshot sync failed: " + f.error().message);
    spdlog::error("cannot save a snapshot at {}: {}", meta.index.value, f.error().message);
    serve_snapshot_waiters(NodeError{NodeErrc::busy, core_->leader(), "cannot save a snapshot: " + f.error().message});
    return;
  }
  if (meta.index <= last_snapshot_index_) {  // a newer snapshot was installed meanwhile
    serve_snapshot_waiters();
    return;
  }
  ++snapshots_taken_;
  Index previous = last_snapshot_index_;
  last_snapshot_index_ = meta.index;
  snapshot_files_[meta.index] = *f;
  while (snapshot_files_.size() > 2) snapshot_files_.erase(snapshot_files_.begin());
  snapshot_cache_index_ = meta.index;
  snapshot_cache_ = data;
  // Keep the log since the previous snapshot, so a follower slightly behind still catches up
  // from entries; the previous snapshot file stays on disk to send to one far behind.
  if (previous > Index{0}) {
    core_->compact(previous);
    if (auto r = wal_->compact(previous); !r) {
      // The WAL marks itself failed after a sync error; stop now rather than at the next write.
      if (r.error().code == storage::StorageErrc::fsync_failed || r.error().code == storage::StorageErrc::failed)
        fatal("WAL compaction: " + r.error().message);
      spdlog::warn("WAL compaction: {}", r.error().message);
    }
  }
  spdlog::info("snapshot at index {} ({} bytes); log compacted to {}", meta.index.value, data->size(), previous.value);
  serve_snapshot_waiters();
  maybe_snapshot();
}

void Replica::set_address(NodeId id, const std::string& address) {
  addresses_[id] = address;
  if (id != opt_.id) env_.transport->set_peer(id, address);
}

void Replica::observe_leader() {
  NodeId l = core_->leader();
  if (l == last_leader_) return;
  last_leader_ = l;
  ++leader_changes_;
  if (l == NodeId{0}) {
    spdlog::info("[n{} t{}] no leader", opt_.id.value, core_->term().value);
  } else {
    spdlog::info("[n{} t{}] leader is n{}", opt_.id.value, core_->term().value, l.value);
  }
}

void Replica::fatal(const std::string& what) {
  // Fail-stop (design.md §3): never continue after a failed write or fsync.
  spdlog::critical("[n{} t{}] fatal: {}", opt_.id.value, core_ ? core_->term().value : 0, what);
  spdlog::default_logger()->flush();
  if (env_.fatal) env_.fatal(what);
  std::_Exit(70);
}

// ---- proposals --------------------------------------------------------------------------------

NodeError Replica::error_from(const raft::ProposeError& e) const {
  switch (e.code) {
    case raft::RaftError::not_leader:
    case raft::RaftError::no_leader: return NodeError{NodeErrc::not_leader, e.leader_hint, "not the leader"};
    case raft::RaftError::transfer_in_progress:
      return NodeError{NodeErrc::transfer_in_progress, e.leader_hint, "leadership transfer in progress"};
    case raft::RaftError::too_many_uncommitted_bytes:
      return NodeError{NodeErrc::busy, e.leader_hint, "too many uncommitted bytes"};
    case raft::RaftError::entry_too_large: return NodeError{NodeErrc::too_large, e.leader_hint, "entry too large"};
    case raft::RaftError::conf_change_pending:
      return NodeError{NodeErrc::conf_change_pending, e.leader_hint, "a membership change is in progress"};
    case raft::RaftError::invalid_conf_change: return NodeError{NodeErrc::invalid, e.leader_hint, "invalid membership change"};
    case raft::RaftError::learner_behind:
      return NodeError{NodeErrc::busy, e.leader_hint, "the learner has not caught up yet; promote it later"};
  }
  return NodeError{NodeErrc::invalid, e.leader_hint, raft::error_name(e.code)};
}

void Replica::propose_raw(std::string payload, ProposeCallback done) {
  if (stopped_) return done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "shutting down"}));
  if (pending_.size() >= opt_.max_pending_proposals)
    return done(fail(NodeError{NodeErrc::busy, core_->leader(), "too many pending proposals"}));
  auto r = core_->propose(std::move(payload));
  if (!r) return done(fail(error_from(r.error())));
  track(*r, std::move(done));
}

void Replica::track(Index index, ProposeCallback done) { track(index, core_->term(), std::move(done)); }

void Replica::track(Index index, raft::Term term, ProposeCallback done) {
  // A proposal still pending at this index was truncated away when this node lost leadership
  // (its entry can no longer commit): it cannot share the slot with the new one.
  if (auto it = pending_.find(index); it != pending_.end()) {
    auto old = std::move(it->second);
    pending_.erase(it);
    ++proposals_failed_;
    old.done(fail(NodeError{NodeErrc::unknown_outcome, core_->leader(), "entry overwritten by a new leader"}));
  }
  pending_[index] = Pending{term, std::move(done), env_.clock->now()};
  schedule_drive();
}

// Cluster time (docs/data-model.md, "Time"): a leader continues it from the newest stamp it has
// applied by its own monotonic clock. The wall clock only seeds it in a fresh cluster, so a wall
// clock that is skewed or jumps (NTP steps, a VM resumed) moves nothing, and the time between
// two leaders (an election, a cluster that was down) is not charged to sessions and leases.
std::uint64_t Replica::cluster_time_now() {
  if (core_->role() != raft::Role::leader) return last_cluster_time_ms_;  // refused by the core anyway
  auto now = env_.clock->now();
  if (anchor_term_ != core_->term()) {
    anchor_term_ = core_->term();
    anchor_ms_ = last_cluster_time_ms_ != 0 ? last_cluster_time_ms_ : env_.clock->wall_ms();
    anchor_at_ = now;
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - anchor_at_).count();
  std::uint64_t t = anchor_ms_ + static_cast<std::uint64_t>(std::max<std::int64_t>(0, elapsed));
  if (t < last_cluster_time_ms_) {
    // Entries of an earlier leader, applied since we took over, stamped ahead of our clock:
    // continue from theirs (cluster time never goes back).
    anchor_ms_ = t = last_cluster_time_ms_;
    anchor_at_ = now;
  }
  return t;
}

std::string Replica::stamped(std::string_view command) {
  std::string payload;
  payload.reserve(9 + command.size());
  payload.push_back(static_cast<char>(kKindCommand));
  le::put_u64(payload, cluster_time_now());
  payload += command;
  return payload;
}

void Replica::propose(std::string command, ProposeCallback done, std::uint64_t request_id) {
  ticks_since_command_ = 0;  // every command carries the cluster time
  if (!stopped_ && core_->role() != raft::Role::leader && core_->leader() != NodeId{}) {
    // Thesis §6.2: a follower forwards the command to its leader, which stamps and appends it.
    if (forwarding_.size() + pending_.size() >= opt_.max_pending_proposals)
      return done(fail(NodeError{NodeErrc::busy, core_->leader(), "too many pending proposals"}));
    std::uint64_t id = ++next_forward_id_;
    auto r = core_->forward(id, std::move(command), request_id);
    if (!r) return done(fail(error_from(r.error())));
    forwarding_[id] = Forwarding{std::move(done), env_.clock->now()};
    schedule_drive();
    return;
  }
  propose_raw(stamped(command), std::move(done));
}

void Replica::on_forwarded(std::vector<raft::Forwarded>& forwarded) {
  // A leader appends a follower's command as its own: stamped with its clock, checked by the
  // core like any proposal; the answer says where it went (or why not).
  for (auto& f : forwarded) {
    Result<Index, raft::ProposeError> r = fail(raft::ProposeError{raft::RaftError::not_leader, core_->leader()});
    bool room = !stopped_ && pending_.size() < opt_.max_pending_proposals;
    if (f.kind == kKindClientAddress) {
      // The sender's own client address, recorded under the sender's id (never another's). A
      // bad one is refused (the reply says only "not taken").
      if (room && valid_client_address(f.command) && addresses_.count(f.from) != 0)
        r = core_->propose(client_address_payload(f.from, f.command));
    } else if (f.kind == 0) {
      if (room) r = core_->propose(stamped(f.command));
    }  // another kind comes from a newer version: refused
    // The client's request id, so a forwarded write can be followed on the leader too.
    if (f.trace != 0)
      spdlog::debug("[n{} t{}] request {:016x} forwarded by n{}: {}", opt_.id.value, core_->term().value, f.trace,
                    f.from.value, r ? "proposed at index " + std::to_string(r->value) : std::string("refused"));
    core_->answer_forwarded(f.from, f.context, r);
  }
  if (!forwarded.empty()) schedule_drive();
}

void Replica::on_placed(std::vector<raft::Placed>& placed) {
  for (auto& p : placed) {
    auto it = forwarding_.find(p.context);
    if (it == forwarding_.end()) continue;  // expired meanwhile
    auto f = std::move(it->second);
    forwarding_.erase(it);
    if (!p.ok) {
      f.done(fail(NodeError{NodeErrc::not_leader, core_->leader(), "the leader did not take the forwarded command"}));
    } else if (p.index <= applied_) {
      // Applied before the answer came (messages reordered): its response is gone from here.
      ++proposals_failed_;
      f.done(fail(NodeError{NodeErrc::unknown_outcome, core_->leader(), "applied before the leader's answer arrived"}));
    } else {
      track(p.index, p.term, std::move(f.done));
    }
  }
}

void Replica::expire_forwarding() {
  // A leader that died or was deposed may never answer: the command may or may not be in its
  // log, so the outcome is unknown (a retry with the same (session, seq) is safe).
  if (forwarding_.empty()) return;
  expire_started_before(forwarding_, env_.clock->now() - opt_.tick * (opt_.election_ticks * 2), [&](Forwarding& f) {
    ++proposals_failed_;
    f.done(fail(NodeError{NodeErrc::unknown_outcome, core_->leader(), "no answer from the leader to a forwarded command"}));
  });
}

void Replica::propose_conf(const raft::ConfChange& cc, ProposeCallback done) {
  if (stopped_) return done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "shutting down"}));
  auto r = core_->propose_conf_change(cc);
  if (!r) return done(fail(error_from(r.error())));
  track(*r, std::move(done));
}

// ---- the members' client addresses (issue 13) ------------------------------------------------

std::string Replica::client_address_payload(NodeId id, std::string_view address) {
  std::string payload(1, static_cast<char>(kKindClientAddress));
  le::put_u64(payload, id.value);
  payload += address;
  return payload;
}

// A member whose configured client address differs from the replicated one announces it
// through the log: itself when leader, else forwarded to the leader (thesis §6.2), which
// records it under this node's id. Retried until an entry with this address is applied here,
// the pause doubling from one election timeout to 64 (a leader of an older version, which
// ignores the kind and appends the address as a command, gets one entry a minute, not a
// second); announcing the same address again changes nothing.
void Replica::maybe_announce_client_address() {
  if (announce_backoff_ > 0) --announce_backoff_;
  if (opt_.client_address.empty() || announcing_ || announce_backoff_ > 0) return;
  if (auto it = client_addresses_.find(opt_.id); it != client_addresses_.end() && it->second == opt_.client_address) return;
  // Only a member (a removed node's announcement would be ignored), once it knows a leader.
  if (addresses_.count(opt_.id) == 0 || core_->leader() == NodeId{} || stopped_) return;
  if (!valid_client_address(opt_.client_address)) {
    spdlog::error("client address '{}' is not a valid host:port; not announced", opt_.client_address);
    opt_.client_address.clear();
    return;
  }
  announcing_ = true;
  announce_backoff_ = opt_.election_ticks << std::min<std::uint32_t>(announce_attempts_++, 6);
  auto done = [this, alive = alive_](const Result<Committed, NodeError>& r) {
    if (!*alive) return;
    announcing_ = false;
    if (!r) spdlog::debug("[n{}] client address not announced yet: {}", opt_.id.value, r.error().message);
  };
  if (core_->role() == raft::Role::leader) return propose_raw(client_address_payload(opt_.id, opt_.client_address), done);
  if (forwarding_.size() + pending_.size() >= opt_.max_pending_proposals) return done(fail(NodeError{NodeErrc::busy, core_->leader(), "busy"}));
  std::uint64_t id = ++next_forward_id_;
  if (auto r = core_->forward(id, opt_.client_address, 0, kKindClientAddress); !r) return done(fail(error_from(r.error())));
  forwarding_[id] = Forwarding{std::move(done), env_.clock->now()};
  schedule_drive();
}

void Replica::apply_client_address(Index index, std::string_view data) {
  // Every replica applies the same entries to the same book, so each makes the same choice.
  if (data.size() < 8) {
    spdlog::error("entry {}: a truncated client address; ignored", index.value);
    return;
  }
  NodeId id{le::get_u64(data.data())};
  auto address = data.substr(8);
  if (!valid_client_address(address) || addresses_.count(id) == 0) {
    spdlog::warn("entry {}: client address of n{} ignored (not a member, or not host:port)", index.value, id.value);
    return;
  }
  client_addresses_[id] = std::string(address);
}

void Replica::add_member(NodeId id, std::string address, bool learner, ProposeCallback done) {
  if (id == NodeId{0} || !parse_host_port(address))
    return done(fail(NodeError{NodeErrc::invalid, core_->leader(), "want a non-zero id and host:port"}));
  if (!learner)  // thesis §4.2.1: the core refuses a voter with an empty log
    return done(fail(NodeError{NodeErrc::invalid, core_->leader(),
                               "add the node as a learner, then promote it once it has caught up"}));
  // The address is replicated first, so every member can reach the new node once it counts.
  std::string payload(1, static_cast<char>(kKindAddress));
  le::put_u64(payload, id.value);
  payload += address;
  propose_raw(std::move(payload), [this, id, done = std::move(done)](Result<Committed, NodeError> r) mutable {
    if (!r) return done(std::move(r));
    raft::ConfChange cc{raft::ConfChangeType::add_learner, id};
    propose_conf(cc, std::move(done));
  });
}

void Replica::promote_member(NodeId id, ProposeCallback done) {
  propose_conf(raft::ConfChange{raft::ConfChangeType::promote_learner, id}, std::move(done));
}

void Replica::remove_member(NodeId id, ProposeCallback done) {
  propose_conf(raft::ConfChange{raft::ConfChangeType::remove_node, id}, std::move(done));
}

Result<void, NodeError> Replica::transfer_leadership(NodeId to) {
  auto r = core_->transfer_leadership(to);
  if (!r) return fail(error_from(r.error()));
  schedule_drive();
  return {};
}

// ---- linearizable reads (ReadIndex, thesis §6.4) ----------------------------------------------

void Replica::read(std::string query, ReadCallback done) {
  if (stopped_) return done(fail(NodeError{NodeErrc::shutting_down, NodeId{}, "shutting down"}));
  if (reads_.size() >= opt_.max_pending_reads)
    return done(fail(NodeError{NodeErrc::busy, core_->leader(), "too many pending reads"}));
#ifdef TERN_PLANTED_BUGS
  // Planted bug "stale-read" (test builds only, docs/testing.md): answer from local state without
  // ReadIndex, so a deposed leader or a lagging follower serves stale data.
  static const bool stale_read = [] {
    const char* e = std::getenv("TERN_PLANTED_BUG");
    return e != nullptr && std::string_view(e) == "stale-read";
  }();
  if (stale_read) {
    ++reads_served_;
    return done(ReadResult{applied_, applier_->query(query)});
  }
#endif
  std::uint64_t id = ++next_read_id_;
  std::string ctx;
  le::put_u64(ctx, read_nonce_);
  le::put_u64(ctx, id);
  auto r = core_->read_index(std::move(ctx));
  if (!r) return done(fail(error_from(r.error())));
  reads_[id] = PendingRead{std::move(query), std::move(done), env_.clock->now()};
  schedule_drive();
}

void Replica::on_read_states(std::vector<raft::ReadState>& states) {
  for (auto& rs : states) {
    // A leader's answer to a request of an earlier incarnation of this node (queued for it,
    // duplicated, delayed) names another nonce: its index may predate writes acknowledged since.
    if (rs.context.size() != 16 || le::get_u64(rs.context.data()) != read_nonce_) continue;
    std::uint64_t id = le::get_u64(rs.context.data() + 8);
    if (reads_.count(id) == 0) continue;  // expired meanwhile
    reads_at_.emplace(rs.index, id);
  }
  serve_reads();
}

void Replica::serve_reads() {
  // A confirmed read is served once this node has applied its read index.
  while (!reads_at_.empty() && reads_at_.begin()->first <= applied_) {
    auto [index, id] = *reads_at_.begin();
    reads_at_.erase(reads_at_.begin());
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    auto r = std::move(it->second);
    reads_.erase(it);
    ++reads_served_;
    r.done(ReadResult{index, applier_->query(r.query)});
  }
}

void Replica::expire_reads() {
  // The leader may lose leadership, or drop a follower's request, before confirming a read:
  // answer after a bound rather than never. Nothing changed, so a retry is always safe.
  if (reads_.empty()) return;
  expire_started_before(reads_, env_.clock->now() - opt_.tick * (opt_.election_ticks * 2), [&](PendingRead& r) {
    r.done(fail(NodeError{NodeErrc::timed_out, core_->leader(), "no confirmed leader for the read in time"}));
  });
}

// ---- status -----------------------------------------------------------------------------------

NodeStatus Replica::status() const {
  NodeStatus s;
  s.id = opt_.id;
  s.role = raft::role_name(core_->role());
  s.term = core_->term();
  s.leader = core_->leader();
  s.commit = core_->commit_index();
  s.applied = applied_;
  s.last = core_->last_index();
  s.snapshot = last_snapshot_index_;
  s.applied_commands = applier_->applied_commands();
  s.pending = pending_.size();
  auto add = [&](NodeId id, bool voter) {
    MemberStatus m{id, "", "", voter, Index{0}};
    if (auto it = addresses_.find(id); it != addresses_.end()) m.address = it->second;
    if (auto it = client_addresses_.find(id); it != client_addresses_.end()) m.client_address = it->second;
    if (id == opt_.id) {
      m.match = core_->stable_index();
    } else if (const auto* pr = core_->progress(id)) {
      m.match = pr->match_index;
    }
    s.members.push_back(std::move(m));
  };
  for (NodeId v : core_->conf_state().voters) add(v, true);
  for (NodeId l : core_->conf_state().learners) add(l, false);
  return s;
}

std::string Replica::status_json() const {
  auto s = status();
  std::string out = "{\"id\":" + std::to_string(s.id.value) + ",\"role\":\"" + s.role + "\",\"term\":" +
                    std::to_string(s.term.value) + ",\"leader\":" + std::to_string(s.leader.value) +
                    ",\"commit_index\":" + std::to_string(s.commit.value) +
                    ",\"applied_index\":" + std::to_string(s.applied.value) +
                    ",\"last_index\":" + std::to_string(s.last.value) +
                    ",\"snapshot_index\":" + std::to_string(s.snapshot.value) +
                    ",\"pending_proposals\":" + std::to_string(s.pending) +
                    ",\"applied_commands\":" + std::to_string(s.applied_commands) +
                    ",\"members\":[";
  for (std::size_t i = 0; i < s.members.size(); ++i) {
    const auto& m = s.members[i];
    if (i > 0) out += ",";
    // Addresses come from validated host:port strings: no characters that need escaping.
    out += "{\"id\":" + std::to_string(m.id.value) + ",\"address\":\"" + m.address + "\",\"client_address\":\"" +
           m.client_address + "\",\"voter\":" +
           (m.voter ? "true" : "false") + ",\"match_index\":" + std::to_string(m.match.value) + "}";
  }
  out += "]}\n";
  return out;
}

bool Replica::is_ready() const {
  return core_->leader() != NodeId{0} && applied_.value + kReadyLagEntries >= core_->commit_index().value;
}

void Replica::update_metrics() {
  metrics_.set("tern_has_leader", core_->leader() != NodeId{0} ? 1 : 0);
  metrics_.set("tern_is_leader", core_->role() == raft::Role::leader ? 1 : 0);
  metrics_.set("tern_term", static_cast<double>(core_->term().value));
  metrics_.set("tern_commit_index", static_cast<double>(core_->commit_index().value));
  metrics_.set("tern_applied_index", static_cast<double>(applied_.value));
  metrics_.set("tern_proposals_pending", static_cast<double>(pending_.size()));
  metrics_.set_counter("tern_leader_changes_total", leader_changes_);
  metrics_.set_counter("tern_proposals_committed_total", proposals_committed_);
  metrics_.set_counter("tern_proposals_failed_total", proposals_failed_);
  metrics_.set_counter("tern_entries_applied_total", entries_applied_);
  metrics_.set_counter("tern_reads_served_total", reads_served_);
  metrics_.set("tern_reads_pending", static_cast<double>(reads_.size()));
  metrics_.set_counter("tern_snapshots_taken_total", snapshots_taken_);
  metrics_.set_counter("tern_snapshots_installed_total", snapshots_installed_);
  metrics_.set_counter("tern_peer_messages_rejected_total", peer_messages_rejected_);
}

// ---- the node's replicated state: address book + applier ------------------------------------

namespace {

void put_book(std::string& out, const std::map<NodeId, std::string>& book) {
  le::put_u32(out, static_cast<std::uint32_t>(book.size()));
  for (const auto& [id, addr] : book) {
    le::put_u64(out, id.value);
    le::put_u32(out, static_cast<std::uint32_t>(addr.size()));
    out += addr;
  }
}

// count u32 | count x (id u64 | len u32 | len bytes), consumed from the front of `d`.
Result<std::map<NodeId, std::string>, std::string> get_book(std::string_view& d, const char* what) {
  if (d.size() < 4) return fail(std::string("truncated ") + what);
  std::uint32_t count = le::get_u32(d.data());
  d.remove_prefix(4);
  std::map<NodeId, std::string> book;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (d.size() < 12) return fail(std::string("truncated ") + what);
    NodeId id{le::get_u64(d.data())};
    std::uint32_t len = le::get_u32(d.data() + 8);
    d.remove_prefix(12);
    if (d.size() < len) return fail(std::string("truncated ") + what);
    book[id] = std::string(d.substr(0, len));
    d.remove_prefix(len);
  }
  return book;
}

}  // namespace

// The node's own part of a snapshot, before the applier's (the format of decode_state;
// docs/storage-format.md). "TNS2" adds the members' client addresses to "TNS1".
std::string Replica::encode_prefix() const {
  std::string out = "TNS2";
  put_book(out, addresses_);
  le::put_u64(out, last_cluster_time_ms_);
  put_book(out, client_addresses_);
  return out;
}

Result<void, std::string> Replica::decode_state(std::string_view d) {
  if (d.size() < 4 || (d.substr(0, 4) != "TNS1" && d.substr(0, 4) != "TNS2"))
    return fail(std::string("not a tern node snapshot"));
  bool v2 = d.substr(0, 4) == "TNS2";
  d.remove_prefix(4);
  auto book = get_book(d, "address book");
  if (!book) return fail(book.error());
  if (d.size() < 8) return fail(std::string("truncated snapshot"));
  std::uint64_t t = le::get_u64(d.data());
  d.remove_prefix(8);
  std::map<NodeId, std::string> clients;  // TNS1: none known yet (each member announces again)
  if (v2) {
    auto c = get_book(d, "client addresses");
    if (!c) return fail(c.error());
    // Checked like an entry: a bad one is dropped, the same on every node restoring this file.
    for (auto& [id, a] : *c)
      if (valid_client_address(a)) clients[id] = std::move(a);
  }
  if (auto r = applier_->restore(d); !r) return r;
  last_cluster_time_ms_ = t;
  client_addresses_ = std::move(clients);
  // Our own initial address for ourselves stays (it is what we listen on).
  for (const auto& [id, addr] : *book) {
    if (core_) {
      set_address(id, addr);
    } else {
      addresses_[id] = addr;  // recovery: the transport learns them at the end of recover()
    }
  }
  return {};
}

}  // namespace tern::service
