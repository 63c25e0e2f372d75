#include "jepsen-like/runner/nemesis.h"

#include "jepsen-like/runner/workload.h"

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>

namespace tern::jepsen {

using namespace std::chrono_literals;

const std::vector<std::string>& nemesis_names() {
  static const std::vector<std::string> names{"none", "kill", "pause", "partition", "kill-all"};
  return names;
}

Nemesis::Nemesis(testing::Cluster& cluster, std::vector<std::string> kinds, std::uint64_t seed, Clock::time_point t0,
                 std::ostream& log)
    : cluster_(cluster), rng_(seed ^ 0x6e656d65736973ull), t0_(t0), log_(log) {
  for (auto& k : kinds)
    if (k != "none") kinds_.push_back(k);
}

void Nemesis::log(const std::string& action, const std::vector<std::uint64_t>& nodes, const std::string& shape) {
  nlohmann::json j{{"time_ms", ms_since(t0_)}, {"action", action}, {"nodes", nodes}};
  if (!shape.empty()) j["target"] = shape;
  log_ << j.dump() << "\n";
  log_.flush();
}

std::vector<std::uint64_t> Nemesis::targets(const char** shape) {
  auto ids = cluster_.ids();
  auto pick = rng_() % 3;
  if (pick == 1) {
    // The leader, if the cluster agrees on one right now; else a random node.
    if (auto leader = cluster_.wait_for_leader(300ms); leader != 0) {
      *shape = "leader";
      return {leader};
    }
  }
  if (pick == 2 && ids.size() >= 5) {
    // A minority: as many nodes as may fail with the rest still a majority.
    std::shuffle(ids.begin(), ids.end(), rng_);
    ids.resize((ids.size() - 1) / 2);
    std::sort(ids.begin(), ids.end());
    *shape = "minority";
    return ids;
  }
  *shape = "one";
  return {ids[rng_() % ids.size()]};
}

void Nemesis::run(Clock::time_point end) {
  if (kinds_.empty()) return;
  // A fault lasts 0.3-1.5 s after 0.5-1.5 s of quiet; none starts unless it can heal before `end`.
  while (true) {
    auto quiet = std::chrono::milliseconds(500 + rng_() % 1000);
    auto hold = std::chrono::milliseconds(300 + rng_() % 1200);
    const auto& kind = kinds_[rng_() % kinds_.size()];
    if (Clock::now() + quiet + hold + 200ms > end || interrupted()) break;
    sleep_until_or_interrupted(Clock::now() + quiet);
    const char* shape = "all";
    auto nodes = kind == "kill-all" ? cluster_.ids() : targets(&shape);
    if (kind == "kill" || kind == "kill-all") {
      for (auto id : nodes) cluster_.kill9(id);
      log("kill", nodes, shape);
      sleep_until_or_interrupted(Clock::now() + hold);
      for (auto id : nodes) cluster_.start(id);
      log("start", nodes, "");
    } else if (kind == "pause") {
      for (auto id : nodes) cluster_.pause(id);
      log("pause", nodes, shape);
      sleep_until_or_interrupted(Clock::now() + hold);
      for (auto id : nodes) cluster_.resume(id);
      log("resume", nodes, "");
    } else if (kind == "partition") {
      // ternd's test-only transport hook (--debug-fault-injection): the targets drop all peer
      // traffic with the others, both ways, and keep serving their clients.
      for (auto id : nodes) cluster_.partition(id);
      log("partition", nodes, shape);
      sleep_until_or_interrupted(Clock::now() + hold);
      cluster_.heal();
      log("heal-partition", nodes, "");
    }
    ++counts_[kind];
  }
  sleep_until_or_interrupted(end);
}

void Nemesis::heal() {
  if (std::find(kinds_.begin(), kinds_.end(), "partition") != kinds_.end()) cluster_.heal();
  std::vector<std::uint64_t> started;
  for (auto id : cluster_.ids()) {
    cluster_.resume(id);  // SIGCONT to a running process is harmless
    if (!cluster_.running(id)) {
      cluster_.start(id);
      started.push_back(id);
    }
  }
  log("heal", started, "");
}

}  // namespace tern::jepsen
