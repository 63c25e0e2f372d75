#pragma once
// The checks of the bank workload (docs/jepsen.md; jepsen-like/runner/bank_workload.cc), over the
// reads the workload proved to be one state of the tree:
//  - bank-reads: every such read sums to the initial total and has no negative balance (a read
//    of two states, say a transfer's credit without its debit, has the wrong total);
//  - bank-final: the same for the read after the heal.
#include <cstdint>
#include <string>
#include <vector>

#include "jepsen-like/runner/checks/check.h"

namespace tern::jepsen::checks {

struct BankRead {
  std::vector<std::int64_t> balances;  // every account, in account order
  bool validated = false;              // shown to be one state by a multi (not by the indexes)
  bool malformed = false;              // an account held `value`, which is not a balance
  std::string value;
};

// `reads`: in the order they completed (the first bad one is named), including malformed final
// reads; `not_atomic`: reads discarded as not one state; `final_ok`: the final read was one
// state, `final_balances`. Returns bank-reads, bank-final.
std::vector<Check> check_bank(const std::vector<BankRead>& reads, std::size_t not_atomic, bool final_ok,
                              const std::vector<std::int64_t>& final_balances, std::int64_t want_total);

}  // namespace tern::jepsen::checks
