// Tests of the linearizability checker (issue 6): hand-written histories with known verdicts,
// parse errors, and RapidCheck properties (generated histories are linearizable; a planted
// anomaly is found; small histories agree with a brute-force search over all orders).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"
#include "jepsen-like/checker/model.h"
#include "jepsen-like/checker/report.h"

namespace tern::check {
namespace {

std::string inv(int p, const std::string& f, const std::string& v = "null", const std::string& key = "") {
  return "{\"process\":" + std::to_string(p) + ",\"type\":\"invoke\",\"f\":\"" + f + "\",\"value\":" + v +
         (key.empty() ? "" : ",\"key\":\"" + key + "\"") + "}\n";
}
std::string done(int p, const std::string& type, const std::string& f, const std::string& v = "null") {
  return "{\"process\":" + std::to_string(p) + ",\"type\":\"" + type + "\",\"f\":\"" + f + "\",\"value\":" + v + "}\n";
}

Verdict verdict(const std::string& text, const std::string& model) {
  auto h = parse_history(text);
  EXPECT_TRUE(h.has_value()) << (h ? "" : h.error().message);
  if (!h) return Verdict::unknown;
  return check_history(*h, model).verdict;
}

// ---- hand-written histories ------------------------------------------------------------------

TEST(Register, SequentialWriteThenReadIsLinearizable) {
  EXPECT_EQ(verdict(inv(0, "write", "1") + done(0, "ok", "write", "1") + inv(1, "read") + done(1, "ok", "read", "1"),
                    "register"),
            Verdict::linearizable);
}

TEST(Register, StaleReadIsNotLinearizable) {
  std::string h = inv(0, "write", "1") + done(0, "ok", "write", "1") + inv(0, "write", "2") +
                  done(0, "ok", "write", "2") + inv(1, "read") + done(1, "ok", "read", "1");
  EXPECT_EQ(verdict(h, "register"), Verdict::not_linearizable);
}

TEST(Register, LostWriteIsNotLinearizable) {
  std::string h = inv(0, "write", "1") + done(0, "ok", "write", "1") + inv(1, "read") + done(1, "ok", "read", "null");
  EXPECT_EQ(verdict(h, "register"), Verdict::not_linearizable);
}

TEST(Register, ConcurrentWritesAllowBothOrders) {
  std::string writes = inv(0, "write", "1") + inv(1, "write", "2") + done(0, "ok", "write", "1") + done(1, "ok", "write", "2");
  EXPECT_EQ(verdict(writes + inv(2, "read") + done(2, "ok", "read", "1"), "register"), Verdict::linearizable);
  EXPECT_EQ(verdict(writes + inv(2, "read") + done(2, "ok", "read", "2"), "register"), Verdict::linearizable);
  // But not both orders at once, one after the other.
  EXPECT_EQ(verdict(writes + inv(2, "read") + done(2, "ok", "read", "1") + inv(2, "read") + done(2, "ok", "read", "2"),
                    "register"),
            Verdict::not_linearizable);
}

TEST(Register, ReadConcurrentWithWriteMaySeeEitherValue) {
  std::string h = inv(0, "write", "1") + done(0, "ok", "write", "1") + inv(0, "write", "2") + inv(1, "read") +
                  done(1, "ok", "read", "1") + done(0, "ok", "write", "2");
  EXPECT_EQ(verdict(h, "register"), Verdict::linearizable);
}

TEST(Register, IndeterminateWriteThatMustHaveHappened) {
  std::string h = inv(0, "write", "1") + done(0, "info", "write", "1") + inv(1, "read") + done(1, "ok", "read", "1");
  EXPECT_EQ(verdict(h, "register"), Verdict::linearizable);
  // Never answered at all: the same.
  EXPECT_EQ(verdict(inv(0, "write", "1") + inv(1, "read") + done(1, "ok", "read", "1"), "register"), Verdict::linearizable);
}

TEST(Register, IndeterminateWriteThatMustNotHaveHappened) {
  std::string base = inv(0, "write", "1") + done(0, "ok", "write", "1") + inv(1, "cas", "[1,2]") + done(1, "info", "cas");
  EXPECT_EQ(verdict(base + inv(2, "read") + done(2, "ok", "read", "1") + inv(2, "read") + done(2, "ok", "read", "1"),
                    "register"),
            Verdict::linearizable);  // the cas never took effect
  EXPECT_EQ(verdict(base + inv(2, "read") + done(2, "ok", "read", "2") + inv(2, "read") + done(2, "ok", "read", "1"),
                    "register"),
            Verdict::not_linearizable);  // it took effect, then was undone: impossible
}

TEST(Register, IndeterminateOperationMayTakeEffectLate) {
  // The info write is invoked early but observed only much later.
  std::string h = inv(0, "write", "7") + done(0, "info", "write") + inv(1, "read") + done(1, "ok", "read", "null") +
                  inv(1, "read") + done(1, "ok", "read", "7");
  EXPECT_EQ(verdict(h, "register"), Verdict::linearizable);
}

TEST(Register, FailedWriteIsDroppedAndCannotBeObserved) {
  std::string h = inv(0, "write", "1") + done(0, "fail", "write") + inv(1, "read") + done(1, "ok", "read", "1");
  EXPECT_EQ(verdict(h, "register"), Verdict::not_linearizable);
}

TEST(Register, CasMustSeeItsExpectedValue) {
  std::string h = inv(0, "write", "1") + done(0, "ok", "write", "1") + inv(0, "cas", "[3,4]") + done(0, "ok", "cas");
  EXPECT_EQ(verdict(h, "register"), Verdict::not_linearizable);
}

TEST(Register, KeysAreIndependent) {
  std::string h = inv(0, "write", "1", "a") + done(0, "ok", "write", "1") + inv(1, "read", "null", "b") +
                  done(1, "ok", "read", "null") + inv(1, "read", "null", "a") + done(1, "ok", "read", "1");
  EXPECT_EQ(verdict(h, "register"), Verdict::linearizable);
  auto parsed = parse_history(h);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(check_history(*parsed, "register").keys, 2u);
}

TEST(List, DuplicatedAppendIsNotLinearizable) {
  std::string h = inv(0, "append", "1") + done(0, "ok", "append", "1") + inv(1, "read") + done(1, "ok", "read", "[1,1]");
  EXPECT_EQ(verdict(h, "list"), Verdict::not_linearizable);
}

TEST(List, AppendsAndWritesCompose) {
  std::string h = inv(0, "append", "1") + inv(1, "append", "2") + done(0, "ok", "append") + done(1, "ok", "append") +
                  inv(0, "read") + done(0, "ok", "read", "[2,1]") + inv(0, "write", "[9]") + done(0, "ok", "write") +
                  inv(0, "append", "3") + done(0, "ok", "append") + inv(1, "read") + done(1, "ok", "read", "[9,3]");
  EXPECT_EQ(verdict(h, "list"), Verdict::linearizable);
}

TEST(Mutex, OverlappingHoldersAreNotLinearizable) {
  std::string h = inv(0, "acquire") + done(0, "ok", "acquire") + inv(1, "acquire") + done(1, "ok", "acquire");
  EXPECT_EQ(verdict(h, "mutex"), Verdict::not_linearizable);
}

TEST(Mutex, HandOverIsLinearizable) {
  std::string h = inv(0, "acquire") + done(0, "ok", "acquire", "1") + inv(1, "acquire") + inv(0, "release") +
                  done(0, "ok", "release") + done(1, "ok", "acquire", "2");
  EXPECT_EQ(verdict(h, "mutex"), Verdict::linearizable);
}

TEST(Mutex, FencingTokensMustIncrease) {
  std::string h = inv(0, "acquire") + done(0, "ok", "acquire", "5") + inv(0, "release") + done(0, "ok", "release") +
                  inv(1, "acquire") + done(1, "ok", "acquire", "3");
  EXPECT_EQ(verdict(h, "mutex"), Verdict::not_linearizable);
}

TEST(Mutex, IndeterminateReleaseMayHaveHappened) {
  std::string h = inv(0, "acquire") + done(0, "ok", "acquire") + inv(0, "release") + done(0, "info", "release") +
                  inv(1, "acquire") + done(1, "ok", "acquire");
  EXPECT_EQ(verdict(h, "mutex"), Verdict::linearizable);
}

TEST(Violation, ReportsKeyPrefixAndUnplaceableOperations) {
  std::string h = inv(0, "write", "1", "k") + done(0, "ok", "write", "1") + inv(0, "write", "2", "k") +
                  done(0, "ok", "write", "2") + inv(1, "read", "null", "k") + done(1, "ok", "read", "1");
  auto parsed = parse_history(h);
  ASSERT_TRUE(parsed);
  auto r = check_history(*parsed, "register");
  ASSERT_EQ(r.verdict, Verdict::not_linearizable);
  ASSERT_TRUE(r.violation);
  EXPECT_EQ(r.violation->key, "k");
  EXPECT_EQ(r.violation->longest_prefix, (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(r.violation->unplaceable, (std::vector<std::size_t>{2}));
  std::string html = render_html(*parsed, r, "t");
  EXPECT_NE(html.find("class=\"bad\""), std::string::npos);
  EXPECT_NE(html.find("class=\"window\""), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

TEST(Limits, TimeoutGivesUnknownNeverAPass) {
  // Many concurrent indeterminate writes make the search space explode.
  std::string h;
  for (int p = 0; p < 40; ++p) h += inv(p, "write", std::to_string(p));
  for (int p = 0; p < 40; ++p) h += inv(100 + p, "read") + done(100 + p, "ok", "read", std::to_string(39 - p));
  h += inv(200, "read") + done(200, "ok", "read", "12345");
  auto parsed = parse_history(h);
  ASSERT_TRUE(parsed);
  CheckOptions o;
  o.timeout_seconds = 0.2;
  auto r = check_history(*parsed, "register", o);
  EXPECT_NE(r.verdict, Verdict::linearizable);
}

// ---- parsing ---------------------------------------------------------------------------------

TEST(Parse, RejectsMalformedLinesWithTheirNumber) {
  struct Case {
    std::string text;
    std::size_t line;
  } cases[] = {
      {inv(0, "read") + "not json\n", 2},
      {"{\"process\":\"x\",\"type\":\"invoke\",\"f\":\"read\"}\n", 1},
      {inv(0, "read") + inv(0, "read"), 2},                      // two open operations
      {done(0, "ok", "read"), 1},                                // completion without invocation
      {inv(0, "read") + done(0, "ok", "write"), 2},              // f mismatch
      {"{\"process\":1,\"type\":\"begin\",\"f\":\"read\"}\n", 1},  // unknown type
  };
  for (auto& c : cases) {
    auto h = parse_history(c.text);
    ASSERT_FALSE(h.has_value()) << c.text;
    EXPECT_EQ(h.error().line, c.line) << c.text;
  }
}

TEST(Parse, UnknownOperationIsBadInput) {
  auto h = parse_history(inv(0, "frobnicate") + done(0, "ok", "frobnicate"));
  ASSERT_TRUE(h);
  auto r = check_history(*h, "register");
  EXPECT_TRUE(r.bad_input);
  EXPECT_EQ(r.verdict, Verdict::unknown);
}

// ---- generated histories ---------------------------------------------------------------------

struct Gen {
  std::string text;
  std::vector<std::string> lines;
};

// Runs random concurrent operations of `procs` processes against a real register/list/mutex,
// each taking effect at a random moment between its invocation and its completion; some end
// indeterminate (with or without effect). The result is linearizable by construction.
std::string generate(const std::string& model, std::uint64_t seed, int procs, int ops, std::vector<std::int64_t>* final_list = nullptr,
                     std::string* final_reg = nullptr) {
  std::mt19937_64 rng(seed);
  auto rnd = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
  std::string reg = "null";
  std::vector<std::int64_t> list;
  int holder = -1;
  std::int64_t token = 0;
  int next_value = 1;
  struct Pending {
    std::string f, in, out;
    bool applied = false;
    bool possible = true;
  };
  std::map<int, Pending> pending;
  std::string out;
  int issued = 0;
  auto list_json = [&] {
    std::string s = "[";
    for (std::size_t i = 0; i < list.size(); ++i) s += (i ? "," : "") + std::to_string(list[i]);
    return s + "]";
  };
  auto apply = [&](int p, Pending& op) {
    op.applied = true;
    if (model == "register") {
      if (op.f == "read") op.out = reg;
      else if (op.f == "write") reg = op.in;
      else {  // cas [e, n]
        auto comma = op.in.find(',');
        std::string e = op.in.substr(1, comma - 1), n = op.in.substr(comma + 1, op.in.size() - comma - 2);
        op.possible = reg == e;
        if (op.possible) reg = n;
      }
    } else if (model == "list") {
      if (op.f == "append") list.push_back(std::stoll(op.in));
      else op.out = list_json();
    } else {
      if (op.f == "acquire") {
        op.possible = holder == -1;
        if (op.possible) holder = p, op.out = std::to_string(++token);
      } else {
        op.possible = holder == p;
        if (op.possible) holder = -1;
      }
    }
  };
  for (int step = 0; step < ops * 4 && (issued < ops || !pending.empty()); ++step) {
    int p = rnd(procs);
    auto it = pending.find(p);
    if (it == pending.end()) {
      if (issued >= ops) continue;
      Pending op;
      if (model == "register") {
        int k = rnd(3);
        op.f = k == 0 ? "read" : k == 1 ? "write" : "cas";
        if (op.f == "write") op.in = std::to_string(next_value++);
        if (op.f == "cas") {
          int expected = rnd(next_value);
          op.in = "[" + std::to_string(expected) + "," + std::to_string(next_value++) + "]";
        }
      } else if (model == "list") {
        op.f = rnd(2) ? "append" : "read";
        if (op.f == "append") op.in = std::to_string(next_value++);
      } else {
        op.f = holder == p ? "release" : "acquire";
      }
      out += inv(p, op.f, op.in.empty() ? "null" : op.in);
      pending[p] = op;
      ++issued;
    } else if (!it->second.applied && rnd(2)) {
      apply(p, it->second);
      if (!it->second.possible) {  // a cas that would fail, or a blocked lock: completes as fail
        out += done(p, "fail", it->second.f);
        pending.erase(it);
      }
    } else if (it->second.applied) {
      bool indeterminate = rnd(10) == 0 && it->second.f != "read";
      out += done(p, indeterminate ? "info" : "ok", it->second.f, it->second.out.empty() ? "null" : it->second.out);
      pending.erase(it);
    } else if (rnd(20) == 0 && it->second.f != "read") {
      out += done(p, "info", it->second.f);  // crashed before taking effect
      pending.erase(it);
    }
  }
  // Finish whatever is still open.
  for (auto& [p, op] : pending) {
    if (!op.applied) apply(p, op);
    if (!op.possible) out += done(p, "fail", op.f);
    else out += done(p, "ok", op.f, op.out.empty() ? "null" : op.out);
  }
  if (final_list) *final_list = list;
  if (final_reg) *final_reg = reg;
  (void)token;
  return out;
}

RC_GTEST_PROP(Generated, RegisterHistoriesAreLinearizable, ()) {
  auto seed = *rc::gen::arbitrary<std::uint64_t>();
  int procs = *rc::gen::inRange(1, 8);
  std::string h = generate("register", seed, procs, *rc::gen::inRange(1, 60));
  RC_ASSERT(verdict(h, "register") == Verdict::linearizable);
}

RC_GTEST_PROP(Generated, ListHistoriesAreLinearizable, ()) {
  auto seed = *rc::gen::arbitrary<std::uint64_t>();
  std::string h = generate("list", seed, *rc::gen::inRange(1, 8), *rc::gen::inRange(1, 60));
  RC_ASSERT(verdict(h, "list") == Verdict::linearizable);
}

RC_GTEST_PROP(Generated, MutexHistoriesAreLinearizable, ()) {
  auto seed = *rc::gen::arbitrary<std::uint64_t>();
  std::string h = generate("mutex", seed, *rc::gen::inRange(1, 6), *rc::gen::inRange(1, 40));
  RC_ASSERT(verdict(h, "mutex") == Verdict::linearizable);
}

// Planted anomalies, appended once every process is idle so that nothing can explain them.
RC_GTEST_PROP(Planted, StaleReadIsFound, ()) {
  std::string h = generate("register", *rc::gen::arbitrary<std::uint64_t>(), *rc::gen::inRange(1, 6), *rc::gen::inRange(0, 40));
  h += inv(0, "write", "1000001") + done(0, "ok", "write") + inv(0, "write", "1000002") + done(0, "ok", "write") +
       inv(1, "read") + done(1, "ok", "read", "1000001");
  RC_ASSERT(verdict(h, "register") == Verdict::not_linearizable);
}

RC_GTEST_PROP(Planted, LostAcknowledgedAppendIsFound, ()) {
  std::vector<std::int64_t> list;
  std::string h = generate("list", *rc::gen::arbitrary<std::uint64_t>(), *rc::gen::inRange(1, 6), *rc::gen::inRange(0, 40), &list);
  std::string seen = "[";
  for (std::size_t i = 0; i < list.size(); ++i) seen += (i ? "," : "") + std::to_string(list[i]);
  seen += "]";
  h += inv(0, "append", "1000001") + done(0, "ok", "append") + inv(1, "read") + done(1, "ok", "read", seen);
  RC_ASSERT(verdict(h, "list") == Verdict::not_linearizable);
}

RC_GTEST_PROP(Planted, DuplicatedAppendIsFound, ()) {
  std::vector<std::int64_t> list;
  std::string h = generate("list", *rc::gen::arbitrary<std::uint64_t>(), *rc::gen::inRange(1, 6), *rc::gen::inRange(0, 40), &list);
  std::string seen = "[";
  for (auto v : list) seen += std::to_string(v) + ",";
  seen += "1000001,1000001]";
  h += inv(0, "append", "1000001") + done(0, "ok", "append") + inv(1, "read") + done(1, "ok", "read", seen);
  RC_ASSERT(verdict(h, "list") == Verdict::not_linearizable);
}

RC_GTEST_PROP(Planted, OverlappingLockHoldersAreFound, ()) {
  std::string h = generate("mutex", *rc::gen::arbitrary<std::uint64_t>(), *rc::gen::inRange(1, 5), *rc::gen::inRange(0, 30));
  // Fresh processes 50 and 51 both acquire; neither releases.
  h += inv(50, "acquire") + done(50, "ok", "acquire") + inv(51, "acquire") + done(51, "ok", "acquire");
  RC_ASSERT(verdict(h, "mutex") == Verdict::not_linearizable);
}

// Brute force: try every order of the operations consistent with real time, with every subset
// of indeterminate operations taking effect.
bool brute_force(const History& h, const std::string& model_name) {
  auto model = make_model(model_name);
  Interner interner;
  std::vector<ModelOp> ops;
  std::vector<const Operation*> src;
  for (auto& op : h.ops) {
    auto m = model->prepare(op, interner);
    if (!m || m->skip) continue;
    ops.push_back(*m);
    src.push_back(&op);
  }
  std::size_t n = ops.size();
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::size_t info_mask = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (ops[i].indeterminate) info_mask |= 1u << i;
  do {
    bool respects = true;
    for (std::size_t a = 0; a < n && respects; ++a)
      for (std::size_t b = a + 1; b < n; ++b)
        if (src[order[b]]->complete_line < src[order[a]]->invoke_line) { respects = false; break; }
    if (!respects) continue;
    for (std::size_t skip = info_mask;; skip = (skip - 1) & info_mask) {
      State s = model->initial();
      bool ok = true;
      for (std::size_t i = 0; i < n && ok; ++i)
        if (!((skip >> order[i]) & 1)) ok = model->step(s, ops[order[i]]);
      if (ok) return true;
      if (skip == 0) break;
    }
  } while (std::next_permutation(order.begin(), order.end()));
  return false;
}

RC_GTEST_PROP(BruteForce, SmallRegisterHistoriesAgree, ()) {
  // Random (often wrong) observations, so both verdicts occur.
  std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
  int nops = *rc::gen::inRange(1, 9);
  std::string text;
  std::map<int, std::string> open;
  int issued = 0;
  for (int step = 0; step < 64 && (issued < nops || !open.empty()); ++step) {
    int p = static_cast<int>(rng() % 3);
    if (!open.count(p)) {
      if (issued >= nops) continue;
      int k = static_cast<int>(rng() % 3);
      std::string f = k == 0 ? "read" : k == 1 ? "write" : "cas";
      std::string v = f == "write" ? std::to_string(rng() % 3) : f == "cas" ? "[" + std::to_string(rng() % 3) + "," + std::to_string(rng() % 3) + "]" : "null";
      text += inv(p, f, v);
      open[p] = f;
      ++issued;
    } else {
      std::string f = open[p];
      int t = static_cast<int>(rng() % 6);
      std::string type = t == 0 && f != "read" ? "info" : "ok";
      std::string v = f == "read" ? (rng() % 4 == 0 ? "null" : std::to_string(rng() % 3)) : "null";
      text += done(p, type, f, v);
      open.erase(p);
    }
  }
  auto h = parse_history(text);
  RC_ASSERT(h.has_value());
  RC_TAG(brute_force(*h, "register") ? "linearizable" : "not linearizable");
  RC_ASSERT((check_history(*h, "register").verdict == Verdict::linearizable) == brute_force(*h, "register"));
}

}  // namespace
}  // namespace tern::check
