#pragma once
// The checks of the list-append workload (docs/jepsen.md; the workload is
// jepsen-like/runner/list_append_workload.cc). With F the final read of a list (after the heal):
//  - list-final: F holds every acknowledged append, no append that definitely failed, nothing
//    never appended to this list, and no element twice;
//  - list-reads: every read is a prefix of F (same elements, same order) without duplicates;
//  - list-realtime: F's order and the reads respect real time: no append placed after another
//    completed before that other one began; no read misses an append acknowledged before the
//    read began (stale) or holds one that began after the read ended (phantom); a read that
//    completed before another began is no longer than it (monotonic).
// Given F, these are pairwise conditions between operations, and for an append-only list of
// unique elements they are exactly what a linearization in F's order needs: together they are a
// linearizability check of the history (without a search: F fixes the order).
#include <cstdint>
#include <map>
#include <vector>

#include "jepsen-like/runner/checks/check.h"
#include "jepsen-like/runner/history.h"

namespace tern::jepsen::checks {

struct Append {
  std::uint64_t key = 0, value = 0;
  Clock::time_point invoked, completed;  // completed: max() when unknown
  Outcome outcome = Outcome::unknown;
};
struct ListRead {
  std::uint64_t key = 0;
  Clock::time_point invoked, completed;
  std::vector<std::uint64_t> values;  // in list order
};

// `final_lists`: the final read of each list (absent: it failed); `malformed`: names read that
// were not elements. Returns list-final, list-reads, list-realtime.
std::vector<Check> check_list_append(const std::vector<Append>& appends, const std::vector<ListRead>& reads,
                                     const std::map<std::uint64_t, std::vector<std::uint64_t>>& final_lists,
                                     int malformed);

}  // namespace tern::jepsen::checks
