#pragma once
// A deterministic simulator of a Raft cluster (tests only). One thread, virtual time, one seeded
// PRNG: the same Options and schedule always produce the same run.
//
// What it simulates:
//   - N cores driven by the Ready contract with asynchronous persistence: a Ready is durable only
//     after a random disk delay; its messages leave, and its entries are applied, only then;
//   - crashes that lose every Ready not yet durable and the whole in-memory core, and restarts
//     from the simulated disk (hard state + snapshot + log), whose commit index may lag its log
//     (Options::lazy_commit);
//   - a network with delay (hence reordering), loss, duplication, symmetric and one-way
//     partitions, an isolated leader, and a bridge node;
//   - clients appending unique values to a replicated list and doing ReadIndex reads;
//   - snapshots of that list, compaction, InstallSnapshot, leadership transfer and single-server
//     membership changes.
// After every event it checks raft/invariants.h; at the end it heals everything, requires a
// leader and a fresh write to commit within a bound (liveness), and checks the client history
// for linearizability.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tern::sim {

enum class FaultKind : std::uint8_t {
  crash,           // a = node
  restart,         // a = node
  partition,       // a = bitmask of one side
  cut_one_way,     // a -> b messages dropped
  isolate_leader,
  bridge,          // a = bridge node; the rest split in two halves that only talk through it
  heal,
  loss,            // a = drop probability in percent (0..40)
  duplicate,       // a = duplication probability in percent (0..30)
  transfer,        // a = target node
  add_learner,     // the next spare node
  promote,         // a learner becomes a voter
  remove,          // a = node to remove (not the last voter)
  reboot,          // a = node: crash and restart at once (kill -9 and systemd restart)
  crash_point,     // a = node reboots right after it next sends b % 3: 0 a granted vote,
                   // 1 an append reply, 2 an append request (the most delicate moments)
};

struct Fault {
  std::uint32_t at_tick;
  FaultKind kind;
  std::uint32_t a = 0;
  std::uint32_t b = 0;
};

struct Options {
  std::uint64_t seed = 1;
  int voters = 3;              // initial voters 1..voters
  int spares = 1;              // nodes voters+1.. that may join as learners
  std::uint32_t ticks = 300;   // safety phase length
  std::uint32_t liveness_ticks = 400;
  int clients = 3;
  std::uint32_t snapshot_every = 16;  // applied entries between snapshots
  // Raft options; unset means drawn from the seed, so schedules cover both settings.
  std::optional<bool> pre_vote;
  std::optional<bool> check_quorum;
  // The durable commit index may lag the durable log, as on the real node (it writes a batch's
  // entries before its hard state and defers commit-only hard states): a hard state that changes
  // only the commit index reaches the disk only with the next one that changes term or vote.
  // Unset means drawn from the seed.
  std::optional<bool> lazy_commit;
  std::vector<Fault> faults;
  bool verbose = false;
  std::string history_path;   // if set, the client history is written there as JSON lines
};

struct Outcome {
  bool ok = true;
  std::string error;          // first violation found
  std::uint64_t events = 0;
  std::uint64_t writes_ok = 0, reads_ok = 0, leaders = 0, snapshots_sent = 0;
  std::uint64_t committed = 0;
};

Outcome run(const Options& options);
// The fault schedule tern-sim draws for a seed (up to 40 faults of every kind).
std::vector<Fault> random_faults(std::uint64_t seed, std::uint32_t ticks, int nodes);
std::string describe(const Fault& f);

}  // namespace tern::sim
