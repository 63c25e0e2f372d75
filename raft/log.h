#pragma once
// RaftLog: the in-memory log after the latest snapshot, with the bookkeeping the Ready contract
// needs: which entries were handed out for persistence (unstable_from_) and which are known
// durable (stable_). Pure; owned by Core.
//
// Invariants:
//   snapshot_index_ <= stable_ + ... (entries are contiguous from snapshot_index_ + 1)
//   entries_[i].index == snapshot_index_ + 1 + i
//   entries' terms never decrease
//   snapshot_index_ <= committed_ <= last_index()
#include <optional>
#include <span>
#include <vector>

#include "raft/types.h"

namespace tern::raft {

class RaftLog {
 public:
  // durable: whether `entries` are already on stable storage (false for a bootstrap entry).
  RaftLog(Index snapshot_index, Term snapshot_term, std::vector<Entry> entries, Index committed, bool durable = true);

  Index first_index() const { return snapshot_index_.next(); }
  Index last_index() const { return snapshot_index_ + entries_.size(); }
  Term last_term() const { return entries_.empty() ? snapshot_term_ : entries_.back().term; }
  Index snapshot_index() const { return snapshot_index_; }
  Term snapshot_term() const { return snapshot_term_; }
  Index committed() const { return committed_; }
  Index stable() const { return stable_; }
  Index unstable_from() const { return unstable_from_; }

  // Term of the entry at i; nullopt if i is compacted away (< snapshot_index) or beyond the end.
  std::optional<Term> term_at(Index i) const;
  bool matches(Index i, Term t) const {
    auto term = term_at(i);
    return term && *term == t;
  }
  const Entry& at(Index i) const;
  // Entries in [from, to], at most max_bytes of data (but always at least one).
  std::vector<Entry> slice(Index from, Index to, std::size_t max_bytes) const;

  // §5.4.1: is a log ending at (last_index, last_term) at least as up-to-date as ours?
  bool is_up_to_date(Index last_index, Term last_term) const {
    return last_term > this->last_term() || (last_term == this->last_term() && last_index >= this->last_index());
  }

  // First index of term `t` at or before `i` in our log (fast back-off hint), scanning back.
  Index first_index_of_term(Index i, Term t) const;
  // Last index whose term is <= t (leader side of the fast back-off).
  Index last_index_with_term_at_most(Term t) const;

  void append(Entry e);
  // Appends entries that follow prev (already matched), truncating a conflicting suffix.
  // Returns the index of the last entry of the request. Never truncates committed entries.
  Index append_after(Index prev, std::vector<Entry>&& entries);
  void truncate_from(Index i);
  void commit_to(Index i);

  // Everything up to and including i is covered by a snapshot; drop it from memory.
  void compact(Index i, Term t);
  // Replace the whole log by a snapshot (install from the leader), keeping a matching suffix.
  void restore(Index i, Term t);

  // Ready bookkeeping.
  std::vector<Entry> unstable_entries() const;
  void stable_to(Index i, Term t);  // entries up to (i, t) are durable

  std::size_t size() const { return entries_.size(); }

 private:
  Index snapshot_index_;
  Term snapshot_term_;
  std::vector<Entry> entries_;
  Index committed_;
  Index stable_;         // entries <= stable_ are durable
  Index unstable_from_;  // entries >= unstable_from_ were not yet handed out to persist
};

}  // namespace tern::raft
