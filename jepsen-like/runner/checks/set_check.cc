#include "jepsen-like/runner/checks/set_check.h"

#include <map>
#include <set>
#include <string>

namespace tern::jepsen::checks {

std::vector<Check> check_set(const std::vector<Add>& adds, const std::vector<SetRead>& reads, bool final_ok,
                             const std::vector<std::uint64_t>& final_values) {
  std::map<std::uint64_t, const Add*> by_value;
  for (const auto& a : adds) by_value[a.value] = &a;
  std::size_t lost = 0, phantom = 0;
  std::string first;
  for (const auto& r : reads) {
    std::set<std::uint64_t> seen(r.values.begin(), r.values.end());
    for (const auto& a : adds)
      if (a.outcome == Outcome::ok && a.completed < r.invoked && seen.count(a.value) == 0) {
        if (lost++ == 0) first = "element " + std::to_string(a.value) + " acknowledged before a read began is missing from it";
      }
    for (auto v : r.values) {
      auto it = by_value.find(v);
      if (it == by_value.end() || it->second->invoked > r.completed) {
        if (phantom++ == 0 && first.empty()) first = "element " + std::to_string(v) + " read before its add began";
      }
    }
  }
  std::vector<Check> out;
  out.push_back({"set-reads", lost == 0 && phantom == 0 ? "valid" : "invalid",
                 std::to_string(reads.size()) + " reads: " + std::to_string(lost) + " lost, " +
                     std::to_string(phantom) + " phantom" + (first.empty() ? "" : "; first: " + first)});
  if (!final_ok) {
    out.push_back({"set-final", "unknown", "the final read failed"});
    return out;
  }
  std::set<std::uint64_t> fin(final_values.begin(), final_values.end());
  std::size_t missing = 0, failed_present = 0, unattempted = 0, unknown_present = 0;
  for (const auto& a : adds) {
    bool in = fin.count(a.value) != 0;
    if (a.outcome == Outcome::ok && !in) ++missing;
    if (a.outcome == Outcome::fail && in) ++failed_present;
    if (a.outcome == Outcome::unknown && in) ++unknown_present;
  }
  for (auto v : final_values)
    if (by_value.count(v) == 0) ++unattempted;
  bool ok = missing == 0 && failed_present == 0 && unattempted == 0;
  out.push_back({"set-final", ok ? "valid" : "invalid",
                 std::to_string(final_values.size()) + " elements; acknowledged missing " + std::to_string(missing) +
                     ", failed present " + std::to_string(failed_present) + ", never attempted " +
                     std::to_string(unattempted) + ", unknown present " + std::to_string(unknown_present)});
  return out;
}

}  // namespace tern::jepsen::checks
