#pragma once
// The nemesis of tern-jepsen (issue 13): faults on a Target (the cluster the runner started, or
// an existing one through user hooks) on a seeded schedule — which family, which variant, which
// nodes, how long, how long quiet — one fault at a time so a majority can make progress between
// faults; each fault heals itself before the next (membership changes are the exception: a
// cycle add → promote → remove spans other faults). Every action goes to the nemesis log as a
// JSON line; a fault's "start" and "end" lines share a "window" number (report.html shades them).
#include <cstdint>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jepsen-like/runner/history.h"
#include "jepsen-like/runner/target.h"

namespace tern::jepsen {

// Known nemesis names; "none" alone means no faults.
const std::vector<std::string>& nemesis_names();

class Nemesis {
 public:
  Nemesis(Target& target, std::vector<std::string> kinds, std::uint64_t seed, Clock::time_point t0, std::ostream& log);
  // Runs faults until `end` (the last one heals by then); on the calling thread (the cluster's).
  void run(Clock::time_point end);
  // Heals everything: network, clocks, disks; resumes every paused node, starts every stopped
  // one, finishes a membership cycle (removes a node added but not removed); logs it.
  void heal();
  // Faults injected, by family ("kill": 7) and by family:variant ("kill:all": 2).
  const std::map<std::string, int>& counts() const { return counts_; }
  const std::map<std::string, int>& variants() const { return variants_; }
  // Problems the nemesis itself saw: a disk fault that did not stop its node, a fault the target
  // could not inject. The runner turns `disk_ok()` into the "disk" check.
  const std::vector<std::string>& notes() const { return notes_; }
  bool disk_ok() const { return disk_bad_ == 0; }
  int disk_stops() const { return disk_stops_; }
  int disk_faults() const { return disk_faults_; }

 private:
  std::vector<std::uint64_t> targets(std::string* shape, bool allow_all);
  // Logs one action; returns the window number of a "start".
  void log(const std::string& family, const std::string& phase, const std::string& action,
           const std::vector<std::uint64_t>& nodes, const std::string& variant, nlohmann::json extra = {});
  void hold(std::chrono::milliseconds d);
  void kill_fault(std::chrono::milliseconds hold, bool all = false);  // all: every node at once
  void pause_fault(std::chrono::milliseconds hold);
  void partition_fault(std::chrono::milliseconds hold);
  void clock_fault(std::chrono::milliseconds hold);
  bool disk_fault(std::chrono::milliseconds hold);  // false: not injected
  bool membership_step();
  void start_all_stopped(std::vector<std::uint64_t>* started);

  Target& target_;
  std::vector<std::string> kinds_;
  std::mt19937_64 rng_;
  Clock::time_point t0_;
  std::ostream& log_;
  std::map<std::string, int> counts_, variants_;
  std::vector<std::string> notes_;
  int window_ = 0;
  int disk_bad_ = 0, disk_stops_ = 0, disk_faults_ = 0;
  // Membership: the node added by the current cycle and the cycle's next step.
  std::uint64_t member_ = 0;
  int member_step_ = 0;
};

// The partition shapes, as directed cuts over `ids` (exposed for the report's description and tests).
Cuts isolate(const std::vector<std::uint64_t>& ids, const std::vector<std::uint64_t>& side);
Cuts bridge(const std::vector<std::uint64_t>& ids);  // two halves, one node seeing both
Cuts ring(const std::vector<std::uint64_t>& ids);    // each node sees only its ring neighbours

}  // namespace tern::jepsen
