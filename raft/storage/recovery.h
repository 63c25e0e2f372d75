#pragma once
// The storage half of a node's restart, in one place, used by the node and by `ternutl verify`
// (read-only), so the tool says exactly what the node will do (issue 15).
//
// RULES (docs/storage-format.md, "Recovery"):
//   1. IDENTITY: absent (ENOENT) means first use, unless wal/ or snap/ holds files (refuse); any
//      other error, a damaged file, other ids, or a missing wal/ next to it: refuse.
//   2. Snapshots: the newest one whose header and data verify; damaged ones are skipped (noted).
//      snap/ is fsynced: the name found may have been only in the page cache (after a fail-stop).
//   3. WAL: Wal::open's rules (torn tail truncated, empty newest segment re-initialized, the
//      hard state rewritten into the active segment; anything provably durable and damaged, or
//      a missing segment: refuse).
//   4. A WAL reset record after a snapshot that is not on disk: refuse.
//   5. The WAL's entries above the snapshot must start right after it (a WAL compacted past a
//      snapshot that is not on disk): refuse.
//   6. A WAL that ends before the snapshot (and was not compacted past it), or holds another
//      term at its index, lost the reset written after installing it: the reset is written
//      again and the WAL's entries are dropped.
// The node starts from `snapshot`, `hard_state` and `entries` (those above the snapshot).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "raft/storage/data_dir.h"
#include "raft/storage/error.h"
#include "raft/storage/io.h"
#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"

namespace tern::storage {

struct RecoveryOptions {
  Io* io = &posix_io();
  // Read-only (ternutl): nothing is created, locked or repaired; repairs are only reported.
  bool read_only = false;
  // The node's ids (checked against IDENTITY; written there on first use). Ignored read-only.
  std::uint64_t cluster_id = 0;
  std::uint64_t node_id = 0;
  WalOptions wal;  // its io and read_only are set from the fields above
};

struct RecoveredStorage {
  std::optional<Identity> identity;    // nullopt: first use (nothing on disk yet)
  std::optional<SnapshotFile> snapshot;
  raft::HardState hard_state;
  std::vector<raft::Entry> entries;    // above the snapshot, contiguous from snapshot + 1
  std::vector<std::string> repairs;    // crash repairs done (or, read-only, that the node will do)
  std::vector<std::string> damage;     // damaged files skipped (snapshots): real corruption
  // Open handles (not read-only): the node keeps them.
  std::unique_ptr<DataDir> dir;
  std::unique_ptr<SnapshotStore> snapshots;
  std::unique_ptr<Wal> wal;
};

Result<RecoveredStorage, StorageError> recover_storage(const std::string& data_dir, RecoveryOptions options);

}  // namespace tern::storage
