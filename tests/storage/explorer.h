#pragma once
// The crash-state explorer (issue 15; docs/storage-format.md "The crash model", docs/testing.md).
//
// A seeded storage workload runs the real DataDir, SnapshotStore and Wal through
// storage::recover_storage on the simulated file system: appends of many sizes (batches spanning
// pages and segments), hard-state-only batches, truncations after conflicts, commit indices that
// run ahead of the durable one, own snapshots with compaction, installed snapshots (file, then
// WAL reset), group commit (Wal::submit: batches queued together, acknowledged by their
// callbacks), failures (EIO from a WAL fdatasync or from the fsync of wal/ or snap/, ENOSPC from
// a WAL write or preallocation) after which the node stops and restarts without a power cut,
// clean restarts, and power cuts (while idle, or in the middle of an append, often during a
// segment roll) it then continues from. After sampled file
// operations it clones the file system and cuts power in several random ways (SimFs::crash:
// unsynced pages kept, lost or torn in any order, sizes and non-durable names undone); on each
// state it runs verify's recovery (read-only) and the node's (recover_storage) and checks: the
// node starts; verify agrees with it exactly (verdict, recovered state, repairs announced); the
// newest acknowledged snapshot, every acknowledged entry above the recovered snapshot and the
// newest acknowledged hard state are there, and the state is the acknowledged one plus a prefix
// of the records of the operation in flight (nothing unacknowledged out of order); the node can
// append; and after it (sometimes first rolling into a new segment) snapshots its last entry,
// compacts every older segment away and loses power again, it still has that hard state (R7: no
// double vote).
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
  std::string break_rule;          // "" or one of rules(): the simulated disk lies, or a rule is switched off
  bool compact_after_cut = true;   // after each crash state's check: roll, snapshot, compact all, cut again
  std::size_t max_violations = 5;  // stop after this many
};

struct Report {
  std::size_t states = 0;  // crash states checked
  std::size_t points = 0;  // prefixes cut
  std::size_t steps = 0;   // workload operations
  std::size_t acks = 0;    // acknowledged operations
  std::size_t group_acks = 0;  // of them, batches acknowledged by group commit (Wal::submit callbacks)
  std::size_t mid_append_cuts = 0;  // power cuts in the middle of an append that the workload continued from
  std::size_t compactions_after_cut = 0;  // states checked again after roll + snapshot + compaction + cut
  std::size_t compared = 0;  // recoveries on which verify and the node were compared (every one)
  std::size_t agreed = 0;    // ... and agreed (verdict, recovered state, repairs announced)
  std::vector<std::string> violations;
};

Report explore(const Options& o);

// The sync and ordering rules a durability guarantee depends on (docs/storage-format.md R1-R14),
// each breakable one at a time: a lying disk, a workload order, or a code switch (BrokenRules).
struct Rule {
  const char* id;  // R1..R13
  const char* name;
  const char* rule;
};
const std::vector<Rule>& rules();

}  // namespace tern::storage::explorer
