// Workload "list-append": clients append unique elements to a few lists and read whole lists,
// through the client library. A list is a directory /jepsen/la/<key>; an append is a sequential
// create of "e<element>-" in it (the server appends the next 10-digit sequence number), and a
// read is one page of the directory's children, ordered by that sequence number. Elements are
// unique (client x 10^9 + a counter), so an element read twice, out of place, or never appended
// is an anomaly. At most kPerKey appends go to a list before the window of lists in use moves on,
// so every read fits in one page.
//
// The checks (list-final, list-reads, list-realtime) are jepsen-like/runner/checks/list_append_check.h.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "jepsen-like/runner/checks/list_append_check.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

const std::string kDir = "/jepsen/la";
constexpr std::uint64_t kPerKey = 100;  // appends started per list before the window moves on
constexpr std::uint64_t kWindow = 3;    // lists in use at once
constexpr std::int64_t kFinalProcess = 1000000;

using checks::Append;
using checks::ListRead;
using checks::Outcome;

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
    return checks::check_list_append(appends_, reads_, final_, malformed_);
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
