#include "jepsen-like/runner/checks/watch_check.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace tern::jepsen::checks {

std::vector<Check> check_watch(const std::vector<WatchWrite>& writes, const std::vector<WatcherRecord>& watchers,
                               std::uint64_t n0, std::uint64_t m) {
  // The changes: index -> (path, value), from every delivery, then the acknowledged writes no
  // watcher delivered (at their reply's index). A retried write's reply may name a later index
  // than the entry that applied it (the retry's own entry; its answer is the first one's), so
  // an acknowledged write's change is matched by path and value, at an index <= its reply's.
  std::map<std::uint64_t, std::pair<std::string, std::string>> change;
  std::map<std::pair<std::string, std::string>, std::uint64_t> index_of;
  std::map<std::pair<std::string, std::string>, const WatchWrite*> attempted;
  std::size_t disagree = 0, phantom = 0, disorder = 0, missing = 0, excused = 0, resyncs = 0, checked = 0,
              reply_later = 0;
  std::string first_order, first_agree, first_missing;
  auto note = [](std::string* first, const std::string& s) {
    if (first->empty()) *first = s;
  };
  for (const auto& w : writes) attempted[{w.path, w.value}] = &w;
  for (const auto& wp : watchers) {
    std::uint64_t last = 0;
    for (const auto& e : wp.events) {
      if (e.type == "resync") {
        ++resyncs;
        continue;
      }
      if (e.index <= last) {
        ++disorder;
        note(&first_order, "watcher " + std::to_string(wp.number) + " delivered index " + std::to_string(e.index) +
                               " after " + std::to_string(last));
      }
      last = std::max(last, e.index);
      auto a = attempted.find({e.path, e.data});
      if (e.type != "data_changed" || a == attempted.end() || a->second->outcome == Outcome::fail) {
        ++phantom;
        note(&first_agree, "watcher " + std::to_string(wp.number) + " delivered a " + e.type + " of " + e.path +
                               " = '" + e.data + "' at index " + std::to_string(e.index) + " that no write made");
        continue;
      }
      auto [it, fresh] = change.emplace(e.index, std::make_pair(e.path, e.data));
      auto [at, new_value] = index_of.emplace(std::make_pair(e.path, e.data), e.index);
      if ((!fresh && it->second != std::make_pair(e.path, e.data)) || (!new_value && at->second != e.index)) {
        ++disagree;
        note(&first_agree, "watcher " + std::to_string(wp.number) + " delivered " + e.path + " = '" + e.data +
                               "' at index " + std::to_string(e.index) + ", which another delivery contradicts");
      }
    }
  }
  for (const auto& w : writes) {
    if (w.outcome != Outcome::ok) continue;
    auto it = index_of.find({w.path, w.value});
    if (it == index_of.end()) {
      change.emplace(w.index, std::make_pair(w.path, w.value));  // nobody delivered it: missing below
    } else if (it->second > w.index) {
      ++disagree;
      note(&first_agree, w.path + " = '" + w.value + "' delivered at index " + std::to_string(it->second) +
                             ", after its write's reply (index " + std::to_string(w.index) + ")");
    } else if (it->second < w.index) {
      ++reply_later;
    }
  }
  std::size_t live = 0, judged = 0;
  for (const auto& wp : watchers) {
    // A watcher not live at the end (its last session expired and could not be re-established)
    // is judged up to its last event: the changes after it were never due to it.
    live += wp.live;
    std::uint64_t upto = m;
    if (!wp.live) {
      upto = n0;
      for (const auto& e : wp.events) upto = std::max(upto, e.index);
    }
    judged += upto > n0;
    // The gaps an explicit resync covers: (index of the event before it, the resync's index].
    std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
    std::set<std::uint64_t> have;
    std::uint64_t prev = n0;
    for (const auto& e : wp.events) {
      if (e.type == "resync") gaps.emplace_back(prev, e.index);
      else have.insert(e.index);
      prev = std::max(prev, e.index);
    }
    for (const auto& [index, pv] : change) {
      if (index <= n0 || index > upto) continue;
      ++checked;
      if (have.count(index)) continue;
      bool in_gap = std::any_of(gaps.begin(), gaps.end(), [&](auto g) { return index > g.first && index <= g.second; });
      if (in_gap) {
        ++excused;
        continue;
      }
      ++missing;
      note(&first_missing, "watcher " + std::to_string(wp.number) + " never delivered index " + std::to_string(index) + " (" + pv.first +
           " = '" + pv.second + "')");
    }
  }
  std::vector<Check> out;
  out.push_back({"watch-order", disorder == 0 ? "valid" : "invalid",
                 std::to_string(disorder) + " events out of index order or repeated" +
                     (first_order.empty() ? "" : "; first: " + first_order)});
  out.push_back({"watch-agree", disagree == 0 && phantom == 0 ? "valid" : "invalid",
                 std::to_string(change.size()) + " changes; " + std::to_string(phantom) + " events no write made, " +
                     std::to_string(disagree) + " disagreements on an index; " + std::to_string(reply_later) +
                     " acknowledged writes whose reply named a later index than their change (retries)" +
                     (first_agree.empty() ? "" : "; first: " + first_agree)});
  out.push_back({"watch-complete", judged == 0 ? "unknown" : missing == 0 ? "valid" : "invalid",
                 std::to_string(live) + " live watchers of " + std::to_string(watchers.size()) + " (" +
                     std::to_string(judged) + " judged), changes " +
                     std::to_string(n0) + " < index <= " + std::to_string(m) + "; " + std::to_string(checked) +
                     " deliveries due, " + std::to_string(missing) + " missing, " + std::to_string(excused) +
                     " inside a resync gap (" + std::to_string(resyncs) + " resync events)" +
                     (first_missing.empty() ? "" : "; first: " + first_missing)});
  return out;
}

}  // namespace tern::jepsen::checks
