#include "jepsen-like/runner/nemesis.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <future>
#include <set>
#include <thread>
#include <tuple>

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

namespace {

bool is_process(const std::string& f) { return f == "kill" || f == "kill-all" || f == "pause" || f == "disk"; }
bool is_environment(const std::string& f) { return f == "partition" || f == "clock"; }

// The generator of the second lane of an overlapping pair (seeded from the schedule's), set on
// that lane's thread; the first lane uses the nemesis's own.
thread_local std::mt19937_64* t_lane_rng = nullptr;

}  // namespace

bool may_overlap(const std::string& first, const std::string& second) {
  if (first == second) return false;
  if (!is_process(first) && !is_environment(first)) return false;  // membership, none
  if (!is_process(second) && !is_environment(second)) return false;
  // A disk fault needs its node to keep writing (it fail-stops at its next write): cut off, a
  // follower gets no entries and would never stop. Disk pairs with clock only.
  if ((first == "disk" && second == "partition") || (first == "partition" && second == "disk")) return false;
  return is_environment(first) || is_environment(second);  // never two process faults
}

std::pair<std::string, std::string> overlap_order(const std::string& a, const std::string& b) {
  if (is_process(b) && !is_process(a)) return {b, a};
  return {a, b};
}

std::string pick_partner(const std::vector<std::string>& kinds, const std::string& family, std::mt19937_64& rng) {
  std::vector<std::string> ok;
  for (auto& k : kinds)
    if (may_overlap(family, k) && std::find(ok.begin(), ok.end(), k) == ok.end()) ok.push_back(k);
  auto coin = rng() % 2;
  auto which = rng();
  if (ok.empty() || coin != 0) return "";
  return ok[which % ok.size()];
}

std::optional<std::vector<std::uint64_t>> overlap_isolation(const std::vector<std::uint64_t>& ids,
                                                            const std::vector<std::uint64_t>& busy, std::mt19937_64& rng) {
  const auto minority = (ids.size() - 1) / 2;
  std::set<std::uint64_t> side(busy.begin(), busy.end());
  if (side.size() > minority) return std::nullopt;
  std::vector<std::uint64_t> others;
  for (auto id : ids)
    if (side.count(id) == 0) others.push_back(id);
  std::shuffle(others.begin(), others.end(), rng);
  auto extra = rng() % (minority - side.size() + 1);  // 0 .. what keeps the union a minority
  for (std::size_t i = 0; i < extra && i < others.size(); ++i) side.insert(others[i]);
  if (side.empty() && !others.empty()) side.insert(others.front());  // a partition cuts someone
  return std::vector<std::uint64_t>(side.begin(), side.end());
}

// Every call runs on the thread that made the Nemesis (the runner's main thread): the harness's
// Cluster is not made for two threads — its admin RPC runs on that thread's KJ event loop (a
// call from another thread crashes), and its process table has no lock. The second lane of an
// overlapping pair queues its calls; the owner runs them whenever it waits (hold, the join).
class Nemesis::Locked : public Target {
  template <typename F>
  auto with(F f) {  // defined before its uses: its return type is deduced
    if (std::this_thread::get_id() == owner_) return f();
    using R = decltype(f());
    std::promise<R> done;
    auto result = done.get_future();
    {
      std::lock_guard lock(mu_);
      queue_.push_back([&] {
        try {
          done.set_value(f());
        } catch (...) {
          done.set_exception(std::current_exception());
        }
      });
    }
    return result.get();
  }

 public:
  explicit Locked(Target& t) : t_(t) {}
  // On the owner thread: runs the calls the other lane queued.
  void serve() {
    std::deque<std::function<void()>> calls;
    {
      std::lock_guard lock(mu_);
      calls.swap(queue_);
    }
    for (auto& c : calls) c();
  }
  std::vector<std::uint64_t> ids() override { return with([&] { return t_.ids(); }); }
  std::uint64_t leader(std::chrono::milliseconds to) override { return with([&] { return t_.leader(to); }); }
  bool kill(std::uint64_t id) override { return with([&] { return t_.kill(id); }); }
  bool terminate(std::uint64_t id) override { return with([&] { return t_.terminate(id); }); }
  bool start(std::uint64_t id) override { return with([&] { return t_.start(id); }); }
  bool pause(std::uint64_t id) override { return with([&] { return t_.pause(id); }); }
  bool resume(std::uint64_t id) override { return with([&] { return t_.resume(id); }); }
  std::optional<bool> running(std::uint64_t id) override { return with([&] { return t_.running(id); }); }
  int last_exit(std::uint64_t id) override { return with([&] { return t_.last_exit(id); }); }
  bool cut(const Cuts& c) override { return with([&] { return t_.cut(c); }); }
  bool one_way() const override { return t_.one_way(); }
  std::string network() const override { return t_.network(); }
  bool set_clock_offset(std::uint64_t id, double s) override { return with([&] { return t_.set_clock_offset(id, s); }); }
  bool disk_fault(std::uint64_t id, DiskFault f) override { return with([&] { return t_.disk_fault(id, f); }); }
  bool disk_heal(std::uint64_t id) override { return with([&] { return t_.disk_heal(id); }); }
  std::uint64_t add_learner() override { return with([&] { return t_.add_learner(); }); }
  bool promote(std::uint64_t id) override { return with([&] { return t_.promote(id); }); }
  bool remove(std::uint64_t id) override { return with([&] { return t_.remove(id); }); }
  std::vector<std::string> endpoints() override { return with([&] { return t_.endpoints(); }); }

 private:
  Target& t_;
  const std::thread::id owner_ = std::this_thread::get_id();
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
};

Nemesis::Nemesis(Target& target, std::vector<std::string> kinds, std::uint64_t seed, Clock::time_point t0,
                 std::ostream& log, bool overlap)
    : locked_(std::make_unique<Locked>(target)),
      target_(*locked_),
      overlap_(overlap),
      rng_(seed ^ 0x6e656d65736973ull),
      t0_(t0),
      log_(log) {
  for (auto& k : kinds)
    if (k != "none") kinds_.push_back(k);
}

Nemesis::~Nemesis() = default;

std::mt19937_64& Nemesis::rng() { return t_lane_rng != nullptr ? *t_lane_rng : rng_; }

int Nemesis::log(const std::string& family, const std::string& phase, const std::string& action,
                 const std::vector<std::uint64_t>& nodes, const std::string& variant, nlohmann::json extra, int window) {
  std::lock_guard lock(mu_);
  nlohmann::json j{{"time_ms", ms_since(t0_)}, {"action", action}, {"nodes", nodes}};
  if (!family.empty()) j["fault"] = family;
  if (!phase.empty()) j["phase"] = phase;
  if (!variant.empty()) j["target"] = variant;
  if (phase == "start") window = ++window_;
  if (phase == "start" || phase == "end") j["window"] = window;
  if (extra.is_object())
    for (auto& [k, v] : extra.items()) j[k] = v;
  log_ << j.dump() << "\n";
  log_.flush();
  if (phase == "start" && t_lane_rng == nullptr) {
    // The first fault of a pair has its nodes now: the second lane may start.
    published_ = true;
    first_nodes_ = nodes;
    first_window_ = window;
    published_cv_.notify_all();
  }
  return window;
}

void Nemesis::note(std::string n) {
  std::lock_guard lock(mu_);
  notes_.push_back(std::move(n));
}

void Nemesis::add_variant(const std::string& v) {
  std::lock_guard lock(mu_);
  ++variants_[v];
}

void Nemesis::hold(ms d) {
  auto until = Clock::now() + d;
  if (t_lane_rng != nullptr) return sleep_until_or_interrupted(until);
  // The owner thread serves the second lane's calls on the cluster while it waits.
  do {
    locked_->serve();
    sleep_until_or_interrupted(std::min(until, Clock::now() + 5ms));
  } while (Clock::now() < until && !interrupted());
  locked_->serve();
}

std::vector<std::uint64_t> Nemesis::targets(std::string* shape, bool allow_all) {
  auto ids = target_.ids();
  auto pick = rng()() % (allow_all ? 4 : 3);
  if (pick == 1) {
    // The leader, if the cluster agrees on one right now; else a random node.
    if (auto leader = target_.leader(300ms); leader != 0) {
      *shape = "leader";
      return {leader};
    }
  }
  if (pick == 2 && ids.size() >= 5) {
    // A minority: as many nodes as may fail with the rest still a majority.
    std::shuffle(ids.begin(), ids.end(), rng());
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
  return {ids[rng()() % ids.size()]};
}

namespace {

// How long a fault of `family` may last at most, its variants counted, for a hold of `held`.
ms worst_case(const std::string& family, ms held) {
  auto worst = held + 200ms;
  if (family == "kill") worst += 1500ms;       // a second kill within a second of the restart
  if (family == "kill-all") worst += 500ms;
  if (family == "partition") worst += 1500ms;  // flapping holds longer
  if (family == "clock") worst += 1500ms;      // libfaketime rereads its file within 1 s
  if (family == "disk") worst += 3500ms;       // waiting for the node to stop, and its restart
  return worst;
}

}  // namespace

void Nemesis::run(Clock::time_point end) {
  if (kinds_.empty()) return;
  // A fault lasts 0.3-1.5 s after 0.5-1.5 s of quiet (partition and clock faults up to 3 s);
  // none starts unless it can heal before `end`, counting its longest variant. With overlap, a
  // second fault (the rule: may_overlap) may start 0.1-0.7 s after the first, held 0.3-1.5 s.
  while (true) {
    auto quiet = ms(500 + rng_() % 1000);
    auto held = ms(300 + rng_() % 1200);
    auto family = kinds_[rng_() % kinds_.size()];
    std::string second;
    ms delay{0}, held2{0};
    std::uint64_t lane_seed = 0;
    auto worst = worst_case(family, held);
    if (overlap_) {
      // Drawn only with overlap: a run without it replays the schedule it always had.
      auto partner = pick_partner(kinds_, family, rng_);
      // Within the first half of the first fault's hold, so that they overlap.
      delay = std::min(ms(100 + rng_() % 600), held / 2);
      held2 = ms(300 + rng_() % 1200);
      lane_seed = rng_();
      if (!partner.empty()) {
        std::tie(family, second) = overlap_order(family, partner);
        // + 300 ms: the first fault's own leader lookup before it publishes its nodes.
        worst = std::max(worst_case(family, held), 300ms + delay + worst_case(second, held2));
      }
    }
    if (Clock::now() + quiet + worst > end || interrupted()) break;
    hold(quiet);
    std::thread lane;
    if (!second.empty()) {
      {
        std::lock_guard lock(mu_);
        published_ = first_done_ = lane_done_ = false;
      }
      lane = std::thread([&, first = family] {
        second_lane(first, second, delay, held2, lane_seed);
        std::lock_guard lock(mu_);
        lane_done_ = true;
      });
    }
    bool injected = inject(family, held);
    {
      std::lock_guard lock(mu_);
      if (injected) ++counts_[family];
      first_done_ = true;  // the second lane never waits past the first fault
      published_cv_.notify_all();
    }
    if (lane.joinable()) {
      // Serve the lane's calls until it is done (each of its waits is bounded).
      while (true) {
        {
          std::lock_guard lock(mu_);
          if (lane_done_) break;
        }
        locked_->serve();
        std::this_thread::sleep_for(5ms);
      }
      lane.join();
    }
  }
  sleep_until_or_interrupted(end);
}

bool Nemesis::inject(const std::string& family, ms held) {
  if (family == "kill") kill_fault(held);
  // Every node at once, always (the kill family does that one time in three): what catches an
  // acknowledgement before fsync, since after a single kill the others still hold the entries.
  if (family == "kill-all") kill_fault(held, /*all=*/true);
  if (family == "pause") pause_fault(held);
  if (family == "partition") partition_fault(held);
  if (family == "clock") clock_fault(held);
  if (family == "disk") return disk_fault(held);
  if (family == "membership") return membership_step();
  return true;
}

void Nemesis::second_lane(const std::string& first, const std::string& family, ms delay, ms held, std::uint64_t seed) {
  std::mt19937_64 lane_rng(seed);
  t_lane_rng = &lane_rng;
  std::vector<std::uint64_t> busy;
  int first_window = 0;
  {
    std::unique_lock lock(mu_);
    // Bounded: the first fault publishes at its start, or says it is over.
    published_cv_.wait_for(lock, 5s, [&] { return published_ || first_done_; });
    if (!published_) {
      t_lane_rng = nullptr;
      return;  // the first fault was not injected (or is over): no overlap
    }
    busy = first_nodes_;
    first_window = first_window_;
  }
  hold(delay);
  if (interrupted()) {
    t_lane_rng = nullptr;
    return;
  }
  // The first fault may be over already (a clean restart ends at once, a disk fault when its
  // node stopped and restarted): then this one follows it, the rule still kept, and is not
  // counted or logged as an overlap.
  bool overlapping = false;
  {
    std::lock_guard lock(mu_);
    overlapping = !first_done_;
  }
  if (family == "partition") {
    std::optional<std::vector<std::uint64_t>> only;
    if (is_process(first)) only = overlap_isolation(target_.ids(), busy, lane_rng);
    partition_fault(held, only ? &*only : nullptr, overlapping ? first_window : 0);
  } else {
    clock_fault(held, overlapping ? first_window : 0);
  }
  {
    std::lock_guard lock(mu_);
    ++counts_[family];
    if (overlapping) ++overlaps_[first + "+" + family];
  }
  t_lane_rng = nullptr;
}

void Nemesis::kill_fault(ms held, bool all) {
  std::string shape;
  auto variant = all ? 2 : rng()() % 6;
  if (variant == 3) {
    // A clean restart: SIGTERM, then start again at once.
    auto nodes = targets(&shape, false);
    for (auto id : nodes) target_.terminate(id);
    int w = log("kill", "start", "terminate", nodes, "restart-" + shape);
    for (auto id : nodes) target_.start(id);
    log("kill", "end", "start", nodes, "", {}, w);
    add_variant("kill:restart");
    return;
  }
  auto nodes = variant == 2 || variant == 5 ? target_.ids() : targets(&shape, false);
  if (variant == 2 || variant == 5) shape = "all";
  for (auto id : nodes) target_.kill(id);
  int w = log("kill", "start", "kill", nodes, shape);
  hold(held);
  for (auto id : nodes) target_.start(id);
  if (variant == 4 || variant == 5) {
    // Again within the first second of the fresh start: recovery (WAL replay, the first
    // election, a half-written first entry) interrupted.
    auto again = ms(50 + rng()() % 850);
    log("kill", "", "start", nodes, "", {{"again_after_ms", again.count()}});
    hold(again);
    for (auto id : nodes) target_.kill(id);
    log("kill", "", "kill", nodes, shape + "-early");
    hold(ms(100 + rng()() % 400));
    for (auto id : nodes) target_.start(id);
    shape += "-early";
  }
  log("kill", "end", "start", nodes, "", {}, w);
  add_variant("kill:" + shape);
}

void Nemesis::pause_fault(ms held) {
  std::string shape;
  auto nodes = targets(&shape, true);
  for (auto id : nodes) target_.pause(id);
  int w = log("pause", "start", "pause", nodes, shape);
  hold(held);
  for (auto id : nodes) target_.resume(id);
  log("pause", "end", "resume", nodes, "", {}, w);
  add_variant("pause:" + shape);
}

void Nemesis::partition_fault(ms held, const std::vector<std::uint64_t>* only, int overlaps) {
  auto ids = target_.ids();
  std::shuffle(ids.begin(), ids.end(), rng());
  auto variant = only != nullptr ? 7 : rng()() % 7;
  std::string name;
  Cuts cuts;
  std::vector<std::uint64_t> nodes;
  auto leader_or_any = [&] {
    auto l = target_.leader(300ms);
    return l != 0 ? l : ids.front();
  };
  if (only != nullptr) {
    // Overlapping a process fault: its nodes (and others, the union a minority) cut off.
    name = "isolate-overlap";
    nodes = *only;
    cuts = isolate(ids, nodes);
  } else if (variant == 0) {
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
    bool out = rng()() % 2 == 0;
    name = out ? "one-way-from-leader" : "one-way-to-leader";
    nodes = {l};
    for (auto b : ids)
      if (b != l) cuts.insert(out ? std::pair{l, b} : std::pair{b, l});
  } else {
    name = "flapping";
    nodes = {ids.front()};
    cuts = rng()() % 2 == 0 ? isolate(ids, nodes) : bridge(ids);
    held += 1500ms;
  }
  std::string mode = target_.one_way() ? "" : " (both ways: the mechanism cannot cut one way)";
  if (!target_.cut(cuts)) {
    note("partition " + name + ": the network mechanism failed to apply it");
  }
  nlohmann::json cut_list = nlohmann::json::array();
  for (auto [a, b] : cuts) cut_list.push_back({a, b});
  nlohmann::json extra{{"cuts", cut_list}, {"mechanism", target_.network() + mode}};
  if (overlaps != 0) extra["overlaps"] = overlaps;
  int w = log("partition", "start", "partition", nodes, name, extra);
  if (name == "flapping") {
    // Cut and heal in turns of 100-300 ms for the whole hold.
    auto until = Clock::now() + held;
    bool on = true;
    for (int flips = 0; flips < 100 && Clock::now() < until && !interrupted(); ++flips) {
      hold(ms(100 + rng()() % 200));
      on = !on;
      target_.cut(on ? cuts : Cuts{});
    }
  } else {
    hold(held);
  }
  target_.cut({});
  log("partition", "end", "heal-partition", nodes, "", {}, w);
  add_variant("partition:" + name);
}

void Nemesis::clock_fault(ms held, int overlaps) {
  std::string shape;
  auto nodes = targets(&shape, true);
  bool jump = rng()() % 2 == 0;
  static const double small[] = {0.05, 0.2, 0.5, 1.0, 2.0};
  nlohmann::json offsets = nlohmann::json::object();
  bool ok = true;
  for (auto id : nodes) {
    double s = jump ? static_cast<double>(30 + rng()() % 570) : small[rng()() % 5];
    if (rng()() % 2 == 0) s = -s;
    ok = target_.set_clock_offset(id, s) && ok;
    offsets["n" + std::to_string(id)] = s;
  }
  if (!ok) note("clock: could not set an offset (libfaketime)");
  nlohmann::json extra{{"offsets_s", offsets}};
  if (overlaps != 0) extra["overlaps"] = overlaps;
  int w = log("clock", "start", jump ? "clock-jump" : "clock-skew", nodes, shape, extra);
  // libfaketime rereads the offset file at most a second later: hold past that.
  hold(held + 1000ms);
  for (auto id : nodes) target_.set_clock_offset(id, 0);
  log("clock", "end", "clock-reset", nodes, "", {}, w);
  add_variant(std::string("clock:") + (jump ? "jump-" : "skew-") + shape);
}

bool Nemesis::disk_fault(ms held) {
  auto ids = target_.ids();
  std::uint64_t id = ids[rng()() % ids.size()];
  std::string shape = "one";
  if (rng()() % 2 == 0)
    if (auto l = target_.leader(300ms); l != 0) {
      id = l;
      shape = "leader";
    }
  auto f = rng()() % 2 == 0 ? DiskFault::fsync_eio : DiskFault::write_enospc;
  std::string name = f == DiskFault::fsync_eio ? "fdatasync-eio" : "pwrite-enospc";
  if (!target_.disk_fault(id, f)) {
    note("disk " + name + " on n" + std::to_string(id) + ": fiu-ctrl failed (node not running?)");
    return false;
  }
  ++disk_faults_;
  int w = log("disk", "start", name, {id}, shape);
  // The node must stop by itself (fail-stop: ternd exits 70 on a storage error) at its next
  // write, which comes within milliseconds under a workload (and every few hundred ms without:
  // the leader's tick entries). Bounded wait.
  auto until = Clock::now() + held + 3000ms;
  std::optional<bool> up = true;
  while (Clock::now() < until && !interrupted()) {
    up = target_.running(id);
    if (up && !*up) break;
    hold(20ms);
  }
  int status = up && !*up ? target_.last_exit(id) : -1;
  // 70: a storage error while running (Replica::fatal). 1: ternd refused to start (the fault hit
  // a node still recovering, e.g. just restarted by an earlier kill: "cannot start: ... fsync").
  if (up && !*up && (status == 70 || status == 1)) {
    ++disk_stops_;
  } else if (up && *up) {
    ++disk_bad_;
    note("disk " + name + " on n" + std::to_string(id) + ": still running " +
                     std::to_string((held + 3000ms).count()) + " ms after the fault (no fail-stop)");
    target_.disk_heal(id);
    target_.kill(id);
  } else if (up) {
    ++disk_bad_;
    note("disk " + name + " on n" + std::to_string(id) + ": exited with status " + std::to_string(status) +
                     ", not 70 (a fatal storage error) or 1 (refused to start)");
  }
  log("disk", "", "stopped", {id}, "", {{"exit_status", status}});
  target_.start(id);  // a new process: no failure point enabled
  log("disk", "end", "start", {id}, "", {}, w);
  add_variant("disk:" + name);
  return true;
}

bool Nemesis::membership_step() {
  if (member_step_ == 0) {
    auto id = target_.add_learner();
    if (id == 0) {
      note("membership: no node added (no leader, no spare id, or the change was refused)");
      return false;
    }
    member_ = id;
    member_step_ = 1;
    log("membership", "", "add-learner", {id}, "");
    add_variant("membership:add");
  } else if (member_step_ == 1) {
    bool ok = target_.promote(member_);
    log("membership", "", ok ? "promote" : "promote-failed", {member_}, "");
    if (ok) member_step_ = 2;
    // A voter now (caught up): the clients may use it. Not as a learner, still catching up.
    if (ok && on_members_) on_members_(target_.endpoints());
    add_variant("membership:promote");
  } else {
    bool ok = target_.remove(member_);
    log("membership", "", ok ? "remove" : "remove-failed", {member_}, "");
    if (ok) {
      member_ = 0;
      member_step_ = 0;
      if (on_members_) on_members_(target_.endpoints());
    }
    add_variant("membership:remove");
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
  if (member_ != 0 && target_.remove(member_)) {
    log("membership", "", "remove", {member_}, "heal");
    if (on_members_) on_members_(target_.endpoints());
  }
  log("", "", "heal", started, "");
}

}  // namespace tern::jepsen
