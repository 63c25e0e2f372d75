#pragma once
// The nemesis of tern-jepsen (issue 13): faults on a Target (the cluster the runner started, or
// an existing one through user hooks) on a seeded schedule — which family, which variant, which
// nodes, how long, how long quiet — one fault at a time so a majority can make progress between
// faults, or with `overlap` at most two of different families at once (the rule is at
// may_overlap below); each fault heals itself before the next (membership changes are the
// exception: a cycle add → promote → remove spans other faults). Every action goes to the nemesis
// log as a JSON line; a fault's "start" and "end" lines share a "window" number (report.html
// shades them; overlapping windows are shaded on top of each other).
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jepsen-like/runner/history.h"
#include "jepsen-like/runner/target.h"

namespace tern::jepsen {

// Known nemesis names; "none" alone means no faults.
const std::vector<std::string>& nemesis_names();

// --- Overlapping faults (--overlap) ---------------------------------------------------------
// The rule, so that two faults at once never make recovery impossible:
// - families are of three classes: *process* faults (kill, kill-all, pause, disk) act on ternd
//   processes; *environment* faults (partition, clock) on what is around them; membership steps
//   are instant and already interleave with everything, so they never overlap;
// - at most two faults at once, of different families, and never two process faults (they would
//   fight over the same processes: a pause of a node being restarted, a disk fault that cannot
//   fail-stop a paused node, fiu-ctrl on a killed one): a process fault with a partition or a
//   clock fault, or a partition with a clock fault — but disk never with a partition (a node
//   cut off gets no entries to write, so it would not fail-stop in time);
// - the process fault starts first; a partition that overlaps it isolates only the nodes it
//   took down plus others while the union stays a minority (on 3 nodes: exactly its node — it
//   comes back into isolation), so killed + paused + stopped + cut off together stay a minority
//   and the rest keep a quorum; unless the process fault is an explicit "all" variant (every
//   node down: the cluster is meant to be unavailable), then the partition takes any shape;
// - a clock fault takes nothing away (ternd's timers run on the monotonic clock) and overlaps
//   with any shape;
// - both faults heal before the next quiet period, and before the run's end.
bool may_overlap(const std::string& first, const std::string& second);
// The pair in the order the nemesis runs it: a process fault first.
std::pair<std::string, std::string> overlap_order(const std::string& a, const std::string& b);
// A family of `kinds` that may overlap `family`, or "" (one time in two, or none allowed); seeded.
std::string pick_partner(const std::vector<std::string>& kinds, const std::string& family, std::mt19937_64& rng);
// The nodes a partition overlapping a process fault on `busy` isolates: `busy` plus random others
// while the union stays a minority of `ids`; nullopt if `busy` is not a minority (an "all"
// variant: any partition shape).
std::optional<std::vector<std::uint64_t>> overlap_isolation(const std::vector<std::uint64_t>& ids,
                                                            const std::vector<std::uint64_t>& busy, std::mt19937_64& rng);

class Nemesis {
 public:
  Nemesis(Target& target, std::vector<std::string> kinds, std::uint64_t seed, Clock::time_point t0, std::ostream& log,
          bool overlap = false);
  ~Nemesis();
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
  // Called with the members' client endpoints after a membership change made a voter of a new
  // node or removed one (the runner hands them to its clients: ClientOptions::endpoint_source).
  void on_members(std::function<void(std::vector<std::string>)> f) { on_members_ = std::move(f); }
  // Overlapping faults injected, by pair ("kill+partition": 3), process fault first.
  const std::map<std::string, int>& overlaps() const { return overlaps_; }

 private:
  // The Target, every call on the owner thread: with --overlap a second thread acts on it.
  class Locked;
  std::mt19937_64& rng();  // the calling lane's generator
  std::vector<std::uint64_t> targets(std::string* shape, bool allow_all);
  // Logs one action; returns the window number of a "start". An "end" names the window it ends.
  int log(const std::string& family, const std::string& phase, const std::string& action,
          const std::vector<std::uint64_t>& nodes, const std::string& variant, nlohmann::json extra = {},
          int window = 0);
  void note(std::string n);
  void add_variant(const std::string& v);
  void hold(std::chrono::milliseconds d);
  bool inject(const std::string& family, std::chrono::milliseconds held);
  // The second fault of an overlapping pair, on its own thread: after `first` started, `delay`.
  void second_lane(const std::string& first, const std::string& family, std::chrono::milliseconds delay,
                   std::chrono::milliseconds held, std::uint64_t seed);
  void kill_fault(std::chrono::milliseconds hold, bool all = false);  // all: every node at once
  void pause_fault(std::chrono::milliseconds hold);
  // `only`: isolate exactly these nodes (a partition overlapping a process fault).
  void partition_fault(std::chrono::milliseconds hold, const std::vector<std::uint64_t>* only = nullptr,
                       int overlaps = 0);
  void clock_fault(std::chrono::milliseconds hold, int overlaps = 0);
  bool disk_fault(std::chrono::milliseconds hold);  // false: not injected
  bool membership_step();
  void start_all_stopped(std::vector<std::uint64_t>* started);

  std::unique_ptr<Locked> locked_;
  Target& target_;
  std::vector<std::string> kinds_;
  bool overlap_ = false;
  std::mt19937_64 rng_;
  Clock::time_point t0_;
  std::ostream& log_;
  std::mutex mu_;  // guards the log, the counts, the notes and the first fault's publication
  std::condition_variable published_cv_;
  // The first fault of a pair publishes its nodes and window at its "start" (or that it is over).
  bool published_ = false, first_done_ = false, lane_done_ = false;
  std::vector<std::uint64_t> first_nodes_;
  int first_window_ = 0;
  std::map<std::string, int> counts_, variants_, overlaps_;
  std::vector<std::string> notes_;
  std::function<void(std::vector<std::string>)> on_members_;
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
