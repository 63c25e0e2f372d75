#include "raft/log.h"

#include <algorithm>

#include "common/assert.h"

namespace tern::raft {

RaftLog::RaftLog(Index snapshot_index, Term snapshot_term, std::vector<Entry> entries, Index committed, bool durable)
    : snapshot_index_(snapshot_index),
      snapshot_term_(snapshot_term),
      entries_(std::move(entries)),
      committed_(std::max(committed, snapshot_index)),
      stable_(durable ? snapshot_index_ + entries_.size() : snapshot_index_),
      unstable_from_(stable_.next()) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    TERN_ASSERT(entries_[i].index == snapshot_index_ + (i + 1));
    TERN_ASSERT(i == 0 ? entries_[i].term >= snapshot_term_ : entries_[i].term >= entries_[i - 1].term);
  }
  // A persisted commit index beyond the persisted log cannot happen with a correct driver, but a
  // hard state written after a log truncation could race: never claim more than we hold.
  committed_ = std::min(committed_, last_index());
}

std::optional<Term> RaftLog::term_at(Index i) const {
  if (i == snapshot_index_) return snapshot_term_;
  if (i < snapshot_index_ || i > last_index()) return std::nullopt;
  return entries_[i - first_index()].term;
}

const Entry& RaftLog::at(Index i) const {
  TERN_ASSERT(i >= first_index());
  TERN_ASSERT(i <= last_index());
  return entries_[i - first_index()];
}

std::vector<Entry> RaftLog::slice(Index from, Index to, std::size_t max_bytes) const {
  std::vector<Entry> out;
  if (from > to) return out;
  TERN_ASSERT(from >= first_index());
  TERN_ASSERT(to <= last_index());
  std::size_t bytes = 0;
  out.reserve(std::min<std::size_t>(to - from + 1, 1024));
  for (Index i = from; i <= to; i = i.next()) {
    const Entry& e = at(i);
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  return out;
}

Index RaftLog::first_index_of_term(Index i, Term t) const {
  Index j = std::min(i, last_index());
  while (j > first_index() && term_at(j.prev()) == t) j = j.prev();
  return j;
}

Index RaftLog::last_index_with_term_at_most(Term t) const {
  Index j = last_index();
  while (j > snapshot_index_ && *term_at(j) > t) j = j.prev();
  return j;
}

void RaftLog::append(Entry e) {
  TERN_ASSERT(e.index == last_index().next());
  TERN_ASSERT(e.term >= last_term());
  entries_.push_back(std::move(e));
}

Index RaftLog::append_after(Index prev, std::vector<Entry>&& entries) {
  Index last_new = prev + entries.size();
  for (auto& e : entries) {
    if (e.index <= snapshot_index_) continue;  // covered by our snapshot, hence committed and equal
    auto existing = term_at(e.index);
    if (existing) {
      if (*existing == e.term) continue;  // already have it (§5.3 step 4: keep matching entries)
      // §5.3 step 3: an existing entry conflicts with a new one: delete it and all that follow.
      // Committed entries never conflict (Leader Completeness, §5.4); if one does, the leader
      // or this log is broken, and continuing would lose acknowledged data.
      TERN_ASSERT_MSG(e.index > committed_, "append would truncate a committed entry");
      truncate_from(e.index);
    }
    append(std::move(e));
  }
  return last_new;
}

void RaftLog::truncate_from(Index i) {
  TERN_ASSERT(i > committed_);
  TERN_ASSERT(i >= first_index());
  entries_.resize(i - first_index());
  stable_ = std::min(stable_, i.prev());
  unstable_from_ = std::min(unstable_from_, i);
}

void RaftLog::commit_to(Index i) {
  if (i <= committed_) return;  // the commit index never goes backwards
  TERN_ASSERT_MSG(i <= last_index(), "commit beyond the end of the log");
  committed_ = i;
}

void RaftLog::compact(Index i, Term t) {
  if (i <= snapshot_index_) return;
  TERN_ASSERT(i <= committed_);
  TERN_ASSERT(term_at(i) == t);
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(i - snapshot_index_));
  snapshot_index_ = i;
  snapshot_term_ = t;
  stable_ = std::max(stable_, i);
  unstable_from_ = std::max(unstable_from_, i.next());
}

void RaftLog::restore(Index i, Term t) {
  TERN_ASSERT(i > committed_);
  if (matches(i, t)) {
    // Thesis §5.2 / paper §7: keep the entries following a snapshot that matches our log.
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(i - snapshot_index_));
  } else {
    entries_.clear();
  }
  snapshot_index_ = i;
  snapshot_term_ = t;
  committed_ = i;
  stable_ = std::max(std::min(stable_, last_index()), i);
  unstable_from_ = std::max(std::min(unstable_from_, last_index().next()), i.next());
}

std::vector<Entry> RaftLog::unstable_entries() const {
  if (unstable_from_ > last_index()) return {};
  return std::vector<Entry>(entries_.begin() + static_cast<std::ptrdiff_t>(unstable_from_ - first_index()),
                            entries_.end());
}

void RaftLog::stable_to(Index i, Term t) {
  // The entries may have been truncated (and replaced) after the Ready was taken: only the part
  // that still matches our log became durable as our log.
  if (!matches(i, t)) return;
  stable_ = std::max(stable_, i);
  unstable_from_ = std::max(unstable_from_, i.next());
}

}  // namespace tern::raft
