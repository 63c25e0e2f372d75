#pragma once
// Linearizability check for the simulator's replicated list (append unique values; reads return
// the whole list). Because values are unique and the committed order is known, the only possible
// linearization orders writes by their position in the committed list and places each read after
// the prefix it saw; the history is linearizable iff that order respects real time:
//   - a write acknowledged before another write was invoked precedes it in the list;
//   - a read sees every write acknowledged before the read was invoked (no stale read);
//   - a read sees no write invoked after the read completed (no read from the future);
//   - a read that completed before another began saw no longer a prefix than the later one;
//   - an acknowledged write is in the list; a failed write is not; a read's prefix is real.
// Indeterminate ("info") writes may or may not appear.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tern::sim {

enum class OpStatus : std::uint8_t { pending, ok, fail, info };

struct HistoryOp {
  int process = 0;
  bool is_write = false;
  std::uint64_t value = 0;         // write: the appended value
  std::uint64_t invoke_time = 0;
  std::uint64_t complete_time = 0; // valid when status is ok or fail
  OpStatus status = OpStatus::pending;
  std::size_t read_length = 0;     // read: length of the list it saw
  std::uint64_t read_last = 0;     // read: its last element (0 if empty)
};

// Returns the first violation, or nothing.
std::optional<std::string> check_list_history(const std::vector<HistoryOp>& ops,
                                              const std::vector<std::uint64_t>& committed_order);

// The history in the project's JSON-lines format (docs/checker.md), for tern-check's `list`
// model: "append" v, and "read" returning the whole list (the first read_length values of
// committed_order). One invoke and one completion line per operation, in time order.
std::string history_jsonl(const std::vector<HistoryOp>& ops, const std::vector<std::uint64_t>& committed_order);

}  // namespace tern::sim
