#include "raft/storage/recovery.h"

namespace tern::storage {

Result<RecoveredStorage, StorageError> recover_storage(const std::string& data_dir, RecoveryOptions o) {
  Io& io = *o.io;
  RecoveredStorage out;
  std::string wal_dir = data_dir + "/wal", snap_dir = data_dir + "/snap";
  // 1. Identity.
  if (o.read_only) {
    auto id = read_identity(data_dir, io);
    if (!id) return fail(id.error());
    out.identity = *id;
    if (!*id) {
      for (const auto& d : {wal_dir, snap_dir})
        for (auto& n : io.list(d))
          if (n != "snap.tmp")
            return fail(StorageError{StorageErrc::corrupt, data_dir + "/IDENTITY is missing but the directory holds data"});
      out.repairs.push_back("first use: the node will create the data directory's identity");
      return out;
    }
    if (!io.is_dir(wal_dir))
      return fail(StorageError{StorageErrc::corrupt, wal_dir + " is missing (IDENTITY is written only after it exists)"});
  } else {
    auto dd = DataDir::open(data_dir, o.cluster_id, o.node_id, io);
    if (!dd) return fail(dd.error());
    out.dir = std::move(*dd);
    if (!out.dir->first_use()) out.identity = Identity{o.cluster_id, o.node_id};
  }
  // 2. Snapshots.
  SnapshotStore store(snap_dir, io);
  auto newest = store.load_newest(&out.damage);
  if (!newest) return fail(newest.error());
  out.snapshot = *newest;
  // 3. WAL.
  WalOptions wo = o.wal;
  wo.io = &io;
  wo.read_only = o.read_only;
  Recovered rec;
  auto wal = Wal::open(wal_dir, wo, &rec);
  if (!wal) return fail(wal.error());
  out.repairs.insert(out.repairs.end(), rec.notes.begin(), rec.notes.end());
  out.hard_state = rec.hard_state;
  // 4. A reset needs its snapshot.
  raft::Index after = out.snapshot ? out.snapshot->meta.index : raft::Index{0};
  if (rec.reset && rec.reset->first > after)
    return fail(StorageError{StorageErrc::corrupt, "the WAL restarts after a snapshot at index " + std::to_string(rec.reset->first.value) +
                                                       " but no such snapshot file is present in " + snap_dir});
  // 5. Entries continue the snapshot.
  for (auto& e : rec.entries)
    if (e.index > after) out.entries.push_back(std::move(e));
  if (!out.entries.empty() && out.entries.front().index != after.next())
    return fail(StorageError{StorageErrc::corrupt, "the WAL's entries start at " + std::to_string(out.entries.front().index.value) +
                                                       ", not right after the snapshot at " + std::to_string(after.value) +
                                                       " (compacted past a snapshot that is not on disk)"});
  if (!o.read_only) {
    out.snapshots = std::make_unique<SnapshotStore>(snap_dir, io);
    out.wal = std::move(*wal);
  }
  return out;
}

}  // namespace tern::storage
