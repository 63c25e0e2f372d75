// tern-jepsen (issue 13): starts a fresh ternd cluster on loopback, runs a workload through the
// client library while a nemesis injects faults on a seeded schedule, heals, waits for recovery,
// makes the final reads, checks, and writes DIR/{history.jsonl, nemesis.log, results.json,
// logs/n<id>.log}. Exit codes: 0 valid, 1 anomaly found, 2 unknown (a checker bound), 3 harness
// error. docs/jepsen.md.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "jepsen-like/cluster/harness.h"
#include "jepsen-like/runner/nemesis.h"
#include "jepsen-like/runner/report.h"
#include "jepsen-like/runner/target.h"
#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct Options {
  std::string workload = "register";
  std::string nemesis = "none";
  int nodes = 3;
  double time_s = 30;
  double rate = 100;
  int clients = 5;
  std::uint64_t seed = 0;
  bool seed_given = false;
  std::string out = "jepsen-out";
  std::string ternd;
  // Nemeses (docs/jepsen.md): how partitions are made; an existing cluster and the user's
  // fault commands; snapshot stress.
  std::string net = "auto";
  std::string endpoints;
  Hooks hooks;
  std::uint64_t snapshot_entries = 500;
  int request_timeout_ms = 5000;  // per client call, retries included
  bool overlap = false;           // two faults of different families at once (nemesis.h, the rule)
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

// The workloads by name (docs/jepsen.md).
const std::map<std::string, std::unique_ptr<Workload> (*)()>& workloads() {
  static const std::map<std::string, std::unique_ptr<Workload> (*)()> all{
      {"register", make_register_workload},
      {"mutex", make_mutex_workload},
      {"set", make_set_workload},
      {"list-append", make_list_append_workload},
      {"ephemeral", make_ephemeral_workload},
      {"watch", make_watch_workload},
      {"bank", make_bank_workload},
  };
  return all;
}

// Every node answers with the same applied index and state digest (bounded wait).
bool converged(testing::Cluster& c, const std::vector<std::uint64_t>& ids, std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    std::set<std::pair<std::uint64_t, std::uint64_t>> states;
    std::size_t answered = 0;
    for (auto id : ids)
      if (auto s = c.status(id)) {
        ++answered;
        states.insert({s->applied, s->digest});
      }
    if (answered == ids.size() && states.size() == 1) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

int run(const Options& o) {
  auto t0 = Clock::now();
  fs::create_directories(o.out + "/logs");
  std::ofstream nemesis_log(o.out + "/nemesis.log");
  auto kinds = split(o.nemesis);
  std::unique_ptr<Workload> workload = workloads().at(o.workload)();

  // The target of the nemesis: a fresh cluster (what the families need is prepared before its
  // nodes start: network namespaces, libfaketime, libfiu), or an existing one (--endpoints).
  // `local` outlives `cluster` (declared first): its namespaces go after the processes.
  std::unique_ptr<LocalTarget> local;
  std::unique_ptr<testing::Cluster> cluster;
  std::unique_ptr<HookTarget> hooked;
  Target* target = nullptr;
  RunContext ctx;
  if (o.endpoints.empty()) {
    testing::ClusterOptions co;
    co.size = o.nodes;
    co.raw_state_machine = false;             // the coordination state machine and the client API
    co.snapshot_entries = o.snapshot_entries;  // snapshots and compaction happen during the run
    local = std::make_unique<LocalTarget>(LocalSetup{kinds, o.net}, o.nodes, co);
    cluster = std::make_unique<testing::Cluster>(o.ternd, co);
    local->attach(cluster.get());
    target = local.get();
    cluster->start_all();
    if (cluster->wait_for_leader(20s) == 0) throw std::runtime_error("no leader 20 s after start");
    ctx.client.endpoints = local->endpoints();
    const auto& tls = cluster->client_tls();
    ctx.client.tls_ca_file = tls.ca_file;
    ctx.client.tls_cert_file = tls.cert_file;
    ctx.client.tls_key_file = tls.key_file;
    ctx.client.tls_server_name = tls.server_name;
  } else {
    // TLS from TERN_TLS_CA, TERN_TLS_CERT, TERN_TLS_KEY, TERN_TLS_SERVER_NAME (the library's own
    // fallback when no CA file is given), else plaintext.
    hooked = std::make_unique<HookTarget>(split(o.endpoints), o.hooks);
    target = hooked.get();
    ctx.client.endpoints = split(o.endpoints);
  }

  // Under the membership nemesis the clients follow the members (ClientOptions::endpoint_source):
  // the nemesis publishes the members' client endpoints after each promote or remove.
  struct EndpointBook {
    std::mutex mu;
    std::vector<std::string> endpoints;
  };
  auto book = std::make_shared<EndpointBook>();
  const bool membership = std::find(kinds.begin(), kinds.end(), "membership") != kinds.end() && local;
  if (membership) {
    book->endpoints = ctx.client.endpoints;
    ctx.client.endpoint_source = [book] {
      std::lock_guard lock(book->mu);
      return book->endpoints;
    };
  }
  Recorder history(t0);
  ctx.client.request_timeout = std::chrono::milliseconds(o.request_timeout_ms);
  ctx.seed = o.seed;
  ctx.clients = o.clients;
  ctx.rate = o.rate;
  ctx.history = &history;
  ctx.out_dir = o.out;
  std::string error;
  if (hooked) {
    // tern-jepsen owns /jepsen on the cluster under test: what an earlier run left there would
    // confuse this run's checks (and its creates), so it goes first, in one atomic operation.
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    if (!c) throw std::runtime_error("no client session with " + o.endpoints);
    auto r = c->remove("/jepsen", -1, true);
    if (!r.ok() && r.error != Error::no_node) throw std::runtime_error("removing /jepsen: " + r.message);
  }
  if (!workload->setup(ctx, &error)) throw std::runtime_error(error);

  std::printf("tern-jepsen: workload %s, nemesis %s, %d nodes, %.0f s, seed %llu\n", o.workload.c_str(),
              o.nemesis.c_str(), o.nodes, o.time_s, static_cast<unsigned long long>(o.seed));
  std::fflush(stdout);
  auto run_start = Clock::now();
  ctx.end = run_start + std::chrono::milliseconds(static_cast<long long>(o.time_s * 1000));
  std::vector<std::thread> clients;
  for (int i = 0; i < o.clients; ++i) clients.emplace_back([&, i] { workload->client(i, ctx); });
  Nemesis nemesis(*target, kinds, o.seed, t0, nemesis_log, o.overlap);
  if (membership)
    nemesis.on_members([book](std::vector<std::string> e) {
      std::lock_guard lock(book->mu);
      book->endpoints = std::move(e);
    });
  nemesis.run(ctx.end);
  for (auto& t : clients) t.join();  // each operation is bounded by the request timeout
  auto clients_done = Clock::now();
  if (interrupted()) throw std::runtime_error("interrupted");  // the cluster's destructor kills its nodes

  // Heal, recover, read, check.
  // Every fault healed itself before the nemesis returned: a node not running now died on its own.
  std::string crashed;
  for (auto id : target->ids())
    if (auto up = target->running(id); up && !*up) {
      crashed += (crashed.empty() ? "n" : ", n") + std::to_string(id);
      if (target->last_exit(id) >= 0) crashed += " (status " + std::to_string(target->last_exit(id)) + ")";
    }
  nemesis.heal();
  nemesis_log.flush();
  for (const auto& w : read_fault_windows(o.out + "/nemesis.log", std::chrono::duration<double>(Clock::now() - t0).count()))
    ctx.faults.push_back({w.family, t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(w.start)),
                          t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(w.end))});
  std::vector<Check> checks;
  if (cluster) {
    checks.push_back({"processes", crashed.empty() ? "valid" : "invalid",
                      crashed.empty() ? "no node exited by itself" : "exited by itself (see logs/): " + crashed});
    auto leader = cluster->wait_for_leader(20s);
    auto recovered = Clock::now();
    checks.push_back({"recovery", leader != 0 ? "valid" : "invalid",
                      leader != 0 ? "leader n" + std::to_string(leader) + " " +
                                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                           recovered - clients_done).count()) + " ms after the heal"
                                  : "no leader within 20 s of the heal"});
  } else {
    // An existing cluster: no admin access; recovered when a client can open a session again.
    auto client = connect_until(ctx.client, Clock::now() + 20s);
    checks.push_back({"recovery", client ? "valid" : "invalid",
                      client ? "a client session opened after the heal" : "no session within 20 s of the heal"});
  }
  if (std::find(kinds.begin(), kinds.end(), "disk") != kinds.end())
    // No disk fault injected (the schedule had no room, or fiu-ctrl failed): nothing was tested.
    checks.push_back({"disk", !nemesis.disk_ok() ? "invalid" : nemesis.disk_faults() == 0 ? "unknown" : "valid",
                      std::to_string(nemesis.disk_stops()) + " of " + std::to_string(nemesis.disk_faults()) +
                          " disk faults stopped their node (fail-stop: exit 70, or 1 when it was still starting)" +
                          (nemesis.disk_ok() ? std::string() : "; see nemesis_notes")});
  workload->final_reads(ctx);
  for (auto& c : workload->check(ctx)) checks.push_back(std::move(c));
  if (cluster) {
    bool same = converged(*cluster, target->ids(), 15s);
    checks.push_back({"convergence", same ? "valid" : "invalid",
                      same ? "every node applied the same state" : "nodes disagree on (applied, digest) after 15 s"});
  }

  // Outputs.
  std::ofstream(o.out + "/history.jsonl") << history.text();
  if (cluster)
    for (auto id : cluster->ids()) std::ofstream(o.out + "/logs/n" + std::to_string(id) + ".log") << cluster->log_of(id);
  std::string verdict = "valid";
  for (auto& c : checks)
    if (c.verdict == "invalid") verdict = "invalid";
  if (verdict == "valid")
    for (auto& c : checks)
      if (c.verdict == "unknown") verdict = "unknown";
  nlohmann::json results{{"verdict", verdict},
                         {"workload", o.workload},
                         {"nemesis", o.nemesis},
                         {"nodes", o.nodes},
                         {"time_s", o.time_s},
                         {"rate", o.rate},
                         {"clients", o.clients},
                         {"request_timeout_ms", o.request_timeout_ms},
                         {"seed", o.seed},
                         {"operations", {{"ok", history.ok()}, {"fail", history.fail()}, {"info", history.info()}}},
                         {"faults", nemesis.counts()},
                         {"fault_variants", nemesis.variants()},
                         {"overlap", o.overlap},
                         {"fault_overlaps", nemesis.overlaps()},
                         {"nemesis_notes", nemesis.notes()},
                         {"network", target->network()},
                         {"workload_stats", workload->stats()},
                         {"duration_s", std::chrono::duration<double>(Clock::now() - t0).count()}};
  if (const char* bug = std::getenv("TERN_PLANTED_BUG")) results["planted_bug"] = bug;
  if (local && !local->why_not_netns().empty() && target->network() == "ternd-hook")
    results["network_note"] = "network namespaces not used: " + local->why_not_netns();
  if (!o.endpoints.empty()) {
    results["endpoints"] = o.endpoints;
    results["nodes"] = split(o.endpoints).size();
  }
  int counts[3] = {0, 0, 0};  // valid, invalid, unknown
  for (auto& c : checks) {
    results["checks"][c.name] = {{"verdict", c.verdict}, {"detail", c.detail}};
    ++counts[c.verdict == "valid" ? 0 : c.verdict == "invalid" ? 1 : 2];
  }
  results["check_counts"] = {{"valid", counts[0]}, {"invalid", counts[1]}, {"unknown", counts[2]}};
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::string report_error;
  if (!write_report(o.out, results, &report_error)) std::fprintf(stderr, "tern-jepsen: %s\n", report_error.c_str());

  for (auto& c : checks) std::printf("  %-12s %-8s %s\n", c.name.c_str(), c.verdict.c_str(), c.detail.c_str());
  std::printf("operations: %d ok, %d fail, %d info; faults:", history.ok(), history.fail(), history.info());
  for (auto& [k, n] : nemesis.counts()) std::printf(" %d %s", n, k.c_str());
  std::printf("; network: %s", target->network().c_str());
  std::printf("\nverdict: %s (seed %llu, results in %s)\n", verdict.c_str(), static_cast<unsigned long long>(o.seed),
              o.out.c_str());
  return verdict == "valid" ? 0 : verdict == "invalid" ? 1 : 2;
}

}  // namespace
}  // namespace tern::jepsen

int main(int argc, char** argv) {
  using tern::jepsen::Options;
  Options o;
  CLI::App app{"tern-jepsen: workloads against a fresh ternd cluster under faults (docs/jepsen.md)"};
  std::vector<std::string> workload_names;
  for (const auto& [name, make] : tern::jepsen::workloads()) workload_names.push_back(name);
  app.add_option("--workload", o.workload, "register | mutex | set | list-append | ephemeral | watch | bank")
      ->check(CLI::IsMember(workload_names));
  app.add_option("--nemesis", o.nemesis, "none, or a comma-separated list of: kill, kill-all, pause, partition, clock, disk, membership");
  app.add_option("--nodes", o.nodes, "cluster size")->check(CLI::IsMember({3, 5}));
  app.add_option("--time", o.time_s, "seconds of workload (and faults)")->check(CLI::Range(1.0, 3600.0));
  app.add_option("--rate", o.rate, "operations per second, all clients together")->check(CLI::Range(0.1, 100000.0));
  app.add_option("--clients", o.clients, "concurrent clients (one session each)")->check(CLI::Range(1, 64));
  auto* seed = app.add_option("--seed", o.seed, "seed of the generator and the nemesis schedule (default: random)");
  app.add_option("--out", o.out, "results directory");
  app.add_option("--request-timeout", o.request_timeout_ms,
                 "milliseconds per client call, retries included (shorter: more operations of unknown outcome)")
      ->check(CLI::Range(50, 60000));
  app.add_option("--ternd", o.ternd, "the ternd binary (default: $TERND_BIN, else the one built with tern-jepsen)");
  app.add_option("--net", o.net, "partitions through network namespaces + nftables (netns), ternd's test hook (hook), "
                                 "or netns when possible (auto)")->check(CLI::IsMember({"auto", "netns", "hook"}));
  app.add_option("--snapshot-entries", o.snapshot_entries, "ternd --snapshot-entries (small: snapshot installs under faults)")
      ->check(CLI::Range(1, 100000000));
  app.add_flag("--overlap", o.overlap,
               "let a second fault of another family start while one is active (at most two; docs/jepsen.md)");
  app.add_option("--endpoints", o.endpoints, "HOST:PORT,... of an existing cluster's client ports (no cluster is started)");
  app.add_option("--hook-kill", o.hooks.kill, "with --endpoints: command that kills node {node} ({endpoint}: its HOST:PORT)");
  app.add_option("--hook-start", o.hooks.start, "with --endpoints: command that starts node {node} again");
  app.add_option("--hook-pause", o.hooks.pause, "with --endpoints: command that pauses node {node}");
  app.add_option("--hook-resume", o.hooks.resume, "with --endpoints: command that resumes node {node}");
  app.add_option("--hook-partition", o.hooks.partition, "with --endpoints: command that drops packets from {node} to {peers}");
  app.add_option("--hook-heal", o.hooks.heal, "with --endpoints: command that heals every partition");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 3;
  }
  for (const auto& k : tern::jepsen::split(o.nemesis)) {
    const auto& names = tern::jepsen::nemesis_names();
    if (std::find(names.begin(), names.end(), k) == names.end()) {
      std::fprintf(stderr, "tern-jepsen: unknown nemesis '%s' (known: none, kill, kill-all, pause, partition, clock, disk, membership)\n", k.c_str());
      return 3;
    }
    // An existing cluster: only the families its hooks make possible.
    const auto& h = o.hooks;
    bool possible = k == "none" || ((k == "kill" || k == "kill-all") && !h.kill.empty() && !h.start.empty()) ||
                    (k == "pause" && !h.pause.empty() && !h.resume.empty()) ||
                    (k == "partition" && !h.partition.empty() && !h.heal.empty());
    if (!o.endpoints.empty() && !possible) {
      std::fprintf(stderr, "tern-jepsen: with --endpoints, nemesis '%s' needs its hooks (kill: --hook-kill and --hook-start; "
                   "pause: --hook-pause and --hook-resume; partition: --hook-partition and --hook-heal; clock, disk and "
                   "membership only on a cluster tern-jepsen starts)\n", k.c_str());
      return 3;
    }
  }
  if (seed->count() == 0) o.seed = std::random_device{}() % 1000000;
  if (o.ternd.empty()) {
    const char* bin = std::getenv("TERND_BIN");
    o.ternd = bin != nullptr ? bin : TERND_DEFAULT_PATH;
  }
  tern::jepsen::install_interrupt_handler();
  try {
    return tern::jepsen::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tern-jepsen: harness error: %s\n", e.what());
    return 3;
  }
}
