// The shared parts of tern-jepsen's workloads: connecting, pacing, the linearizability check.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"
#include "jepsen-like/checker/report.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {

namespace {
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }
}  // namespace

bool interrupted() { return g_interrupted != 0; }

void install_interrupt_handler() {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
}

void sleep_until_or_interrupted(Clock::time_point t) {
  while (!interrupted() && Clock::now() < t)
    std::this_thread::sleep_until(std::min(t, Clock::now() + std::chrono::milliseconds(50)));
}

std::unique_ptr<Client> connect_until(const ClientOptions& o, Clock::time_point deadline) {
  // Bounded: one attempt per 200 ms (each bounded by the options' timeouts) until the deadline.
  for (int attempt = 0; attempt < 10000; ++attempt) {
    std::string error;
    if (auto c = Client::connect(o, &error)) return c;
    if (Clock::now() + std::chrono::milliseconds(200) >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return nullptr;
}

ClientOptions options_for(const RunContext& ctx, int index) {
  ClientOptions o = ctx.client;
  if (!o.endpoints.empty())
    std::rotate(o.endpoints.begin(), o.endpoints.begin() + index % static_cast<int>(o.endpoints.size()),
                o.endpoints.end());
  return o;
}

bool definite_failure(Error e) {
  // The state machine's refusals (the command was applied and changed nothing, or never entered
  // the log). stale_request may hide an applied retry: unknown.
  return e != Error::ok && e <= Error::not_held && e != Error::stale_request;
}

void pace(std::mt19937_64& rng, const RunContext& ctx) {
  double mean_ms = 1000.0 * ctx.clients / std::max(ctx.rate, 0.001);
  auto ms = static_cast<long long>(mean_ms * (0.5 + static_cast<double>(rng() % 1000) / 1000.0));
  auto until = std::min(Clock::now() + std::chrono::milliseconds(ms), ctx.end);
  sleep_until_or_interrupted(until);
}

Check linearizability_check(const RunContext& ctx, const std::string& model, const std::string& name) {
  auto history = check::parse_history(ctx.history->text());
  if (!history) {
    return {name, "unknown",
            "history does not parse: " + history.error().message + " at line " + std::to_string(history.error().line)};
  }
  check::CheckOptions opt;
  opt.timeout_seconds = 60;
  opt.threads = 2;
  auto result = check::check_history(*history, model, opt);
  std::ostringstream summary;
  check::print_summary(summary, *history, result);
  Check c{name, "valid", summary.str()};
  if (result.bad_input) c.verdict = "unknown";
  if (result.verdict == check::Verdict::unknown) c.verdict = "unknown";
  if (result.verdict == check::Verdict::not_linearizable) {
    c.verdict = "invalid";
    std::ofstream(ctx.out_dir + "/" + name + "-anomaly.txt") << summary.str();
    std::ofstream(ctx.out_dir + "/" + name + "-anomaly.html")
        << check::render_html(*history, result, "tern-jepsen " + name + ": not linearizable");
  }
  // One line: "verdict: ...; operations: ...; keys: ...; time: ..." (and the violation's lines).
  while (!c.detail.empty() && c.detail.back() == '\n') c.detail.pop_back();
  for (auto& ch : c.detail)
    if (ch == '\n') ch = ';';
  return c;
}

}  // namespace tern::jepsen
