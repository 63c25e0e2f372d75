#include "tests/sim/linearizability.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

namespace tern::sim {

std::optional<std::string> check_list_history(const std::vector<HistoryOp>& ops,
                                              const std::vector<std::uint64_t>& order) {
  std::unordered_map<std::uint64_t, std::size_t> pos;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (!pos.emplace(order[i], i).second) return "value " + std::to_string(order[i]) + " appended twice";
  }
  auto where = [&](const HistoryOp& w) -> std::optional<std::size_t> {
    auto it = pos.find(w.value);
    if (it == pos.end()) return std::nullopt;
    return it->second;
  };
  std::vector<const HistoryOp*> writes, reads;
  for (const auto& op : ops) (op.is_write ? writes : reads).push_back(&op);
  for (const HistoryOp* w : writes) {
    auto p = where(*w);
    if (w->status == OpStatus::ok && !p) return "acknowledged write " + std::to_string(w->value) + " was lost";
    if (w->status == OpStatus::fail && p) return "failed write " + std::to_string(w->value) + " took effect";
  }
  for (std::uint64_t v : order) {
    bool known = std::any_of(writes.begin(), writes.end(), [&](const HistoryOp* w) { return w->value == v; });
    if (!known) return "value " + std::to_string(v) + " was never written";
  }
  // Write/write real-time order.
  for (const HistoryOp* a : writes) {
    if (a->status != OpStatus::ok) continue;
    for (const HistoryOp* b : writes) {
      if (a == b || b->invoke_time <= a->complete_time) continue;
      auto pb = where(*b);
      if (pb && *pb < *where(*a))
        return "write " + std::to_string(b->value) + " invoked after write " + std::to_string(a->value) +
               " was acknowledged, yet precedes it";
    }
  }
  for (const HistoryOp* r : reads) {
    if (r->status != OpStatus::ok) continue;
    if (r->read_length > order.size()) return "read saw a longer list than was ever committed";
    if (r->read_length > 0 && order[r->read_length - 1] != r->read_last) return "read saw a list that is not a prefix";
    for (const HistoryOp* w : writes) {
      auto p = where(*w);
      if (w->status == OpStatus::ok && w->complete_time < r->invoke_time && *p >= r->read_length)
        return "stale read: read invoked at " + std::to_string(r->invoke_time) + " missed write " +
               std::to_string(w->value) + " acknowledged at " + std::to_string(w->complete_time);
      if (p && *p < r->read_length && w->invoke_time > r->complete_time)
        return "read completed at " + std::to_string(r->complete_time) + " saw write " + std::to_string(w->value) +
               " invoked later";
    }
    for (const HistoryOp* r2 : reads) {
      if (r2->status == OpStatus::ok && r->complete_time < r2->invoke_time && r2->read_length < r->read_length)
        return "a later read saw a shorter list than an earlier one";
    }
  }
  return std::nullopt;
}

std::string history_jsonl(const std::vector<HistoryOp>& ops, const std::vector<std::uint64_t>& order) {
  struct Line {
    std::uint64_t time;
    int order;
    std::string text;
  };
  std::vector<Line> lines;
  for (const auto& op : ops) {
    std::string f = op.is_write ? "append" : "read";
    std::string p = std::to_string(op.process);
    std::string inv_value = op.is_write ? std::to_string(op.value) : "null";
    lines.push_back({op.invoke_time, 1,
                     "{\"process\":" + p + ",\"type\":\"invoke\",\"f\":\"" + f + "\",\"value\":" + inv_value +
                         ",\"time\":" + std::to_string(op.invoke_time) + "}"});
    const char* type = op.status == OpStatus::ok ? "ok" : op.status == OpStatus::fail ? "fail" : "info";
    std::string value = inv_value;
    if (!op.is_write && op.status == OpStatus::ok) {
      value = "[";
      for (std::size_t i = 0; i < op.read_length && i < order.size(); ++i) value += (i ? "," : "") + std::to_string(order[i]);
      value += "]";
    }
    bool done = op.status != OpStatus::pending;
    // At equal times: completions of earlier operations, then invocations, then operations that
    // completed at the instant they were invoked (rejected at once).
    std::uint64_t t = done ? op.complete_time : UINT64_MAX;
    lines.push_back({t, done && op.complete_time == op.invoke_time ? 2 : 0,
                     "{\"process\":" + p + ",\"type\":\"" + type + "\",\"f\":\"" + f + "\",\"value\":" + value + "}"});
  }
  std::stable_sort(lines.begin(), lines.end(),
                   [](const Line& a, const Line& b) { return std::tie(a.time, a.order) < std::tie(b.time, b.order); });
  std::string out;
  for (const auto& l : lines) out += l.text + "\n";
  return out;
}

}  // namespace tern::sim
