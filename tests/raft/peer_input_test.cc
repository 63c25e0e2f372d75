// Peer input is hostile (issue 10, hole 5): the structural check (raft/message_check.h), the
// core's own rejections (Core::step returns an error value, never asserts, never half-applies),
// and a seeded property test that feeds random and mutated messages to cores in many states.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "common/overloaded.h"
#include "raft/message_check.h"
#include "tests/raft/harness.h"

namespace tern::raft::test {
namespace {

Message msg(std::uint64_t from, std::uint64_t to, std::uint64_t term, MessageBody body) {
  return Message{N(from), N(to), T(term), std::move(body)};
}

std::vector<Entry> entries(std::uint64_t first, const std::vector<std::uint64_t>& terms) {
  std::vector<Entry> out;
  for (std::size_t i = 0; i < terms.size(); ++i)
    out.push_back(Entry{T(terms[i]), I(first + i), EntryType::normal, "n" + std::to_string(first + i)});
  return out;
}

// ---- check_message: structural rules --------------------------------------------------------

TEST(MessageCheck, AcceptsWellFormedMessages) {
  EXPECT_FALSE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(5, {2, 3, 3}), I(4)})));
  EXPECT_FALSE(check_message(msg(1, 2, 3, AppendRequest{I(0), T(0), entries(1, {1}), I(0)})));
  EXPECT_FALSE(check_message(msg(1, 2, 3, VoteRequest{I(9), T(3), false, false})));
  EXPECT_FALSE(check_message(msg(1, 2, 1, HeartbeatRequest{I(0), 0})));
  EXPECT_FALSE(check_message(msg(2, 1, 0, AppendReply{})));
  ConfState conf{{N(1), N(2)}, {N(3)}};
  EXPECT_FALSE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(7), T(2), conf}, nullptr})));
  std::vector<Entry> es = entries(1, {1});
  es[0].type = EntryType::conf_change;
  es[0].data = encode_conf_change({ConfChangeType::add_learner, N(4)});
  EXPECT_FALSE(check_message(msg(1, 2, 1, AppendRequest{I(0), T(0), es, I(0)})));
  es[0].data = encode_conf_state(conf);
  EXPECT_FALSE(check_message(msg(1, 2, 1, AppendRequest{I(0), T(0), es, I(0)})));
}

TEST(MessageCheck, RejectsMalformedAppends) {
  // Not contiguous from prev_index + 1.
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(6, {2}), I(0)})));
  auto gap = entries(5, {2, 2});
  gap[1].index = I(7);
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), gap, I(0)})));
  // Terms decreasing, below prev_term, or above the message term.
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(5, {3, 2}), I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(3), entries(5, {2}), I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), entries(5, {4}), I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(4), {}, I(0)})));
  // Index 0 has term 0; index overflow.
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(0), T(1), {}, I(0)})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(~0ull), T(1), entries(0, {1}), I(0)})));
  // Unknown entry type; undecodable membership change (the one that used to abort at commit).
  auto bad = entries(5, {2});
  bad[0].type = static_cast<EntryType>(7);
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  bad[0].type = EntryType::conf_change;
  bad[0].data = "garbage";
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  bad[0].data = encode_conf_change({ConfChangeType::add_learner, no_node});
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  bad[0].data = encode_conf_state(ConfState{{N(2), N(1)}, {}});  // unsorted
  EXPECT_TRUE(check_message(msg(1, 2, 3, AppendRequest{I(4), T(2), bad, I(0)})));
  // Term 0.
  EXPECT_TRUE(check_message(msg(1, 2, 0, AppendRequest{I(0), T(0), {}, I(0)})));
}

TEST(MessageCheck, RejectsBadSendersVotesAndSnapshots) {
  EXPECT_TRUE(check_message(msg(0, 2, 3, VoteRequest{I(1), T(1), false, false})));
  EXPECT_TRUE(check_message(msg(2, 0, 3, VoteReply{})));
  EXPECT_TRUE(check_message(msg(2, 2, 3, VoteReply{})));
  EXPECT_TRUE(check_message(msg(1, 2, 0, VoteRequest{I(0), T(0), false, false})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, VoteRequest{I(1), T(4), false, false})));
  EXPECT_TRUE(check_message(msg(1, 2, 0, TimeoutNow{})));
  ConfState ok{{N(1), N(2)}, {}};
  EXPECT_TRUE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(0), T(1), ok}, nullptr})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(5), T(4), ok}, nullptr})));
  EXPECT_TRUE(check_message(msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(5), T(2), ConfState{}}, nullptr})));
  EXPECT_TRUE(check_message(
      msg(1, 2, 3, InstallSnapshotRequest{SnapshotMeta{I(5), T(2), ConfState{{N(1)}, {N(1)}}}, nullptr})));
}

// ---- Core::step: rejections that need the core's state ----------------------------------------

// Observable state of a core: a rejected message must leave all of it unchanged.
struct Fingerprint {
  HardState hs;
  Role role;
  NodeId leader;
  Index first, last;
  std::optional<Term> last_term;
  ConfState conf;
  bool has_ready;
  NodeId transfer;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> progress;  // (match, next) per peer
  bool operator==(const Fingerprint&) const = default;
};

Fingerprint fingerprint(const Core& c) {
  Fingerprint f{c.hard_state(), c.role(), c.leader(), c.first_index(), c.last_index(), c.term_at(c.last_index()),
                c.conf_state(), c.has_ready(), c.transfer_target(), {}};
  for (const auto& [id, pr] : c.progress_map()) f.progress.emplace_back(pr.match_index.value, pr.next_index.value);
  return f;
}

void expect_rejected(Core& c, Message m, const char* what) {
  Fingerprint before = fingerprint(c);
  auto r = c.step(std::move(m));
  EXPECT_FALSE(r.has_value()) << what;
  EXPECT_TRUE(before == fingerprint(c)) << what << ": a rejected message changed the core";
}

TEST(PeerInput, MalformedAppendsAreRejectedWithoutEffect) {
  Harness h(3);
  h.elect(1);
  h.propose(1, "a");
  Core& f = h[2];
  Index commit = f.commit_index();
  // Entries not at prev_index + 1: the commit they imply covers an entry the message never held.
  expect_rejected(f, msg(1, 2, f.term().value, AppendRequest{f.last_index(), *f.term_at(f.last_index()),
                                                              entries(f.last_index().value + 2, {f.term().value}),
                                                              I(f.last_index().value + 2)}),
                  "non-contiguous append");
  // An undecodable membership change (it used to abort the node once committed).
  auto bad = entries(f.last_index().value + 1, {f.term().value});
  bad[0].type = EntryType::conf_change;
  bad[0].data = "\x01garbage";
  expect_rejected(f, msg(1, 2, f.term().value, AppendRequest{f.last_index(), *f.term_at(f.last_index()), bad,
                                                              f.last_index().next()}),
                  "undecodable conf change");
  // Entries of a term above the message's.
  expect_rejected(f, msg(1, 2, f.term().value, AppendRequest{f.last_index(), *f.term_at(f.last_index()),
                                                              entries(f.last_index().value + 1, {f.term().value + 1}),
                                                              I(0)}),
                  "entry term above the message term");
  EXPECT_EQ(f.commit_index(), commit);
}

TEST(PeerInput, ClaimsNoCorrectPeerCanMakeAreRejected) {
  Harness h(3);
  h.elect(1);
  h.propose(1, "a");
  Core& l = h[1];
  std::uint64_t t = l.term().value;
  // A second leader in the leader's own term (used to be an assertion: a crash from the wire).
  expect_rejected(l, msg(2, 1, t, AppendRequest{I(0), T(0), {}, I(0)}), "append to the leader");
  expect_rejected(l, msg(2, 1, t, HeartbeatRequest{I(0), 0}), "heartbeat to the leader");
  expect_rejected(h[2], msg(3, 2, t, HeartbeatRequest{I(0), 0}), "a second leader to a follower");
  // Replies vouching for entries the leader never had.
  expect_rejected(l, msg(2, 1, t, AppendReply{true, l.last_index() + 5, {}, {}, {}}), "match beyond the log");
  expect_rejected(l, msg(2, 1, t, AppendReply{false, {}, l.last_index() + 5, I(1), {}}), "rejection beyond the log");
  expect_rejected(l, msg(2, 1, t, InstallSnapshotReply{l.last_index() + 1}), "snapshot reply beyond the log");
  // Node id 0, a message for someone else, a snapshot without its bytes (used to assert).
  expect_rejected(h[2], msg(0, 2, t + 1, VoteRequest{I(99), T(t), false, false}), "vote request from node 0");
  expect_rejected(h[2], msg(1, 3, t, HeartbeatRequest{I(0), 0}), "addressed to another node");
  expect_rejected(h[2], msg(1, 2, t, InstallSnapshotRequest{SnapshotMeta{I(50), T(t), ConfState{{N(1)}, {}}}, nullptr}),
                  "snapshot without data");
}

// ---- Property: random and mutated messages ---------------------------------------------------

// A little cluster driven by hand: correct traffic, plus hostile messages made by mutating real
// ones or from scratch, from random senders with random terms, indices and entries. After every
// step: no crash (an assertion would abort the test), a rejection changed nothing, and each
// core's own invariants hold: term and commit never go backwards, commit <= last index, the
// committed prefix never changes, the membership is well formed and is that of the last conf
// entry in the log (or the snapshot's).
class Fuzz {
 public:
  explicit Fuzz(std::uint64_t seed) : rng_(seed) {
    ConfState conf{{N(1), N(2), N(3)}, {}};
    for (std::uint64_t i = 1; i <= 4; ++i) {
      Config c = config_for(N(i));
      c.seed = seed + i;
      c.pre_vote = pick(2) == 0;
      c.max_msg_bytes = 8;
      RestoreState rs;
      rs.bootstrap = i <= 3 ? conf : ConfState{};
      cores_[N(i)] = std::make_unique<Core>(c, std::move(rs));
    }
  }

  void run(int steps) {
    for (int s = 0; s < steps && !::testing::Test::HasFailure(); ++s) {
      switch (pick(10)) {
        case 0: case 1: {
          Core& c = core(1 + pick(4));
          c.tick();
          process(c);
          break;
        }
        case 2: {
          for (auto& [id, c] : cores_)
            if (c->role() == Role::leader) {
              (void)c->propose("p" + std::to_string(s));
              if (pick(20) == 0) (void)c->propose_conf_change({ConfChangeType::add_learner, N(4)});
              if (pick(20) == 0) (void)c->propose_conf_change({ConfChangeType::promote_learner, N(4)});
              if (pick(30) == 0) (void)c->transfer_leadership(N(1 + pick(4)));
              process(*c);
            }
          break;
        }
        case 3: {
          Core& c = core(1 + pick(4));
          if (c.applied_index() > c.first_index() && pick(4) == 0) c.compact(c.applied_index());
          break;
        }
        case 4: case 5: hostile(); break;
        default: deliver_one(); break;
      }
      check_all();
    }
  }

  std::uint64_t rejected = 0, accepted_hostile = 0;

 private:
  std::uint64_t pick(std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_); }
  Core& core(std::uint64_t id) { return *cores_.at(N(id)); }

  void process(Core& c) {
    while (c.has_ready()) {
      Ready rd = c.ready();
      for (auto& m : rd.messages) {
        if (auto* sn = std::get_if<InstallSnapshotRequest>(&m.body)) sn->data = std::make_shared<const std::string>("s");
        if (queue_.size() < kMaxQueue) queue_.push_back(m);
        if (pool_.size() < kMaxPool) pool_.push_back(m); else pool_[pick(kMaxPool)] = m;
      }
      c.advance(rd);
    }
  }

  // Correct traffic; a node may reject it once hostile input has confused it, which is fine.
  void deliver_one() {
    if (queue_.empty()) return;
    std::size_t i = pick(queue_.size());
    Message m = std::move(queue_[i]);
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
    if (pick(10) == 0) return;  // lost
    step_checked(std::move(m));
  }

  void hostile() {
    Message m;
    if (!pool_.empty() && pick(4) != 0) {
      m = pool_[pick(pool_.size())];
      mutate(m);
    } else {
      m = Message{N(pick(6)), N(1 + pick(4)), T(pick(8)), random_body()};
    }
    if (pick(8) != 0 && m.to.value >= 1 && m.to.value <= 4) {
      step_checked(std::move(m));
    } else {
      m.to = N(1 + pick(4));
      step_checked(std::move(m));
    }
  }

  // Each draw in its own statement: the order of operands is unspecified in C++, and the same
  // seed must give the same run in every build.
  std::uint64_t near(std::uint64_t v, std::uint64_t far_one_in, std::uint64_t far_max) {
    if (pick(far_one_in) == 0) return pick(far_max);
    std::uint64_t up = pick(3);
    std::uint64_t down = v > 0 ? pick(2) : 0;
    return v + up - down;
  }
  Term near_term(Term t) { return T(near(t.value, 3, 10)); }
  Index near_index(Index i) { return I(near(i.value, 4, 40)); }

  std::vector<Entry> random_entries(Index prev, Term term) {
    std::vector<Entry> es;
    std::size_t n = pick(4);
    Term t = term;
    for (std::size_t k = 0; k < n; ++k) {
      Entry e{t, prev + (k + 1), EntryType::normal, "h" + std::to_string(pick(1000))};
      switch (pick(8)) {
        case 0: e.type = EntryType::conf_change; e.data = encode_conf_change({static_cast<ConfChangeType>(pick(4)), N(pick(6))}); break;
        case 1: e.type = EntryType::conf_change; e.data = "\x07junk"; break;
        case 2: e.type = EntryType::noop; e.data.clear(); break;
        case 3: e.type = static_cast<EntryType>(pick(6)); break;
        default: break;
      }
      if (pick(6) == 0) e.index = near_index(e.index);
      if (pick(6) == 0) e.term = near_term(e.term);
      es.push_back(std::move(e));
    }
    return es;
  }

  ConfState random_conf() {
    ConfState c;
    for (std::uint64_t i = 0; i < 5; ++i) {
      if (pick(2)) c.voters.push_back(N(i));
      else if (pick(3) == 0) c.learners.push_back(N(i));
    }
    if (pick(6) == 0) std::swap(c.voters, c.learners);
    return c;
  }

  MessageBody random_body() {
    Term t = T(pick(8));
    Index i = I(pick(30));
    switch (pick(14)) {
      case 0: return AppendRequest{i, t, random_entries(i, t), I(pick(40))};
      case 1: return AppendReply{pick(2) == 0, I(pick(40)), I(pick(40)), I(pick(40)), T(pick(8))};
      case 2: return VoteRequest{i, t, pick(2) == 0, pick(2) == 0};
      case 3: return VoteReply{pick(2) == 0, pick(2) == 0};
      case 4: return HeartbeatRequest{I(pick(40)), pick(5)};
      case 5: return HeartbeatReply{pick(5)};
      case 6: return InstallSnapshotRequest{SnapshotMeta{i, t, random_conf()},
                                            pick(3) ? std::make_shared<const std::string>("s") : nullptr};
      case 7: return InstallSnapshotReply{I(pick(40))};
      case 8: return TimeoutNow{};
      case 9: return ReadIndexRequest{"r"};
      case 10: return ReadIndexReply{"r", I(pick(40)), pick(2) == 0};
      case 11: return ProposeRequest{pick(5), "c"};
      case 12: return ProposeReply{pick(5), I(pick(40)), pick(2) == 0};
      default: return CommitNotice{I(pick(40))};
    }
  }

  void mutate(Message& m) {
    switch (pick(4)) {
      case 0: m.from = N(pick(6)); break;
      case 1: m.term = near_term(m.term); break;
      default: break;
    }
    std::visit(Overloaded{
                   [&](AppendRequest& r) {
                     switch (pick(6)) {
                       case 0: r.prev_index = near_index(r.prev_index); break;
                       case 1: r.prev_term = near_term(r.prev_term); break;
                       case 2: r.commit = near_index(r.commit + 3); break;
                       case 3: if (!r.entries.empty()) r.entries.erase(r.entries.begin() + static_cast<std::ptrdiff_t>(pick(r.entries.size()))); break;
                       case 4: r.entries = random_entries(r.prev_index, m.term); break;
                       default: if (!r.entries.empty()) r.entries[pick(r.entries.size())].term = near_term(m.term); break;
                     }
                   },
                   [&](AppendReply& r) {
                     r.success = pick(2) == 0;
                     r.match_index = near_index(r.match_index);
                     r.rejected_index = near_index(r.rejected_index);
                     r.conflict_index = near_index(r.conflict_index);
                     r.conflict_term = near_term(r.conflict_term);
                   },
                   [&](VoteRequest& r) {
                     r.last_index = near_index(r.last_index);
                     r.last_term = near_term(r.last_term);
                     if (pick(3) == 0) r.pre_vote = !r.pre_vote;
                     if (pick(3) == 0) r.transfer = !r.transfer;
                   },
                   [&](VoteReply& r) { r.granted = !r.granted; },
                   [&](HeartbeatRequest& r) { r.commit = near_index(r.commit + 2); r.read_seq += pick(3); },
                   [&](CommitNotice& r) { r.commit = near_index(r.commit + 2); },
                   [&](InstallSnapshotRequest& r) {
                     r.meta.index = near_index(r.meta.index);
                     r.meta.term = near_term(r.meta.term);
                     if (pick(3) == 0) r.meta.conf = random_conf();
                     if (pick(4) == 0) r.data = nullptr;
                   },
                   [&](InstallSnapshotReply& r) { r.match_index = near_index(r.match_index); },
                   [&](auto&) { m.body = random_body(); },
               },
               m.body);
  }

  void step_checked(Message m) {
    auto it = cores_.find(m.to);
    Core& c = it == cores_.end() ? core(1) : *it->second;
    Fingerprint before = fingerprint(c);
    bool valid_shape = !check_message(m);
    auto r = c.step(std::move(m));
    if (!r) {
      ++rejected;
      ASSERT_TRUE(before == fingerprint(c)) << "rejected (" << r.error().reason << ") yet the core changed";
      return;
    }
    ASSERT_TRUE(valid_shape) << "a structurally malformed message was accepted";
    process(c);
  }

  void check_all() {
    for (auto& [id, c] : cores_) {
      Seen& s = seen_[id];
      ASSERT_GE(c->term(), s.term) << "term went backwards on " << id;
      ASSERT_GE(c->commit_index(), s.commit) << "commit went backwards on " << id;
      ASSERT_LE(c->commit_index(), c->last_index());
      s.term = c->term();
      s.commit = c->commit_index();
      // The committed prefix never changes (what we remember of it and can still see).
      for (auto e = s.committed.begin(); e != s.committed.end();) {
        if (e->first < c->first_index()) { e = s.committed.erase(e); continue; }
        if (e->first <= c->commit_index()) {
          ASSERT_EQ(c->term_at(e->first), e->second) << "committed entry changed on " << id;
        }
        ++e;
      }
      if (c->commit_index() >= c->first_index()) s.committed[c->commit_index()] = *c->term_at(c->commit_index());
      // Terms in the log never decrease.
      for (Index i = c->first_index(); i < c->last_index(); i = i.next())
        ASSERT_LE(*c->term_at(i), *c->term_at(i.next())) << "log terms decrease on " << id;
      // Membership: well formed (or empty for a node that never joined), and the last conf
      // entry's (thesis §4.1).
      const ConfState& conf = c->conf_state();
      for (auto* ids : {&conf.voters, &conf.learners}) {
        for (std::size_t k = 1; k < ids->size(); ++k) ASSERT_LT((*ids)[k - 1], (*ids)[k]);
      }
      const auto& hist = c->conf_history();
      ASSERT_EQ(conf, hist.empty() ? c->snapshot_conf() : hist.back().second);
      for (const auto& [i, cs] : hist) {
        ASSERT_GE(i, c->first_index());
        ASSERT_LE(i, c->last_index());
        ASSERT_EQ(c->entry_at(i).type, EntryType::conf_change);
      }
    }
  }

  static constexpr std::size_t kMaxQueue = 512, kMaxPool = 256;
  struct Seen {
    Term term;
    Index commit;
    std::map<Index, Term> committed;
  };
  std::mt19937_64 rng_;
  std::map<NodeId, std::unique_ptr<Core>> cores_;
  std::vector<Message> queue_, pool_;
  std::map<NodeId, Seen> seen_;
};

// Seeded and bounded: TERN_FUZZ_SEED replays one seed, TERN_FUZZ_SEEDS scales the count.
TEST(PeerInput, RandomAndMutatedMessagesNeverCrashOrCorruptACore) {
  std::uint64_t first = 1, count = 40;
  if (const char* s = std::getenv("TERN_FUZZ_SEED")) first = std::strtoull(s, nullptr, 10), count = 1;
  if (const char* s = std::getenv("TERN_FUZZ_SEEDS")) count = std::strtoull(s, nullptr, 10);
  std::uint64_t rejected = 0;
  for (std::uint64_t seed = first; seed < first + count && !HasFailure(); ++seed) {
    SCOPED_TRACE("replay: TERN_FUZZ_SEED=" + std::to_string(seed));
    Fuzz f(seed);
    f.run(3000);
    rejected += f.rejected;
  }
  EXPECT_GT(rejected, 0u);  // the generator does produce malformed input
  std::printf("seeds %llu..%llu: %llu messages rejected\n", (unsigned long long)first,
              (unsigned long long)(first + count - 1), (unsigned long long)rejected);
}

}  // namespace
}  // namespace tern::raft::test
