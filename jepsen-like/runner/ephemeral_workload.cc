// Workload "ephemeral": sessions create ephemeral nodes and end, while observers read the
// directory. Each client thread runs a series of *lives*, each a new session (its own Client):
//  - a kept life (keep-alive on, timeout kKeptTimeout) creates 1-3 ephemerals, lives 1-3 s and
//    closes its session; a kept life still open when the run ends stays open through the final
//    read;
//  - a silent life (keep-alive off, timeout kSilentTimeout) creates 1-3 ephemerals and then
//    sends nothing more, as if its process had died: its session must expire.
// Each thread also has an observer session that reads the directory (one page of children).
// Only writes renew a session (reads are served without the log).
//
// Checks (docs/jepsen.md), with cluster time running no faster than this machine's monotonic
// clock (a leader advances it by its own; an outage between leaders is not charged):
//  - ephemeral-present: no read misses an ephemeral acknowledged before the read began while
//    its session must be alive: for a kept life until its close began; for a silent life until
//    its last acknowledged create began + the timeout (its deadline is at least that, in cluster
//    time) — so nothing expires during a short leader change;
//  - ephemeral-absent: no read that began more than kSlack after a session's end — close
//    returned + timeout, or a silent life's last create returned + timeout — and the time
//    faults (other than clock faults) were active since, plus kSlack each — holds its
//    ephemerals; no read holds an ephemeral whose create failed, began after the read ended, or
//    was never attempted; the final read (after the heal, once the silent sessions' bounds have
//    passed) holds exactly the open lives' acknowledged ephemerals (unknown ones may be there),
//    each owned by its own session;
//  - sessions: the library never reported a kept life's session expired.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "jepsen-like/runner/workload.h"

namespace tern::jepsen {
namespace {

using namespace std::chrono_literals;

const std::string kDir = "/jepsen/e";
constexpr auto kKeptTimeout = 5000ms;
constexpr auto kSilentTimeout = 1000ms;
// How late after its bound a dead session may still be seen: expiry waits for the next entry
// (a tick entry every few hundred ms); after a fault, also for an election (excuse_outages).
constexpr auto kSlack = 4000ms;
constexpr auto kTolerance = 50ms;  // a leader's monotonic clock against this process's
constexpr std::int64_t kFinalProcess = 1000000;

enum class Outcome : std::uint8_t { ok, fail, unknown };
struct Ephemeral {
  std::string name;
  Clock::time_point invoked, completed;
  Outcome outcome = Outcome::unknown;
};
struct Life {
  std::string id;  // "<thread>-<life>"
  bool kept = true;
  std::uint64_t session = 0;
  std::vector<Ephemeral> ephemerals;
  std::size_t target = 1;              // ephemerals to create
  Clock::time_point ends;              // a kept life closes then
  Clock::time_point alive_until = Clock::time_point::max();  // present in reads completed before
  Clock::time_point dead_after = Clock::time_point::max();   // absent from reads begun after
  bool open_at_end = false;
  bool silent_since_set = false;  // a silent life's bounds are set (after its last create)
  std::shared_ptr<std::atomic<bool>> expired = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<Client> client;
};
struct Observation {
  Clock::time_point invoked, completed;
  std::set<std::string> names;
};

class EphemeralWorkload final : public Workload {
 public:
  bool setup(const RunContext& ctx, std::string* error) override {
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    if (!c) return *error = "setup: no client session", false;
    for (const std::string& p : {std::string("/jepsen"), kDir}) {
      auto r = c->create(p, "");
      if (!r.ok() && r.error != Error::node_exists) return *error = "setup: create " + p + ": " + r.message, false;
    }
    return true;
  }

  void client(int index, const RunContext& ctx) override {
    std::mt19937_64 rng(ctx.seed * 1000003 + static_cast<std::uint64_t>(index));
    std::int64_t process = index;
    const auto options = options_for(ctx, index);
    auto observer = connect_until(options, ctx.end);
    std::vector<std::unique_ptr<Life>> lives;
    std::vector<Observation> reads;
    Life* life = nullptr;
    int number = 0;
    while (observer && Clock::now() < ctx.end && !interrupted()) {
      pace(rng, ctx);
      if (life == nullptr) {
        lives.push_back(start_life(index, number++, options, rng, ctx));
        life = lives.back().get();
        if (!life->client) {
          life = nullptr;  // no session: nothing to check
          continue;
        }
      }
      if (life->ephemerals.size() < life->target && rng() % 2 == 0) {
        create(*life, &process, ctx);
        continue;
      }
      if (life->ephemerals.size() >= life->target && !life->kept) {
        // The session has been silent since its last create, as if its process had died; the
        // thread observes until the life's end, then parks the Client (open: no close).
        if (!life->silent_since_set) {
          set_silent_bounds(*life);
          ctx.history->add(process, "invoke", "crash", life->id, "null");
          ctx.history->add(process, "ok", "crash", life->id, "null");
        }
        if (Clock::now() >= life->ends) {
          life = nullptr;
          continue;
        }
      } else if (life->ephemerals.size() >= life->target && Clock::now() >= life->ends) {
        ctx.history->add(process, "invoke", "close", life->id, "null");
        life->alive_until = Clock::now();
        life->client.reset();  // closes the session (at most 2 s)
        life->dead_after = Clock::now() + kKeptTimeout + kSlack;
        ctx.history->add(process, "ok", "close", life->id, "null");
        life = nullptr;
        continue;
      }
      Observation o;
      ctx.history->add(process, "invoke", "read", "ephemerals", "null");
      o.invoked = Clock::now();
      bool ok = read_names(*observer, &o.names);
      o.completed = Clock::now();
      ctx.history->add(process, ok ? "ok" : "fail", "read", "ephemerals",
                       ok ? nlohmann::json(o.names).dump() : "null");
      if (ok) reads.push_back(std::move(o));
    }
    if (life != nullptr) {
      if (life->kept) life->open_at_end = true;  // stays open through the final read
      else if (!life->silent_since_set) set_silent_bounds(*life);
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& l : lives) lives_.push_back(std::move(l));
    for (auto& r : reads) reads_.push_back(std::move(r));
  }

  void final_reads(const RunContext& ctx) override {
    for (auto& l : lives_) excuse_outages(*l, ctx.faults);
    // Wait (bounded) until every ended session is past its bound, so the final read checks them.
    auto latest = Clock::now();
    for (const auto& l : lives_)
      if (l->dead_after != Clock::time_point::max()) latest = std::max(latest, l->dead_after);
    sleep_until_or_interrupted(std::min(latest + 100ms, Clock::now() + 5s));
    auto c = connect_until(ctx.client, Clock::now() + 20s);
    if (!c) return;
    for (int attempt = 0; attempt < 3 && !final_ok_; ++attempt) {
      Observation o;
      ctx.history->add(kFinalProcess + attempt, "invoke", "read", "ephemerals", "null");
      o.invoked = Clock::now();
      final_ok_ = read_names(*c, &o.names);
      o.completed = Clock::now();
      ctx.history->add(kFinalProcess + attempt, final_ok_ ? "ok" : "fail", "read", "ephemerals",
                       final_ok_ ? nlohmann::json(o.names).dump() : "null");
      if (final_ok_) final_ = std::move(o);
    }
    // Each ephemeral left belongs to its own session.
    std::map<std::string, const Life*> owner;
    for (const auto& l : lives_)
      for (const auto& e : l->ephemerals) owner[e.name] = l.get();
    for (const auto& name : final_.names) {
      auto it = owner.find(name);
      if (it == owner.end()) continue;  // reported by the check
      auto r = c->get(kDir + "/" + name);
      if (r.ok() && r.stat.ephemeral_owner != it->second->session) {
        ++wrong_owner_;
        if (first_absent_.empty())
          first_absent_ = name + " is owned by session " + std::to_string(r.stat.ephemeral_owner) + ", not " +
                          std::to_string(it->second->session);
      }
    }
    c.reset();
    // The open lives close now; the parked (silent) ones find their sessions gone.
    for (auto& l : lives_) l->client.reset();
  }

  std::vector<Check> check(const RunContext&) override {
    std::map<std::string, std::pair<const Life*, const Ephemeral*>> by_name;
    for (const auto& l : lives_)
      for (const auto& e : l->ephemerals) by_name[e.name] = {l.get(), &e};
    std::size_t missing = 0, outlived = 0, phantom = 0, checked_present = 0, checked_absent = 0;
    auto examine = [&](const Observation& r, bool final) {
      for (const auto& name : r.names) {
        auto it = by_name.find(name);
        if (it == by_name.end()) {
          ++phantom;
          note(&first_absent_, name + " was never created");
          continue;
        }
        const auto& [l, e] = it->second;
        if (e->outcome == Outcome::fail || e->invoked > r.completed) {
          ++phantom;
          note(&first_absent_, name + (e->outcome == Outcome::fail ? " whose create failed" : " read before its create began"));
        }
      }
      for (const auto& [name, le] : by_name) {
        const auto& [l, e] = le;
        bool present = r.names.count(name) != 0;
        if (!present && e->outcome == Outcome::ok && e->completed < r.invoked && r.completed < l->alive_until) {
          ++missing;
          note(&first_present_, name + " (session of life " + l->id + ") missing from a " + (final ? "final " : "") +
                                    "read while its session was alive");
        } else if (e->outcome == Outcome::ok && e->completed < r.invoked && r.completed < l->alive_until) {
          ++checked_present;
        }
        if (r.invoked > l->dead_after) {
          ++checked_absent;
          if (present) {
            ++outlived;
            note(&first_absent_, name + " (life " + l->id + ") still there " +
                                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(r.invoked - l->dead_after).count()) +
                                     " ms past its session's bound");
          }
        }
      }
    };
    for (const auto& r : reads_) examine(r, false);
    if (final_ok_) examine(final_, true);
    std::size_t expired = 0, kept = 0, silent = 0;
    for (const auto& l : lives_) {
      (l->kept ? kept : silent) += l->session != 0;
      if (l->kept && l->expired->load()) {
        ++expired;
        note(&first_session_, "the session of kept life " + l->id + " expired");
      }
    }
    std::vector<Check> out;
    out.push_back({"ephemeral-present", missing == 0 ? "valid" : "invalid",
                   std::to_string(reads_.size()) + " reads; " + std::to_string(checked_present) + " times required present, " +
                       std::to_string(missing) + " missing" + (first_present_.empty() ? "" : "; first: " + first_present_)});
    bool absent_ok = outlived == 0 && phantom == 0 && wrong_owner_ == 0;
    out.push_back({"ephemeral-absent", !final_ok_ ? "unknown" : absent_ok ? "valid" : "invalid",
                   std::to_string(checked_absent) + " times required absent, " + std::to_string(outlived) +
                       " outlived their session, " + std::to_string(phantom) + " never (successfully) created, " +
                       std::to_string(wrong_owner_) + " owned by another session" + (final_ok_ ? "" : "; the final read failed") +
                       (first_absent_.empty() ? "" : "; first: " + first_absent_)});
    out.push_back({"sessions", expired == 0 ? "valid" : "invalid",
                   std::to_string(kept) + " kept sessions, " + std::to_string(expired) + " expired; " +
                       std::to_string(silent) + " silent sessions" + (first_session_.empty() ? "" : "; " + first_session_)});
    return out;
  }

  nlohmann::json stats() const override {
    std::size_t created = 0, unknown = 0, kept = 0, silent = 0;
    for (const auto& l : lives_) {
      (l->kept ? kept : silent) += 1;
      for (const auto& e : l->ephemerals) {
        created += e.outcome == Outcome::ok;
        unknown += e.outcome == Outcome::unknown;
      }
    }
    return {{"kept_lives", kept}, {"silent_lives", silent}, {"ephemerals_acknowledged", created},
            {"ephemerals_unknown", unknown}, {"reads", reads_.size()}, {"final_size", final_.names.size()}};
  }

 private:
  static void note(std::string* first, const std::string& what) {
    if (first->empty()) *first = what;
  }

  // One page of the directory's children; false if the read failed or needed more pages.
  static bool read_names(Client& c, std::set<std::string>* out) {
    auto r = c.children(kDir);
    if (!r.ok() || !r.path.empty()) return false;
    out->insert(r.names.begin(), r.names.end());
    return true;
  }

  std::unique_ptr<Life> start_life(int thread, int number, const ClientOptions& base, std::mt19937_64& rng,
                                   const RunContext& ctx) {
    auto l = std::make_unique<Life>();
    l->id = std::to_string(thread) + "-" + std::to_string(number);
    l->kept = rng() % 2 == 0;
    l->target = 1 + rng() % 3;
    ClientOptions o = base;
    o.keep_alive = l->kept;
    o.session_timeout = l->kept ? kKeptTimeout : kSilentTimeout;
    o.on_state = [flag = l->expired](ConnectionState s) {
      if (s == ConnectionState::session_expired) flag->store(true);
    };
    l->client = connect_until(o, ctx.end);
    if (l->client) l->session = l->client->session_id();
    l->ends = Clock::now() + std::chrono::milliseconds(1000 + rng() % 2000);
    return l;
  }

  // An outage is not charged to sessions (docs/data-model.md, "Time"): between two leaders cluster
  // time stands still. So a dead session's bound moves by the time faults were active after its
  // end, plus kSlack for each (the election after it): the first time T with T = end + timeout +
  // kSlack + excused(end, T), found by iteration (T only grows; the faults are finite). Clock
  // faults are not excused: a leader's wall clock does not move cluster time.
  static void excuse_outages(Life& l, const std::vector<FaultSpan>& faults) {
    if (l.dead_after == Clock::time_point::max()) return;
    auto base = l.dead_after;
    auto from = base - (l.kept ? kKeptTimeout : kSilentTimeout) - kSlack;
    for (auto bound = base;;) {
      Clock::duration excused{};
      for (const auto& f : faults)
        if (f.family != "clock" && f.end >= from && f.start <= bound)
          excused += std::min(f.end, bound) - std::max(f.start, from) + kSlack;
      if (base + excused <= bound) break;
      bound = base + excused;
      l.dead_after = bound;
    }
  }

  // A silent life's session is renewed last by its last create: it is alive at least until
  // that create began + the timeout, and gone (kSlack aside) after it returned + the timeout.
  static void set_silent_bounds(Life& l) {
    l.silent_since_set = true;
    l.alive_until = Clock::time_point::min();
    auto last_completed = Clock::time_point::min();
    for (const auto& e : l.ephemerals) {
      if (e.outcome == Outcome::ok) l.alive_until = std::max(l.alive_until, e.invoked + kSilentTimeout - kTolerance);
      last_completed = std::max(last_completed, e.completed);
    }
    l.dead_after = last_completed + kSilentTimeout + kSlack;
  }

  void create(Life& l, std::int64_t* process, const RunContext& ctx) {
    Ephemeral e;
    e.name = l.id + "-" + std::to_string(l.ephemerals.size());
    ctx.history->add(*process, "invoke", "create", e.name, "null");
    e.invoked = Clock::now();
    CreateOptions o;
    o.ephemeral = true;
    auto r = l.client->create(kDir + "/" + e.name, "", o);
    e.completed = Clock::now();
    e.outcome = r.ok() ? Outcome::ok : definite_failure(r.error) ? Outcome::fail : Outcome::unknown;
    ctx.history->add(*process, e.outcome == Outcome::ok ? "ok" : e.outcome == Outcome::fail ? "fail" : "info", "create",
                     e.name, "null");
    if (e.outcome == Outcome::unknown) *process += ctx.clients;
    l.ephemerals.push_back(e);
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<Life>> lives_;
  std::vector<Observation> reads_;
  Observation final_;
  bool final_ok_ = false;
  std::size_t wrong_owner_ = 0;
  std::string first_present_, first_absent_, first_session_;
};

}  // namespace

std::unique_ptr<Workload> make_ephemeral_workload() { return std::make_unique<EphemeralWorkload>(); }

}  // namespace tern::jepsen
