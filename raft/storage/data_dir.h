#pragma once
// The data directory of one node.
//
// LAYOUT (docs/storage-format.md)
//   <dir>/LOCK      flock()ed exclusively while a process uses the directory
//   <dir>/IDENTITY  "tern-data-dir 1\ncluster_id <u64>\nnode_id <u64>\ncrc <u32>\n", written
//                   once on first use (temp file, fsync, rename, fsync dir)
//   <dir>/wal/      WAL segments (wal.h)
//   <dir>/snap/     snapshots (snapshot_store.h)
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "raft/storage/error.h"
#include "raft/storage/io.h"

namespace tern::storage {

class DataDir {
 public:
  // Locks the directory (creating it if needed), records the ids on first use and checks them
  // afterwards. Fails with `locked` if another process holds it, `id_mismatch` if the ids differ.
  static Result<std::unique_ptr<DataDir>, StorageError> open(const std::string& dir, std::uint64_t cluster_id,
                                                             std::uint64_t node_id, Io& io = posix_io());
  ~DataDir();
  const std::string& path() const { return dir_; }
  std::string wal_dir() const { return dir_ + "/wal"; }
  std::string snap_dir() const { return dir_ + "/snap"; }
  bool first_use() const { return first_use_; }

 private:
  DataDir(std::string dir, int lock_fd, Io& io) : dir_(std::move(dir)), lock_fd_(lock_fd), io_(io) {}
  std::string dir_;
  int lock_fd_;
  Io& io_;
  bool first_use_ = false;
};

}  // namespace tern::storage
