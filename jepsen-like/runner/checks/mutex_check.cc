#include "jepsen-like/runner/checks/mutex_check.h"

#include <cstdlib>

namespace tern::jepsen::checks {

CounterValue parse_counter(const std::string& data) {
  CounterValue v;
  char* end = nullptr;
  v.count = std::strtoll(data.c_str(), &end, 10);
  if (end == nullptr || *end != ' ') return v;
  v.token = std::strtoull(end + 1, nullptr, 10);
  v.valid = true;
  return v;
}

std::vector<Check> check_counter(const std::vector<Increment>& increments, const CounterValue& final_value) {
  std::int64_t acked = 0, unknown = 0;
  std::size_t newer_token_seen = 0, cas_lost = 0, malformed = 0;
  for (const auto& i : increments) {
    if (!i.read.valid) {
      ++malformed;
      continue;
    }
    if (i.read.token > i.holder_token) ++newer_token_seen;
    acked += i.result == Increment::Result::acked;
    cas_lost += i.result == Increment::Result::cas_lost;
    unknown += i.result == Increment::Result::unknown;
  }
  std::vector<Check> out;
  bool fenced = newer_token_seen == 0 && cas_lost == 0 && malformed == 0;
  out.push_back({"fencing", fenced ? "valid" : "invalid",
                 std::to_string(newer_token_seen) + " holders found a newer token in the counter, " +
                     std::to_string(cas_lost) + " counter writes lost to another writer while holding, " +
                     std::to_string(malformed) + " malformed counter values"});
  if (!final_value.valid) {
    out.push_back({"counter", "unknown", "the final read of the counter failed"});
  } else {
    bool ok = final_value.count >= acked && final_value.count <= acked + unknown;
    out.push_back({"counter", ok ? "valid" : "invalid",
                   "final " + std::to_string(final_value.count) + ", acknowledged increments " + std::to_string(acked) +
                       ", unknown " + std::to_string(unknown)});
  }
  return out;
}

}  // namespace tern::jepsen::checks
