#pragma once
// The checks of the set workload (docs/jepsen.md; jepsen-like/runner/set_workload.cc). Elements
// are never removed, so the checks are by real time:
//  - set-reads: no lost element (every read contains every add acknowledged before the read
//    began) and no phantom (a read contains only elements whose add began before it ended);
//  - set-final: the read after the heal contains every acknowledged add and no add that
//    definitely failed or was never attempted.
#include <cstdint>
#include <vector>

#include "jepsen-like/runner/checks/check.h"
#include "jepsen-like/runner/history.h"

namespace tern::jepsen::checks {

struct Add {
  std::uint64_t value = 0;
  Clock::time_point invoked, completed;
  Outcome outcome = Outcome::unknown;
};
struct SetRead {
  Clock::time_point invoked, completed;
  std::vector<std::uint64_t> values;  // sorted
};

// `final_ok`: the final read succeeded, with `final_values`. Returns set-reads, set-final.
std::vector<Check> check_set(const std::vector<Add>& adds, const std::vector<SetRead>& reads, bool final_ok,
                             const std::vector<std::uint64_t>& final_values);

}  // namespace tern::jepsen::checks
