#pragma once
// The nemesis of tern-jepsen: faults on the real processes of a harness cluster on a seeded
// schedule (which fault, which target, how long, how long quiet), one fault at a time so a
// majority can make progress between faults; each fault heals itself before the next. Every
// action goes to the nemesis log as a JSON line.
#include <cstdint>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "jepsen-like/cluster/harness.h"
#include "jepsen-like/runner/history.h"

namespace tern::jepsen {

// Known nemesis names; "none" alone means no faults.
const std::vector<std::string>& nemesis_names();

class Nemesis {
 public:
  Nemesis(testing::Cluster& cluster, std::vector<std::string> kinds, std::uint64_t seed, Clock::time_point t0,
          std::ostream& log);
  // Runs faults until `end` (the last one heals by then); on the calling thread (the cluster's).
  void run(Clock::time_point end);
  // Resumes every paused node and starts every stopped one; logs it.
  void heal();
  const std::map<std::string, int>& counts() const { return counts_; }

 private:
  std::vector<std::uint64_t> targets(const char** shape);
  void log(const std::string& action, const std::vector<std::uint64_t>& nodes, const std::string& shape);

  testing::Cluster& cluster_;
  std::vector<std::string> kinds_;
  std::mt19937_64 rng_;
  Clock::time_point t0_;
  std::ostream& log_;
  std::map<std::string, int> counts_;
};

}  // namespace tern::jepsen
