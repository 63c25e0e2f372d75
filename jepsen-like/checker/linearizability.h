#pragma once
// Linearizability checking (Wing & Gong's search with Lowe's memoization, per key in parallel:
// P-compositionality). See docs/checker.md.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "jepsen-like/checker/history.h"

namespace tern::check {

enum class Verdict : std::uint8_t { linearizable, not_linearizable, unknown };
const char* verdict_name(Verdict v);

struct Violation {
  std::string key;
  std::vector<std::size_t> longest_prefix;  // op ids of the longest linearizable prefix found, in order
  std::vector<std::size_t> unplaceable;     // op ids that could not be placed after that prefix
  std::string state;                        // the model state after the prefix
};

struct CheckOptions {
  double timeout_seconds = 0;                 // 0: none; reaching it gives `unknown`
  std::size_t max_cache_bytes = 4ull << 30;   // memory bound of the search; reaching it gives `unknown`
  unsigned threads = 0;                       // 0: hardware concurrency
};

struct CheckResult {
  Verdict verdict = Verdict::linearizable;
  std::size_t operations = 0;
  std::size_t keys = 0;
  double seconds = 0;
  std::optional<Violation> violation;  // for not_linearizable
  std::string reason;                  // for unknown, or a bad operation
  bool bad_input = false;              // an operation the model does not understand
};

CheckResult check_history(const History& history, const std::string& model, const CheckOptions& options = {});

}  // namespace tern::check
