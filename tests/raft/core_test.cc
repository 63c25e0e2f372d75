// Unit tests of the Raft core: one test per claim of the paper's Figure 2 and §5.4, then the
// extensions (pre-vote, check-quorum, ReadIndex, transfer, membership, snapshots) and the Ready
// contract. Section numbers refer to the Raft paper (extended version) and Ongaro's thesis.
#include <gtest/gtest.h>

#include "raft/quorum.h"
#include "tests/raft/harness.h"

namespace tern::raft::test {
namespace {

// A node with the given log terms at indexes 1..n, as if restarted from disk.
std::unique_ptr<Core> node_with_log(std::uint64_t id, std::uint64_t term, const std::vector<std::uint64_t>& terms,
                                    std::uint64_t commit = 0, int voters = 3, bool pre_vote = true) {
  RestoreState rs;
  rs.hard_state = HardState{T(term), no_node, I(commit)};
  for (std::size_t i = 0; i < terms.size(); ++i)
    rs.entries.push_back(Entry{T(terms[i]), I(i + 1), EntryType::normal, "e" + std::to_string(i + 1)});
  for (int v = 1; v <= voters; ++v) rs.bootstrap.voters.push_back(N(v));
  Config cfg = config_for(N(id));
  cfg.pre_vote = pre_vote;
  return std::make_unique<Core>(cfg, std::move(rs));
}

Message msg(std::uint64_t from, std::uint64_t to, std::uint64_t term, MessageBody body) {
  return Message{N(from), N(to), T(term), std::move(body)};
}

std::vector<Entry> entries(std::uint64_t first, const std::vector<std::uint64_t>& terms) {
  std::vector<Entry> out;
  for (std::size_t i = 0; i < terms.size(); ++i)
    out.push_back(Entry{T(terms[i]), I(first + i), EntryType::normal, "n" + std::to_string(first + i)});
  return out;
}

template <class M>
std::vector<M> take(Ready& rd) {
  std::vector<M> out;
  for (auto& m : rd.messages)
    if (auto* b = std::get_if<M>(&m.body)) out.push_back(*b);
  return out;
}

Ready drain(Core& c) {
  Ready rd = c.ready();
  c.advance(rd);
  return rd;
}

// ---- Figure 2, AppendEntries receiver implementation -------------------------------------

TEST(Figure2Append, RejectsWhenTermIsOlderThanCurrentTerm) {
  auto f = node_with_log(2, 3, {1, 2});
  f->step(msg(1, 2, 2, AppendRequest{I(2), T(2), entries(3, {2}), I(0)}));
  Ready rd = drain(*f);
  EXPECT_EQ(f->last_index(), I(2));  // nothing appended
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].term, T(3));  // the stale leader learns the newer term
  EXPECT_FALSE(std::get<AppendReply>(rd.messages[0].body).success);
}

TEST(Figure2Append, RejectsWhenLogLacksPrevEntryAndHintsConflict) {
  auto f = node_with_log(2, 3, {1, 1, 2});
  f->step(msg(1, 2, 3, AppendRequest{I(3), T(3), entries(4, {3}), I(0)}));
  Ready rd = drain(*f);
  auto replies = take<AppendReply>(rd);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_FALSE(replies[0].success);
  EXPECT_EQ(replies[0].rejected_index, I(3));
  EXPECT_EQ(replies[0].conflict_term, T(2));   // our term at index 3
  EXPECT_EQ(replies[0].conflict_index, I(3));  // first index we hold of that term
  EXPECT_EQ(f->last_index(), I(3));

  f->step(msg(1, 2, 3, AppendRequest{I(9), T(3), {}, I(0)}));  // beyond our log
  rd = drain(*f);
  replies = take<AppendReply>(rd);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].conflict_index, I(4));
}

TEST(Figure2Append, DeletesConflictingEntryAndAllThatFollow) {
  auto f = node_with_log(2, 3, {1, 1, 1, 1});
  f->step(msg(1, 2, 3, AppendRequest{I(1), T(1), entries(2, {3}), I(0)}));
  drain(*f);
  EXPECT_EQ(f->last_index(), I(2));
  EXPECT_EQ(f->term_at(I(2)), T(3));
}

TEST(Figure2Append, KeepsMatchingEntriesOnAShorterOrDuplicateAppend) {
  auto f = node_with_log(2, 3, {1, 1, 3, 3});
  // A delayed append carrying only index 2..3 must not drop index 4 (it matches up to 3).
  f->step(msg(1, 2, 3, AppendRequest{I(1), T(1), {Entry{T(1), I(2), EntryType::normal, "e2"},
                                                   Entry{T(3), I(3), EntryType::normal, "e3"}},
                                     I(0)}));
  drain(*f);
  EXPECT_EQ(f->last_index(), I(4));
}

TEST(Figure2Append, AppendsNewEntries) {
  auto f = node_with_log(2, 3, {1});
  f->step(msg(1, 2, 3, AppendRequest{I(1), T(1), entries(2, {3, 3}), I(0)}));
  Ready rd = drain(*f);
  EXPECT_EQ(f->last_index(), I(3));
  ASSERT_EQ(rd.entries.size(), 2u);  // handed to the driver to persist
  auto replies = take<AppendReply>(rd);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(replies[0].success);
  EXPECT_EQ(replies[0].match_index, I(3));
}

TEST(Figure2Append, CommitIsMinOfLeaderCommitAndLastNewEntry) {
  auto f = node_with_log(2, 3, {1, 1, 1, 1, 1});
  // Leader commit 9, but this request only vouches for entries up to index 2.
  f->step(msg(1, 2, 3, AppendRequest{I(1), T(1), entries(2, {1}), I(9)}));
  drain(*f);
  EXPECT_EQ(f->commit_index(), I(2));
  f->step(msg(1, 2, 3, AppendRequest{I(2), T(1), entries(3, {1}), I(2)}));
  drain(*f);
  EXPECT_EQ(f->commit_index(), I(2));  // leader commit lower than the last new entry
}

TEST(Figure2Append, StaleAppendNeverTruncatesCommittedEntries) {
  auto f = node_with_log(2, 4, {1, 2, 2, 4}, /*commit=*/4);
  // A duplicate of an old append whose entries differ from our committed ones at 2..3 (it can
  // only come from a buggy or Byzantine peer, or an old term — here an old prev inside the
  // committed prefix): the committed prefix is kept.
  f->step(msg(1, 2, 4, AppendRequest{I(1), T(1), entries(2, {2, 2}), I(1)}));
  Ready rd = drain(*f);
  EXPECT_EQ(f->last_index(), I(4));
  EXPECT_EQ(f->commit_index(), I(4));
  auto replies = take<AppendReply>(rd);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(replies[0].success);
}

// ---- Figure 2, RequestVote receiver implementation ---------------------------------------

TEST(Figure2Vote, RejectsCandidateWithOlderTerm) {
  auto f = node_with_log(2, 5, {1});
  f->step(msg(3, 2, 4, VoteRequest{I(9), T(4), false, false}));
  Ready rd = drain(*f);
  EXPECT_TRUE(take<VoteReply>(rd).empty());  // stale: ignored, and our term is unchanged
  EXPECT_EQ(f->term(), T(5));
  EXPECT_EQ(f->vote(), no_node);
}

TEST(Figure2Vote, VotesAtMostOncePerTerm) {
  auto f = node_with_log(2, 1, {1});
  f->step(msg(1, 2, 2, VoteRequest{I(1), T(1), false, false}));
  Ready rd = drain(*f);
  ASSERT_TRUE(take<VoteReply>(rd).at(0).granted);
  f->step(msg(3, 2, 2, VoteRequest{I(1), T(1), false, false}));
  rd = drain(*f);
  EXPECT_FALSE(take<VoteReply>(rd).at(0).granted);
  EXPECT_EQ(f->vote(), N(1));
  // The same candidate asking again (a retransmission) gets the same answer.
  f->step(msg(1, 2, 2, VoteRequest{I(1), T(1), false, false}));
  rd = drain(*f);
  EXPECT_TRUE(take<VoteReply>(rd).at(0).granted);
}

TEST(Section541, VotesOnlyForLogsAtLeastAsUpToDate) {
  struct Case {
    std::uint64_t last_index, last_term;
    bool granted;
  } cases[] = {
      {3, 2, true},   // same last term, same length
      {4, 2, true},   // same last term, longer
      {2, 2, false},  // same last term, shorter
      {1, 3, true},   // newer last term wins even if shorter
      {9, 1, false},  // older last term loses even if longer
  };
  for (auto& c : cases) {
    auto f = node_with_log(2, 2, {1, 2, 2});
    f->step(msg(1, 2, 3, VoteRequest{I(c.last_index), T(c.last_term), false, false}));
    Ready rd = drain(*f);
    EXPECT_EQ(take<VoteReply>(rd).at(0).granted, c.granted) << c.last_index << "/" << c.last_term;
    EXPECT_EQ(f->term(), T(3));  // the term is adopted either way
  }
}

// ---- Figure 2, Rules for Servers -----------------------------------------------------------

TEST(Figure2Rules, HigherTermConvertsLeaderToFollower) {
  Harness h(3);
  h.elect(1);
  ASSERT_EQ(h[1].role(), Role::leader);
  Term t = h[1].term();
  h[1].step(msg(3, 1, t.value + 5, AppendReply{}));
  EXPECT_EQ(h[1].role(), Role::follower);
  EXPECT_EQ(h[1].term(), T(t.value + 5));
}

TEST(Figure2Rules, ElectionTimeoutIsRandomizedBetweenTAnd2T) {
  for (std::uint64_t seed = 1; seed < 50; ++seed) {
    Config c = config_for(N(1));
    c.seed = seed;
    Core core(c, RestoreState{HardState{}, std::nullopt, {}, ConfState{{N(1), N(2), N(3)}, {}}});
    EXPECT_GE(core.randomized_election_ticks(), 10u);
    EXPECT_LT(core.randomized_election_ticks(), 20u);
  }
}

TEST(Figure2Rules, FollowerStartsElectionAfterTimeoutAndWinsWithMajority) {
  Harness h(3, [](Config& c) { c.pre_vote = false; });
  for (int i = 0; i < 25 && h[1].role() == Role::follower; ++i) h[1].tick();
  EXPECT_EQ(h[1].role(), Role::candidate);
  EXPECT_EQ(h[1].vote(), N(1));  // votes for itself
  h.settle();
  EXPECT_EQ(h[1].role(), Role::leader);
  EXPECT_EQ(h[2].leader(), N(1));
}

TEST(Figure2Rules, CandidateStepsDownOnAppendFromLeaderOfSameTerm) {
  Harness h(3, [](Config& c) { c.pre_vote = false; });
  h.elect(1);
  Term t = h[1].term();
  auto c = node_with_log(3, t.value - 1, {}, 0, 3, /*pre_vote=*/false);
  for (int i = 0; i < 25 && c->role() == Role::follower; ++i) c->tick();
  ASSERT_EQ(c->role(), Role::candidate);
  Term ct = c->term();
  c->step(msg(1, 3, ct.value, HeartbeatRequest{I(0), 0}));
  EXPECT_EQ(c->role(), Role::follower);
  EXPECT_EQ(c->leader(), N(1));
}

TEST(Figure2Rules, LeaderAppendsNoopAndReplicatesProposals) {
  Harness h(3);
  h.elect(1);
  Index i = h.propose(1, "x");
  h.tick_all(2);
  for (std::uint64_t n = 1; n <= 3; ++n) {
    EXPECT_GE(h[n].commit_index(), i);
    ASSERT_FALSE(h.applied[N(n)].empty());
    EXPECT_EQ(h.applied[N(n)].back().data, "x");
  }
}

TEST(Figure2Rules, ProposalOnFollowerIsRejectedWithLeaderHint) {
  Harness h(3);
  h.elect(1);
  auto r = h[2].propose("x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, RaftError::not_leader);
  EXPECT_EQ(r.error().leader_hint, N(1));
}

// ---- §5.4.2 Committing entries from previous terms (Figure 8) ----------------------------

TEST(Section542, LeaderDoesNotCommitPreviousTermEntryByCountingReplicas) {
  // Node 1 becomes leader of term 4 holding an entry of term 2 at index 2 that a majority will
  // hold; it must not be committed until an entry of term 4 is also on a majority.
  RestoreState rs;
  rs.hard_state = HardState{T(3), no_node, I(1)};
  rs.entries = entries(1, {1, 2});
  rs.bootstrap.voters = {N(1), N(2), N(3)};
  Core leader(config_for(N(1)), rs);
  for (int i = 0; i < 40 && leader.role() != Role::leader; ++i) {
    leader.tick();
    for (auto& m : drain(leader).messages) {
      if (auto* v = std::get_if<VoteRequest>(&m.body))
        leader.step(Message{m.to, N(1), m.term, VoteReply{true, v->pre_vote}});
    }
  }
  ASSERT_EQ(leader.role(), Role::leader);
  Index noop = leader.last_index();
  ASSERT_EQ(noop, I(3));
  drain(leader);
  // Follower 2 acknowledges only index 2 (the term-2 entry): a majority holds it...
  leader.step(Message{N(2), N(1), leader.term(), AppendReply{true, I(2), {}, {}, {}}});
  drain(leader);
  EXPECT_EQ(leader.commit_index(), I(1));  // ...but it is not committed by counting
  // Once the term-4 no-op is on a majority, both commit.
  leader.step(Message{N(2), N(1), leader.term(), AppendReply{true, I(3), {}, {}, {}}});
  drain(leader);
  EXPECT_EQ(leader.commit_index(), I(3));
}

TEST(Section53, LeaderCommitsOnlyWhatAMajorityHoldsDurably) {
  Harness h(3);
  h.elect(1);
  h.isolate(N(1));
  auto r = h[1].propose("lonely");
  ASSERT_TRUE(r);
  h.settle();
  EXPECT_LT(h[1].commit_index(), *r);  // only the leader holds it
}

// ---- The Ready contract --------------------------------------------------------------------

TEST(ReadyContract, VoteReplyTravelsWithTheHardStateThatRecordsIt) {
  auto f = node_with_log(2, 1, {1});
  f->step(msg(1, 2, 2, VoteRequest{I(1), T(1), false, false}));
  Ready rd = f->ready();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->term, T(2));
  EXPECT_EQ(rd.hard_state->vote, N(1));
  ASSERT_EQ(take<VoteReply>(rd).size(), 1u);
  f->advance(rd);
  EXPECT_FALSE(f->has_ready());
}

// Issue 10, hole 2: a driver sends a leader's appends before its own write (thesis §10.2.1) only
// when the Ready does not change the term or the vote; the Ready says which.
TEST(ReadyContract, ReadySaysWhenItChangesTermOrVote) {
  auto f = node_with_log(2, 1, {1});
  ASSERT_TRUE(f->step(msg(1, 2, 2, VoteRequest{I(1), T(1), false, false})));
  Ready rd = drain(*f);
  EXPECT_TRUE(rd.term_or_vote_changed);
  ASSERT_TRUE(f->step(msg(1, 2, 2, AppendRequest{I(1), T(1), entries(2, {2}), I(2)})));
  rd = drain(*f);
  ASSERT_TRUE(rd.hard_state.has_value());  // the commit index moved, nothing else
  EXPECT_FALSE(rd.term_or_vote_changed);
  // A single voter becomes candidate and leader inside one tick: one Ready with a new term and
  // vote, carrying the new leader's entries.
  Harness h(1);
  h.process(N(1));  // the bootstrap Ready
  for (int i = 0; i < 40 && h[1].role() != Role::leader; ++i) h[1].tick();
  ASSERT_EQ(h[1].role(), Role::leader);
  Ready lr = h[1].ready();
  EXPECT_TRUE(lr.term_or_vote_changed);
  ASSERT_FALSE(lr.entries.empty());
  EXPECT_EQ(lr.entries.back().term, lr.hard_state->term);
  h[1].advance(lr);
}

TEST(ReadyContract, AppendReplyTravelsWithTheEntriesItAcknowledges) {
  auto f = node_with_log(2, 1, {1});
  f->step(msg(1, 2, 1, AppendRequest{I(1), T(1), entries(2, {1, 1}), I(0)}));
  Ready rd = f->ready();
  ASSERT_EQ(rd.entries.size(), 2u);
  EXPECT_EQ(take<AppendReply>(rd).at(0).match_index, I(3));
  f->advance(rd);
}

TEST(ReadyContract, LeaderCountsItsOwnEntriesOnlyAfterAdvance) {
  Harness h(1);
  h.elect(1);
  auto r = h[1].propose("x");
  ASSERT_TRUE(r);
  Ready rd = h[1].ready();
  EXPECT_LT(h[1].commit_index(), *r);  // not durable yet
  h[1].advance(rd);
  EXPECT_EQ(h[1].commit_index(), *r);
}

TEST(ReadyContract, StepsBetweenReadyAndAdvanceGoToTheNextReady) {
  Harness h(3);
  h.elect(1);
  Ready rd = h[1].ready();
  ASSERT_TRUE(h[1].propose("late"));
  h[1].advance(rd);
  ASSERT_TRUE(h[1].has_ready());
  Ready next = h[1].ready();
  ASSERT_FALSE(next.entries.empty());
  EXPECT_EQ(next.entries.back().data, "late");
  h[1].advance(next);
}

// ---- Pre-vote (thesis §9.6) ----------------------------------------------------------------

TEST(PreVote, PartitionedNodeDoesNotInflateItsTermOrDisruptTheLeader) {
  Harness h(3);
  h.elect(1);
  Term t = h[1].term();
  h.isolate(N(3));
  for (int i = 0; i < 100; ++i) {
    h[3].tick();
    h.settle();
  }
  EXPECT_EQ(h[3].term(), t);  // pre-votes failed, so no real election happened
  h.heal();
  h.tick_all(3);
  EXPECT_EQ(h[1].role(), Role::leader);
  EXPECT_EQ(h[1].term(), t);
}

TEST(PreVote, WithoutPreVoteThePartitionedNodeInflatesItsTerm) {
  Harness h(3, [](Config& c) { c.pre_vote = false; });
  h.elect(1);
  Term t = h[1].term();
  h.isolate(N(3));
  for (int i = 0; i < 100; ++i) {
    h[3].tick();
    h.settle();
  }
  EXPECT_GT(h[3].term(), t);  // the control case: the test above is not vacuous
}

// ---- Check-quorum and leader lease (thesis §6.2, §4.2.3) -----------------------------------

TEST(CheckQuorum, LeaderThatCannotHearAMajorityStepsDown) {
  Harness h(3);
  h.elect(1);
  h.isolate(N(1));
  for (int i = 0; i < 25; ++i) {
    h[1].tick();
    h.settle();
  }
  EXPECT_NE(h[1].role(), Role::leader);
}

TEST(CheckQuorum, FollowerInLeaseIgnoresVoteRequests) {
  Harness h(3);
  h.elect(1);
  Term t = h[1].term();
  h[2].step(msg(3, 2, t.value + 1, VoteRequest{I(100), T(100), false, false}));
  h.settle();
  EXPECT_EQ(h[2].term(), t);  // the disruptive request was ignored
  EXPECT_EQ(h[2].leader(), N(1));
}

// ---- ReadIndex (thesis §6.4) -----------------------------------------------------------------

TEST(ReadIndex, AnsweredOnlyAfterAHeartbeatQuorum) {
  Harness h(3);
  h.elect(1);
  h.tick_all(1);
  h.isolate(N(1));
  ASSERT_TRUE(h[1].read_index("r1"));
  h.settle();
  EXPECT_TRUE(h.reads[N(1)].empty());  // no quorum confirmed the leadership
  h.heal();
  h[1].tick();
  h.settle();
  ASSERT_EQ(h.reads[N(1)].size(), 1u);
  EXPECT_EQ(h.reads[N(1)][0].context, "r1");
  EXPECT_EQ(h.reads[N(1)][0].index, h[1].commit_index());
}

TEST(ReadIndex, NotServedBeforeCurrentTermCommit) {
  RestoreState rs;
  rs.hard_state = HardState{T(1), no_node, I(0)};
  rs.entries = entries(1, {1});
  rs.bootstrap.voters = {N(1), N(2), N(3)};
  Core leader(config_for(N(1)), rs);
  for (int i = 0; i < 40 && leader.role() != Role::leader; ++i) {
    leader.tick();
    for (auto& m : drain(leader).messages)
      if (auto* v = std::get_if<VoteRequest>(&m.body)) leader.step(Message{m.to, N(1), m.term, VoteReply{true, v->pre_vote}});
  }
  ASSERT_EQ(leader.role(), Role::leader);
  drain(leader);
  ASSERT_TRUE(leader.read_index("r"));
  // Heartbeat acknowledgements alone do not release the read: the no-op is not committed.
  leader.step(Message{N(2), N(1), leader.term(), HeartbeatReply{0}});
  Ready rd = drain(leader);
  EXPECT_TRUE(rd.read_states.empty());
  leader.step(Message{N(2), N(1), leader.term(), AppendReply{true, leader.last_index(), {}, {}, {}}});
  rd = drain(leader);
  ASSERT_EQ(leader.commit_index(), leader.last_index());
  EXPECT_TRUE(rd.read_states.empty());  // committed, but leadership not yet confirmed for the read
  std::vector<ReadState> got;
  for (auto& m : rd.messages)
    if (auto* hb = std::get_if<HeartbeatRequest>(&m.body)) {
      leader.step(Message{m.to, N(1), m.term, HeartbeatReply{hb->read_seq}});
      Ready r2 = drain(leader);
      got.insert(got.end(), r2.read_states.begin(), r2.read_states.end());
    }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].index, leader.commit_index());
}

TEST(ReadIndex, FollowerForwardsToLeader) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  ASSERT_TRUE(h[2].read_index("f"));
  h.tick_all(2);
  ASSERT_EQ(h.reads[N(2)].size(), 1u);
  EXPECT_EQ(h.reads[N(2)][0].index, h[1].commit_index());
}

// ---- Proposal forwarding (thesis §6.2) --------------------------------------------------------

TEST(Forwarding, AFollowersCommandIsAppendedByTheLeaderAndPlacedAtItsIndexAndTerm) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  ASSERT_TRUE(h[2].forward(7, "cmd"));
  h.settle();
  ASSERT_EQ(h.placed[N(2)].size(), 1u);
  const Placed& p = h.placed[N(2)][0];
  EXPECT_EQ(p.context, 7u);
  EXPECT_TRUE(p.ok);
  EXPECT_EQ(p.term, h[1].term());
  EXPECT_EQ(p.leader, N(1));
  h.tick_all(2);
  // Every node applies the command at the index and term the follower was told.
  for (int id = 1; id <= 3; ++id) {
    auto& applied = h.applied[N(id)];
    auto it = std::find_if(applied.begin(), applied.end(), [&](const Entry& e) { return e.index == p.index; });
    ASSERT_NE(it, applied.end()) << "node " << id;
    EXPECT_EQ(it->term, p.term);
    EXPECT_EQ(it->data, "cmd");
  }
}

TEST(Forwarding, ANodeThatCannotAppendSaysSoAndAFollowerWithoutLeaderRefusesAtOnce) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  // A follower that receives a forwarded command (its sender thought it leads) answers not ok.
  ASSERT_TRUE(h[3].step(Message{N(2), N(3), h[3].term(), ProposeRequest{5, "x"}}));
  h.settle();
  ASSERT_EQ(h.placed[N(2)].size(), 1u);
  EXPECT_FALSE(h.placed[N(2)][0].ok);
  // A leader handing over leadership refuses (thesis §3.10), and says so.
  ASSERT_TRUE(h[1].transfer_leadership(N(3)));
  ASSERT_TRUE(h[1].step(Message{N(2), N(1), h[1].term(), ProposeRequest{6, "y"}}));
  h.process(N(1));
  h.settle();
  ASSERT_EQ(h.placed[N(2)].size(), 2u);
  EXPECT_FALSE(h.placed[N(2)][1].ok);
  // With no known leader a node cannot forward.
  Harness lone(3);
  auto r = lone[2].forward(1, "z");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, RaftError::no_leader);
}

TEST(Forwarding, AForwardedCommandOfAnOverwrittenEntryIsPlacedAtATermThatNeverCommitsThere) {
  // The leader appends the forwarded command, then is cut off before replicating it; a new
  // leader overwrites that index. The follower was told (index, old term): the entry applied at
  // that index has another term, which is how the driver knows the outcome is unknown.
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  h.cut.insert({N(1), N(3)});
  h.cut.insert({N(3), N(1)});
  ASSERT_TRUE(h[2].forward(9, "lost"));
  // Deliver only the request to the leader and its answer back, not its AppendRequests.
  h.process(N(2));
  ASSERT_EQ(h.queue.size(), 1u);
  auto req = h.queue.front();
  h.queue.clear();
  ASSERT_TRUE(h[1].step(req));
  h.process(N(1));
  std::vector<Message> keep;
  for (auto& m : h.queue)
    if (std::holds_alternative<ProposeReply>(m.body)) keep.push_back(m);
  h.queue.clear();
  for (auto& m : keep) ASSERT_TRUE(h[2].step(m));
  h.process(N(2));
  ASSERT_EQ(h.placed[N(2)].size(), 1u);
  Placed p = h.placed[N(2)][0];
  ASSERT_TRUE(p.ok);
  // Node 1 disappears; after the election timeout 2 or 3 leads and writes its own entry at
  // that index (2 holds the command only in the leader's promise, not in its log).
  h.isolate(N(1));
  h.tick_all(40);
  std::uint64_t next = h[2].role() == Role::leader ? 2 : 3;
  ASSERT_EQ(h[next].role(), Role::leader);
  h.propose(next, "other");
  h.tick_all(3);
  auto& applied = h.applied[N(2)];
  auto it = std::find_if(applied.begin(), applied.end(), [&](const Entry& e) { return e.index == p.index; });
  ASSERT_NE(it, applied.end());
  EXPECT_NE(it->term, p.term);
  EXPECT_NE(it->data, "lost");
}

// ---- Leadership transfer (thesis §3.10) -------------------------------------------------------

TEST(Transfer, UpToDateTargetBecomesLeaderAndProposalsPauseMeanwhile) {
  Harness h(3);
  h.elect(1);
  h.propose(1, "a");
  h.tick_all(2);
  ASSERT_TRUE(h[1].transfer_leadership(N(2)));
  // The TimeoutNow is queued; before it is delivered, proposals are refused.
  auto r = h[1].propose("b");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, RaftError::transfer_in_progress);
  h.settle();
  EXPECT_EQ(h[2].role(), Role::leader);
  EXPECT_NE(h[1].role(), Role::leader);
}

// Issue 10, hole 6: transfer_leadership used to reset the clock check-quorum runs on, so a
// leader cut off from its majority that keeps receiving transfer requests never stepped down.
TEST(Transfer, RepeatedRequestsDoNotKeepAPartitionedLeaderInPower) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  h.isolate(N(1));
  for (int i = 0; i < 40 && h[1].role() == Role::leader; ++i) {
    (void)h[1].transfer_leadership(N(2));
    h[1].tick();
    h.settle();
  }
  EXPECT_NE(h[1].role(), Role::leader);
}

TEST(Transfer, AnUnfinishedTransferIsAbandonedAfterAnElectionTimeout) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  h.cut.insert({N(1), N(2)});  // the TimeoutNow never arrives
  ASSERT_TRUE(h[1].transfer_leadership(N(2)));
  EXPECT_FALSE(h[1].propose("x"));
  for (int i = 0; i < 10; ++i) h[1].tick();
  h.settle();
  EXPECT_EQ(h[1].transfer_target(), no_node);
  EXPECT_TRUE(h[1].propose("y"));
}

// ---- Membership change (thesis §4.1) and learners --------------------------------------------

TEST(Membership, LearnerReplicatesButNeverVotesOrCounts) {
  Harness h(3);
  h.elect(1);
  h.add(N(4), ConfState{});
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::add_learner, N(4)}));
  h.tick_all(3);
  EXPECT_TRUE(contains(h[1].conf_state().learners, N(4)));
  EXPECT_TRUE(h[4].is_learner());
  EXPECT_EQ(h[4].conf_state(), h[1].conf_state());  // learned the whole membership
  Index i = h.propose(1, "to-learner");
  h.tick_all(2);
  EXPECT_GE(h[4].commit_index(), i);
  // A learner never campaigns.
  for (int k = 0; k < 100; ++k) h[4].tick();
  EXPECT_EQ(h[4].role(), Role::follower);
  // It does not count for commitment: with two voters gone, nothing commits.
  h.isolate(N(2));
  h.cut.insert({N(3), N(1)});
  h.cut.insert({N(1), N(3)});
  auto r = h[1].propose("needs-a-voter");
  ASSERT_TRUE(r);
  h.settle();
  EXPECT_LT(h[1].commit_index(), *r);
}

TEST(Membership, PromoteLearnerThenRemoveAVoter) {
  Harness h(3);
  h.elect(1);
  h.add(N(4), ConfState{});
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::add_learner, N(4)}));
  // One change at a time.
  auto again = h[1].propose_conf_change({ConfChangeType::remove_node, N(3)});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, RaftError::conf_change_pending);
  h.tick_all(3);
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::promote_learner, N(4)}));
  h.tick_all(3);
  EXPECT_EQ(h[1].conf_state().voters.size(), 4u);
  EXPECT_TRUE(h[4].is_voter());
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::remove_node, N(3)}));
  h.tick_all(3);
  EXPECT_EQ(h[1].conf_state().voters, (std::vector<NodeId>{N(1), N(2), N(4)}));
  Index i = h.propose(1, "after");
  h.tick_all(2);
  EXPECT_GE(h[4].commit_index(), i);
}

TEST(Membership, RemovedLeaderStepsDownOnceTheChangeCommits) {
  Harness h(3);
  h.elect(1);
  h.tick_all(1);
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::remove_node, N(1)}));
  h.tick_all(3);
  EXPECT_NE(h[1].role(), Role::leader);
  EXPECT_FALSE(h[1].is_voter());
  h.tick_all(40);
  int leaders = (h[2].role() == Role::leader) + (h[3].role() == Role::leader);
  EXPECT_EQ(leaders, 1);
}

// Regression (found by the simulator): the acknowledgement that commits a follower's own removal
// erased its progress entry while handle_append_reply still used it (use-after-free under ASan).
TEST(Membership, RemovingTheFollowerWhoseAckCommitsTheRemoval) {
  Harness h(2);
  h.elect(1);
  h.tick_all(1);
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::remove_node, N(2)}));
  h.tick_all(3);  // node 2's reply is the one that completes the majority of {1, 2}
  EXPECT_EQ(h[1].conf_state().voters, std::vector<NodeId>{N(1)});
  EXPECT_EQ(h[1].progress(N(2)), nullptr);
  EXPECT_EQ(h[1].role(), Role::leader);
  Index i = h.propose(1, "alone");
  EXPECT_GE(h[1].commit_index(), i);
}

// Regression (found by the simulator): pipelined appends lost in flight left a follower stuck
// one entry behind forever when no new proposals came.
TEST(Replication, LostPipelinedAppendsAreResentAfterHeartbeats) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  h.propose(1, "a");
  ASSERT_EQ(h[1].progress(N(3))->state, ProgressState::replicate);
  h.cut.insert({N(1), N(3)});  // the next append to node 3 is lost...
  auto r = h[1].propose("b");
  ASSERT_TRUE(r);
  h.settle();
  h.cut.clear();  // ...and nothing else is proposed
  h.tick_all(6);
  EXPECT_GE(h[3].commit_index(), *r);
  EXPECT_EQ(h[3].last_index(), h[1].last_index());
}

// Delivers queued messages until the network is quiet, holding back those `hold` picks.
template <class Hold>
std::vector<Message> settle_holding(Harness& h, Hold hold) {
  std::vector<Message> held;
  h.process_all();
  for (int r = 0; r < 1000 && !h.queue.empty(); ++r) {
    std::vector<Message> batch;
    batch.swap(h.queue);
    for (auto& m : batch) {
      if (hold(m)) {
        held.push_back(m);
        continue;
      }
      EXPECT_TRUE(h.cores.at(m.to)->step(m).has_value());
      h.process(m.to);
    }
  }
  return held;
}

std::size_t count_sent(Harness& h, NodeId from, std::size_t since) {
  std::size_t n = 0;
  auto& rds = h.readies[from];
  for (std::size_t i = since; i < rds.size(); ++i) n += rds[i].messages.size();
  return n;
}

// A commit that leaves a follower nothing new to receive reaches it as a CommitNotice, which it
// applies without answering (an empty append cost one reply per follower per commit). A follower
// whose acknowledgement arrives after the commit (the slower of two) gets its notice then, not at
// the next heartbeat: no tick happens here at all.
TEST(Replication, FollowersLearnACommitByANoticeTheyDoNotAnswerAndALateFollowerGetsOneWhenItAcks) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  h.propose(1, "a");
  ASSERT_EQ(h[1].progress(N(2))->state, ProgressState::replicate);
  ASSERT_EQ(h[1].progress(N(3))->state, ProgressState::replicate);
  std::size_t leader_from = h.readies[N(1)].size();
  std::size_t two_from = h.readies[N(2)].size();
  auto r = h[1].propose("b");
  ASSERT_TRUE(r);
  auto held = settle_holding(h, [](const Message& m) { return m.from == N(3) && m.to == N(1); });
  ASSERT_EQ(held.size(), 1u);  // node 3's acknowledgement of "b"
  EXPECT_GE(h[1].commit_index(), *r);
  EXPECT_GE(h[2].commit_index(), *r) << "node 2 holds b and the leader committed it: it was told";
  EXPECT_LT(h[3].commit_index(), *r) << "node 3's ack was held: the leader does not know it holds b";
  EXPECT_EQ(count_sent(h, N(2), two_from), 1u) << "node 2 answered the append, and nothing else";
  std::size_t notices = 0;
  for (std::size_t i = leader_from; i < h.readies[N(1)].size(); ++i)
    for (const auto& m : h.readies[N(1)][i].messages) {
      if (const auto* a = std::get_if<AppendRequest>(&m.body)) {
        EXPECT_FALSE(a->entries.empty()) << "an empty append";
      }
      if (const auto* n = std::get_if<CommitNotice>(&m.body)) {
        EXPECT_EQ(m.to, N(2));
        EXPECT_EQ(n->commit, *r);
        ++notices;
      }
    }
  EXPECT_EQ(notices, 1u);
  std::size_t three_from = h.readies[N(3)].size();
  h.queue = held;  // node 3's acknowledgement arrives late
  h.settle();
  EXPECT_GE(h[3].commit_index(), *r) << "the late follower was not told the commit when it acked";
  EXPECT_EQ(count_sent(h, N(3), three_from), 0u) << "node 3 answered a commit notice";
  EXPECT_EQ(h.applied[N(3)].back().data, "b");
}

// A notice from a deposed leader (a stale term) is answered like a stale append, so that leader
// learns the new term; a notice never commits more than the receiver holds.
TEST(Replication, ACommitNoticeNeverCommitsBeyondTheLogAndAStaleOneTellsItsSenderTheTerm) {
  Harness h(3);
  h.elect(1);
  h.tick_all(2);
  h.propose(1, "a");
  Index last = h[2].last_index();
  Term t = h[2].term();
  ASSERT_TRUE(h[2].step(Message{N(1), N(2), t, CommitNotice{last + 5}}).has_value());
  EXPECT_EQ(h[2].commit_index(), last);
  h.process(N(2));
  h.queue.clear();
  ASSERT_TRUE(h[2].step(Message{N(1), N(2), Term{t.value - 1}, CommitNotice{last}}).has_value());
  h.process(N(2));
  ASSERT_EQ(h.queue.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<AppendReply>(h.queue[0].body));
  EXPECT_EQ(h.queue[0].term, t);
}

TEST(Membership, InvalidChangesAreRejected) {
  Harness h(1);
  h.elect(1);
  h.tick_all(1);
  EXPECT_EQ(h[1].propose_conf_change({ConfChangeType::remove_node, N(1)}).error().code,
            RaftError::invalid_conf_change);  // the last voter
  EXPECT_EQ(h[1].propose_conf_change({ConfChangeType::promote_learner, N(7)}).error().code,
            RaftError::invalid_conf_change);  // not a learner
}

Entry conf_entry(std::uint64_t index, std::uint64_t term, const ConfChange& cc) {
  return Entry{T(term), I(index), EntryType::conf_change, encode_conf_change(cc)};
}

// Issue 10, hole 3: a crash can leave conf entries C1, C2 durable in the log while the durable
// commit index is still before C1 (entries are written before their hard state). The node
// must count votes with C2, the last configuration in its log (thesis §4.1), not with C0: a
// C0 majority ({1, 2}) and a C2 majority ({3, 4, 5}) need not intersect.
TEST(Membership, RestartedNodeCountsVotesWithTheLastConfigurationInItsLog) {
  RestoreState rs;
  rs.hard_state = HardState{T(2), no_node, I(2)};  // durable commit before C1
  rs.entries.push_back(Entry{T(1), I(1), EntryType::conf_change, encode_conf_state(ConfState{{N(1), N(2), N(3)}, {N(4), N(5)}})});
  rs.entries.push_back(Entry{T(2), I(2), EntryType::noop, ""});
  rs.entries.push_back(conf_entry(3, 2, {ConfChangeType::promote_learner, N(4)}));  // C1
  rs.entries.push_back(conf_entry(4, 2, {ConfChangeType::promote_learner, N(5)}));  // C2
  Config cfg = config_for(N(1));
  cfg.pre_vote = false;
  Core c(cfg, rs);
  EXPECT_EQ(c.conf_state().voters, (std::vector<NodeId>{N(1), N(2), N(3), N(4), N(5)}));
  for (int i = 0; i < 40 && c.role() != Role::candidate; ++i) c.tick();
  ASSERT_EQ(c.role(), Role::candidate);
  drain(c);
  ASSERT_TRUE(c.step(msg(2, 1, c.term().value, VoteReply{true, false})));
  EXPECT_EQ(c.role(), Role::candidate) << "won with a majority of C0, not of C2";
  ASSERT_TRUE(c.step(msg(4, 1, c.term().value, VoteReply{true, false})));
  EXPECT_EQ(c.role(), Role::leader);
}

// Thesis §4.1: a configuration is used as soon as it is appended, and a follower that loses the
// entry to a new leader's conflicting suffix falls back to the configuration before it.
TEST(Membership, ConfigurationTakesEffectWhenAppendedAndRollsBackWhenTruncated) {
  auto f = node_with_log(2, 1, {1});  // entry 1 is a normal entry; the bootstrap gives {1, 2, 3}
  ConfState c0 = f->conf_state();
  std::vector<Entry> es = {Entry{T(2), I(2), EntryType::noop, ""}, conf_entry(3, 2, {ConfChangeType::add_learner, N(4)})};
  ASSERT_TRUE(f->step(msg(1, 2, 2, AppendRequest{I(1), T(1), es, I(1)})));
  EXPECT_EQ(f->conf_state().learners, (std::vector<NodeId>{N(4)})) << "not adopted when appended";
  drain(*f);
  // A leader of term 3 that never had the change overwrites index 3.
  ASSERT_TRUE(f->step(msg(3, 2, 3, AppendRequest{I(2), T(2), entries(3, {3}), I(1)})));
  EXPECT_EQ(f->conf_state(), c0) << "not rolled back when truncated";
  EXPECT_TRUE(f->conf_history().empty());
  drain(*f);
  // A later change is adopted again; a restart from the same log yields the same membership.
  ASSERT_TRUE(f->step(msg(3, 2, 3, AppendRequest{I(3), T(3), {conf_entry(4, 3, {ConfChangeType::remove_node, N(3)})}, I(1)})));
  EXPECT_EQ(f->conf_state().voters, (std::vector<NodeId>{N(1), N(2)}));
}

TEST(Membership, ConfigurationAfterASnapshotIsThatOfTheLastEntryAfterIt) {
  RestoreState rs;
  rs.hard_state = HardState{T(2), no_node, I(10)};
  rs.snapshot = SnapshotMeta{I(10), T(2), ConfState{{N(1), N(2), N(3)}, {N(4)}}};
  rs.entries = {conf_entry(11, 2, {ConfChangeType::promote_learner, N(4)}), Entry{T(2), I(12), EntryType::normal, "x"}};
  Core c(config_for(N(2)), rs);
  EXPECT_EQ(c.conf_state().voters, (std::vector<NodeId>{N(1), N(2), N(3), N(4)}));
  EXPECT_EQ(c.snapshot_conf().learners, (std::vector<NodeId>{N(4)}));
  rs.entries.clear();
  Core d(config_for(N(2)), rs);
  EXPECT_EQ(d.conf_state(), rs.snapshot->conf);
}

// Thesis §4.2.2: a leader that removes itself keeps leading, without counting itself, until
// the change commits, then steps down.
TEST(Membership, LeaderRemovingItselfStepsDownWhenTheChangeCommits) {
  Harness h(3);
  h.elect(1);
  h.tick_all(1);
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::remove_node, N(1)}));
  EXPECT_FALSE(h[1].is_voter());
  EXPECT_EQ(h[1].role(), Role::leader);
  h.settle();
  EXPECT_NE(h[1].role(), Role::leader);
  EXPECT_EQ(h[2].conf_state().voters, (std::vector<NodeId>{N(2), N(3)}));
}

// Thesis §4.2.2, found by the whole-node simulator (tern-sim --node --seed 75 --voters 1 --spares
// 1 --remove-leader): a leader of {1, 2} removes itself and loses leadership before node 2 has the
// entry. Node 1 (adopted {2}: not a voter) and node 2 (still {1, 2}: needs node 1's vote, which a
// shorter log cannot get) must not wait for each other forever: the removed server campaigns
// with the new configuration, without counting itself, commits the change and steps down.
TEST(Membership, AServerRemovedByAnUncommittedChangeStillCampaignsToFinishIt) {
  Harness h(2);
  h.elect(1);
  h.tick_all(1);
  h.cut.insert({N(1), N(2)});
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::remove_node, N(1)}));
  EXPECT_FALSE(h[1].is_voter());
  h.tick_all(40);  // check-quorum: node 1 hears nothing from node 2 and steps down
  ASSERT_NE(h[1].role(), Role::leader);
  ASSERT_GT(h[1].last_index(), h[2].last_index());
  h.heal();
  for (int i = 0; i < 200 && !(h[2].role() == Role::leader && h[2].commit_index() >= h[1].last_index()); ++i) h.tick_all(1);
  EXPECT_EQ(h[2].role(), Role::leader) << "no leader after the removal: the removed server never campaigned";
  EXPECT_EQ(h[2].conf_state().voters, std::vector<NodeId>{N(2)});
  EXPECT_NE(h[1].role(), Role::leader);
  Index i = h.propose(2, "after");
  EXPECT_GE(h[2].commit_index(), i);
}

// Thesis §4.2.1 / issue 10, hole 7: a server with an empty log never becomes a voter directly.
TEST(Membership, AVoterIsNeverAddedDirectly) {
  Harness h(3);
  h.elect(1);
  h.tick_all(1);
  auto r = h[1].propose_conf_change({ConfChangeType::add_voter, N(4)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, RaftError::invalid_conf_change);
}

TEST(Membership, ALearnerIsPromotedOnlyOnceCaughtUp) {
  Harness h(3, [](Config& c) { c.max_promote_lag = 4; });
  h.elect(1);
  h.add(N(4), ConfState{}, [](Config& c) { c.max_promote_lag = 4; });
  h.cut.insert({N(1), N(4)});  // the learner hears nothing yet
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::add_learner, N(4)}));
  h.tick_all(2);
  for (int i = 0; i < 10; ++i) h.propose(1, "v" + std::to_string(i));
  auto r = h[1].propose_conf_change({ConfChangeType::promote_learner, N(4)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, RaftError::learner_behind);
  h.heal();
  h.tick_all(3);
  ASSERT_TRUE(h[1].propose_conf_change({ConfChangeType::promote_learner, N(4)}));
  h.tick_all(2);
  EXPECT_TRUE(h[4].is_voter());
}

// ---- Snapshots (§7) -------------------------------------------------------------------------

std::vector<InstallSnapshotRequest> sent_snapshots(Harness& h, NodeId from) {
  std::vector<InstallSnapshotRequest> out;
  for (auto& [m, req] : sent<InstallSnapshotRequest>(h, from)) out.push_back(req);
  return out;
}

TEST(Snapshot, LaggingFollowerReceivesInstallSnapshotThenCatchesUp) {
  Harness h(3);
  h.elect(1);
  h.isolate(N(3));
  Index last;
  for (int i = 0; i < 20; ++i) last = h.propose(1, "v" + std::to_string(i));
  h.tick_all(1);
  // The leader and node 2 compact.
  h[1].compact(h[1].applied_index());
  h[2].compact(h[2].applied_index());
  ASSERT_GT(h[1].first_index(), I(2));
  h.heal();
  h.snapshot_data = [](NodeId) { return std::make_shared<const std::string>("state"); };
  h.tick_all(10);
  bool sent = !sent_snapshots(h, N(1)).empty();
  ASSERT_TRUE(sent);
  EXPECT_GE(h[3].commit_index(), last);
  bool restored = false;
  for (auto& rd : h.readies[N(3)])
    if (rd.snapshot) restored = rd.snapshot->meta.index >= h[1].first_index().prev() && *rd.snapshot->data == "state";
  EXPECT_TRUE(restored);
}

TEST(Snapshot, RestartFromSnapshotAndLog) {
  SnapshotMeta meta{I(10), T(2), ConfState{{N(1), N(2), N(3)}, {}}};
  RestoreState rs;
  rs.hard_state = HardState{T(3), N(1), I(12)};
  rs.snapshot = meta;
  rs.entries = entries(11, {2, 3});
  Core c(config_for(N(2)), rs);
  EXPECT_EQ(c.first_index(), I(11));
  EXPECT_EQ(c.last_index(), I(12));
  EXPECT_EQ(c.commit_index(), I(12));
  EXPECT_EQ(c.term(), T(3));
  EXPECT_EQ(c.vote(), N(1));
  EXPECT_EQ(c.term_at(I(10)), T(2));
  Ready rd = c.ready();  // entries 11..12 are re-applied on top of the snapshot
  ASSERT_EQ(rd.committed.size(), 2u);
  EXPECT_EQ(rd.committed.front().index, I(11));
  EXPECT_FALSE(rd.hard_state.has_value());  // nothing new to persist
  c.advance(rd);
}

TEST(Bootstrap, FirstStartWritesTheMembershipAsEntryOne) {
  Core c(config_for(N(1)), RestoreState{HardState{}, std::nullopt, {}, ConfState{{N(1), N(2)}, {}}});
  Ready rd = c.ready();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].type, EntryType::conf_change);
  EXPECT_EQ(decode_conf_state(rd.entries[0].data), (ConfState{{N(1), N(2)}, {}}));
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->term, T(1));
  c.advance(rd);
}

TEST(Quorum, QuorumIndexIsTheMedianForOddSizes) {
  EXPECT_EQ(quorum_index({I(5), I(1), I(3)}), I(3));
  EXPECT_EQ(quorum_index({I(5), I(1), I(3), I(4)}), I(3));
  EXPECT_EQ(quorum_index({I(7)}), I(7));
}

}  // namespace
}  // namespace tern::raft::test
