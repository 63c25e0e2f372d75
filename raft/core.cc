#include "raft/core.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>

#include "common/assert.h"
#include "common/le.h"
#include "common/overloaded.h"
#include "raft/message_check.h"
#include "raft/quorum.h"

namespace tern::raft {


const char* message_name(const MessageBody& body) {
  static constexpr const char* names[] = {"AppendRequest",  "AppendReply",    "VoteRequest",
                                          "VoteReply",      "HeartbeatRequest", "HeartbeatReply",
                                          "InstallSnapshotRequest", "InstallSnapshotReply", "TimeoutNow",
                                          "ReadIndexRequest", "ReadIndexReply", "ProposeRequest", "ProposeReply", "CommitNotice"};
  static_assert(std::size(names) == std::variant_size_v<MessageBody>);
  return names[body.index()];
}

const char* role_name(Role r) {
  switch (r) {
    case Role::follower: return "follower";
    case Role::pre_candidate: return "pre_candidate";
    case Role::candidate: return "candidate";
    case Role::leader: return "leader";
  }
  return "?";
}

const char* error_name(RaftError e) {
  switch (e) {
    case RaftError::not_leader: return "not_leader";
    case RaftError::transfer_in_progress: return "transfer_in_progress";
    case RaftError::too_many_uncommitted_bytes: return "too_many_uncommitted_bytes";
    case RaftError::entry_too_large: return "entry_too_large";
    case RaftError::conf_change_pending: return "conf_change_pending";
    case RaftError::invalid_conf_change: return "invalid_conf_change";
    case RaftError::no_leader: return "no_leader";
    case RaftError::learner_behind: return "learner_behind";
  }
  return "?";
}

std::string encode_conf_change(const ConfChange& cc) {
  std::string out(1, static_cast<char>(cc.type));
  le::put_u64(out, cc.node.value);
  return out;
}

std::optional<ConfChange> decode_conf_change(std::string_view data) {
  if (data.size() != 9 || static_cast<std::uint8_t>(data[0]) > 3) return std::nullopt;
  return ConfChange{static_cast<ConfChangeType>(data[0]), NodeId{le::get_u64(data.data() + 1)}};
}

namespace {
constexpr std::uint8_t conf_state_tag = 0xff;

using le::put_u64;
bool get_u64(std::string_view& in, std::uint64_t& v) {
  if (in.size() < 8) return false;
  v = le::get_u64(in.data());
  in.remove_prefix(8);
  return true;
}
}  // namespace

std::string encode_conf_state(const ConfState& conf) {
  std::string out(1, static_cast<char>(conf_state_tag));
  put_u64(out, conf.voters.size());
  for (NodeId v : conf.voters) put_u64(out, v.value);
  put_u64(out, conf.learners.size());
  for (NodeId l : conf.learners) put_u64(out, l.value);
  return out;
}

std::optional<ConfState> decode_conf_state(std::string_view in) {
  if (in.empty() || static_cast<std::uint8_t>(in[0]) != conf_state_tag) return std::nullopt;
  in.remove_prefix(1);
  ConfState conf;
  for (auto* ids : {&conf.voters, &conf.learners}) {
    std::uint64_t n = 0;
    if (!get_u64(in, n) || n > in.size() / 8) return std::nullopt;
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t v = 0;
      get_u64(in, v);
      ids->push_back(NodeId{v});
    }
  }
  if (!in.empty()) return std::nullopt;
  return conf;
}

namespace {
void insert_sorted(std::vector<NodeId>& v, NodeId id) {
  auto it = std::lower_bound(v.begin(), v.end(), id);
  if (it == v.end() || *it != id) v.insert(it, id);
}
void erase_id(std::vector<NodeId>& v, NodeId id) { v.erase(std::remove(v.begin(), v.end(), id), v.end()); }
}  // namespace

ConfState apply_conf_change(ConfState conf, const ConfChange& cc) {
  switch (cc.type) {
    case ConfChangeType::add_learner:
      if (!contains(conf.voters, cc.node)) insert_sorted(conf.learners, cc.node);
      break;
    case ConfChangeType::add_voter:
    case ConfChangeType::promote_learner:
      erase_id(conf.learners, cc.node);
      insert_sorted(conf.voters, cc.node);
      break;
    case ConfChangeType::remove_node:
      erase_id(conf.learners, cc.node);
      erase_id(conf.voters, cc.node);
      break;
  }
  return conf;
}

// ---------------------------------------------------------------------------------------------
// Construction and restart.

namespace {
// A brand-new member of a new cluster writes the initial membership as entry 1 (term 1).
bool needs_bootstrap(const RestoreState& rs) {
  return rs.hard_state == HardState{} && !rs.snapshot && rs.entries.empty() && !rs.bootstrap.voters.empty();
}
RestoreState with_bootstrap(RestoreState rs) {
  if (!needs_bootstrap(rs)) return rs;
  rs.hard_state.term = Term{1};
  rs.entries.push_back(Entry{Term{1}, Index{1}, EntryType::conf_change, encode_conf_state(rs.bootstrap)});
  return rs;
}
}  // namespace

Core::Core(Config config, RestoreState restore_in)
    : Core(std::move(config), with_bootstrap(restore_in), needs_bootstrap(restore_in)) {}

// `bootstrapped`: the bootstrap entry and term were created here and are not durable yet.
Core::Core(Config config, RestoreState restore, bool bootstrapped)
    : config_(std::move(config)),
      rng_(config_.seed * 0x9e3779b97f4a7c15ULL + config_.id.value),
      term_(restore.hard_state.term),
      vote_(restore.hard_state.vote),
      log_(restore.snapshot ? restore.snapshot->index : Index{0}, restore.snapshot ? restore.snapshot->term : Term{0},
           std::move(restore.entries), restore.hard_state.commit, /*durable=*/!bootstrapped),
      applied_(log_.snapshot_index()),
      conf_(restore.snapshot ? restore.snapshot->conf : restore.bootstrap),
      snapshot_conf_(conf_),
      persisted_hs_(bootstrapped ? HardState{} : restore.hard_state) {
  TERN_ASSERT(config_.id != no_node);
  TERN_ASSERT(config_.election_ticks > config_.heartbeat_ticks);
  TERN_ASSERT(config_.heartbeat_ticks > 0);
  // Thesis §4.1: the membership is that of the last conf entry in the log (committed or not),
  // else the snapshot's. It depends only on the durable log, never on the durable commit index,
  // which may lag the log after a crash (issue 10, hole 3).
  log_changed_from(log_.first_index());
  if (!bootstrapped) persisted_hs_.commit = log_.committed();
  role_ = Role::follower;
  reset_randomized_election_timeout();
}

// ---------------------------------------------------------------------------------------------
// Roles (§5.2).

void Core::reset(Term term) {
  if (term != term_) {
    TERN_ASSERT(term > term_);  // terms only move forward (generation clock)
    term_ = term;
    vote_ = no_node;
  }
  leader_ = no_node;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_election_timeout();
  votes_.clear();
  transfer_target_ = no_node;
  pending_reads_.clear();
  read_acks_.clear();
  progress_.clear();
  uncommitted_bytes_ = 0;
}

void Core::reset_randomized_election_timeout() {
  std::uniform_int_distribution<std::uint32_t> dist(config_.election_ticks, 2 * config_.election_ticks - 1);
  randomized_election_ticks_ = dist(rng_);
}

void Core::become_follower(Term term, NodeId leader) {
  reset(term);
  role_ = Role::follower;
  leader_ = leader;
  logf("follower of %llu", (unsigned long long)leader.value);
}

void Core::become_pre_candidate() {
  // Thesis §9.6: ask whether we could win before disturbing anyone's term.
  TERN_ASSERT(role_ != Role::leader);
  votes_.clear();
  leader_ = no_node;
  role_ = Role::pre_candidate;
  election_elapsed_ = 0;
  reset_randomized_election_timeout();
  if (is_voter()) votes_[config_.id] = true;  // a removed server campaigns without counting itself
  logf("pre-candidate for term %llu", (unsigned long long)term_.next().value);
  if (votes_.size() >= majority(conf_.voters.size())) {
    become_candidate(false);
    return;
  }
  for (NodeId v : conf_.voters) {
    if (v == config_.id) continue;
    msgs_.push_back(Message{config_.id, v, term_.next(),
                            VoteRequest{log_.last_index(), log_.last_term(), /*pre_vote=*/true, false}});
  }
}

void Core::become_candidate(bool transfer) {
  TERN_ASSERT(role_ != Role::leader);
  reset(term_.next());
  role_ = Role::candidate;
  vote_ = config_.id;  // persisted with the term in the next Ready, before the requests leave
  if (is_voter()) votes_[config_.id] = true;
  logf("candidate");
  if (votes_.size() >= majority(conf_.voters.size())) {
    become_leader();
    return;
  }
  for (NodeId v : conf_.voters) {
    if (v == config_.id) continue;
    send(v, VoteRequest{log_.last_index(), log_.last_term(), false, transfer});
  }
}

void Core::become_leader() {
  TERN_ASSERT(role_ == Role::candidate);
  reset(term_);
  role_ = Role::leader;
  leader_ = config_.id;
  for (NodeId v : conf_.voters)
    if (v != config_.id) progress_[v] = Progress{};
  for (NodeId l : conf_.learners)
    if (l != config_.id) progress_[l] = Progress{};
  for (auto& [id, pr] : progress_) {
    pr.next_index = log_.last_index().next();
    pr.recent_active = true;
  }
  // §8 / §5.4.2: commit an entry of the new term so earlier entries commit and ReadIndex works.
  // No membership change until it commits (the fix for single-server changes, thesis §4.1 errata).
  append_leader_entry(EntryType::noop, {});
  pending_conf_index_ = log_.last_index();
  logf("leader");
}

bool Core::is_voter() const { return contains(conf_.voters, config_.id); }
bool Core::is_learner() const { return contains(conf_.learners, config_.id); }
bool Core::promotable() const {
  if (is_voter()) return true;
  // Thesis §4.2.2: a server removed by a change that is not yet committed "might still time out
  // and become leader again", and must be allowed to: with membership adopted when appended, the
  // removal may sit only in its log (a leader that removed itself and lost leadership before its
  // followers had the entry). The others still count it as a voter and refuse a log shorter than
  // its own, so if it never campaigned no one could be elected (tern-sim --node --seed 75
  // --voters 1 --spares 1 --remove-leader). It counts votes with the new configuration, without
  // itself, and a leader outside it steps down once the change commits (maybe_commit).
  if (conf_history_.empty() || conf_history_.back().first <= log_.committed()) return false;
  const ConfState& before = conf_history_.size() > 1 ? conf_history_[conf_history_.size() - 2].second : snapshot_conf_;
  return contains(before.voters, config_.id) && !is_learner();
}

bool Core::in_leader_lease() const {
  // Thesis §4.2.3: while a node hears from a leader, it ignores vote requests, so a removed or
  // partitioned server cannot depose a working leader.
  return config_.check_quorum && leader_ != no_node && election_elapsed_ < config_.election_ticks;
}

void Core::campaign(bool transfer) {
  if (config_.pre_vote && !transfer)
    become_pre_candidate();
  else
    become_candidate(transfer);
}

// ---------------------------------------------------------------------------------------------
// Time.

void Core::tick() {
  if (role_ == Role::leader)
    tick_leader();
  else
    tick_election();
}

void Core::tick_election() {
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_ticks_) {
    election_elapsed_ = 0;
    campaign(false);
  }
}

void Core::tick_leader() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // Thesis §6.2: a leader that has not heard from a majority in an election timeout steps
      // down, so clients stop waiting on a leader that can no longer commit.
      std::size_t active = is_voter() ? 1 : 0;
      for (NodeId v : conf_.voters) {
        if (v == config_.id) continue;
        auto it = progress_.find(v);
        if (it != progress_.end() && it->second.recent_active) ++active;
      }
      if (active < majority(conf_.voters.size())) {
        logf("check-quorum failed: stepping down");
        become_follower(term_, no_node);
        return;
      }
    }
    for (auto& [id, pr] : progress_) pr.recent_active = false;
  }
  // Thesis §3.10: abandon a transfer that has not completed within an election timeout. It has
  // its own clock: resetting election_elapsed_ for it would let repeated transfer requests keep
  // a leader that lost its majority from ever running the check-quorum above (hole 6).
  if (transfer_target_ != no_node && ++transfer_elapsed_ >= config_.election_ticks) {
    logf("leadership transfer to %llu timed out", (unsigned long long)transfer_target_.value);
    transfer_target_ = no_node;
  }
  for (auto& [id, pr] : progress_) {
    // An InstallSnapshot may be lost; after two election timeouts, probe again (and resend).
    if (pr.state == ProgressState::snapshot && ++pr.snapshot_ticks >= 2 * config_.election_ticks) pr.become_probe();
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    broadcast_heartbeat();
  }
}

// ---------------------------------------------------------------------------------------------
// Messages.

Result<void, StepError> Core::step(Message m) {
  // Peer input is hostile: everything is checked before anything changes, so a rejected message
  // is never half-applied (docs/raft.md "Peer input").
  std::optional<std::string> err;
  if (m.to != config_.id)
    err = "message addressed to node " + std::to_string(m.to.value);
  else
    err = check_message(m);
  if (!err) err = check_against_state(m);
  if (err) {
    logf("rejected %s from %llu: %s", message_name(m.body), (unsigned long long)m.from.value, err->c_str());
    return fail(StepError{std::move(*err)});
  }
  if (!step_term(m)) return {};
  switch (role_) {
    case Role::leader: step_leader(m); break;
    case Role::candidate:
    case Role::pre_candidate: step_candidate(m); break;
    case Role::follower: step_follower(m); break;
  }
  return {};
}

// The checks that need this core's state: claims no correct peer can make to us now.
std::optional<std::string> Core::check_against_state(const Message& m) const {
  // The receiving driver attaches the streamed bytes before stepping (raft/ready.h).
  if (const auto* r = std::get_if<InstallSnapshotRequest>(&m.body); r && r->data == nullptr)
    return "snapshot without data";
  if (const auto* r = std::get_if<AppendRequest>(&m.body); r && m.term >= term_ && r->prev_index < log_.committed()) {
    // handle_append skips the part of an append at or below our commit index, trusting Leader
    // Completeness (§5.4); a message whose entry at our commit index differs contradicts it.
    Index at = std::min(log_.committed(), r->prev_index + r->entries.size());
    auto ours = log_.term_at(at);  // unknown below our snapshot: all of that is committed
    if (at > r->prev_index && ours && *ours != r->entries[at - r->prev_index - 1].term)
      return "append contradicts a committed entry";
  }
  if (m.term != term_) return std::nullopt;  // other terms: handled (or ignored) by step_term
  bool from_leader = sent_by_leader(m.body);
  // Election safety (§5.2): one leader per term.
  if (from_leader && role_ == Role::leader) return "a second leader in our term";
  if (from_leader && leader_ != no_node && leader_ != m.from) return "a second leader in our term";
  if (role_ != Role::leader) return std::nullopt;
  // Replies vouch for entries we sent in this term; our log only grows while we lead, so they
  // never name an index beyond it.
  if (const auto* r = std::get_if<AppendReply>(&m.body)) {
    if (r->success && r->match_index > log_.last_index()) return "append reply beyond our log";
    if (!r->success && r->rejected_index > log_.last_index()) return "append rejection beyond our log";
  }
  if (const auto* r = std::get_if<InstallSnapshotReply>(&m.body); r && r->match_index > log_.last_index())
    return "snapshot reply beyond our log";
  return std::nullopt;
}

// Term rules common to all roles (§5.1, Figure 2 "Rules for All Servers"). Returns false if the
// message is consumed here.
bool Core::step_term(const Message& m) {
  const auto* vreq = std::get_if<VoteRequest>(&m.body);
  if (m.term > term_) {
    if (vreq && !vreq->transfer && in_leader_lease()) {
      logf("ignoring vote request from %llu: leader lease", (unsigned long long)m.from.value);
      return false;
    }
    if (vreq && vreq->pre_vote) return true;  // a pre-vote never changes anyone's term
    if (const auto* vrep = std::get_if<VoteReply>(&m.body); vrep && vrep->pre_vote && vrep->granted) return true;
    become_follower(m.term, sent_by_leader(m.body) ? m.from : no_node);
    return true;
  }
  if (m.term < term_) {
    if (std::holds_alternative<AppendRequest>(m.body) || std::holds_alternative<HeartbeatRequest>(m.body) ||
        std::holds_alternative<CommitNotice>(m.body)) {
      // A stale leader (e.g. healed from a partition) learns our term and steps down; with
      // pre-vote and check-quorum nothing else would tell it.
      send(m.from, AppendReply{});
    } else if (vreq && vreq->pre_vote) {
      send(m.from, VoteReply{false, true});
    }
    return false;
  }
  return true;
}

void Core::step_leader(Message& m) {
  std::visit(Overloaded{
                 [&](AppendReply& r) { handle_append_reply(m, r); },
                 [&](HeartbeatReply& r) { handle_heartbeat_reply(m, r); },
                 [&](InstallSnapshotReply& r) { handle_snapshot_reply(m, r); },
                 [&](ReadIndexRequest& r) { handle_read_index_request(m.from, std::move(r.context)); },
                 [&](ProposeRequest& r) { forwarded_.push_back(Forwarded{m.from, r.context, std::move(r.command), r.trace, r.kind}); },
                 [&](ProposeReply& r) { on_propose_reply(m, r); },
                 [&](VoteRequest& r) { handle_vote_request(m, r); },
                 [&](auto&) {},
             },
             m.body);
}

void Core::step_candidate(Message& m) {
  std::visit(Overloaded{
                 [&](VoteReply& r) { handle_vote_reply(m, r); },
                 [&](VoteRequest& r) { handle_vote_request(m, r); },
                 [&](AppendRequest& r) {
                   become_follower(term_, m.from);  // §5.2: a leader of our term exists
                   handle_append(m, r);
                 },
                 [&](HeartbeatRequest& r) {
                   become_follower(term_, m.from);
                   handle_heartbeat(m, r);
                 },
                 [&](CommitNotice& r) {
                   become_follower(term_, m.from);
                   handle_commit_notice(m, r);
                 },
                 [&](InstallSnapshotRequest& r) {
                   become_follower(term_, m.from);
                   handle_snapshot(m, r);
                 },
                 [&](ReadIndexRequest& r) { send(m.from, ReadIndexReply{std::move(r.context), Index{}, false}); },
                 [&](ProposeRequest& r) { send(m.from, ProposeReply{r.context, Index{}, false}); },
                 [&](ProposeReply& r) { on_propose_reply(m, r); },
                 [&](auto&) {},
             },
             m.body);
}

void Core::step_follower(Message& m) {
  std::visit(Overloaded{
                 [&](AppendRequest& r) { handle_append(m, r); },
                 [&](HeartbeatRequest& r) { handle_heartbeat(m, r); },
                 [&](CommitNotice& r) { handle_commit_notice(m, r); },
                 [&](InstallSnapshotRequest& r) { handle_snapshot(m, r); },
                 [&](VoteRequest& r) { handle_vote_request(m, r); },
                 [&](TimeoutNow&) {
                   // Thesis §3.10: the leader chose us; start an election now, skipping pre-vote.
                   if (promotable()) become_candidate(true);
                 },
                 [&](ReadIndexRequest& r) { send(m.from, ReadIndexReply{std::move(r.context), Index{}, false}); },
                 [&](ReadIndexReply& r) {
                   if (r.ok) read_states_.push_back(ReadState{std::move(r.context), r.index});
                 },
                 [&](ProposeRequest& r) { send(m.from, ProposeReply{r.context, Index{}, false}); },
                 [&](ProposeReply& r) { on_propose_reply(m, r); },
                 [&](auto&) {},
             },
             m.body);
}

void Core::handle_vote_request(const Message& m, const VoteRequest& req) {
  bool up_to_date = log_.is_up_to_date(req.last_index, req.last_term);  // §5.4.1
  if (req.pre_vote) {
    // Thesis §9.6: grant if the candidate could win a real election now: its term would be
    // newer and its log is at least as up-to-date. Nothing is recorded.
    bool grant = m.term > term_ && up_to_date;
    msgs_.push_back(Message{config_.id, m.from, grant ? m.term : term_, VoteReply{grant, true}});
    return;
  }
  TERN_ASSERT(m.term == term_);
  // Figure 2 RequestVote: at most one vote per term (vote_ is persisted with the reply's Ready).
  bool can_vote = vote_ == m.from || (vote_ == no_node && leader_ == no_node);
  bool grant = can_vote && up_to_date;
  if (grant) {
    vote_ = m.from;
    election_elapsed_ = 0;
  }
  send(m.from, VoteReply{grant, false});
}

void Core::handle_vote_reply(const Message& m, const VoteReply& rep) {
  bool pre = role_ == Role::pre_candidate;
  if (rep.pre_vote != pre) return;  // a reply to an earlier round
  if (!contains(conf_.voters, m.from)) return;
  votes_.emplace(m.from, rep.granted);
  std::size_t granted = 0, rejected = 0;
  for (auto& [id, g] : votes_) (g ? granted : rejected)++;
  std::size_t need = majority(conf_.voters.size());
  if (granted >= need) {
    if (pre)
      become_candidate(false);
    else
      become_leader();
  } else if (rejected >= need) {
    become_follower(term_, no_node);
  }
}

void Core::handle_append(const Message& m, AppendRequest& req) {
  leader_ = m.from;
  election_elapsed_ = 0;
  Index prev = req.prev_index;
  Term prev_term = req.prev_term;
  std::vector<Entry>& entries = req.entries;
  if (prev < log_.committed()) {
    // A delayed or duplicated append overlapping our committed prefix. Committed entries are
    // in every later leader's log (Leader Completeness, §5.4), so that prefix matches: skip it
    // rather than ever comparing (and truncating) committed entries.
    std::size_t skip = std::min<std::size_t>(entries.size(), log_.committed() - prev);
    entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(skip));
    prev = log_.committed();
    prev_term = *log_.term_at(prev);
  }
  if (!log_.matches(prev, prev_term)) {
    // §5.3: reject when we lack the entry preceding the new ones; hint where to resume.
    AppendReply rep;
    rep.rejected_index = req.prev_index;
    if (prev > log_.last_index()) {
      rep.conflict_index = log_.last_index().next();
    } else {
      rep.conflict_term = *log_.term_at(prev);
      rep.conflict_index = std::max(log_.first_index_of_term(prev, rep.conflict_term), log_.committed().next());
    }
    send(m.from, rep);
    return;
  }
  // The first entry that differs from our log: from there on the log (and so possibly the
  // membership) changes.
  std::optional<Index> changed;
  for (const Entry& e : entries) {
    if (!log_.matches(e.index, e.term)) {
      changed = e.index;
      break;
    }
  }
  Index last_new = log_.append_after(prev, std::move(entries));
  if (changed) log_changed_from(*changed);
  // Figure 2 AppendEntries step 5: commitIndex = min(leaderCommit, index of last new entry);
  // the entries up to last_new are exactly those the message vouches for (contiguous, checked).
  log_.commit_to(std::min(req.commit, last_new));
  AppendReply rep;
  rep.success = true;
  rep.match_index = last_new;
  send(m.from, rep);
}

void Core::handle_append_reply(const Message& m, const AppendReply& rep) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recent_active = true;
  if (!rep.success) {
    if (pr.state == ProgressState::replicate) {
      if (rep.rejected_index <= pr.match_index) return;  // stale
      pr.become_probe();
    } else if (pr.state == ProgressState::probe) {
      if (rep.rejected_index.next() != pr.next_index) return;  // a reply to an older probe
    } else {
      return;
    }
    // Fast back-off (§5.3): skip the follower's whole conflicting term at once.
    Index next = rep.conflict_index;
    if (rep.conflict_term != Term{0}) {
      Index j = log_.last_index_with_term_at_most(rep.conflict_term);
      if (log_.term_at(j) == rep.conflict_term) next = j.next();
    }
    next = std::min(next, rep.rejected_index);
    next = std::max(next, pr.match_index.next());
    pr.next_index = next;
    pr.probe_sent = false;
    send_append(m.from, pr, true);
    return;
  }
  pr.free_inflights_to(rep.match_index);
  if (pr.update_match(rep.match_index)) {
    if (pr.state == ProgressState::probe) pr.become_replicate();
    if (pr.state == ProgressState::snapshot && pr.match_index >= pr.pending_snapshot) pr.become_replicate();
    if (m.from == transfer_target_ && pr.match_index == log_.last_index()) send(m.from, TimeoutNow{});
    if (maybe_commit()) {
      // The commit may have changed the membership (even removed us or this follower), so the
      // progress reference is not used past this point.
      if (role_ != Role::leader) return;
      broadcast_commit();
      return;
    }
  }
  if (pr.state == ProgressState::probe) pr.probe_sent = false;
  for (int i = 0; i < 64 && send_append(m.from, pr, false); ++i) {
  }
  // This follower now holds entries committed before it had them.
  maybe_send_commit(m.from, pr);
}

void Core::handle_heartbeat(const Message& m, const HeartbeatRequest& req) {
  leader_ = m.from;
  election_elapsed_ = 0;
  // The leader sends min(our match, its commit): entries we are known to hold.
  log_.commit_to(std::min(req.commit, log_.last_index()));
  send(m.from, HeartbeatReply{req.read_seq});
}

void Core::handle_commit_notice(const Message& m, const CommitNotice& n) {
  leader_ = m.from;
  election_elapsed_ = 0;
  log_.commit_to(std::min(n.commit, log_.last_index()));
}

void Core::handle_heartbeat_reply(const Message& m, const HeartbeatReply& rep) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recent_active = true;
  auto& ack = read_acks_[m.from];
  ack = std::max(ack, std::min(rep.read_seq, read_seq_));  // never credit a round not yet started
  if (pr.state == ProgressState::probe) pr.probe_sent = false;
  // Appends in flight may have been lost (a dropped connection): a follower that answers
  // heartbeats but makes no progress while appends are outstanding is probed again from its
  // match index.
  if (pr.state == ProgressState::replicate && !pr.inflights.empty() && ++pr.stalled_heartbeats >= 2) {
    pr.become_probe();
    pr.stalled_heartbeats = 0;
  }
  if (pr.match_index < log_.last_index()) send_append(m.from, pr, false);
  release_reads();
}

void Core::handle_snapshot(const Message& m, const InstallSnapshotRequest& req) {
  leader_ = m.from;
  election_elapsed_ = 0;
  const SnapshotMeta& meta = req.meta;
  if (meta.index <= log_.committed()) {
    send(m.from, InstallSnapshotReply{log_.committed()});
    return;
  }
  if (log_.matches(meta.index, meta.term)) {
    // We already hold the snapshot's last entry: it is committed; nothing to restore.
    log_.commit_to(meta.index);
    send(m.from, InstallSnapshotReply{meta.index});
    return;
  }
  // §7: discard the log (it conflicts or is too short) and restart from the snapshot.
  log_.restore(meta.index, meta.term);
  snapshot_conf_ = meta.conf;
  conf_history_.clear();
  log_changed_from(log_.first_index());
  applied_ = meta.index;  // the application restores from the snapshot in the next Ready
  pending_snapshot_ = Snapshot{meta, req.data};
  logf("installed snapshot at %llu", (unsigned long long)meta.index.value);
  send(m.from, InstallSnapshotReply{meta.index});
}

void Core::handle_snapshot_reply(const Message& m, const InstallSnapshotReply& rep) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recent_active = true;
  pr.update_match(rep.match_index);
  pr.become_probe();
  send_append(m.from, pr, false);
}

// ---------------------------------------------------------------------------------------------
// Leader replication (§5.3).

bool Core::send_append(NodeId to, Progress& pr, bool allow_empty) {
  if (pr.state == ProgressState::snapshot) return false;
  if (pr.state == ProgressState::probe && pr.probe_sent) return false;
  if (pr.state == ProgressState::replicate &&
      (pr.inflights.size() >= config_.max_inflight_msgs || pr.inflight_bytes >= config_.max_inflight_bytes))
    return false;
  Index prev = pr.next_index.prev();
  auto prev_term = log_.term_at(prev);
  if (!prev_term) {
    // The follower needs entries we compacted away: send the snapshot (§7).
    msgs_.push_back(Message{config_.id, to, term_, InstallSnapshotRequest{snapshot_meta(), nullptr}});
    pr.become_snapshot(log_.snapshot_index());
    return true;
  }
  std::vector<Entry> entries;
  if (pr.next_index <= log_.last_index()) entries = log_.slice(pr.next_index, log_.last_index(), config_.max_msg_bytes);
  if (entries.empty() && !allow_empty) return false;
  std::size_t bytes = 0;
  for (const auto& e : entries) bytes += e.data.size();
  Index last = entries.empty() ? prev : entries.back().index;
  if (pr.state == ProgressState::replicate) {
    // A follower that accepts this applies the commit through `last` (Figure 2, AppendEntries 5).
    pr.commit_sent = std::max(pr.commit_sent, std::min(log_.committed(), last));
  }
  if (pr.state == ProgressState::replicate && !entries.empty()) {
    pr.next_index = last.next();  // pipelining: assume success, back off on rejection
    pr.inflights.push_back(Inflight{last, bytes});
    pr.inflight_bytes += bytes;
  } else if (pr.state == ProgressState::probe) {
    pr.probe_sent = true;
  }
  send(to, AppendRequest{prev, *prev_term, std::move(entries), log_.committed()});
  return true;
}

void Core::send_heartbeat(NodeId to, Progress& pr) {
  Index commit = std::min(pr.match_index, log_.committed());
  pr.commit_sent = std::max(pr.commit_sent, commit);
  send(to, HeartbeatRequest{commit, read_seq_});
}

void Core::broadcast_commit() {
  for (auto& [id, pr] : progress_) {
    // A follower being probed (or just added) gets an append, empty or not: its reply is what
    // moves the probe on.
    if (pr.state != ProgressState::replicate) {
      send_append(id, pr, true);
      continue;
    }
    // New entries carry the commit with them; a follower with nothing new gets a notice.
    if (!send_append(id, pr, false)) maybe_send_commit(id, pr);
  }
}

void Core::maybe_send_commit(NodeId to, Progress& pr) {
  Index commit = std::min(pr.match_index, log_.committed());
  if (commit <= pr.commit_sent) return;
  pr.commit_sent = commit;
  send(to, CommitNotice{commit});
}

void Core::broadcast_heartbeat() {
  for (auto& [id, pr] : progress_) send_heartbeat(id, pr);
}

void Core::broadcast_append() {
  for (auto& [id, pr] : progress_) {
    for (int i = 0; i < 64 && send_append(id, pr, false); ++i) {
    }
  }
}

Index Core::own_match() const { return log_.stable(); }  // only what is durable here counts

std::vector<Index> Core::voter_matches() const {
  std::vector<Index> matches;
  matches.reserve(conf_.voters.size());
  for (NodeId v : conf_.voters) {
    if (v == config_.id) {
      matches.push_back(own_match());
    } else {
      auto it = progress_.find(v);
      matches.push_back(it == progress_.end() ? Index{0} : it->second.match_index);
    }
  }
  return matches;
}

bool Core::maybe_commit() {
  TERN_ASSERT(role_ == Role::leader);
  // A leader that removed itself still commits with the new voters (thesis §4.2.2).
  if (conf_.voters.empty()) return false;
  Index q = quorum_index(voter_matches());
  // §5.4.2: only entries of the current term are committed by counting replicas; earlier ones
  // commit indirectly with them.
  if (q <= log_.committed() || log_.term_at(q) != term_) return false;
  Index old = log_.committed();
  log_.commit_to(q);
  for (Index i = old.next(); i <= q; i = i.next()) {
    std::size_t n = log_.at(i).data.size();
    uncommitted_bytes_ -= std::min(uncommitted_bytes_, n);
  }
  if (!is_voter() && pending_conf_index_ <= q) {
    // Thesis §4.2.2: a leader removed from the configuration steps down once that change commits.
    logf("removed from the membership: stepping down");
    become_follower(term_, no_node);
    return true;
  }
  release_reads();
  return true;
}

void Core::append_leader_entry(EntryType type, std::string data) {
  uncommitted_bytes_ += data.size();
  log_.append(Entry{term_, log_.last_index().next(), type, std::move(data)});
  if (type == EntryType::conf_change) log_changed_from(log_.last_index());
  pending_broadcast_ = true;
}

// ---------------------------------------------------------------------------------------------
// Proposals.

Result<Index, ProposeError> Core::propose(std::string data) {
  if (role_ != Role::leader) return fail(ProposeError{RaftError::not_leader, leader_});
  if (transfer_target_ != no_node) return fail(ProposeError{RaftError::transfer_in_progress, transfer_target_});
  if (data.size() > config_.max_entry_bytes) return fail(ProposeError{RaftError::entry_too_large, leader_});
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > config_.max_uncommitted_bytes)
    return fail(ProposeError{RaftError::too_many_uncommitted_bytes, leader_});
  append_leader_entry(EntryType::normal, std::move(data));
  return log_.last_index();
}

Result<Index, ProposeError> Core::propose_conf_change(const ConfChange& cc) {
  if (role_ != Role::leader) return fail(ProposeError{RaftError::not_leader, leader_});
  if (transfer_target_ != no_node) return fail(ProposeError{RaftError::transfer_in_progress, transfer_target_});
  // Thesis §4.1: one change at a time, and (errata) only after an entry of this term committed.
  if (pending_conf_index_ > log_.committed() || log_.term_at(log_.committed()) != term_)
    return fail(ProposeError{RaftError::conf_change_pending, leader_});
  bool voter = contains(conf_.voters, cc.node), learner = contains(conf_.learners, cc.node);
  bool valid = cc.node != no_node;
  switch (cc.type) {
    case ConfChangeType::add_learner: valid = valid && !voter && !learner; break;
    // Thesis §4.2.1: a new server with an empty log would count towards every majority while it
    // catches up, stalling commitment. A voter is added only as a learner, then promoted.
    case ConfChangeType::add_voter: valid = false; break;
    case ConfChangeType::promote_learner: valid = valid && learner; break;
    case ConfChangeType::remove_node: valid = valid && (voter || learner) && !(voter && conf_.voters.size() == 1); break;
  }
  if (!valid) return fail(ProposeError{RaftError::invalid_conf_change, leader_});
  if (cc.type == ConfChangeType::promote_learner) {
    // The learner has caught up: its match index is within max_promote_lag of our last index.
    const Progress* pr = progress(cc.node);
    if (pr == nullptr || pr->match_index.value + config_.max_promote_lag < log_.last_index().value)
      return fail(ProposeError{RaftError::learner_behind, leader_});
  }
  append_leader_entry(EntryType::conf_change, encode_conf_change(cc));
  pending_conf_index_ = log_.last_index();
  return log_.last_index();
}

// ---------------------------------------------------------------------------------------------
// Membership (thesis §4.1). A change takes effect on each server as soon as its entry is in the
// log, committed or not; a truncated change is rolled back to the configuration before it.

void Core::log_changed_from(Index from) {
  // Forget the changes at or after `from` (a truncated suffix), then adopt those now in the log.
  bool changed = false;
  while (!conf_history_.empty() && conf_history_.back().first >= from) {
    conf_history_.pop_back();
    changed = true;
  }
  // Copied only when there is a change to apply: this runs for every append (hot path).
  std::optional<ConfState> latest;
  auto conf_before = [&]() -> const ConfState& {
    return conf_history_.empty() ? snapshot_conf_ : conf_history_.back().second;
  };
  for (Index i = std::max(from, log_.first_index()); i <= log_.last_index(); i = i.next()) {
    const Entry& e = log_.at(i);
    if (e.type != EntryType::conf_change) continue;
    if (!latest) latest = conf_before();
    ConfState& conf = *latest;
    if (auto whole = decode_conf_state(e.data)) {
      conf = std::move(*whole);
    } else if (auto cc = decode_conf_change(e.data)) {
      conf = apply_conf_change(std::move(conf), *cc);
    } else {
      // Never proposed, and rejected when it arrives in an append (check_message); only a
      // damaged local log could hold one. Skipping it is deterministic on every server.
      logf("ignoring undecodable membership change at %llu", (unsigned long long)i.value);
      continue;
    }
    conf_history_.emplace_back(i, conf);
    changed = true;
  }
  if (latest) {
    set_conf(std::move(*latest));
  } else if (changed || conf_before() != conf_) {
    set_conf(conf_before());
  }
}

void Core::set_conf(ConfState conf) {
  conf_ = std::move(conf);
  logf("membership: %zu voters, %zu learners", conf_.voters.size(), conf_.learners.size());
  if (role_ != Role::leader) return;
  // A leader that removes itself keeps leading (without counting itself) until the change
  // commits (thesis §4.2.2; see maybe_commit).
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (!contains(conf_.voters, it->first) && !contains(conf_.learners, it->first))
      it = progress_.erase(it);
    else
      ++it;
  }
  auto add = [&](NodeId id) {
    if (id == config_.id || progress_.count(id)) return;
    Progress pr;
    pr.next_index = log_.last_index().next();
    pr.recent_active = true;
    progress_[id] = pr;
  };
  for (NodeId v : conf_.voters) add(v);
  for (NodeId l : conf_.learners) add(l);
  if (transfer_target_ != no_node && !contains(conf_.voters, transfer_target_)) transfer_target_ = no_node;
  pending_broadcast_ = true;
}

// ---------------------------------------------------------------------------------------------
// Proposal forwarding (thesis §6.2).

Result<void, ProposeError> Core::forward(std::uint64_t context, std::string command, std::uint64_t trace,
                                         std::uint8_t kind) {
  if (role_ == Role::leader) return fail(ProposeError{RaftError::not_leader, leader_});  // propose instead
  if (leader_ == no_node) return fail(ProposeError{RaftError::no_leader, no_node});
  if (command.size() > config_.max_entry_bytes) return fail(ProposeError{RaftError::entry_too_large, leader_});
  send(leader_, ProposeRequest{context, std::move(command), trace, kind});
  return {};
}

void Core::answer_forwarded(NodeId to, std::uint64_t context, const Result<Index, ProposeError>& placed) {
  send(to, ProposeReply{context, placed ? *placed : Index{}, placed.has_value()});
}

void Core::on_propose_reply(const Message& m, const ProposeReply& r) {
  // The reply's term is the term of the entry the leader appended (it appends in its own term).
  placed_.push_back(Placed{r.context, r.index, m.term, r.ok, m.from});
}

// ---------------------------------------------------------------------------------------------
// ReadIndex (thesis §6.4).

Result<void, ProposeError> Core::read_index(std::string context) {
  if (role_ == Role::leader) {
    handle_read_index_request(no_node, std::move(context));
    return {};
  }
  if (leader_ == no_node) return fail(ProposeError{RaftError::no_leader, no_node});
  send(leader_, ReadIndexRequest{std::move(context)});
  return {};
}

void Core::handle_read_index_request(NodeId from, std::string context) {
  pending_reads_.push_back(PendingRead{from, std::move(context), Index{}, 0});
  release_reads();
}

void Core::release_reads() {
  if (pending_reads_.empty()) return;
  // 1. The read index is our commit index, but only once an entry of this term is committed:
  //    before that, our commit index may lag entries committed by earlier leaders.
  if (log_.term_at(log_.committed()) != term_) return;
  bool new_round = false;
  for (auto& r : pending_reads_) {
    if (r.seq == 0) {
      if (!new_round) {
        ++read_seq_;
        new_round = true;
      }
      r.seq = read_seq_;
      r.index = log_.committed();
    }
  }
  // 2. Confirm we are still leader: a majority must echo a heartbeat round sent after the
  //    read was registered.
  std::vector<Index> acks;  // round numbers as indices, to reuse quorum_index
  for (NodeId v : conf_.voters) {
    if (v == config_.id) {
      acks.push_back(Index{read_seq_});
    } else {
      auto it = read_acks_.find(v);
      acks.push_back(Index{it == read_acks_.end() ? 0 : it->second});
    }
  }
  std::uint64_t confirmed = acks.empty() ? 0 : quorum_index(std::move(acks)).value;
  auto done = std::stable_partition(pending_reads_.begin(), pending_reads_.end(),
                                    [&](const PendingRead& r) { return r.seq <= confirmed; });
  for (auto it = pending_reads_.begin(); it != done; ++it) deliver_read(*it);
  pending_reads_.erase(pending_reads_.begin(), done);
  if (new_round) broadcast_heartbeat();
}

void Core::deliver_read(const PendingRead& r) {
  if (r.from == no_node || r.from == config_.id)
    read_states_.push_back(ReadState{r.context, r.index});
  else
    send(r.from, ReadIndexReply{r.context, r.index, true});
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer (thesis §3.10).

Result<void, ProposeError> Core::transfer_leadership(NodeId target) {
  if (role_ != Role::leader) return fail(ProposeError{RaftError::not_leader, leader_});
  if (target == config_.id) return {};
  auto it = progress_.find(target);
  if (it == progress_.end() || !contains(conf_.voters, target))
    return fail(ProposeError{RaftError::invalid_conf_change, leader_});
  transfer_target_ = target;
  transfer_elapsed_ = 0;  // the transfer is abandoned after one election timeout (tick_leader)
  Progress& pr = it->second;
  if (pr.match_index == log_.last_index())
    send(target, TimeoutNow{});
  else
    send_append(target, pr, false);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Snapshots (§7).

SnapshotMeta Core::snapshot_meta() const {
  return SnapshotMeta{log_.snapshot_index(), log_.snapshot_term(), snapshot_conf_};
}

void Core::compact(Index upto) {
  TERN_ASSERT_MSG(upto <= applied_, "compact beyond the applied index");
  if (upto <= log_.snapshot_index()) return;
  ConfState conf = snapshot_conf_;
  std::size_t keep = 0;
  for (; keep < conf_history_.size() && conf_history_[keep].first <= upto; ++keep) conf = conf_history_[keep].second;
  conf_history_.erase(conf_history_.begin(), conf_history_.begin() + static_cast<std::ptrdiff_t>(keep));
  snapshot_conf_ = std::move(conf);
  log_.compact(upto, *log_.term_at(upto));
}

// ---------------------------------------------------------------------------------------------
// Ready / advance (raft/ready.h).

bool Core::has_ready() const {
  if (ready_outstanding_) return false;
  return hard_state() != persisted_hs_ || log_.unstable_from() <= log_.last_index() || pending_snapshot_ ||
         !msgs_.empty() || !read_states_.empty() || !forwarded_.empty() || !placed_.empty() ||
         applied_ < log_.committed() || pending_broadcast_;
}

Ready Core::ready() {
  TERN_ASSERT_MSG(!ready_outstanding_, "ready() called twice without advance()");
  if (pending_broadcast_ && role_ == Role::leader) broadcast_append();
  pending_broadcast_ = false;
  Ready rd;
  HardState hs = hard_state();
  if (hs != persisted_hs_) {
    rd.hard_state = hs;
    rd.term_or_vote_changed = hs.term != persisted_hs_.term || hs.vote != persisted_hs_.vote;
  }
  rd.entries = log_.unstable_entries();
  rd.snapshot = std::move(pending_snapshot_);
  pending_snapshot_.reset();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  if (applied_ < log_.committed()) {
    rd.committed.reserve(log_.committed() - applied_);
    for (Index i = applied_.next(); i <= log_.committed(); i = i.next()) rd.committed.push_back(log_.at(i));
  }
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.forwarded = std::move(forwarded_);
  forwarded_.clear();
  rd.placed = std::move(placed_);
  placed_.clear();
  ready_outstanding_ = true;
  return rd;
}

void Core::advance(const Ready& rd) {
  TERN_ASSERT_MSG(ready_outstanding_, "advance() without ready()");
  ready_outstanding_ = false;
  if (rd.hard_state) persisted_hs_ = *rd.hard_state;
  // Scan back for the newest entry of this Ready that is still in our log: it and everything
  // before it are now durable (Log Matching, §5.3).
  for (auto it = rd.entries.rbegin(); it != rd.entries.rend(); ++it) {
    if (log_.matches(it->index, it->term)) {
      log_.stable_to(it->index, it->term);
      break;
    }
  }
  if (!rd.committed.empty()) applied_ = std::max(applied_, rd.committed.back().index);
  if (rd.snapshot) applied_ = std::max(applied_, rd.snapshot->meta.index);
  // The leader's own durable entries count towards commitment only now.
  if (role_ == Role::leader && !rd.entries.empty() && maybe_commit() && role_ == Role::leader) broadcast_commit();
}

const Progress* Core::progress(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

void Core::send(NodeId to, MessageBody body) { msgs_.push_back(Message{config_.id, to, term_, std::move(body)}); }

void Core::logf(const char* fmt, ...) const {
  if (!config_.log) return;
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "[n%llu t%llu] ", (unsigned long long)config_.id.value,
                        (unsigned long long)term_.value);
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf + n, sizeof buf - n, fmt, ap);
  va_end(ap);
  config_.log(buf);
}

}  // namespace tern::raft
