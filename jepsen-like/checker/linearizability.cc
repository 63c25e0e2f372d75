#include "jepsen-like/checker/linearizability.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "jepsen-like/checker/model.h"

namespace tern::check {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::linearizable: return "linearizable";
    case Verdict::not_linearizable: return "not linearizable";
    case Verdict::unknown: return "unknown";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

// One call or return event in Lowe's doubly linked list.
struct Node {
  std::size_t op = 0;  // index into the key's operation list
  bool is_call = false;
  Node* match = nullptr;  // call <-> return
  Node* prev = nullptr;
  Node* next = nullptr;
};

struct Bits {
  std::vector<std::uint64_t> words;
  explicit Bits(std::size_t n) : words((n + 63) / 64) {}
  void set(std::size_t i) { words[i / 64] |= 1ull << (i % 64); }
  void clear(std::size_t i) { words[i / 64] &= ~(1ull << (i % 64)); }
};

struct CacheKey {
  std::vector<std::uint64_t> bits;
  State state;
  std::size_t hash;
  bool operator==(const CacheKey& o) const { return hash == o.hash && bits == o.bits && state == o.state; }
};
struct CacheHash {
  std::size_t operator()(const CacheKey& k) const { return k.hash; }
};

std::size_t hash_of(const Bits& b, const State& s) {
  std::size_t h = 1469598103934665603ull;
  for (auto w : b.words) h = (h ^ w) * 1099511628211ull;
  for (auto v : s) h = (h ^ static_cast<std::uint64_t>(v)) * 1099511628211ull;
  return h;
}

struct KeyResult {
  Verdict verdict = Verdict::linearizable;
  std::vector<std::size_t> longest_prefix, unplaceable;  // indexes into the key's ops
  State state;
  std::string reason;
};

struct Shared {
  std::atomic<bool> stop{false};
  Clock::time_point deadline = Clock::time_point::max();
  std::size_t max_cache_bytes = 0;
};

// Searches for a linearization of one key's operations (Lowe, "Testing for linearizability",
// 2017: just-in-time linearization over a list of call/return events, memoizing (linearized
// set, state) pairs already explored). Indeterminate operations have their return after every
// other event, and may be linearized either with or without effect.
class KeySearch {
 public:
  KeySearch(const Model& model, const std::vector<ModelOp>& ops, const std::vector<std::pair<std::size_t, std::size_t>>& times,
            Shared& shared)
      : model_(model), ops_(ops), shared_(shared), nodes_(2 * ops.size()) {
    std::vector<std::pair<std::pair<std::size_t, int>, Node*>> events;
    events.reserve(nodes_.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
      Node* call = &nodes_[2 * i];
      Node* ret = &nodes_[2 * i + 1];
      call->op = ret->op = i;
      call->is_call = true;
      call->match = ret;
      ret->match = call;
      events.push_back({{times[i].first, 1}, call});
      events.push_back({{times[i].second, 0}, ret});
    }
    std::stable_sort(events.begin(), events.end(), [](auto& a, auto& b) { return a.first < b.first; });
    head_.next = nullptr;
    Node* tail = &head_;
    for (auto& [t, n] : events) {
      tail->next = n;
      n->prev = tail;
      tail = n;
    }
    tail->next = nullptr;
  }

  KeyResult run() {
    KeyResult result;
    State state = model_.initial();
    Bits linearized(ops_.size());
    std::unordered_set<CacheKey, CacheHash> cache;
    std::size_t cache_bytes = 0;
    struct Frame {
      Node* call;
      State before;
      bool with_effect;
    };
    std::vector<Frame> stack;
    std::size_t best = 0;
    bool recorded = false;
    Node* entry = head_.next;
    std::uint64_t steps = 0;
    // Tries to linearize `call` now, with or without its effect; true if it was lifted.
    auto try_linearize = [&](Node* call, bool with_effect) {
      const ModelOp& op = ops_[call->op];
      State next = state;
      if (with_effect && !model_.step(next, op)) return false;
      linearized.set(call->op);
      CacheKey key{linearized.words, next, hash_of(linearized, next)};
      if (cache.count(key)) {
        linearized.clear(call->op);
        return false;
      }
      cache_bytes += 64 + 8 * (key.bits.size() + key.state.size());
      cache.insert(std::move(key));
      stack.push_back(Frame{call, std::move(state), with_effect});
      state = std::move(next);
      lift(call);
      return true;
    };
    while (head_.next != nullptr) {
      if ((++steps & 4095) == 0) {
        if (shared_.stop.load(std::memory_order_relaxed)) return unknown("stopped");
        if (Clock::now() > shared_.deadline) return unknown("time limit reached");
        if (cache_bytes > shared_.max_cache_bytes) return unknown("memory limit reached");
      }
      if (entry->is_call) {
        const ModelOp& op = ops_[entry->op];
        if (try_linearize(entry, true) || (op.indeterminate && try_linearize(entry, false))) {
          entry = head_.next;
        } else {
          entry = entry->next;
        }
        continue;
      }
      // A return whose call is not linearized yet: backtrack.
      if (!recorded || stack.size() > best) {
        recorded = true;
        best = stack.size();
        record_failure(result, stack, entry, state);
      }
      if (stack.empty()) {
        result.verdict = Verdict::not_linearizable;
        return result;
      }
      Frame f = std::move(stack.back());
      stack.pop_back();
      state = std::move(f.before);
      linearized.clear(f.call->op);
      unlift(f.call);
      const ModelOp& op = ops_[f.call->op];
      if (f.with_effect && op.indeterminate && try_linearize(f.call, false)) {
        entry = head_.next;
      } else {
        entry = f.call->next;
      }
    }
    return KeyResult{};
  }

 private:
  template <class Stack>
  void record_failure(KeyResult& r, const Stack& stack, Node* stuck, const State& state) {
    r.longest_prefix.clear();
    for (auto& f : stack) r.longest_prefix.push_back(f.call->op);
    r.unplaceable.clear();
    for (Node* n = head_.next; n != nullptr; n = n->next) {
      if (n->is_call) r.unplaceable.push_back(n->op);
      if (n == stuck) break;
    }
    r.state = state;
  }
  KeyResult unknown(std::string why) {
    KeyResult r;
    r.verdict = Verdict::unknown;
    r.reason = std::move(why);
    return r;
  }
  static void lift(Node* call) {
    call->prev->next = call->next;
    if (call->next) call->next->prev = call->prev;
    Node* ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next) ret->next->prev = ret->prev;
  }
  static void unlift(Node* call) {
    Node* ret = call->match;
    ret->prev->next = ret;
    if (ret->next) ret->next->prev = ret;
    call->prev->next = call;
    if (call->next) call->next->prev = call;
  }

  const Model& model_;
  const std::vector<ModelOp>& ops_;
  Shared& shared_;
  std::vector<Node> nodes_;
  Node head_;
};

}  // namespace

CheckResult check_history(const History& history, const std::string& model_name, const CheckOptions& options) {
  auto start = Clock::now();
  CheckResult result;
  result.operations = history.ops.size();
  auto model = make_model(model_name);
  if (!model) {
    result.verdict = Verdict::unknown;
    result.bad_input = true;
    result.reason = "unknown model \"" + model_name + "\"";
    return result;
  }
  // Partition by key (P-compositionality: a history is linearizable iff each key's is).
  std::map<std::string, std::vector<const Operation*>> by_key;
  for (const auto& op : history.ops) by_key[op.key].push_back(&op);
  result.keys = by_key.size();
  struct Job {
    std::string key;
    std::vector<const Operation*> ops;
    std::vector<ModelOp> model_ops;
    std::vector<std::pair<std::size_t, std::size_t>> times;
    std::vector<std::size_t> ids;  // model op -> history op id
    Interner interner;
    KeyResult outcome;
  };
  std::vector<Job> jobs;
  jobs.reserve(by_key.size());
  for (auto& [key, ops] : by_key) {
    Job job;
    job.key = key;
    for (const Operation* op : ops) {
      auto m = model->prepare(*op, job.interner);
      if (!m) {
        result.verdict = Verdict::unknown;
        result.bad_input = true;
        result.reason = "operation at line " + std::to_string(op->invoke_line) + ": " + m.error();
        return result;
      }
      if (m->skip) continue;
      job.model_ops.push_back(std::move(*m));
      job.times.push_back({op->invoke_line, op->complete_line});
      job.ids.push_back(op->id);
    }
    jobs.push_back(std::move(job));
  }
  Shared shared;
  shared.max_cache_bytes = options.max_cache_bytes;
  if (options.timeout_seconds > 0)
    shared.deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_seconds));
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      if (shared.stop.load()) return;
      Job& job = jobs[i];
      job.outcome = KeySearch(*model, job.model_ops, job.times, shared).run();
      if (job.outcome.verdict == Verdict::not_linearizable) shared.stop.store(true);  // first violation ends the check
    }
  };
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(jobs.size(), 1)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // A violation anywhere decides; otherwise any unknown key makes the whole verdict unknown.
  for (auto& job : jobs) {
    if (job.outcome.verdict != Verdict::not_linearizable) continue;
    Violation v;
    v.key = job.key;
    for (auto i : job.outcome.longest_prefix) v.longest_prefix.push_back(job.ids[i]);
    for (auto i : job.outcome.unplaceable) v.unplaceable.push_back(job.ids[i]);
    v.state = model->describe(job.outcome.state, job.interner);
    result.verdict = Verdict::not_linearizable;
    result.violation = std::move(v);
    return result;
  }
  for (auto& job : jobs) {
    if (job.outcome.verdict == Verdict::unknown) {
      result.verdict = Verdict::unknown;
      result.reason = job.outcome.reason == "stopped" ? "stopped" : "key \"" + job.key + "\": " + job.outcome.reason;
      return result;
    }
  }
  result.verdict = Verdict::linearizable;
  return result;
}

}  // namespace tern::check
