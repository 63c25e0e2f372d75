#pragma once
// What the checks of tern-jepsen's workloads return. The checks themselves are pure functions over
// plain data (no client library types: jepsen-like/runner/checks/<workload>_check.h), called by
// the workloads with what they recorded, and unit-tested on handcrafted histories
// (jepsen-like/tests/checks_test.cc).
#include <cstdint>
#include <string>

namespace tern::jepsen {

// One check's verdict: "valid", "invalid" or "unknown" (the checker gave up within its bound).
struct Check {
  std::string name, verdict, detail;
};

namespace checks {

// A write's outcome as its client saw it: acknowledged, definitely without effect, or unknown
// (it may have taken effect, at any later time).
enum class Outcome : std::uint8_t { ok, fail, unknown };

}  // namespace checks
}  // namespace tern::jepsen
