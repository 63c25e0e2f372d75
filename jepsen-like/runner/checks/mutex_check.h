#pragma once
// The checks of the mutex workload (docs/jepsen.md; jepsen-like/runner/mutex_workload.cc) on the
// counter znode, "<count> <token of its writer>", that holders increment by compare-and-set:
//  - fencing: a holder never finds the counter written with a newer token than its own, and its
//    compare-and-set never loses to another writer while it holds the lock;
//  - counter: the final value is at least the acknowledged increments and at most those plus the
//    unknown ones (it never went backwards, nothing acknowledged was lost).
// The lock check itself (never two holders at once, strictly increasing tokens) is the
// linearizability checker's mutex model on the history (linearizability_check in workload.h).
#include <cstdint>
#include <string>
#include <vector>

#include "jepsen-like/runner/checks/check.h"

namespace tern::jepsen::checks {

struct CounterValue {
  std::int64_t count = 0;
  std::uint64_t token = 0;
  bool valid = false;
};
// "<count> <token>"; valid false if it is not that.
CounterValue parse_counter(const std::string& data);

// One increment by a holder that read the counter: what it read and how its write ended.
struct Increment {
  enum class Result : std::uint8_t { acked, cas_lost, failed, unknown };
  std::uint64_t holder_token = 0;
  CounterValue read;  // not valid: malformed (no write was tried; `result` is meaningless)
  Result result = Result::failed;
};

// `final_value`: the final read of the counter (not valid: it failed). Returns fencing, counter.
std::vector<Check> check_counter(const std::vector<Increment>& increments, const CounterValue& final_value);

}  // namespace tern::jepsen::checks
