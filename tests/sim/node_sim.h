#pragma once
// The whole-node simulator (issue 10; docs/testing.md "Whole-node simulation"). One thread,
// virtual time, one seeded PRNG: the same options always give the same run.
//
// It runs N service::Replica objects — the code ternd runs, with the real Wal, SnapshotStore and
// DataDir — each on its own simulated disk (tests/common/sim_fs.h: unsynced pages lost or torn
// at a power cut, names lost unless their directory was synced), with the coordination state
// machine (service::SmApplier) and a workload of sm commands (creates, versioned sets and
// deletes, transactions, sessions with ephemerals) and ReadIndex reads. The simulator implements
// the replica's interfaces: a network with delay (hence reordering), loss, duplication,
// partitions and malformed messages; virtual clocks and ticks; and an executor whose WAL writes
// and snapshot files complete when the simulated disk decides, in two steps (durable, then the
// completion seen by the replica), so a crash can fall between any two steps of the Ready loop,
// or inside a write (a power cut after any of its file system calls).
// Faults: kill -9 of one node or of all, power cuts, crash points and crash loops, disk errors
// (EIO syncs, ENOSPC writes: the replica must fail-stop), restarts with the node's real options
// and recovery (no bootstrap help), partitions, loss, duplication, malformed messages, and
// membership changes back to back (learners added, promoted, voters removed, the leader too) in
// clusters of 1, 3 or 5 voters with learners.
// Checked after every event that changes what they read: raft/invariants.h over the live cores,
// with each node's durable log as the simulated disk holds it. Against a reference replay of the
// committed log into one more state machine: every acknowledged proposal is the entry applied at
// its (index, term) on every node that applies that index and has the reference's answer; every
// replica's digest equals the reference's at equal applied index; every ReadIndex read returns a
// state of its key at an index between every write acknowledged before it began and what has
// been applied (linearizability). A malformed message is refused without any state change; a
// fatal error only follows an injected disk error. At the end, with everything healed and
// restarted, a leader is elected and a new write commits.
#include <cstdint>
#include <string>

namespace tern::sim {

struct NodeSimOptions {
  std::uint64_t seed = 1;
  int voters = 3;                    // initial voters 1..voters
  int spares = 1;                    // nodes that may join as learners (and be promoted)
  std::uint32_t fault_ms = 4000;     // virtual time with faults
  std::uint32_t liveness_ms = 8000;  // after healing: a leader and a commit within this
  std::uint32_t snapshot_entries = 24;
  // Snapshots are captured in slices of this many bytes (NodeOptions::snapshot_slice_bytes);
  // 0: the replica's default, under which the simulator's small states take one slice. A few
  // dozen bytes spread a capture over many loop turns, with entries applied between them.
  std::size_t snapshot_slice_bytes = 0;
  // Small WAL segments, so that segment rolls (and power cuts inside them) happen in every run.
  std::size_t segment_bytes = 8 << 10;
  bool power_cuts = true;
  // Let the nodes create their data, WAL and snapshot directories themselves (this exposed the
  // missing parent-directory fsync after mkdir in raft/storage before issue 15's fix).
  bool fresh_dirs = false;
  // Let a leader remove itself. This found the stall of a server removed by a change only it had
  // (raft/core.cc Core::promotable, thesis §4.2.2); --no-remove-leader leaves it out.
  bool remove_leader = true;
  bool verbose = false;
};

struct NodeSimOutcome {
  bool ok = true;
  std::string error;  // first violation
  std::uint64_t events = 0, acked = 0, reads_ok = 0, crashes = 0, power_cuts = 0, restarts = 0;
  std::uint64_t snapshots_installed = 0, conf_changes = 0, wal_writes = 0;
  std::uint64_t acked_ok = 0, multi_ok = 0, ephemerals_created = 0, sessions_expired = 0;  // the sm workload
  std::uint64_t disk_faults = 0;         // injected disk errors that made a node fail-stop
  std::uint64_t malformed_rejected = 0;  // malformed peer messages delivered and refused
  std::uint64_t client_addresses_known = 0;  // at the end: (node, member) pairs with a client address
  double wal_seconds = 0;       // real time spent in the WAL (writes on the simulated FS)
  double snapshot_seconds = 0;  // real time spent writing snapshot files (on the simulated FS)
  double check_seconds = 0;      // in the invariant checks after every event
  double reference_seconds = 0;  // in the reference replay and the digest comparisons
  double total_seconds = 0;  // real time of the whole run
};

NodeSimOutcome run_node_sim(const NodeSimOptions& options);

}  // namespace tern::sim
