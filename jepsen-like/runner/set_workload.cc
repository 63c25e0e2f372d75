// Workload "set": clients add unique elements (create /jepsen/s/<n>) and read the whole set
// (children, paged), through the client library.
// The checks (set-reads, set-final) are jepsen-like/runner/checks/set_check.h.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "jepsen-like/runner/checks/set_check.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

const std::string kDir = "/jepsen/s";

using checks::Add;
using checks::Outcome;
using Read = checks::SetRead;

// Every element under kDir, page by page (bounded); false if a page failed.
bool read_all(Client& c, std::vector<std::uint64_t>* out) {
  std::string cursor;
  for (int page = 0; page < 10000; ++page) {
    auto r = c.children(kDir, cursor);
    if (!r.ok()) return false;
    for (const auto& n : r.names) out->push_back(std::strtoull(n.c_str(), nullptr, 10));
    if (r.path.empty()) {
      std::sort(out->begin(), out->end());
      return true;
    }
    cursor = r.path;
  }
  return false;
}

std::string values_json(const std::vector<std::uint64_t>& v) { return nlohmann::json(v).dump(); }

class SetWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return *error = "setup: no client session", false;
    for (const std::string& p : std::vector<std::string>{"/jepsen", kDir}) {
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
    std::vector<Add> adds;
    std::vector<Read> reads;
    while (c && Clock::now() < ctx.end && !interrupted()) {
      pace(rng, ctx);
      if (rng() % 4 == 0) {
        Read r;
        ctx.history->add(process, "invoke", "read", "set", "null");
        r.invoked = Clock::now();
        bool ok = read_all(*c, &r.values);
        r.completed = Clock::now();
        ctx.history->add(process, ok ? "ok" : "fail", "read", "set", ok ? values_json(r.values) : "null");
        if (ok) reads.push_back(std::move(r));
        continue;
      }
      Add a;
      a.value = static_cast<std::uint64_t>(index) * 1000000000ull + next++;
      ctx.history->add(process, "invoke", "add", "set", std::to_string(a.value));
      a.invoked = Clock::now();
      auto r = c->create(kDir + "/" + std::to_string(a.value), "");
      a.completed = Clock::now();
      // node_exists: an earlier attempt of this very create applied (values are unique).
      a.outcome = r.ok() || r.error == Error::node_exists ? Outcome::ok
                  : definite_failure(r.error)              ? Outcome::fail
                                                           : Outcome::unknown;
      const char* type = a.outcome == Outcome::ok ? "ok" : a.outcome == Outcome::fail ? "fail" : "info";
      ctx.history->add(process, type, "add", "set", std::to_string(a.value));
      if (a.outcome == Outcome::unknown) process += ctx.clients;
      adds.push_back(a);
    }
    std::lock_guard<std::mutex> lock(mu_);
    adds_.insert(adds_.end(), adds.begin(), adds.end());
    for (auto& r : reads) reads_.push_back(std::move(r));
  }

  void final_reads(const RunContext& ctx) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return;
    ctx.history->add(1000000, "invoke", "read", "set", "null");
    final_ok_ = read_all(*c, &final_);
    ctx.history->add(1000000, final_ok_ ? "ok" : "fail", "read", "set", final_ok_ ? values_json(final_) : "null");
  }

  std::vector<Check> check(const RunContext&) override { return checks::check_set(adds_, reads_, final_ok_, final_); }

  nlohmann::json stats() const override {
    std::size_t ok = 0, unknown = 0;
    for (const auto& a : adds_) {
      ok += a.outcome == Outcome::ok;
      unknown += a.outcome == Outcome::unknown;
    }
    return {{"adds", adds_.size()}, {"adds_acknowledged", ok}, {"adds_unknown", unknown}, {"reads", reads_.size()},
            {"final_size", final_.size()}};
  }

 private:
  std::mutex mu_;
  std::vector<Add> adds_;
  std::vector<Read> reads_;
  std::vector<std::uint64_t> final_;
  bool final_ok_ = false;
};

}  // namespace

std::unique_ptr<Workload> make_set_workload() { return std::make_unique<SetWorkload>(); }

}  // namespace tern::jepsen
