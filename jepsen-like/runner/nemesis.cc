#include "jepsen-like/runner/nemesis.h"

#include <algorithm>
#include <thread>

#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

const std::vector<std::string>& nemesis_names() {
  static const std::vector<std::string> names{"none", "kill", "pause", "partition", "clock", "disk", "membership", "kill-all"};
  return names;
}

Cuts isolate(const std::vector<std::uint64_t>& ids, const std::vector<std::uint64_t>& side) {
  Cuts c;
  for (auto a : side)
    for (auto b : ids)
      if (std::find(side.begin(), side.end(), b) == side.end()) {
        c.insert({a, b});
        c.insert({b, a});
      }
  return c;
}

Cuts bridge(const std::vector<std::uint64_t>& ids) {
  // ids[n/2] is the bridge: it sees both halves, which do not see each other.
  Cuts c;
  auto n = ids.size(), mid = n / 2;
  for (std::size_t i = 0; i < mid; ++i)
    for (std::size_t j = mid + 1; j < n; ++j) {
      c.insert({ids[i], ids[j]});
      c.insert({ids[j], ids[i]});
    }
  return c;
}

Cuts ring(const std::vector<std::uint64_t>& ids) {
  // Node i sees i-1 and i+1 (in the given order); on 5 nodes each sees a majority, counting
  // itself, and no two nodes see the same majority.
  Cuts c;
  auto n = ids.size();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      auto d = (i + n - j) % n;
      if (i != j && d != 1 && d != n - 1) c.insert({ids[i], ids[j]});
    }
  return c;
}

Nemesis::Nemesis(Target& target, std::vector<std::string> kinds, std::uint64_t seed, Clock::time_point t0,
                 std::ostream& log)
    : target_(target), rng_(seed ^ 0x6e656d65736973ull), t0_(t0), log_(log) {
  for (auto& k : kinds)
    if (k != "none") kinds_.push_back(k);
}

void Nemesis::log(const std::string& family, const std::string& phase, const std::string& action,
                  const std::vector<std::uint64_t>& nodes, const std::string& variant, nlohmann::json extra) {
  nlohmann::json j{{"time_ms", ms_since(t0_)}, {"action", action}, {"nodes", nodes}};
  if (!family.empty()) j["fault"] = family;
  if (!phase.empty()) j["phase"] = phase;
  if (!variant.empty()) j["target"] = variant;
  if (phase == "start") j["window"] = ++window_;
  if (phase == "end") j["window"] = window_;
  if (extra.is_object())
    for (auto& [k, v] : extra.items()) j[k] = v;
  log_ << j.dump() << "\n";
  log_.flush();
}

void Nemesis::hold(ms d) { sleep_until_or_interrupted(Clock::now() + d); }

std::vector<std::uint64_t> Nemesis::targets(std::string* shape, bool allow_all) {
  auto ids = target_.ids();
  auto pick = rng_() % (allow_all ? 4 : 3);
  if (pick == 1) {
    // The leader, if the cluster agrees on one right now; else a random node.
    if (auto leader = target_.leader(300ms); leader != 0) {
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
  if (pick == 3) {
    *shape = "all";
    return ids;
  }
  *shape = "one";
  return {ids[rng_() % ids.size()]};
}

void Nemesis::run(Clock::time_point end) {
  if (kinds_.empty()) return;
  // A fault lasts 0.3-1.5 s after 0.5-1.5 s of quiet (partition and clock faults up to 3 s);
  // none starts unless it can heal before `end`, counting its longest variant.
  while (true) {
    auto quiet = ms(500 + rng_() % 1000);
    auto held = ms(300 + rng_() % 1200);
    const auto family = kinds_[rng_() % kinds_.size()];
    auto worst = held + 200ms;
    if (family == "kill") worst += 1500ms;       // a second kill within a second of the restart
    if (family == "kill-all") worst += 500ms;
    if (family == "partition") worst += 1500ms;  // flapping holds longer
    if (family == "clock") worst += 1500ms;      // libfaketime rereads its file within 1 s
    if (family == "disk") worst += 3500ms;       // waiting for the node to stop, and its restart
    if (Clock::now() + quiet + worst > end || interrupted()) break;
    hold(quiet);
    bool injected = true;
    if (family == "kill") kill_fault(held);
    // Every node at once, always (the kill family does that one time in three): what catches an
    // acknowledgement before fsync, since after a single kill the others still hold the entries.
    if (family == "kill-all") kill_fault(held, /*all=*/true);
    if (family == "pause") pause_fault(held);
    if (family == "partition") partition_fault(held);
    if (family == "clock") clock_fault(held);
    if (family == "disk") injected = disk_fault(held);
    if (family == "membership") injected = membership_step();
    if (injected) ++counts_[family];
  }
  sleep_until_or_interrupted(end);
}

void Nemesis::kill_fault(ms held, bool all) {
  std::string shape;
  auto variant = all ? 2 : rng_() % 6;
  if (variant == 3) {
    // A clean restart: SIGTERM, then start again at once.
    auto nodes = targets(&shape, false);
    for (auto id : nodes) target_.terminate(id);
    log("kill", "start", "terminate", nodes, "restart-" + shape);
    for (auto id : nodes) target_.start(id);
    log("kill", "end", "start", nodes, "");
    ++variants_["kill:restart"];
    return;
  }
  auto nodes = variant == 2 || variant == 5 ? target_.ids() : targets(&shape, false);
  if (variant == 2 || variant == 5) shape = "all";
  for (auto id : nodes) target_.kill(id);
  log("kill", "start", "kill", nodes, shape);
  hold(held);
  for (auto id : nodes) target_.start(id);
  if (variant == 4 || variant == 5) {
    // Again within the first second of the fresh start: recovery (WAL replay, the first
    // election, a half-written first entry) interrupted.
    auto again = ms(50 + rng_() % 850);
    log("kill", "", "start", nodes, "", {{"again_after_ms", again.count()}});
    hold(again);
    for (auto id : nodes) target_.kill(id);
    log("kill", "", "kill", nodes, shape + "-early");
    hold(ms(100 + rng_() % 400));
    for (auto id : nodes) target_.start(id);
    shape += "-early";
  }
  log("kill", "end", "start", nodes, "");
  ++variants_["kill:" + shape];
}

void Nemesis::pause_fault(ms held) {
  std::string shape;
  auto nodes = targets(&shape, true);
  for (auto id : nodes) target_.pause(id);
  log("pause", "start", "pause", nodes, shape);
  hold(held);
  for (auto id : nodes) target_.resume(id);
  log("pause", "end", "resume", nodes, "");
  ++variants_["pause:" + shape];
}

void Nemesis::partition_fault(ms held) {
  auto ids = target_.ids();
  std::shuffle(ids.begin(), ids.end(), rng_);
  auto variant = rng_() % 7;
  std::string name;
  Cuts cuts;
  std::vector<std::uint64_t> nodes;
  auto leader_or_any = [&] {
    auto l = target_.leader(300ms);
    return l != 0 ? l : ids.front();
  };
  if (variant == 0) {
    name = "isolate-one";
    nodes = {ids.front()};
    cuts = isolate(ids, nodes);
  } else if (variant == 1) {
    name = "isolate-leader";
    nodes = {leader_or_any()};
    cuts = isolate(ids, nodes);
  } else if (variant == 2) {
    name = "majority-minority";
    nodes.assign(ids.begin(), ids.begin() + static_cast<long>((ids.size() - 1) / 2));
    cuts = isolate(ids, nodes);
  } else if (variant == 3 || (variant == 4 && ids.size() < 5)) {
    name = "bridge";
    nodes = {ids[ids.size() / 2]};  // the bridge node
    cuts = bridge(ids);
  } else if (variant == 4) {
    name = "ring";
    nodes = ids;
    cuts = ring(ids);
  } else if (variant == 5) {
    // One way: the leader's packets to the others are dropped (it still hears them), or the
    // others' packets to it.
    auto l = leader_or_any();
    bool out = rng_() % 2 == 0;
    name = out ? "one-way-from-leader" : "one-way-to-leader";
    nodes = {l};
    for (auto b : ids)
      if (b != l) cuts.insert(out ? std::pair{l, b} : std::pair{b, l});
  } else {
    name = "flapping";
    nodes = {ids.front()};
    cuts = rng_() % 2 == 0 ? isolate(ids, nodes) : bridge(ids);
    held += 1500ms;
  }
  std::string mode = target_.one_way() ? "" : " (both ways: the mechanism cannot cut one way)";
  if (!target_.cut(cuts)) {
    notes_.push_back("partition " + name + ": the network mechanism failed to apply it");
  }
  nlohmann::json cut_list = nlohmann::json::array();
  for (auto [a, b] : cuts) cut_list.push_back({a, b});
  log("partition", "start", "partition", nodes, name, {{"cuts", cut_list}, {"mechanism", target_.network() + mode}});
  if (name == "flapping") {
    // Cut and heal in turns of 100-300 ms for the whole hold.
    auto until = Clock::now() + held;
    bool on = true;
    for (int flips = 0; flips < 100 && Clock::now() < until && !interrupted(); ++flips) {
      hold(ms(100 + rng_() % 200));
      on = !on;
      target_.cut(on ? cuts : Cuts{});
    }
  } else {
    hold(held);
  }
  target_.cut({});
  log("partition", "end", "heal-partition", nodes, "");
  ++variants_["partition:" + name];
}

void Nemesis::clock_fault(ms held) {
  std::string shape;
  auto nodes = targets(&shape, true);
  bool jump = rng_() % 2 == 0;
  static const double small[] = {0.05, 0.2, 0.5, 1.0, 2.0};
  nlohmann::json offsets = nlohmann::json::object();
  bool ok = true;
  for (auto id : nodes) {
    double s = jump ? static_cast<double>(30 + rng_() % 570) : small[rng_() % 5];
    if (rng_() % 2 == 0) s = -s;
    ok = target_.set_clock_offset(id, s) && ok;
    offsets["n" + std::to_string(id)] = s;
  }
  if (!ok) notes_.push_back("clock: could not set an offset (libfaketime)");
  log("clock", "start", jump ? "clock-jump" : "clock-skew", nodes, shape, {{"offsets_s", offsets}});
  // libfaketime rereads the offset file at most a second later: hold past that.
  hold(held + 1000ms);
  for (auto id : nodes) target_.set_clock_offset(id, 0);
  log("clock", "end", "clock-reset", nodes, "");
  ++variants_[std::string("clock:") + (jump ? "jump-" : "skew-") + shape];
}

bool Nemesis::disk_fault(ms held) {
  auto ids = target_.ids();
  std::uint64_t id = ids[rng_() % ids.size()];
  std::string shape = "one";
  if (rng_() % 2 == 0)
    if (auto l = target_.leader(300ms); l != 0) {
      id = l;
      shape = "leader";
    }
  auto f = rng_() % 2 == 0 ? DiskFault::fsync_eio : DiskFault::write_enospc;
  std::string name = f == DiskFault::fsync_eio ? "fdatasync-eio" : "pwrite-enospc";
  if (!target_.disk_fault(id, f)) {
    notes_.push_back("disk " + name + " on n" + std::to_string(id) + ": fiu-ctrl failed (node not running?)");
    return false;
  }
  ++disk_faults_;
  log("disk", "start", name, {id}, shape);
  // The node must stop by itself (fail-stop: ternd exits 70 on a storage error) at its next
  // write, which comes within milliseconds under a workload (and every few hundred ms without:
  // the leader's tick entries). Bounded wait.
  auto until = Clock::now() + held + 3000ms;
  std::optional<bool> up = true;
  while (Clock::now() < until && !interrupted()) {
    up = target_.running(id);
    if (up && !*up) break;
    std::this_thread::sleep_for(20ms);
  }
  int status = up && !*up ? target_.last_exit(id) : -1;
  // 70: a storage error while running (Replica::fatal). 1: ternd refused to start (the fault hit
  // a node still recovering, e.g. just restarted by an earlier kill: "cannot start: ... fsync").
  if (up && !*up && (status == 70 || status == 1)) {
    ++disk_stops_;
  } else if (up && *up) {
    ++disk_bad_;
    notes_.push_back("disk " + name + " on n" + std::to_string(id) + ": still running " +
                     std::to_string((held + 3000ms).count()) + " ms after the fault (no fail-stop)");
    target_.disk_heal(id);
    target_.kill(id);
  } else if (up) {
    ++disk_bad_;
    notes_.push_back("disk " + name + " on n" + std::to_string(id) + ": exited with status " + std::to_string(status) +
                     ", not 70 (a fatal storage error) or 1 (refused to start)");
  }
  log("disk", "", "stopped", {id}, "", {{"exit_status", status}});
  target_.start(id);  // a new process: no failure point enabled
  log("disk", "end", "start", {id}, "");
  ++variants_["disk:" + name];
  return true;
}

bool Nemesis::membership_step() {
  if (member_step_ == 0) {
    auto id = target_.add_learner();
    if (id == 0) {
      notes_.push_back("membership: no node added (no leader, no spare id, or the change was refused)");
      return false;
    }
    member_ = id;
    member_step_ = 1;
    log("membership", "", "add-learner", {id}, "");
    ++variants_["membership:add"];
  } else if (member_step_ == 1) {
    bool ok = target_.promote(member_);
    log("membership", "", ok ? "promote" : "promote-failed", {member_}, "");
    if (ok) member_step_ = 2;
    ++variants_["membership:promote"];
  } else {
    bool ok = target_.remove(member_);
    log("membership", "", ok ? "remove" : "remove-failed", {member_}, "");
    if (ok) {
      member_ = 0;
      member_step_ = 0;
    }
    ++variants_["membership:remove"];
  }
  return true;
}

void Nemesis::start_all_stopped(std::vector<std::uint64_t>* started) {
  for (auto id : target_.ids()) {
    auto up = target_.running(id);
    if (up && !*up) {
      target_.start(id);
      started->push_back(id);
    }
  }
}

void Nemesis::heal() {
  auto has = [&](const char* k) { return std::find(kinds_.begin(), kinds_.end(), k) != kinds_.end(); };
  if (has("partition")) target_.cut({});
  if (has("clock"))
    for (auto id : target_.ids()) target_.set_clock_offset(id, 0);
  if (has("disk"))
    for (auto id : target_.ids()) target_.disk_heal(id);
  if (has("pause"))
    for (auto id : target_.ids()) target_.resume(id);  // SIGCONT to a running process is harmless
  std::vector<std::uint64_t> started;
  start_all_stopped(&started);
  if (member_ != 0 && target_.remove(member_)) log("membership", "", "remove", {member_}, "heal");
  log("", "", "heal", started, "");
}

}  // namespace tern::jepsen
