// tern-bench (issue 14): a closed-loop load generator on the C++ client library — the path users
// take — with the workload shape and the one-line output of ../shared/peers' etcd and ZooKeeper
// load generators, so tern can be measured beside them in one sitting (bench/vs-peers.sh).
//
//   tern-bench --endpoints HOST:PORT[,...] --op put|get|get-serializable|mixed|lock|watch
//              --conc N --secs S [--warmup S] [--value-bytes 100] [--keys 1000] [--conns 6]
//              [--pids PID,...] [--label TEXT] [--watchers 10000] [--rate 1000]
//
// Shape (as the peers'): `conns` connections (tern sessions; 1 when conc is 1), connection i
// pinned to endpoint i % endpoints (list the leader first); `conc` slots, slot j on connection
// j % conns, each keeping one operation outstanding. Writes go to distinct keys (put creates
// /bench/<run>/<slot>-<seq>); reads cycle over `keys` pre-written keys. Operations issued in the
// warm-up, or finished after the window, are not measured. A follower forwards writes to the
// leader; they count as they come.
//   put               create of a fresh node with a value of value-bytes
//   get               linearizable get (ReadIndex on the serving node)
//   get-serializable  serializable get (the serving node's state, possibly stale)
//   mixed             90 % linearizable get, 10 % set of a pre-written key
//   lock              acquire and release of an uncontended lock (one op = the pair)
//   watch             fan-out: `watchers` persistent data watches of one key spread over the
//                     connections (at least one session per 1,000 watches), one writer setting it `rate` times a second; one op = one
//                     event delivered to one watcher, its latency from the write's issue; errors
//                     counts events never delivered (every watcher must see every write);
//                     the line adds writes= (made, warm-up included) and rate=
// TLS: the library's TERN_TLS_* environment (scripts/cluster.sh writes it), else plaintext.
//
// Output, one line on stdout (the peers' fields, first word `tern`):
//   tern op=put conc=16 conns=6 ops=... secs=... ops_per_s=... p50_ms=... p90_ms=... p99_ms=...
//   p999_ms=... max_ms=... errors=... machine_busy_pct=... client_cores=... server_cores=... LABEL
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/common/bench_util.h"
#include "tern/client.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> endpoints;
  std::string op = "put";
  int conc = 1, conns = 6, keys = 1000, watchers = 10000, rate = 1000;
  double secs = 10, warmup = 1;
  std::size_t value_bytes = 100;
  std::vector<int> pids;
  std::string label;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tern-bench: %s\nusage: tern-bench --endpoints HOST:PORT[,...] --op "
               "put|get|get-serializable|mixed|lock|watch --conc N --secs S [--warmup S] [--value-bytes B] [--keys K] "
               "[--conns C] [--pids PID,...] [--label TEXT] [--watchers W] [--rate WRITES_PER_S]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    std::string v = argv[++i];
    if (a == "--endpoints") o.endpoints = split(v);
    else if (a == "--op") o.op = v;
    else if (a == "--conc") o.conc = std::atoi(v.c_str());
    else if (a == "--conns") o.conns = std::atoi(v.c_str());
    else if (a == "--secs") o.secs = std::atof(v.c_str());
    else if (a == "--warmup") o.warmup = std::atof(v.c_str());
    else if (a == "--value-bytes") o.value_bytes = static_cast<std::size_t>(std::atol(v.c_str()));
    else if (a == "--keys") o.keys = std::atoi(v.c_str());
    else if (a == "--watchers") o.watchers = std::atoi(v.c_str());
    else if (a == "--rate") o.rate = std::atoi(v.c_str());
    else if (a == "--label") o.label = v;
    else if (a == "--pids") for (auto& p : split(v)) o.pids.push_back(std::atoi(p.c_str()));
    else usage(("unknown flag " + a).c_str());
  }
  static const char* kOps[] = {"put", "get", "get-serializable", "mixed", "lock", "watch"};
  bool known = false;
  for (auto* k : kOps) known = known || o.op == k;
  if (!known) usage(("unknown op " + o.op).c_str());
  if (o.endpoints.empty()) usage("no endpoints");
  if (o.conc < 1 || o.secs <= 0 || o.warmup < 0 || o.keys < 1 || o.conns < 1) usage("bad numbers");
  if (o.conc == 1 && o.op != "watch") o.conns = 1;
  return o;
}

// ---- CPU accounting, as the peers' generators do it ----
void machine_ticks(unsigned long long& busy, unsigned long long& total) {
  busy = total = 0;
  std::ifstream f("/proc/stat");
  std::string cpu;
  f >> cpu;
  for (int i = 0; i < 10; ++i) {
    unsigned long long v = 0;
    if (!(f >> v)) break;
    total += v;
    if (i != 3 && i != 4) busy += v;  // idle and iowait
  }
}
double pids_cpu(const std::vector<int>& pids) {
  double s = 0;
  for (int p : pids) {
    std::ifstream f("/proc/" + std::to_string(p) + "/stat");
    std::string line((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    unsigned long long u = 0, k = 0;
    if (std::sscanf(line.c_str() + close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &u, &k) == 2)
      s += static_cast<double>(u + k) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return s;
}
double self_cpu() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

std::unique_ptr<tern::Client> connect(const std::string& endpoint) {
  tern::ClientOptions co;
  co.endpoints = {endpoint};  // pinned: a connection measures the node it names
  co.request_timeout = std::chrono::milliseconds(30000);
  std::string err;
  auto c = tern::Client::connect(co, &err);
  if (!c) {
    std::fprintf(stderr, "tern-bench: cannot connect to %s: %s\n", endpoint.c_str(), err.c_str());
    std::exit(1);
  }
  return c;
}

std::string value_of(std::size_t bytes, std::uint64_t n) {
  std::string v(bytes, 'v');
  std::string tag = std::to_string(n);
  v.replace(0, std::min(tag.size(), bytes), tag.substr(0, bytes));
  return v;
}

std::string read_key(int k) {
  char b[32];
  std::snprintf(b, sizeof b, "/bench/r/%06d", k);
  return b;
}

// What a measurement window collected.
struct Window {
  Clock::time_point start, end;
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::atomic<std::uint64_t> errors{0};
  std::string first_error;

  bool measured(Clock::time_point issued, Clock::time_point done) const { return issued >= start && done <= end; }
  void add(std::vector<double>& mine) {
    std::lock_guard<std::mutex> g(mu);
    latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
  }
  void error(const tern::Reply& r) {
    if (errors++ == 0) {
      std::lock_guard<std::mutex> g(mu);
      first_error = std::string(tern::error_name(r.error)) + ": " + r.message;
    }
  }
};

// The writes and reads that must exist before the window.
void prepare(tern::Client& c, const Options& o, const std::string& run) {
  for (const std::string& p : {std::string("/bench"), std::string("/bench/r"), "/bench/" + run}) {
    auto r = c.create(p, "");
    if (!r.ok() && r.error != tern::Error::node_exists) {
      std::fprintf(stderr, "tern-bench: create %s: %s %s\n", p.c_str(), tern::error_name(r.error), r.message.c_str());
      std::exit(1);
    }
  }
  if (o.op != "get" && o.op != "get-serializable" && o.op != "mixed") return;
  std::deque<std::future<tern::Reply>> q;
  for (int k = 0; k < o.keys; ++k) {
    q.push_back(c.async().create(read_key(k), value_of(o.value_bytes, static_cast<std::uint64_t>(k))));
    if (q.size() >= 128) {
      auto r = q.front().get();
      if (!r.ok() && r.error != tern::Error::node_exists) std::exit((std::fprintf(stderr, "tern-bench: prefill: %s\n", tern::error_name(r.error)), 1));
      q.pop_front();
    }
  }
  for (auto& f : q) (void)f.get();
}

// One connection's closed loop: `slots` operations outstanding, oldest collected first (a
// session's writes are answered in order; a read answered early waits for the older ones).
void drive(tern::Client& c, const Options& o, int conn, int slots, const std::string& run, Window& w) {
  struct InFlight {
    std::future<tern::Reply> reply;
    std::future<tern::Reply> release;  // lock: the unlock issued right behind the lock
    Clock::time_point issued;
  };
  std::deque<InFlight> q;
  std::vector<double> lat;
  lat.reserve(1 << 16);
  std::uint64_t seq = 0;
  std::string prefix = "/bench/" + run + "/" + std::to_string(conn) + "-";
  auto issue = [&]() {
    ++seq;
    auto& a = c.async();
    int k = static_cast<int>((static_cast<std::uint64_t>(conn) * 7919u + seq) % static_cast<std::uint64_t>(o.keys));
    InFlight f;
    f.issued = Clock::now();
    if (o.op == "put") f.reply = a.create(prefix + std::to_string(seq), value_of(o.value_bytes, seq));
    else if (o.op == "get") f.reply = a.get(read_key(k));
    else if (o.op == "get-serializable") f.reply = a.get(read_key(k), {tern::Consistency::serializable, 0});
    else if (o.op == "mixed") f.reply = seq % 10 == 0 ? a.set(read_key(k), value_of(o.value_bytes, seq)) : a.get(read_key(k));
    else {  // lock: one name per slot, so uncontended
      std::string name = "bench-" + run + "-" + std::to_string(conn) + "-" + std::to_string(seq % static_cast<std::uint64_t>(slots));
      f.reply = a.lock(name);
      f.release = a.unlock(name);
    }
    q.push_back(std::move(f));
  };
  for (;;) {
    while (static_cast<int>(q.size()) < slots && Clock::now() < w.end) issue();
    if (q.empty()) break;
    tern::Reply r = q.front().reply.get();
    if (r.ok() && q.front().release.valid()) r = q.front().release.get();
    auto done = Clock::now();
    if (!r.ok()) w.error(r);
    else if (w.measured(q.front().issued, done))
      lat.push_back(std::chrono::duration<double, std::milli>(done - q.front().issued).count());
    q.pop_front();
  }
  w.add(lat);
}

void run_closed_loop(const Options& o, const std::string& run, std::vector<std::unique_ptr<tern::Client>>& clients,
                     Window& w) {
  std::vector<std::thread> threads;
  for (int i = 0; i < o.conns; ++i) {
    int slots = o.conc / o.conns + (i < o.conc % o.conns ? 1 : 0);
    if (slots == 0) continue;
    threads.emplace_back([&, i, slots] { drive(*clients[static_cast<std::size_t>(i)], o, i, slots, run, w); });
  }
  for (auto& t : threads) t.join();
}

// Watch fan-out: every watcher must get every write, once. The watches are registered before the
// measurement window opens (10,000 registrations take seconds); run() writes at `rate` until the
// window closes and waits (bounded) for every delivery.
class WatchFanOut {
 public:
  WatchFanOut(const Options& o, const std::string& run, std::vector<std::unique_ptr<tern::Client>>& clients,
              tern::Client& writer)
      : o_(o), clients_(clients), writer_(writer), key_("/bench/" + run + "/watched") {
    if (auto r = writer.create(key_, "0"); !r.ok()) std::exit((std::fprintf(stderr, "tern-bench: create %s failed\n", key_.c_str()), 1));
    // A session holds at most 1,000 watches (the server's watches_per_watcher): the watchers are
    // spread over as many more sessions as that needs, round-robin over the endpoints.
    constexpr int kWatchesPerSession = 1000;
    int sessions = std::max(o.conns, (o.watchers + kWatchesPerSession - 1) / kWatchesPerSession);
    for (int i = 0; i < sessions; ++i) {
      tallies_.push_back(std::make_unique<Tally>());
      // Room for a run per clock read of the window: no copying of a growing vector while measuring.
      tallies_.back()->runs.reserve(static_cast<std::size_t>(o.secs * o.rate * (o.watchers / sessions / 16 + 2)));
    }
    for (int i = static_cast<int>(clients.size()); i < sessions; ++i)
      clients.push_back(connect(o.endpoints[static_cast<std::size_t>(i) % o.endpoints.size()]));
    for (int i = 0; i < o.watchers; ++i) {
      auto& c = *clients[static_cast<std::size_t>(i % sessions)];
      auto& tally = *tallies_[static_cast<std::size_t>(i % sessions)];
      auto r = c.watch(key_, tern::WatchKind::data, [this, &tally](const tern::WatchEvent& e) { on_event(tally, e); },
                       /*persistent=*/true);
      if (!r.ok()) {
        std::fprintf(stderr, "tern-bench: watch %d of %d: %s %s\n", i + 1, o.watchers, tern::error_name(r.error), r.message.c_str());
        std::exit(1);
      }
    }
  }

  // Returns the writes made (each must reach every watcher).
  std::uint64_t run(Window& w) {
    window_.store(&w);
    std::uint64_t writes = 0;
    auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o_.rate));
    auto next = Clock::now();
    std::deque<std::future<tern::Reply>> q;
    while (Clock::now() < w.end) {
      std::this_thread::sleep_until(next);
      next += period;
      auto stamp = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0_).count();
      q.push_back(writer_.async().set(key_, std::to_string(stamp)));
      ++writes;
      while (!q.empty() && q.front().wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
        if (auto r = q.front().get(); !r.ok()) w.error(r);
        q.pop_front();
      }
    }
    for (auto& f : q)
      if (auto r = f.get(); !r.ok()) w.error(r);
    // Every event must arrive: wait (bounded) for the stragglers.
    auto expected = writes * static_cast<std::uint64_t>(o_.watchers);
    auto deadline = Clock::now() + std::chrono::seconds(15);
    while (delivered() < expected && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (auto got = delivered(); got < expected) w.errors += expected - got;
    // The watches go before the tallies they write to.
    for (auto& c : clients_) c.reset();
    for (auto& t : tallies_) {
      std::vector<double> lat_ms;
      for (auto [ms, n] : t->runs) lat_ms.insert(lat_ms.end(), n, ms);
      w.add(lat_ms);
    }
    return writes;
  }

 private:
  // A session's callbacks run on its library thread, one at a time: each session counts in its
  // own tally (no lock, no shared counter between the threads).
  struct alignas(64) Tally {
    std::atomic<std::uint64_t> delivered{0};
    std::vector<std::pair<double, std::uint32_t>> runs;  // latency (ms), deliveries that measured it
    std::uint64_t index = 0;  // the last event's index and issue time (one write: many deliveries)
    Clock::time_point issued, now;
    std::uint64_t of_event = 0;  // deliveries of that event so far
  };

  // The writer stamps each value with its issue time (this process's steady clock). The clock is
  // read at every 16th delivery of an event on a session and reused in between: one event's
  // deliveries run back to back on the session's thread, so a latency is short by at most 15
  // callbacks (microseconds), and the benchmark's clock reads (a fifth of the process's CPU when
  // read at every delivery on a kvm clock) do not crowd out the deliveries. The deliveries that
  // share a clock read are kept as one run (value, count): storing 80 million latencies while
  // measuring cost half of the callback's time.
  void on_event(Tally& t, const tern::WatchEvent& e) {
    const Window* w = window_.load(std::memory_order_acquire);
    if (e.type != tern::WatchEvent::Type::data_changed || w == nullptr) return;
    if (e.index != t.index) {
      t.index = e.index;
      t.issued = t0_ + std::chrono::nanoseconds(std::atoll(e.data.c_str()));
      t.of_event = 0;
    }
    bool fresh = t.of_event++ % 16 == 0;
    if (fresh) t.now = Clock::now();
    t.delivered.fetch_add(1, std::memory_order_relaxed);
    if (!w->measured(t.issued, t.now)) return;
    if (fresh || t.runs.empty()) t.runs.emplace_back(std::chrono::duration<double, std::milli>(t.now - t.issued).count(), 0);
    ++t.runs.back().second;
  }

  std::uint64_t delivered() const {
    std::uint64_t n = 0;
    for (const auto& t : tallies_) n += t->delivered.load();
    return n;
  }

  const Options& o_;
  std::vector<std::unique_ptr<tern::Client>>& clients_;
  tern::Client& writer_;
  const std::string key_;
  const Clock::time_point t0_ = Clock::now();
  std::atomic<const Window*> window_{nullptr};
  std::vector<std::unique_ptr<Tally>> tallies_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::string run = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count());
  std::vector<std::unique_ptr<tern::Client>> clients;
  for (int i = 0; i < o.conns; ++i) clients.push_back(connect(o.endpoints[static_cast<std::size_t>(i) % o.endpoints.size()]));
  prepare(*clients[0], o, run);
  std::unique_ptr<tern::Client> writer;
  std::optional<WatchFanOut> fan_out;  // its watches registered before the window opens
  if (o.op == "watch") {
    writer = connect(o.endpoints[0]);
    fan_out.emplace(o, run, clients, *writer);
  }
  Window w;
  auto now = Clock::now();
  w.start = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup));
  w.end = w.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.secs));
  // Samples taken at the window's edges, from a thread of their own.
  unsigned long long b0 = 0, t0 = 0, b1 = 0, t1 = 0;
  double c0 = 0, c1 = 0, s0 = 0, s1 = 0;
  std::thread sampler([&] {
    std::this_thread::sleep_until(w.start);
    machine_ticks(b0, t0);
    c0 = self_cpu();
    s0 = pids_cpu(o.pids);
    std::this_thread::sleep_until(w.end);
    machine_ticks(b1, t1);
    c1 = self_cpu();
    s1 = pids_cpu(o.pids);
  });
  std::string extra;
  if (fan_out) {
    extra = " writes=" + std::to_string(fan_out->run(w)) + " rate=" + std::to_string(o.rate);
  } else {
    run_closed_loop(o, run, clients, w);
  }
  sampler.join();
  auto& lat = w.latencies_ms;
  auto p = [&](double q) { return tern::bench::percentile(lat, q); };
  double max = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  std::printf("tern op=%s conc=%d conns=%d ops=%zu secs=%.1f ops_per_s=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f "
              "p999_ms=%.2f max_ms=%.2f errors=%llu machine_busy_pct=%.0f client_cores=%.2f server_cores=%.2f%s%s%s\n",
              o.op.c_str(), o.op == "watch" ? o.watchers : o.conc, o.conns, lat.size(), o.secs,
              static_cast<double>(lat.size()) / o.secs, p(0.5), p(0.9), p(0.99), p(0.999), max,
              static_cast<unsigned long long>(w.errors.load()), t1 > t0 ? 100.0 * static_cast<double>(b1 - b0) / static_cast<double>(t1 - t0) : 0,
              (c1 - c0) / o.secs, (s1 - s0) / o.secs, extra.c_str(), o.label.empty() ? "" : " ", o.label.c_str());
  if (!w.first_error.empty()) std::fprintf(stderr, "tern-bench: first error: %s\n", w.first_error.c_str());
  std::fflush(stdout);
  return 0;
}
