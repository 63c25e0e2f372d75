#include "raft/invariants.h"

#include <algorithm>
#include <functional>

#include "raft/quorum.h"

namespace tern::raft {

namespace {
std::size_t entry_hash(const Entry& e) {
  return std::hash<std::string>{}(e.data) * 31 + std::hash<std::uint64_t>{}(e.term.value) * 7 +
         static_cast<std::size_t>(e.type);
}
std::string at(NodeId n, Index i) {
  return " (node " + std::to_string(n.value) + ", index " + std::to_string(i.value) + ")";
}
}  // namespace

// Holders needed for an entry at i, seen from the node that first saw it committed (the leader).
// A configuration takes effect when appended (thesis §4.1), so the leader committed i with the
// membership in effect at i or with one appended after it (a single-server change): the smallest
// of those majorities applies.
std::size_t InvariantChecker::quorum_for(const Core& c, Index i) {
  std::size_t at_i = c.snapshot_conf().voters.size();
  std::size_t need = SIZE_MAX;
  for (const auto& [idx, conf] : c.conf_history()) {
    if (idx <= i)
      at_i = conf.voters.size();
    else if (!conf.voters.empty())
      need = std::min(need, majority(conf.voters.size()));
  }
  if (at_i == 0) return 0;
  return std::min(need, majority(at_i));
}

std::optional<std::string> InvariantChecker::check_log_matching(const Core& a, const Core& b) const {
  Index lo = std::max(a.first_index(), b.first_index());
  Index hi = std::min(a.last_index(), b.last_index());
  // Find the highest index where both hold the same term; everything at and below it must match.
  Index i = hi;
  while (i >= lo && i.value > 0 && a.term_at(i) != b.term_at(i)) i = i.prev();
  for (; i >= lo && i.value > 0; i = i.prev()) {
    const Entry& ea = a.entry_at(i);
    const Entry& eb = b.entry_at(i);
    if (ea.term != eb.term || ea.data != eb.data || ea.type != eb.type)
      return "log matching violated between nodes " + std::to_string(a.id().value) + " and " +
             std::to_string(b.id().value) + " at index " + std::to_string(i.value);
  }
  return std::nullopt;
}

std::optional<std::string> InvariantChecker::check(const std::vector<const Core*>& cores,
                                                   const std::vector<NodeId>& all_nodes,
                                                   const DurableHolds& durable_holds,
                                                   const DurableLast& durable_last) {
  for (const Core* c : cores) {
    // Election safety.
    if (c->role() == Role::leader) {
      auto [it, fresh] = leaders_.emplace(c->term(), c->id());
      if (!fresh && it->second != c->id())
        return "two leaders in term " + std::to_string(c->term().value) + ": nodes " +
               std::to_string(it->second.value) + " and " + std::to_string(c->id().value);
    }
    // Commit monotonicity (per incarnation).
    auto [lc, fresh] = last_commit_.emplace(c->id(), c->commit_index());
    if (!fresh) {
      if (c->commit_index() < lc->second) return "commit index went backwards" + at(c->id(), c->commit_index());
      lc->second = c->commit_index();
    }
    if (c->commit_index() > c->last_index()) return "commit index beyond the log" + at(c->id(), c->commit_index());
    // Record and compare the committed prefix.
    for (Index i = std::max(c->first_index(), max_committed().next()); i <= c->commit_index(); i = i.next()) {
      const Entry& e = c->entry_at(i);
      committed_.emplace(i, Committed{e.term, entry_hash(e), c->term(), quorum_for(*c, i)});
    }
    for (Index i = c->first_index(); i <= c->commit_index(); i = i.next()) {
      auto it = committed_.find(i);
      if (it != committed_.end() && (it->second.term != c->entry_at(i).term ||
                                     it->second.data_hash != entry_hash(c->entry_at(i))))
        return "a committed entry changed" + at(c->id(), i);
    }
  }
  // Log matching, pairwise.
  for (std::size_t a = 0; a < cores.size(); ++a)
    for (std::size_t b = a + 1; b < cores.size(); ++b)
      if (auto err = check_log_matching(*cores[a], *cores[b])) return err;
  // Leader completeness: a leader of a newer term than the one in which an entry was seen
  // committed holds it.
  for (const Core* c : cores) {
    if (c->role() != Role::leader) continue;
    for (auto& [i, ce] : committed_) {
      if (ce.observed_at >= c->term()) continue;
      if (i < c->first_index()) continue;  // covered by its snapshot
      if (c->term_at(i) != ce.term) return "leader completeness violated" + at(c->id(), i);
    }
  }
  // Durable majority: each node's commit index is durably held by a majority of voters.
  for (const Core* c : cores) {
    Index ci = c->commit_index();
    auto t = c->term_at(ci);
    if (ci.value == 0 || !t) continue;
    auto rec = committed_.find(ci);
    if (rec == committed_.end()) continue;
    std::size_t need = rec->second.quorum;
    std::size_t holders = 0;
    for (NodeId n : all_nodes)
      if (durable_holds(n, ci, *t)) ++holders;
    if (holders < need)
      return "commit index not durable on a majority (" + std::to_string(holders) + " holders, " +
             std::to_string(need) + " needed)" + at(c->id(), ci);
    // Electability of nodes that lack the entry.
    const auto& voters = c->conf_state().voters;
    for (NodeId n : all_nodes) {
      if (durable_holds(n, ci, *t)) continue;
      auto [n_index, n_term] = durable_last(n);
      std::size_t votes = 0;
      for (NodeId v : voters) {
        auto [v_index, v_term] = durable_last(v);
        if (n_term > v_term || (n_term == v_term && n_index >= v_index)) ++votes;
      }
      if (votes >= need && votes >= majority(voters.size()))
        return "node " + std::to_string(n.value) + " lacks committed entry " + std::to_string(ci.value) +
               " yet could win an election (" + std::to_string(votes) + " voters would grant)" + at(c->id(), ci);
    }
  }
  return std::nullopt;
}

std::optional<std::string> InvariantChecker::on_apply(NodeId node, const Entry& e) {
  auto& last = last_applied_[node];
  if (e.index != last.next() && last.value != 0)
    return "applied out of order: expected " + std::to_string(last.next().value) + at(node, e.index);
  last = e.index;
  auto [it, fresh] = applied_.emplace(e.index, entry_hash(e));
  if (!fresh && it->second != entry_hash(e)) return "two nodes applied different entries" + at(node, e.index);
  return std::nullopt;
}

void InvariantChecker::on_restore(NodeId node, Index index) { last_applied_[node] = index; }

}  // namespace tern::raft
