// sm_fuzz: a seeded random fuzz driver for StateMachine::apply (issue 16). It feeds arbitrary
// bytes as commands — pure noise, and well-formed commands with random or extreme fields, then
// mutated (bit flips, truncation, splices) — at increasing indexes with a wandering cluster
// clock, and checks after every command:
//   - no crash, no always-on assertion, no sanitizer report (run it in the ASan+UBSan build);
//   - the rule for rejected requests (docs/data-model.md, Errors): compared with a twin that
//     applied a bare tick at the same index and time instead, a rejected command leaves
//     data_digest() unchanged, and digest() too unless it was a request of a live session
//     presented with that session's secret (which renews it and keeps its answer);
//   - exactly once (docs/data-model.md, Sessions): an owner's request whose sequence number is a
//     retry or too far ahead leaves digest() unchanged, accepted or not; a retry gets the answer
//     the first request got while it is among the session's 64 highest, else (below all of them,
//     once 64 are kept) stale_request; any other number, even below the highest, is new (the
//     driver keeps its own record of each session's answers to check that);
//   - every few commands a snapshot restores to an equal digest.
// Usage: sm_fuzz [--seed N] [--commands N] [--seconds S]   (prints the seed; replays from it)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "service/sm/command.h"
#include "service/sm/state_machine.h"

namespace {

using namespace tern::sm;

struct Fuzzer {
  std::mt19937_64 rng;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> sessions;  // (id, secret) opened so far
  std::vector<std::uint64_t> leases;
  std::uint64_t next_seq = 1;
  // Per session: its highest sequence number and the answers kept for retries, as the rule says
  // they must be (the highest responses_per_session sequence numbers).
  struct Seqs {
    std::uint64_t last = 0;
    std::map<std::uint64_t, Response> answers;
  };
  std::map<std::uint64_t, Seqs> seqs;

  explicit Fuzzer(std::uint64_t seed) : rng(seed) {}
  std::uint64_t pick(std::uint64_t n) { return n == 0 ? 0 : rng() % n; }
  bool one_in(std::uint64_t n) { return pick(n) == 0; }

  std::int64_t extreme_i64() {
    static const std::int64_t v[] = {0, 1, -1, -2, 100, 999, 1000, 60'000, 60'001, 86'400'000, 86'400'001,
                                     30ll * 24 * 3600 * 1000, 30ll * 24 * 3600 * 1000 + 1,
                                     std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(),
                                     std::numeric_limits<std::int64_t>::max() - 1};
    return one_in(4) ? static_cast<std::int64_t>(rng()) : v[pick(std::size(v))];
  }
  std::uint64_t extreme_u64() {
    static const std::uint64_t v[] = {0, 1, 2, 1ull << 32, (1ull << 32) + 1, std::numeric_limits<std::uint64_t>::max(),
                                      std::numeric_limits<std::uint64_t>::max() - 1};
    return one_in(4) ? rng() : v[pick(std::size(v))];
  }
  std::string path() {
    static const char* p[] = {"/", "/a", "/a/b", "/a/b/c", "/c", "/c/x", "/c/y", "/t", "/t/k", "/e", "/q/j-",
                              "/q", "", "a", "/a/", "//", "/a/../b", "/./x"};
    if (one_in(30)) return "/" + std::string(pick(5000), 'x');
    if (one_in(40)) return std::string("/n\0l", 4);
    return p[pick(std::size(p))];
  }
  std::string data() {
    if (one_in(200)) return std::string((1u << 20) + pick(2), 'v');  // around the value limit
    return std::string(pick(12), static_cast<char>('a' + pick(26)));
  }
  std::uint64_t some_id() {
    if (!sessions.empty() && one_in(3)) return sessions[pick(sessions.size())].first;
    if (!leases.empty() && one_in(2)) return leases[pick(leases.size())];
    return one_in(2) ? 0 : extreme_u64();
  }

  Op op(int depth) {
    Op o;
    int t = static_cast<int>(pick(depth == 0 ? 18 : 6));
    o.type = static_cast<OpType>(depth == 0 ? (t == 0 ? 1 : t) : std::vector<int>{1, 2, 3, 4, 1, 2}[t]);
    // Ending sessions and leases as often as they start would leave few alive.
    if ((o.type == OpType::close_session || o.type == OpType::revoke_lease) && !one_in(4)) o.type = OpType::create;
    if (depth == 0 && one_in(6)) o.type = OpType::multi;  // transactions are where validation and apply must agree
    o.path = path();
    o.data = data();
    if (one_in(3)) {  // anything
      o.version = one_in(2) ? -1 : (one_in(2) ? static_cast<std::int64_t>(pick(3)) : extreme_i64());
      o.flags = one_in(3) ? static_cast<std::uint32_t>(rng()) : static_cast<std::uint32_t>(pick(16));
      o.ttl_ms = one_in(2) ? 0 : (one_in(2) ? static_cast<std::int64_t>(pick(5000)) : extreme_i64());
      o.id = some_id();
      o.recursive = one_in(4);
    } else {  // plausible: most of these are accepted, so the state grows and changes
      static const char* ok_paths[] = {"/a", "/a/b", "/a/b/c", "/c", "/c/x", "/c/y", "/t", "/t/k", "/e", "/q/j-", "/q"};
      o.path = ok_paths[pick(std::size(ok_paths))];
      o.version = one_in(4) ? static_cast<std::int64_t>(pick(3)) : -1;
      static const std::uint32_t create_flags[] = {0, 0, 0, flag_ephemeral, flag_sequential, flag_container, flag_ttl,
                                                   flag_ephemeral | flag_sequential, flag_container | flag_sequential};
      if (o.type == OpType::create) o.flags = create_flags[pick(std::size(create_flags))];
      else if (o.type == OpType::lock) o.flags = static_cast<std::uint32_t>(pick(4));
      else if (o.type == OpType::check) o.flags = static_cast<std::uint32_t>(pick(8));
      if ((o.type == OpType::create && (o.flags & flag_ttl)) || o.type == OpType::lock) o.ttl_ms = static_cast<std::int64_t>(pick(3000)) + 1;
      if (o.type == OpType::open_session || o.type == OpType::grant_lease) o.ttl_ms = static_cast<std::int64_t>(pick(8000)) + 100;
      if (o.type == OpType::create && !leases.empty() && one_in(3)) o.id = leases[pick(leases.size())];
      if (o.type == OpType::keep_alive_lease || o.type == OpType::revoke_lease) o.id = leases.empty() ? 0 : leases[pick(leases.size())];
      o.recursive = o.type == OpType::remove && depth == 0 && one_in(4);
    }
    if (o.type == OpType::multi && depth == 0) {
      std::size_t n = one_in(5) ? pick(6) : 1 + pick(2);  // short ones pass validation more often
      for (std::size_t i = 0; i < n; ++i) o.ops.push_back(op(1));
    }
    return o;
  }

  Command command() {
    Command c;
    c.op = op(0);
    if (!sessions.empty() && !one_in(3)) {
      // Mostly one of the newest sessions (likely still alive), sometimes any (likely gone).
      std::size_t k = one_in(4) ? pick(sessions.size()) : sessions.size() - 1 - pick(std::min<std::size_t>(4, sessions.size()));
      auto [id, secret] = sessions[k];
      c.session = id;
      c.secret = one_in(10) ? secret ^ 1 : secret;
      c.seq = one_in(3) ? 0 : (one_in(10) ? extreme_u64() : next_seq++);
      if (auto q = seqs.find(id); q != seqs.end() && q->second.last > 0 && one_in(6)) {
        // A retry: of the last request, of one a little older, or of one long gone.
        std::uint64_t last = q->second.last;
        c.seq = one_in(2) ? last : one_in(2) ? last - std::min<std::uint64_t>(last - 1, pick(80)) : 1;
      }
    } else if (one_in(10)) {
      c.session = extreme_u64();
      c.seq = extreme_u64();
    }
    if (c.op.type == OpType::open_session || one_in(20)) c.secret = one_in(10) ? 0 : rng();
    return c;
  }

  std::string bytes() {
    if (one_in(10)) {  // noise
      std::string s(pick(64), '\0');
      for (auto& ch : s) ch = static_cast<char>(rng());
      return s;
    }
    std::string s = encode(command());
    if (one_in(5)) {  // mutate a well-formed command
      int k = static_cast<int>(pick(3));
      if (k == 0 && !s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
      if (k == 1) s.resize(pick(s.size() + 1));
      if (k == 2) s.insert(pick(s.size() + 1), encode(command()).substr(0, pick(40)));
    }
    return s;
  }
};

[[noreturn]] void fail(std::uint64_t seed, std::uint64_t i, const char* what) {
  std::fprintf(stderr, "sm_fuzz: FAILED at command %llu: %s (replay: sm_fuzz --seed %llu --commands %llu)\n",
               static_cast<unsigned long long>(i), what, static_cast<unsigned long long>(seed),
               static_cast<unsigned long long>(i + 1));
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  std::uint64_t commands = 20'000;
  double seconds = 1e9;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--commands")) commands = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::strtod(argv[i + 1], nullptr);
  }
  std::printf("sm_fuzz: seed %llu, up to %llu commands, %.0f s at most\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(commands), seconds);
  std::fflush(stdout);
  auto start = std::chrono::steady_clock::now();
  Fuzzer f(seed);
  StateMachine sm;
  std::int64_t time = 1'000'000;
  std::uint64_t rejected = 0, i = 0, retries = 0, too_far = 0;
  std::uint64_t by_error[256] = {};
  for (; i < commands; ++i) {
    if ((i & 255) == 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) break;
    if (i % 1000 == 999) {  // start over now and then: small states keep every step cheap
      sm = StateMachine();
      f.sessions.clear();
      f.leases.clear();
      f.seqs.clear();
    }
    std::uint64_t index = i + 1;
    // Mostly forward, sometimes a jump either way (a jump back stalls the clock for a while).
    time += f.one_in(50) ? f.extreme_i64() % 100'000 : static_cast<std::int64_t>(f.pick(150));
    std::string bytes = f.bytes();
    // The twin: the same state, given a bare tick at the same index and time.
    StateMachine twin;
    if (!twin.restore(sm.snapshot())) fail(seed, i, "restore of a snapshot failed");
    if (twin.digest() != sm.digest() || twin.data_digest() != sm.data_digest()) fail(seed, i, "a restored snapshot has another digest");
    twin.apply(index, time, encode(Command{0, 0, Op{OpType::tick}}));
    auto decoded = decode(bytes);
    bool owner_request = decoded && bytes.size() <= Limits{}.max_request_bytes && decoded->session != 0 &&
                         sm.owns(decoded->session, decoded->secret);
    // Would the rule treat it as a retry or as too far ahead? (The clock step of this entry may
    // still expire the session first: then it is no owner's request at all.)
    bool seq_rejected = false, seq_retry = false;
    Fuzzer::Seqs* seqs = nullptr;
    // (open_session has no session yet: whatever session and sequence it carries are ignored.)
    if (owner_request && decoded->seq != 0 && decoded->op.type != OpType::open_session) {
      seqs = &f.seqs[decoded->session];
      // The window (docs/data-model.md, Sessions): a kept number is a retry; below all kept ones
      // once the window is full, stale; above the highest by more than max_seq_step, too far.
      bool kept = seqs->answers.count(decoded->seq) > 0;
      bool stale = !kept && seqs->answers.size() >= Limits{}.responses_per_session &&
                   decoded->seq < seqs->answers.begin()->first;
      bool too_far = decoded->seq > seqs->last && decoded->seq - seqs->last > Limits{}.max_seq_step;
      seq_rejected = kept || stale || too_far;
      seq_retry = kept || stale;
    }
    auto r = sm.apply(index, time, bytes);
    bool live = owner_request && sm.has_session(decoded->session);
    bool expired_first = owner_request && r.response.err == Errc::unknown_session && !live;
    if (seq_rejected && !expired_first) {
      if (sm.digest() != twin.digest()) fail(seed, i, "a retry or a sequence number too far ahead changed digest()");
      if (seq_retry) {
        ++retries;
        auto kept = seqs->answers.find(decoded->seq);
        if (kept != seqs->answers.end() ? !(r.response == kept->second) : r.response.err != Errc::stale_request)
          fail(seed, i, "a retry did not get the first answer (or stale_request once it is gone)");
      } else if (++too_far, r.response.err != Errc::bad_request) {
        fail(seed, i, "a sequence number too far ahead was not bad_request");
      }
    } else if (seqs && live) {  // the session's request, accepted or rejected: its answer is kept
      seqs->last = std::max(seqs->last, decoded->seq);
      seqs->answers[decoded->seq] = r.response;
      while (seqs->answers.size() > Limits{}.responses_per_session) seqs->answers.erase(seqs->answers.begin());
    }
    ++by_error[static_cast<std::size_t>(r.response.err)];
    if (r.response.err != Errc::ok) {
      ++rejected;
      if (sm.data_digest() != twin.data_digest()) fail(seed, i, "a rejected command changed data_digest()");
      if (!owner_request && sm.digest() != twin.digest()) fail(seed, i, "a rejected non-session command changed digest()");
    } else if (decoded) {
      if (decoded->op.type == OpType::open_session) f.sessions.push_back({r.response.id, decoded->secret});
      if (decoded->op.type == OpType::grant_lease) f.leases.push_back(r.response.id);
    }
    for (const auto& e : r.events)
      if (e.index != index) fail(seed, i, "an event carries another index");
  }
  std::printf("sm_fuzz: %llu commands (%llu rejected; %llu retries and %llu too far ahead checked), %zu nodes, %zu sessions opened, passed\n",
              static_cast<unsigned long long>(i), static_cast<unsigned long long>(rejected),
              static_cast<unsigned long long>(retries), static_cast<unsigned long long>(too_far), sm.node_count(),
              f.sessions.size());
  for (std::size_t e = 0; e < 256; ++e)
    if (by_error[e]) std::printf("  %s: %llu\n", errc_name(static_cast<Errc>(e)), static_cast<unsigned long long>(by_error[e]));
  return 0;
}
