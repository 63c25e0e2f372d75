// Workload "mutex": clients, each with its own session, take one lock with try-lock, and while
// holding it increment a counter znode that records the fencing token of its writer; then release.
// Checks (docs/jepsen.md):
//  - lock: acquire/release are linearizable as a mutex with strictly increasing tokens
//    (tern-check's mutex model): never two holders at once by the server's answers;
//  - fencing and counter: jepsen-like/runner/checks/mutex_check.h.
#include <mutex>

#include "jepsen-like/runner/checks/mutex_check.h"

#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

const std::string kLock = "jepsen-lock";
const std::string kCounter = "/jepsen/counter";

using checks::CounterValue;
using checks::Increment;
using checks::parse_counter;

class MutexWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return *error = "setup: no client session", false;
    auto r = c->create("/jepsen", "");
    if (!r.ok() && r.error != Error::node_exists) return *error = "setup: create /jepsen: " + r.message, false;
    r = c->create(kCounter, "0 0");
    if (!r.ok()) return *error = std::string("setup: create counter: ") + error_name(r.error), false;
    return true;
  }

  void client(int index, const RunContext& ctx) override {
    std::mt19937_64 rng(ctx.seed * 1000003 + static_cast<std::uint64_t>(index));
    std::int64_t process = index;
    const auto options = options_for(ctx, index);
    auto c = connect_until(options, ctx.end);
    // Ends this session (closing it releases whatever it holds), recorded as a release of unknown
    // outcome by `process`, which then retires; the next session is a new process.
    auto abandon = [&] {
      ctx.history->add(process, "invoke", "release", kLock, "null");
      c.reset();
      ctx.history->add(process, "info", "release", kLock, "null");
      process += ctx.clients;
      c = connect_until(options, ctx.end);
    };
    while (c && Clock::now() < ctx.end && !interrupted()) {
      pace(rng, ctx);
      ctx.history->add(process, "invoke", "acquire", kLock, "null");
      auto r = c->lock(kLock, false, /*try_only=*/true);
      if (r.ok() && r.id != 0) {
        ctx.history->add(process, "ok", "acquire", kLock, std::to_string(r.id));
      } else if (!r.ok() && definite_failure(r.error)) {
        ctx.history->add(process, "fail", "acquire", kLock, "null");
        continue;
      } else {
        ctx.history->add(process, "info", "acquire", kLock, "null");
        abandon();
        continue;
      }
      ++grants_;
      if (!increment(*c, r.id)) {
        abandon();
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
      ctx.history->add(process, "invoke", "release", kLock, "null");
      auto u = c->unlock(kLock);
      if (u.ok()) {
        ctx.history->add(process, "ok", "release", kLock, "null");
      } else if (definite_failure(u.error)) {
        // The server says this session did not hold the lock it granted: the model keeps this
        // process as the holder, so the check reports it.
        ctx.history->add(process, "fail", "release", kLock, "null");
        ++lost_locks_;
        process += ctx.clients;
        c = connect_until(options, ctx.end);
      } else {
        ctx.history->add(process, "info", "release", kLock, "null");
        process += ctx.clients;
        c.reset();
        c = connect_until(options, ctx.end);
      }
    }
  }

  void final_reads(const RunContext& ctx) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return;
    auto r = c->get(kCounter);
    if (r.ok()) final_ = parse_counter(r.data);
  }

  std::vector<Check> check(const RunContext& ctx) override {
    std::vector<Check> out{linearizability_check(ctx, "mutex", "lock")};
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : checks::check_counter(increments_, final_)) out.push_back(std::move(c));
    return out;
  }

  nlohmann::json stats() const override {
    int acked = 0, unknown = 0;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& i : increments_) {
      acked += i.read.valid && i.result == Increment::Result::acked;
      unknown += i.read.valid && i.result == Increment::Result::unknown;
    }
    return {{"grants", grants_.load()}, {"increments_acknowledged", acked},
            {"increments_unknown", unknown}, {"final_counter", final_.valid ? final_.count : -1},
            {"lost_locks", lost_locks_.load()}};
  }

 private:
  // Reads the counter and writes count+1 with this holder's token, compare-and-set on the exact
  // value read. False when the outcome is unknown (the session is then abandoned).
  // Each increment that read the counter is recorded for the checks (mutex_check.h).
  bool increment(Client& c, std::uint64_t token) {
    auto g = c.get(kCounter);
    if (!g.ok()) return true;  // a read has no effect: skip this increment
    Increment i{token, parse_counter(g.data), Increment::Result::failed};
    if (i.read.valid) {
      TxnOp check{TxnOp::Kind::check_value, kCounter, g.data, -1, {}};
      TxnOp write{TxnOp::Kind::set, kCounter, std::to_string(i.read.count + 1) + " " + std::to_string(token), -1, {}};
      auto w = c.multi({check, write});
      i.result = w.ok()                            ? Increment::Result::acked
                 : w.error == Error::check_failed ? Increment::Result::cas_lost
                 : definite_failure(w.error)      ? Increment::Result::failed
                                                  : Increment::Result::unknown;
    }
    std::lock_guard<std::mutex> lock(mu_);
    increments_.push_back(i);
    return i.result != Increment::Result::unknown;
  }

  std::atomic<int> grants_{0}, lost_locks_{0};
  mutable std::mutex mu_;
  std::vector<Increment> increments_;
  CounterValue final_;
};

}  // namespace

std::unique_ptr<Workload> make_mutex_workload() { return std::make_unique<MutexWorkload>(); }

}  // namespace tern::jepsen
