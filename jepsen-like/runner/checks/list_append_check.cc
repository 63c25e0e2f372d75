#include "jepsen-like/runner/checks/list_append_check.h"

#include <algorithm>
#include <string>
#include <unordered_map>

namespace tern::jepsen::checks {
namespace {

struct Counts {
  std::size_t final_elements = 0, lost = 0, failed_present = 0, phantom_final = 0, dup_final = 0, unknown_present = 0;
  std::size_t not_prefix = 0, order = 0, stale = 0, phantom_read = 0, shrunk = 0;
  std::string first_final, first_read, first_rt;
};
std::string first(const std::string& s) { return s.empty() ? "" : "; first: " + s; }
void note(std::string* first, const std::string& what) {
  if (first->empty()) *first = what;
}

void check_key(std::uint64_t key, const std::vector<const Append*>& appends, const std::vector<const ListRead*>& reads,
               const std::vector<std::uint64_t>& fin, Counts* n) {
  const std::string list = "list " + std::to_string(key);
  n->final_elements += fin.size();
  std::unordered_map<std::uint64_t, const Append*> by_value;
  for (const auto* a : appends) by_value[a->value] = a;
  // list-final.
  std::unordered_map<std::uint64_t, std::size_t> pos;
  for (std::size_t i = 0; i < fin.size(); ++i) {
    if (!pos.emplace(fin[i], i).second) {
      ++n->dup_final;
      note(&n->first_final, list + ": element " + std::to_string(fin[i]) + " twice");
    }
    auto it = by_value.find(fin[i]);
    if (it == by_value.end()) {
      ++n->phantom_final;
      note(&n->first_final, list + ": element " + std::to_string(fin[i]) + " never appended to it");
    } else if (it->second->outcome == Outcome::fail) {
      ++n->failed_present;
      note(&n->first_final, list + ": element " + std::to_string(fin[i]) + " whose append failed");
    } else if (it->second->outcome == Outcome::unknown) {
      ++n->unknown_present;
    }
  }
  for (const auto* a : appends)
    if (a->outcome == Outcome::ok && pos.count(a->value) == 0) {
      ++n->lost;
      note(&n->first_final, list + ": acknowledged element " + std::to_string(a->value) + " missing");
    }
  // list-reads: prefixes of the final list.
  std::vector<const ListRead*> prefixes;
  for (const auto* r : reads) {
    bool prefix = r->values.size() <= fin.size() && std::equal(r->values.begin(), r->values.end(), fin.begin());
    if (!prefix) {
      ++n->not_prefix;
      std::size_t i = 0;
      while (i < r->values.size() && i < fin.size() && r->values[i] == fin[i]) ++i;
      note(&n->first_read, list + ": a read of " + std::to_string(r->values.size()) + " elements differs from the final list at position " +
                               std::to_string(i) + (i < r->values.size() ? " (read " + std::to_string(r->values[i]) + ")" : ""));
      continue;
    }
    prefixes.push_back(r);
  }
  // list-realtime. The append at each position of F (nullptr: never appended, reported above).
  std::vector<const Append*> at(fin.size(), nullptr);
  for (std::size_t i = 0; i < fin.size(); ++i)
    if (auto it = by_value.find(fin[i]); it != by_value.end() && pos[fin[i]] == i) at[i] = it->second;
  // Appends: no append placed later completed before an earlier-placed one began.
  auto min_completed_after = Clock::time_point::max();
  for (std::size_t i = fin.size(); i-- > 0;) {
    if (!at[i]) continue;
    if (min_completed_after < at[i]->invoked) {
      ++n->order;
      note(&n->first_rt, list + ": element " + std::to_string(fin[i]) + " at position " + std::to_string(i) +
                             " precedes an append that completed before it began");
    }
    min_completed_after = std::min(min_completed_after, at[i]->completed);
  }
  // Reads against appends: max invocation time over F's first L elements, and the highest
  // position among appends acknowledged by each time.
  std::vector<Clock::time_point> max_invoked(fin.size() + 1, Clock::time_point::min());
  for (std::size_t i = 0; i < fin.size(); ++i)
    max_invoked[i + 1] = std::max(max_invoked[i], at[i] ? at[i]->invoked : Clock::time_point::min());
  std::vector<std::pair<Clock::time_point, std::size_t>> acked;  // (completed, position)
  for (std::size_t i = 0; i < fin.size(); ++i)
    if (at[i] && at[i]->outcome == Outcome::ok) acked.emplace_back(at[i]->completed, i);
  std::sort(acked.begin(), acked.end());
  std::vector<std::size_t> max_pos(acked.size() + 1, 0);  // 1 + highest position among the first k
  for (std::size_t k = 0; k < acked.size(); ++k) max_pos[k + 1] = std::max(max_pos[k], acked[k].second + 1);
  for (const auto* r : prefixes) {
    std::size_t len = r->values.size();
    if (max_invoked[len] > r->completed) {
      ++n->phantom_read;
      note(&n->first_rt, list + ": a read of " + std::to_string(len) + " elements holds an append that began after it ended");
    }
    auto k = static_cast<std::size_t>(
        std::lower_bound(acked.begin(), acked.end(), std::make_pair(r->invoked, std::size_t{0})) - acked.begin());
    if (max_pos[k] > len) {
      ++n->stale;
      note(&n->first_rt, list + ": a read of " + std::to_string(len) + " elements misses position " +
                             std::to_string(max_pos[k] - 1) + ", acknowledged before the read began");
    }
  }
  // Reads against reads: sorted by completion, the longest read completed before each began.
  std::vector<const ListRead*> by_completion = prefixes;
  std::sort(by_completion.begin(), by_completion.end(),
            [](const ListRead* a, const ListRead* b) { return a->completed < b->completed; });
  std::vector<std::size_t> longest(by_completion.size() + 1, 0);
  for (std::size_t k = 0; k < by_completion.size(); ++k)
    longest[k + 1] = std::max(longest[k], by_completion[k]->values.size());
  for (const auto* r : prefixes) {
    auto k = static_cast<std::size_t>(
        std::lower_bound(by_completion.begin(), by_completion.end(), r->invoked,
                         [](const ListRead* a, Clock::time_point t) { return a->completed < t; }) -
        by_completion.begin());
    if (longest[k] > r->values.size()) {
      ++n->shrunk;
      note(&n->first_rt, list + ": a read of " + std::to_string(r->values.size()) + " elements began after a read of " +
                             std::to_string(longest[k]) + " had ended");
    }
  }
}

}  // namespace

std::vector<Check> check_list_append(const std::vector<Append>& all_appends, const std::vector<ListRead>& all_reads,
                                     const std::map<std::uint64_t, std::vector<std::uint64_t>>& final_lists,
                                     int malformed) {
  Counts n;
  std::map<std::uint64_t, std::vector<const Append*>> by_key;
  for (const auto& a : all_appends) by_key[a.key].push_back(&a);
  std::map<std::uint64_t, std::vector<const ListRead*>> reads_by_key;
  for (const auto& r : all_reads) reads_by_key[r.key].push_back(&r);
  std::size_t unread_keys = 0;
  for (auto& [key, appends] : by_key) {
    auto f = final_lists.find(key);
    if (f == final_lists.end()) {
      ++unread_keys;
      continue;
    }
    check_key(key, appends, reads_by_key[key], f->second, &n);
  }
  std::vector<Check> out;
  bool final_ok = n.lost == 0 && n.failed_present == 0 && n.phantom_final == 0 && n.dup_final == 0 && malformed == 0;
  out.push_back({"list-final", unread_keys != 0 ? "unknown" : final_ok ? "valid" : "invalid",
                 std::to_string(final_lists.size()) + " lists, " + std::to_string(n.final_elements) +
                     " elements; acknowledged missing " + std::to_string(n.lost) + ", failed present " +
                     std::to_string(n.failed_present) + ", never appended " + std::to_string(n.phantom_final) +
                     ", duplicated " + std::to_string(n.dup_final) + ", malformed names " + std::to_string(malformed) +
                     ", unknown present " + std::to_string(n.unknown_present) +
                     (unread_keys ? ", lists whose final read failed " + std::to_string(unread_keys) : "") +
                     first(n.first_final)});
  out.push_back({"list-reads", n.not_prefix == 0 ? "valid" : "invalid",
                 std::to_string(all_reads.size()) + " reads; not a prefix of the final list (lost, reordered or "
                 "duplicated elements) " + std::to_string(n.not_prefix) + first(n.first_read)});
  bool rt_ok = n.order == 0 && n.stale == 0 && n.phantom_read == 0 && n.shrunk == 0;
  out.push_back({"list-realtime", rt_ok ? "valid" : "invalid",
                 "appends placed against real time " + std::to_string(n.order) + ", stale reads " +
                     std::to_string(n.stale) + ", reads of an append not yet begun " + std::to_string(n.phantom_read) +
                     ", reads shorter than an earlier read " + std::to_string(n.shrunk) + first(n.first_rt)});
  return out;
}

}  // namespace tern::jepsen::checks
