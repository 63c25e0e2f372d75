// Workload "mutex": clients, each with its own session, take one lock with try-lock, and while
// holding it increment a counter znode that records the fencing token of its writer; then release.
// Checks (docs/jepsen.md):
//  - lock: acquire/release are linearizable as a mutex with strictly increasing tokens
//    (tern-check's mutex model): never two holders at once by the server's answers;
//  - fencing: a holder never finds the counter written with a newer token than its own, and
//    its compare-and-set of the counter never loses to another writer while it holds the lock;
//  - counter: the final value is at least the acknowledged increments and at most those plus the
//    unknown ones (it never went backwards, nothing acknowledged was lost).
#include <cstdlib>

#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

const std::string kLock = "jepsen-lock";
const std::string kCounter = "/jepsen/counter";

struct CounterValue {
  std::int64_t count = 0;
  std::uint64_t token = 0;
  bool valid = false;
};
CounterValue parse_counter(const std::string& data) {
  CounterValue v;
  char* end = nullptr;
  v.count = std::strtoll(data.c_str(), &end, 10);
  if (end == nullptr || *end != ' ') return v;
  v.token = std::strtoull(end + 1, nullptr, 10);
  v.valid = true;
  return v;
}

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
    bool fenced = newer_token_seen_ == 0 && cas_lost_ == 0 && malformed_ == 0;
    out.push_back({"fencing", fenced ? "valid" : "invalid",
                   std::to_string(newer_token_seen_) + " holders found a newer token in the counter, " +
                       std::to_string(cas_lost_) + " counter writes lost to another writer while holding, " +
                       std::to_string(malformed_) + " malformed counter values"});
    if (!final_.valid) {
      out.push_back({"counter", "unknown", "the final read of the counter failed"});
    } else {
      bool ok = final_.count >= acked_ && final_.count <= acked_ + unknown_;
      out.push_back({"counter", ok ? "valid" : "invalid",
                     "final " + std::to_string(final_.count) + ", acknowledged increments " + std::to_string(acked_) +
                         ", unknown " + std::to_string(unknown_)});
    }
    return out;
  }

  nlohmann::json stats() const override {
    return {{"grants", grants_.load()}, {"increments_acknowledged", acked_.load()},
            {"increments_unknown", unknown_.load()}, {"final_counter", final_.valid ? final_.count : -1},
            {"lost_locks", lost_locks_.load()}};
  }

 private:
  // Reads the counter and writes count+1 with this holder's token, compare-and-set on the exact
  // value read. False when the outcome is unknown (the session is then abandoned).
  bool increment(Client& c, std::uint64_t token) {
    auto g = c.get(kCounter);
    if (!g.ok()) return true;  // a read has no effect: skip this increment
    auto v = parse_counter(g.data);
    if (!v.valid) {
      ++malformed_;
      return true;
    }
    if (v.token > token) ++newer_token_seen_;
    TxnOp check{TxnOp::Kind::check_value, kCounter, g.data, -1, {}};
    TxnOp write{TxnOp::Kind::set, kCounter, std::to_string(v.count + 1) + " " + std::to_string(token), -1, {}};
    auto w = c.multi({check, write});
    if (w.ok()) {
      ++acked_;
      return true;
    }
    if (w.error == Error::check_failed) {
      ++cas_lost_;
      return true;
    }
    if (definite_failure(w.error)) return true;
    ++unknown_;
    return false;
  }

  std::atomic<int> grants_{0}, acked_{0}, unknown_{0}, newer_token_seen_{0}, cas_lost_{0}, malformed_{0},
      lost_locks_{0};
  CounterValue final_;
};

}  // namespace

std::unique_ptr<Workload> make_mutex_workload() { return std::make_unique<MutexWorkload>(); }

}  // namespace tern::jepsen
