// Workload "register": get / set / compare-and-set on a few keys (znodes under /jepsen/r), every
// operation through the client library; checked with tern-check's register model. Reads are
// linearizable reads (ReadIndex) on whichever node the client's session is attached to.
#include <cstdlib>

#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

constexpr int kKeys = 4;
constexpr int kValues = 5;  // a small domain makes the checker's search meet the same states often
constexpr std::int64_t kFinalProcess = 1000000;  // the final reads' processes (no client has these)

std::string key_name(int k) { return std::string(1, static_cast<char>('a' + k)); }
std::string key_path(const std::string& key) { return "/jepsen/r/" + key; }

// A read's value as JSON: a number as such, anything else (a wrong answer) as a JSON string.
std::string value_json(const std::string& data) {
  bool number = !data.empty() && data.size() < 10 && data.find_first_not_of("0123456789") == std::string::npos;
  return number ? data : nlohmann::json(data).dump();
}

class RegisterWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    if (!c) return *error = "setup: no client session", false;
    for (std::string p : {"/jepsen", "/jepsen/r"}) {
      auto r = c->create(p, "");
      if (!r.ok() && r.error != Error::node_exists) return *error = "setup: create " + p + ": " + r.message, false;
    }
    // Every register starts at 0, recorded as a write that completed before any client started.
    for (int k = 0; k < kKeys; ++k) {
      auto key = key_name(k);
      ctx.history->add(kFinalProcess - 1, "invoke", "write", key, "0");
      auto r = c->create(key_path(key), "0");
      if (!r.ok()) return *error = "setup: create " + key_path(key) + ": " + error_name(r.error), false;
      ctx.history->add(kFinalProcess - 1, "ok", "write", key, "0");
    }
    return true;
  }

  void client(int index, const RunContext& ctx) override {
    std::mt19937_64 rng(ctx.seed * 1000003 + static_cast<std::uint64_t>(index));
    std::int64_t process = index;
    const auto options = options_for(ctx, index);
    auto c = connect_until(options, ctx.end);
    while (c && Clock::now() < ctx.end && !interrupted()) {
      pace(rng, ctx);
      auto key = key_name(static_cast<int>(rng() % kKeys));
      auto kind = rng() % 3;
      auto v1 = std::to_string(rng() % kValues), v2 = std::to_string(rng() % kValues);
      if (kind == 0) {
        ctx.history->add(process, "invoke", "read", key, "null");
        auto r = c->get(key_path(key));
        // A read has no effect: any error is a definite failure.
        if (r.ok()) ctx.history->add(process, "ok", "read", key, value_json(r.data));
        else ctx.history->add(process, "fail", "read", key, "null");
        continue;
      }
      std::string f = kind == 1 ? "write" : "cas";
      std::string input = kind == 1 ? v1 : "[" + v1 + "," + v2 + "]";
      ctx.history->add(process, "invoke", f, key, input);
      Reply r;
      if (kind == 1) {
        r = c->set(key_path(key), v1);
      } else {
        // Compare-and-set on the value: one transaction checks the data and writes.
        TxnOp check{TxnOp::Kind::check_value, key_path(key), v1, -1, {}};
        TxnOp write{TxnOp::Kind::set, key_path(key), v2, -1, {}};
        r = c->multi({check, write});
      }
      if (r.ok()) {
        ctx.history->add(process, "ok", f, key, input);
      } else if (definite_failure(r.error)) {
        ctx.history->add(process, "fail", f, key, input);
      } else {
        ctx.history->add(process, "info", f, key, input);
        process += ctx.clients;  // this process may still take effect: a new one continues
      }
    }
  }

  void final_reads(const RunContext& ctx) override {
    auto c = connect_until(ctx.client, Clock::now() + std::chrono::seconds(20));
    for (int k = 0; k < kKeys && c; ++k) {
      auto key = key_name(k);
      ctx.history->add(kFinalProcess + k, "invoke", "read", key, "null");
      auto r = c->get(key_path(key));
      if (r.ok()) ctx.history->add(kFinalProcess + k, "ok", "read", key, value_json(r.data));
      else ctx.history->add(kFinalProcess + k, "fail", "read", key, "null");
      if (r.ok()) ++final_reads_ok_;
    }
  }

  std::vector<Check> check(const RunContext& ctx) override {
    std::vector<Check> out{linearizability_check(ctx, "register", "register")};
    out.push_back({"final-reads", final_reads_ok_ == kKeys ? "valid" : "invalid",
                   std::to_string(final_reads_ok_) + " of " + std::to_string(kKeys) +
                       " keys read after the heal"});
    return out;
  }

 private:
  int final_reads_ok_ = 0;
};

}  // namespace

std::unique_ptr<Workload> make_register_workload() { return std::make_unique<RegisterWorkload>(); }

}  // namespace tern::jepsen
