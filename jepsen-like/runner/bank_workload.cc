// Workload "bank": kAccounts znodes /jepsen/bank/a<k> hold balances (kInitial each). A transfer
// reads two accounts and moves 1-5 from one to the other in one multi whose two sets carry the
// versions read (so a concurrent change makes it fail, and no balance goes negative). A read gets
// every account concurrently; it counts only if it is provably one state of the tree:
//  - every get's reply names the index of the state it saw (r_a) and the account's stat the index
//    of its last change (m_a); if max m_a <= min r_a, all values were current together at state
//    max m_a;
//  - otherwise a multi of check_version on every account validates the read (all versions
//    still current at once); if that fails, the read is discarded (recorded as a failed read).
// The checks (bank-reads, bank-final) are jepsen-like/runner/checks/bank_check.h: every such read
// sums to kAccounts x kInitial and has no negative balance.
#include <future>
#include <mutex>

#include "jepsen-like/runner/checks/bank_check.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

using namespace std::chrono_literals;

const std::string kDir = "/jepsen/bank";
constexpr int kAccounts = 5;
constexpr std::int64_t kInitial = 100;
constexpr std::int64_t kFinalProcess = 1000000;

std::string account(int k) { return kDir + "/a" + std::to_string(k); }

bool parse_balance(const std::string& s, std::int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  char* end = nullptr;
  *out = std::strtoll(s.c_str(), &end, 10);
  return end != nullptr && *end == '\0';
}

enum class ReadResult : std::uint8_t { snapshot, not_atomic, failed };

class BankWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    if (!c) return *error = "setup: no client session", false;
    for (const std::string& p : {std::string("/jepsen"), kDir}) {
      auto r = c->create(p, "");
      if (!r.ok() && r.error != Error::node_exists) return *error = "setup: create " + p + ": " + r.message, false;
    }
    for (int k = 0; k < kAccounts; ++k) {
      auto r = c->create(account(k), std::to_string(kInitial));
      if (!r.ok()) return *error = "setup: create " + account(k) + ": " + error_name(r.error), false;
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
      if (rng() % 3 == 0) {
        read(*c, process, ctx, false);
        continue;
      }
      int from = static_cast<int>(rng() % kAccounts);
      int to = static_cast<int>((from + 1 + rng() % (kAccounts - 1)) % kAccounts);
      std::int64_t amount = 1 + static_cast<std::int64_t>(rng() % 5);
      transfer(*c, from, to, amount, &process, ctx);
    }
  }

  void final_reads(const RunContext& ctx) override {
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    for (int attempt = 0; c && attempt < 10 && !final_ok_; ++attempt)
      final_ok_ = read(*c, kFinalProcess + attempt, ctx, true) == ReadResult::snapshot;
  }

  std::vector<Check> check(const RunContext&) override {
    std::lock_guard<std::mutex> lock(mu_);
    return checks::check_bank(reads_, not_atomic_, final_ok_, final_balances_, kAccounts * kInitial);
  }

  nlohmann::json stats() const override {
    std::size_t snapshots = 0, validated = 0;
    for (const auto& r : reads_) {
      snapshots += !r.malformed;
      validated += r.validated;
    }
    return {{"transfers_acknowledged", transfers_ok_.load()}, {"transfers_failed", transfers_failed_.load()},
            {"transfers_unknown", transfers_unknown_.load()}, {"reads_checked", snapshots},
            {"reads_validated_by_multi", validated}, {"reads_discarded", not_atomic_}};
  }

 private:
  // Reads every account; records it and, if it is one state, checks it.
  ReadResult read(Client& c, std::int64_t process, const RunContext& ctx, bool final) {
    ctx.history->add(process, "invoke", "read", "bank", "null");
    std::vector<std::future<Reply>> futures;
    for (int k = 0; k < kAccounts; ++k) futures.push_back(c.async().get(account(k)));
    std::vector<Reply> replies;
    for (auto& f : futures) replies.push_back(f.get());  // each bounded by the request timeout
    std::vector<std::int64_t> balances;
    std::uint64_t max_modified = 0, min_seen = UINT64_MAX;
    for (const auto& r : replies) {
      std::int64_t b = 0;
      if (!r.ok() || !parse_balance(r.data, &b)) {
        ctx.history->add(process, "fail", "read", "bank", "null");
        if (r.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          reads_.push_back({{}, false, true, r.data});  // checked (bank_check.h)
        }
        return ReadResult::failed;
      }
      balances.push_back(b);
      max_modified = std::max(max_modified, r.stat.modified_index);
      min_seen = std::min(min_seen, r.index);
    }
    bool one_state = max_modified <= min_seen;
    bool validated = false;
    if (!one_state) {
      std::vector<TxnOp> checks;
      for (int k = 0; k < kAccounts; ++k) checks.push_back(TxnOp{TxnOp::Kind::check_version, account(k), "", replies[k].stat.version, {}});
      validated = one_state = c.multi(checks).ok();
    }
    if (!one_state) {
      ctx.history->add(process, "fail", "read", "bank", "null");
      std::lock_guard<std::mutex> lock(mu_);
      ++not_atomic_;
      return ReadResult::not_atomic;
    }
    ctx.history->add(process, "ok", "read", "bank", nlohmann::json(balances).dump());
    std::lock_guard<std::mutex> lock(mu_);
    if (final) final_balances_ = balances;
    else reads_.push_back({balances, validated, false, ""});
    return ReadResult::snapshot;
  }

  void transfer(Client& c, int from, int to, std::int64_t amount, std::int64_t* process, const RunContext& ctx) {
    auto a = c.get(account(from));
    auto b = c.get(account(to));
    std::int64_t ba = 0, bb = 0;
    if (!a.ok() || !b.ok() || !parse_balance(a.data, &ba) || !parse_balance(b.data, &bb)) return;
    if (ba < amount) return;  // no overdraft (nothing recorded: nothing was tried)
    nlohmann::json v{{"from", from}, {"to", to}, {"amount", amount}};
    ctx.history->add(*process, "invoke", "transfer", "bank", v.dump());
    TxnOp debit{TxnOp::Kind::set, account(from), std::to_string(ba - amount), a.stat.version, {}};
    TxnOp credit{TxnOp::Kind::set, account(to), std::to_string(bb + amount), b.stat.version, {}};
    auto r = c.multi({debit, credit});
    if (r.ok()) {
      ++transfers_ok_;
      ctx.history->add(*process, "ok", "transfer", "bank", v.dump());
    } else if (definite_failure(r.error)) {
      ++transfers_failed_;
      ctx.history->add(*process, "fail", "transfer", "bank", v.dump());
    } else {
      ++transfers_unknown_;
      ctx.history->add(*process, "info", "transfer", "bank", v.dump());
      *process += ctx.clients;
    }
  }

  std::atomic<int> transfers_ok_{0}, transfers_failed_{0}, transfers_unknown_{0};
  std::mutex mu_;
  std::vector<checks::BankRead> reads_;  // of one state, and malformed ones, in completion order
  std::size_t not_atomic_ = 0;
  std::vector<std::int64_t> final_balances_;
  bool final_ok_ = false;
};

}  // namespace

std::unique_ptr<Workload> make_bank_workload() { return std::make_unique<BankWorkload>(); }

}  // namespace tern::jepsen
