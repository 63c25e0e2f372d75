// The crash-state explorer in CI (bounded), and proof that it catches each broken rule.
// Long run: build/tests/storage/storage-explore --seed S --states N --seconds T
#include "tests/storage/explorer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#define TERN_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TERN_SANITIZED 1
#endif
#endif

namespace tern::storage::explorer {
namespace {

#ifdef TERN_SANITIZED
constexpr bool sanitized = true;  // Debug + ASan: ~20x slower; a smaller budget, same checks
#else
constexpr bool sanitized = false;
#endif

std::uint64_t seed_from_env(std::uint64_t fallback) {
  const char* s = std::getenv("TERN_EXPLORE_SEED");
  return s ? std::strtoull(s, nullptr, 10) : fallback;
}

TEST(Explorer, EveryCrashStateRecoversTheAcknowledgedStateAndVerifyAgrees) {
  Options o;
  o.seed = seed_from_env(20261202);
  o.max_states = sanitized ? 150 : 4000;
  if (sanitized) o.sample = 0.03;  // fewer cuts per operation: the budget reaches more of the workload (group commit)
  o.max_seconds = 35;
  Report r = explore(o);
  std::printf("explorer: seed %llu, %zu crash states checked at %zu points (%zu checked again after a snapshot, "
              "compaction and another cut), %zu workload steps, %zu acknowledgements (%zu by group commit), %zu cuts mid-append continued; verify and the node agreed on %zu of %zu recoveries\n",
              (unsigned long long)o.seed, r.states, r.points, r.compactions_after_cut, r.steps, r.acks, r.group_acks, r.mid_append_cuts, r.agreed, r.compared);
  for (auto& v : r.violations) ADD_FAILURE() << v;
  EXPECT_GT(r.states, sanitized ? 100u : 500u);
  EXPECT_GT(r.acks, sanitized ? 10u : 50u);
  EXPECT_GT(r.group_acks, 0u);
  // Every state: each crash state once, each compaction after a cut once more (none sampled away).
  EXPECT_EQ(r.compared, r.states + r.compactions_after_cut);
  EXPECT_EQ(r.agreed, r.compared);
}

// Each rule in rules(), broken by a lying disk, a workload order or a code switch, is caught
// within a small budget (up to 6 seeds of 3,000 crash states; today each is caught on seed 1
// within 1,400 states).
TEST(Explorer, BreakingAnyDurabilityRuleIsCaught) {
  if (sanitized) GTEST_SKIP() << "the explorer's power, not memory safety: measured in the normal build";
  for (const Rule& rule : rules()) {
    bool caught = false;
    std::string first;
    std::size_t states = 0;
    for (std::uint64_t seed = 1; seed <= 6 && !caught; ++seed) {
      Options o;
      o.seed = seed;
      o.break_rule = rule.name;
      o.max_states = 3000;  // the budget is a count, so the result does not depend on the machine's load;
      o.max_seconds = 20;   // the time bound is only a safety net
      o.max_violations = 1;
      Report r = explore(o);
      states += r.states;
      if (!r.violations.empty()) {
        caught = true;
        first = r.violations.front();
      }
    }
    EXPECT_TRUE(caught) << rule.id << " " << rule.name << " (" << rule.rule << ") was broken and nothing noticed";
    std::printf("%s %s (%zu crash states): %s\n", rule.id, rule.name, states, caught ? first.c_str() : "NOT CAUGHT");
  }
}

}  // namespace
}  // namespace tern::storage::explorer
