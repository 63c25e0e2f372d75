// storage-explore: the crash-state explorer, long form (docs/testing.md).
//   storage-explore [--seed S] [--states N] [--seconds T] [--sample F] [--no-recheck] [--break RULE] [--list-rules]
//   (--sample: the fraction of file operations after which power is cut, 0.35; lower reaches
//   further into the workload for the same number of crash states)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/storage/explorer.h"

using namespace tern::storage::explorer;

int main(int argc, char** argv) {
  Options o;
  o.max_states = 200000;
  o.max_seconds = 600;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--seed") o.seed = std::strtoull(next(), nullptr, 10);
    else if (a == "--states") o.max_states = std::strtoull(next(), nullptr, 10);
    else if (a == "--seconds") o.max_seconds = std::strtod(next(), nullptr);
    else if (a == "--break") o.break_rule = next();
    else if (a == "--no-recheck") o.compact_after_cut = false;  // skip the snapshot + compaction + cut after each state
    else if (a == "--sample") o.sample = std::strtod(next(), nullptr);  // fraction of file operations cut after
    else if (a == "--list-rules") {
      for (auto& r : rules()) std::printf("%-4s %-30s %s\n", r.id, r.name, r.rule);
      return 0;
    } else {
      std::fprintf(stderr, "usage: storage-explore [--seed S] [--states N] [--seconds T] [--sample F] [--no-recheck] [--break RULE] [--list-rules]\n");
      return 2;
    }
  }
  Report r = explore(o);
  std::printf("seed %llu%s%s: %zu crash states checked at %zu points (%zu again after a snapshot, compaction and another cut), "
              "%zu steps, %zu acknowledgements (%zu by group commit), %zu cuts mid-append continued, verify and node agreed on %zu of %zu recoveries, %zu violations\n",
              (unsigned long long)o.seed, o.break_rule.empty() ? "" : ", broken rule ", o.break_rule.c_str(), r.states, r.points,
              r.compactions_after_cut, r.steps, r.acks, r.group_acks, r.mid_append_cuts, r.agreed, r.compared, r.violations.size());
  for (auto& v : r.violations) std::printf("VIOLATION %s\n", v.c_str());
  return r.violations.empty() ? 0 : 1;
}
