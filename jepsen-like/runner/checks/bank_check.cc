#include "jepsen-like/runner/checks/bank_check.h"

#include <nlohmann/json.hpp>

namespace tern::jepsen::checks {
namespace {

struct Sum {
  std::int64_t total = 0;
  bool negative = false;
};
Sum sum(const std::vector<std::int64_t>& balances) {
  Sum s;
  for (auto b : balances) {
    s.total += b;
    s.negative |= b < 0;
  }
  return s;
}

}  // namespace

std::vector<Check> check_bank(const std::vector<BankRead>& reads, std::size_t not_atomic, bool final_ok,
                              const std::vector<std::int64_t>& final_balances, std::int64_t want_total) {
  std::size_t snapshots = 0, validated = 0, bad_reads = 0;
  std::string first_bad;
  for (const auto& r : reads) {
    if (r.malformed) {
      if (bad_reads++ == 0) first_bad = "account value '" + r.value + "' is not a balance";
      continue;
    }
    ++snapshots;
    validated += r.validated;
    auto s = sum(r.balances);
    if (s.total != want_total || s.negative) {
      if (bad_reads++ == 0)
        first_bad = "balances " + nlohmann::json(r.balances).dump() + " total " + std::to_string(s.total) + " (want " +
                    std::to_string(want_total) + ")";
    }
  }
  std::vector<Check> out;
  out.push_back({"bank-reads", bad_reads == 0 ? "valid" : "invalid",
                 std::to_string(snapshots) + " reads of one state checked (" + std::to_string(validated) +
                     " of them validated by a multi), " + std::to_string(not_atomic) + " discarded as not one state; " +
                     std::to_string(bad_reads) + " with a wrong total or a negative balance" +
                     (first_bad.empty() ? "" : "; first: " + first_bad)});
  auto f = sum(final_balances);
  bool final_bad = f.total != want_total || f.negative;
  out.push_back({"bank-final", !final_ok ? "unknown" : final_bad ? "invalid" : "valid",
                 !final_ok ? "no final read of one state"
                           : "final balances " + nlohmann::json(final_balances).dump() + ", total " + std::to_string(f.total)});
  return out;
}

}  // namespace tern::jepsen::checks
