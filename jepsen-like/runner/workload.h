#pragma once
// A tern-jepsen workload: clients that drive one guarantee through the client library and record
// a history, the final reads after the faults are healed, and the checks of that guarantee.
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "jepsen-like/runner/checks/check.h"
#include "jepsen-like/runner/history.h"
#include "tern/client.h"

namespace tern::jepsen {

// A fault of the nemesis, as it was active (`start` == `end` for a membership step).
struct FaultSpan {
  std::string family;
  Clock::time_point start, end;
};

struct RunContext {
  ClientOptions client;  // endpoints and TLS of the cluster under test
  std::uint64_t seed = 0;
  int clients = 1;
  double rate = 100;  // operations per second, all clients together
  Clock::time_point end;
  Recorder* history = nullptr;
  std::string out_dir;
  std::vector<FaultSpan> faults;  // filled after the heal, before final_reads and check
};

class Workload {
 public:
  virtual ~Workload() = default;
  // Before any client or fault: initial state (recorded in the history when it matters).
  virtual bool setup(const RunContext& ctx, std::string* error) = 0;
  // Client `index`'s thread until ctx.end; one operation at a time.
  virtual void client(int index, const RunContext& ctx) = 0;
  // After the heal and recovery: the final reads.
  virtual void final_reads(const RunContext& ctx) = 0;
  virtual std::vector<Check> check(const RunContext& ctx) = 0;
  // Workload-specific counters for results.json.
  virtual nlohmann::json stats() const { return nlohmann::json::object(); }
};

std::unique_ptr<Workload> make_register_workload();
std::unique_ptr<Workload> make_mutex_workload();
std::unique_ptr<Workload> make_set_workload();
std::unique_ptr<Workload> make_list_append_workload();
std::unique_ptr<Workload> make_ephemeral_workload();
std::unique_ptr<Workload> make_watch_workload();
std::unique_ptr<Workload> make_bank_workload();

// Helpers shared by the workloads.
// SIGINT or SIGTERM arrived: clients and the nemesis stop early, the run tears down its cluster
// (killing the processes it started) and exits 3.
bool interrupted();
void install_interrupt_handler();
// Sleeps until `t`, or less if interrupted (in steps of at most 50 ms).
void sleep_until_or_interrupted(Clock::time_point t);
// The cluster's client options with the endpoints rotated so client `index` starts on node
// index % n: sessions spread over followers and leader (reads are served where the session is).
ClientOptions options_for(const RunContext& ctx, int index);
// Connects a Client, retrying until `deadline` (nodes may be down); nullptr if none answered.
std::unique_ptr<Client> connect_until(const ClientOptions& o, Clock::time_point deadline);
// True for answers that say the operation certainly had no effect (the state machine refused
// it); everything else from a write (timeouts, lost connections, unknown_outcome) is unknown.
bool definite_failure(Error e);
// Sleeps so that `clients` threads together issue about `rate` operations per second.
void pace(std::mt19937_64& rng, const RunContext& ctx);
// Runs the linearizability checker on the recorded history with `model`; writes
// DIR/<name>-anomaly.html and DIR/<name>-anomaly.txt for a violation.
Check linearizability_check(const RunContext& ctx, const std::string& model, const std::string& name);

}  // namespace tern::jepsen
