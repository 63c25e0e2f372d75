#pragma once
// The crash-state explorer (issue 15; docs/storage-format.md "The crash model", docs/testing.md).
//
// A seeded storage workload runs the real DataDir, SnapshotStore and Wal through
// storage::recover_storage on the simulated file system: appends of many sizes (batches spanning
// pages and segments), hard-state-only batches, truncations after conflicts, own snapshots with
// compaction, installed snapshots (file, then WAL reset), clean restarts and power cuts it then
// continues from. After sampled file operations it clones the file system and cuts power in
// several random ways (SimFs::crash: unsynced pages kept, lost or torn in any order, sizes and
// non-durable names undone); on each state it runs verify's recovery (read-only) and the node's
// (recover_storage) and checks: the node starts; verify agrees with it exactly; the newest
// acknowledged snapshot, every acknowledged entry above the recovered snapshot and the newest
// acknowledged hard state are there, and the state is the acknowledged one plus a prefix of the
// records of the operation in flight (nothing unacknowledged out of order).
// Deterministic for a seed: rerun with the seed to replay.
#include <cstdint>
#include <string>
#include <vector>

namespace tern::storage::explorer {

struct Options {
  std::uint64_t seed = 1;
  std::size_t max_states = 5000;   // crash states to check
  double max_seconds = 40;         // wall-clock bound
  std::size_t max_steps = 100000;  // workload operations
  double sample = 0.35;            // fraction of file operations after which to cut
  std::size_t cuts_per_point = 3;  // crash states generated per chosen point
  std::string break_rule;          // "" or one of rules(): make the simulated disk lie
  std::size_t max_violations = 5;  // stop after this many
};

struct Report {
  std::size_t states = 0;  // crash states checked
  std::size_t points = 0;  // prefixes cut
  std::size_t steps = 0;   // workload operations
  std::size_t acks = 0;    // acknowledged operations
  std::vector<std::string> violations;
};

Report explore(const Options& o);

// The sync and ordering rules a durability guarantee depends on, each breakable with a lying disk.
struct Rule {
  const char* name;
  const char* rule;
};
const std::vector<Rule>& rules();

}  // namespace tern::storage::explorer
