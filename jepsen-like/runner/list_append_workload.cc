// Workload "list-append": clients append unique elements to a few lists and read whole lists,
// through the client library. A list is a directory /jepsen/la/<key>; an append is a sequential
// create of "e<element>-" in it (the server appends the next 10-digit sequence number), and a
// read is one page of the directory's children, ordered by that sequence number. Elements are
// unique (client x 10^9 + a counter), so an element read twice, out of place, or never appended
// is an anomaly. At most kPerKey appends go to a list before the window of lists in use moves on,
// so every read fits in one page.
//
// With F the final read of a list (after the heal), the checks are (docs/jepsen.md):
//  - list-final: F holds every acknowledged append, no append that definitely failed, nothing
//    never appended to this list, and no element twice;
//  - list-reads: every read is a prefix of F (same elements, same order) without duplicates;
//  - list-realtime: F's order and the reads respect real time: no append placed after another
//    completed before that other one began; no read misses an append acknowledged before the
//    read began (stale) or holds one that began after the read ended (phantom); a read that
//    completed before another began is no longer than it (monotonic).
// Given F, these are pairwise conditions between operations, and for an append-only list of
// unique elements they are exactly what a linearization in F's order needs: together they are a
// linearizability check of the history (without a search: F fixes the order).
#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

const std::string kDir = "/jepsen/la";
constexpr std::uint64_t kPerKey = 100;  // appends started per list before the window moves on
constexpr std::uint64_t kWindow = 3;    // lists in use at once
constexpr std::int64_t kFinalProcess = 1000000;

enum class Outcome : std::uint8_t { ok, fail, unknown };
struct Append {
  std::uint64_t key = 0, value = 0;
  Clock::time_point invoked, completed;  // completed: max() when unknown
  Outcome outcome = Outcome::unknown;
};
struct ListRead {
  std::uint64_t key = 0;
  Clock::time_point invoked, completed;
  std::vector<std::uint64_t> values;  // in list order
};

std::string key_dir(std::uint64_t key) { return kDir + "/" + std::to_string(key); }

// One page of `key`'s elements in list (sequence) order. False if the read failed, took more
// than one page (not one atomic read) or held a name that is not an element (counted).
bool read_list(Client& c, std::uint64_t key, std::vector<std::uint64_t>* out, int* malformed) {
  auto r = c.children(key_dir(key));
  if (r.error == Error::no_node) return true;  // nothing appended yet: the directory comes first
  if (!r.ok() || !r.path.empty()) return false;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> by_seq;  // (sequence, element)
  for (const auto& n : r.names) {
    auto dash = n.rfind('-');
    if (n.size() < 3 || n[0] != 'e' || dash == std::string::npos || dash + 11 != n.size()) {
      ++*malformed;
      continue;
    }
    by_seq.emplace_back(std::strtoull(n.c_str() + dash + 1, nullptr, 10), std::strtoull(n.c_str() + 1, nullptr, 10));
  }
  std::sort(by_seq.begin(), by_seq.end());
  for (auto& [seq, v] : by_seq) out->push_back(v);
  return true;
}

class ListAppendWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return *error = "setup: no client session", false;
    for (const std::string& p : {std::string("/jepsen"), kDir}) {
      auto r = c->create(p, "");
      if (!r.ok() && r.error != Error::node_exists) return *error = "setup: create " + p + ": " + r.message, false;
    }
    return true;
  }

  void client(int index, const RunContext& ctx) override {
    std::mt19937_64 rng(ctx.seed * 1000003 + static_cast<std::uint64_t>(index));
    std::int64_t process = index;
    const auto options = options_for(ctx, index);
    auto c = connect_until(options, ctx.end);
    std::uint64_t next = 0;
    std::vector<Append> appends;
    std::vector<ListRead> reads;
    int malformed = 0;
    while (c && Clock::now() < ctx.end && !interrupted()) {
      pace(rng, ctx);
      std::uint64_t key = started_.load() / kPerKey + rng() % kWindow;
      if (rng() % 4 == 0) {
        ListRead r;
        r.key = key;
        ctx.history->add(process, "invoke", "read", std::to_string(key), "null");
        r.invoked = Clock::now();
        bool ok = read_list(*c, key, &r.values, &malformed);
        r.completed = Clock::now();
        // A read has no effect: a failed one is a definite failure.
        ctx.history->add(process, ok ? "ok" : "fail", "read", std::to_string(key),
                         ok ? nlohmann::json(r.values).dump() : "null");
        if (ok) reads.push_back(std::move(r));
        continue;
      }
      if (!ensure_list(*c, key)) continue;  // the directory first (not part of the history)
      ++started_;
      Append a;
      a.key = key;
      a.value = static_cast<std::uint64_t>(index) * 1000000000ull + next++;
      ctx.history->add(process, "invoke", "append", std::to_string(key), std::to_string(a.value));
      a.invoked = Clock::now();
      CreateOptions seq;
      seq.sequential = true;
      auto r = c->create(key_dir(key) + "/e" + std::to_string(a.value) + "-", "", seq);
      a.completed = Clock::now();
      a.outcome = r.ok() ? Outcome::ok : definite_failure(r.error) ? Outcome::fail : Outcome::unknown;
      const char* type = a.outcome == Outcome::ok ? "ok" : a.outcome == Outcome::fail ? "fail" : "info";
      ctx.history->add(process, type, "append", std::to_string(key), std::to_string(a.value));
      if (a.outcome == Outcome::unknown) {
        a.completed = Clock::time_point::max();  // it may take effect at any later time
        process += ctx.clients;
      }
      appends.push_back(a);
    }
    std::lock_guard<std::mutex> lock(mu_);
    appends_.insert(appends_.end(), appends.begin(), appends.end());
    for (auto& r : reads) reads_.push_back(std::move(r));
    malformed_ += malformed;
  }

  void final_reads(const RunContext& ctx) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return;
    std::set<std::uint64_t> keys;
    for (const auto& a : appends_) keys.insert(a.key);
    std::int64_t process = kFinalProcess;
    for (auto key : keys) {
      // A few attempts: the cluster has just healed.
      for (int attempt = 0; attempt < 3; ++attempt, ++process) {
        std::vector<std::uint64_t> values;
        ctx.history->add(process, "invoke", "read", std::to_string(key), "null");
        bool ok = read_list(*c, key, &values, &malformed_);
        ctx.history->add(process, ok ? "ok" : "fail", "read", std::to_string(key),
                         ok ? nlohmann::json(values).dump() : "null");
        if (ok) {
          final_[key] = std::move(values);
          break;
        }
      }
    }
  }

  std::vector<Check> check(const RunContext&) override {
    Counts n;
    std::map<std::uint64_t, std::vector<const Append*>> by_key;
    for (const auto& a : appends_) by_key[a.key].push_back(&a);
    std::map<std::uint64_t, std::vector<const ListRead*>> reads_by_key;
    for (const auto& r : reads_) reads_by_key[r.key].push_back(&r);
    std::size_t unread_keys = 0;
    for (auto& [key, appends] : by_key) {
      auto f = final_.find(key);
      if (f == final_.end()) {
        ++unread_keys;
        continue;
      }
      check_key(key, appends, reads_by_key[key], f->second, &n);
    }
    std::vector<Check> out;
    bool final_ok = n.lost == 0 && n.failed_present == 0 && n.phantom_final == 0 && n.dup_final == 0 && malformed_ == 0;
    out.push_back({"list-final", unread_keys != 0 ? "unknown" : final_ok ? "valid" : "invalid",
                   std::to_string(final_.size()) + " lists, " + std::to_string(n.final_elements) +
                       " elements; acknowledged missing " + std::to_string(n.lost) + ", failed present " +
                       std::to_string(n.failed_present) + ", never appended " + std::to_string(n.phantom_final) +
                       ", duplicated " + std::to_string(n.dup_final) + ", malformed names " + std::to_string(malformed_) +
                       ", unknown present " + std::to_string(n.unknown_present) +
                       (unread_keys ? ", lists whose final read failed " + std::to_string(unread_keys) : "") +
                       first(n.first_final)});
    out.push_back({"list-reads", n.not_prefix == 0 ? "valid" : "invalid",
                   std::to_string(reads_.size()) + " reads; not a prefix of the final list (lost, reordered or "
                   "duplicated elements) " + std::to_string(n.not_prefix) + first(n.first_read)});
    bool rt_ok = n.order == 0 && n.stale == 0 && n.phantom_read == 0 && n.shrunk == 0;
    out.push_back({"list-realtime", rt_ok ? "valid" : "invalid",
                   "appends placed against real time " + std::to_string(n.order) + ", stale reads " +
                       std::to_string(n.stale) + ", reads of an append not yet begun " + std::to_string(n.phantom_read) +
                       ", reads shorter than an earlier read " + std::to_string(n.shrunk) + first(n.first_rt)});
    return out;
  }

  nlohmann::json stats() const override {
    std::size_t ok = 0, unknown = 0;
    for (const auto& a : appends_) {
      ok += a.outcome == Outcome::ok;
      unknown += a.outcome == Outcome::unknown;
    }
    return {{"appends", appends_.size()}, {"appends_acknowledged", ok}, {"appends_unknown", unknown},
            {"reads", reads_.size()}, {"lists", final_.size()}};
  }

 private:
  struct Counts {
    std::size_t final_elements = 0, lost = 0, failed_present = 0, phantom_final = 0, dup_final = 0, unknown_present = 0;
    std::size_t not_prefix = 0, order = 0, stale = 0, phantom_read = 0, shrunk = 0;
    std::string first_final, first_read, first_rt;
  };
  static std::string first(const std::string& s) { return s.empty() ? "" : "; first: " + s; }
  static void note(std::string* first, const std::string& what) {
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

  // Creates the list's directory once (any client); false if that failed this time.
  bool ensure_list(Client& c, std::uint64_t key) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (lists_.count(key)) return true;
    }
    auto r = c.create(key_dir(key), "");
    if (!r.ok() && r.error != Error::node_exists) return false;
    std::lock_guard<std::mutex> lock(mu_);
    lists_.insert(key);
    return true;
  }

  std::atomic<std::uint64_t> started_{0};
  std::mutex mu_;
  std::set<std::uint64_t> lists_;
  std::vector<Append> appends_;
  std::vector<ListRead> reads_;
  std::map<std::uint64_t, std::vector<std::uint64_t>> final_;
  int malformed_ = 0;
};

}  // namespace

std::unique_ptr<Workload> make_list_append_workload() { return std::make_unique<ListAppendWorkload>(); }

}  // namespace tern::jepsen
