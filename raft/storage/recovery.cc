#include "raft/storage/recovery.h"

#include <fcntl.h>

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
  // 2b. What recovery builds on is made durable before anything durable builds on it. After a
  // crash that was not a power cut, the newest snapshot may be a file whose data or name was
  // never synced (the process died between its rename and the directory sync, or before it
  // could act on a failed sync); a WAL reset record written below, or a later WAL compaction,
  // would then outlive it at the next power cut and the node could not start again (found by
  // tern-sim --node; PowerCut.ASnapshotFoundAtRestartIsDurableBeforeTheWalIsResetAfterIt).
  if (!o.read_only && out.snapshot) {
    const std::string& path = out.snapshot->path;
    int fd = io.open(path, O_RDONLY, 0);
    if (fd < 0) return fail(errno_error(fd, "open " + path));
    int r = io.fsync(fd);
    io.close(fd);
    if (r < 0) return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + path).message});
    if (int d = io.fsync_dir(snap_dir); d < 0)
      return fail(StorageError{StorageErrc::fsync_failed, errno_error(d, "fsync " + snap_dir).message});
  }
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
  // 6 (checked before 5). The WAL must continue the snapshot: if it ends before the snapshot, or
  // holds another entry at its index, the reset that follows an installed snapshot was lost
  // with a cut (the file is durable before the reset is written). Write it again.
  if (out.snapshot) {
    const auto& m = out.snapshot->meta;
    // Keep the WAL only if it provably continues the snapshot (Log Matching, Raft §5.3): its
    // entry at the snapshot index has the snapshot's term, or its reset record is this very
    // snapshot's, or (no entry there, no reset there) this node compacted past it, which it does
    // only below one of its own snapshots of committed entries.
    raft::Index last = !rec.entries.empty() ? rec.entries.back().index : rec.reset ? rec.reset->first : raft::Index{0};
    std::optional<raft::Term> term_at;
    for (auto& e : rec.entries)
      if (e.index == m.index) term_at = e.term;
    bool keep = true;
    if (last < m.index)
      keep = false;  // ends before the snapshot: the next append would leave a gap
    else if (term_at)
      keep = *term_at == m.term;
    else if (rec.reset && rec.reset->first == m.index)
      keep = rec.reset->second == m.term;
    if (!keep && !o.wal.broken.recovery_rewrites_reset) {
      std::string what = "the WAL does not continue the snapshot at " + std::to_string(m.index.value) + " (term " +
                         std::to_string(m.term.value) + "): its reset record was lost";
      // The hard state written with the lost reset carried a term at least the snapshot's (the
      // leader that sent it); a term below it would make the core's restart inconsistent.
      std::optional<raft::HardState> hs;
      if (out.hard_state.term < m.term) hs = raft::HardState{m.term, raft::NodeId{}, m.index};
      if (o.read_only) {
        out.repairs.push_back(what + "; the node writes it again");
      } else {
        auto r = (*wal)->write(WriteBatch{std::make_pair(m.index, m.term), {}, hs});
        if (!r) return fail(r.error());
        out.repairs.push_back(what + "; wrote it again");
      }
      if (hs) out.hard_state = *hs;  // verify reports what the node starts with
      rec.entries.clear();
    }
  }
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
