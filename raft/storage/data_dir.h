#pragma once
// The data directory of one node.
//
// LAYOUT (docs/storage-format.md)
//   <dir>/LOCK      flock()ed exclusively while a process uses the directory
//   <dir>/IDENTITY  "tern-data-dir 1\ncluster_id <u64>\nnode_id <u64>\ncrc <u32>\n", written
//                   once on first use (temp file, fsync, rename, fsync dir), after wal/ and snap/
//                   are durable; so IDENTITY present implies wal/ present.
//   <dir>/wal/      WAL segments (wal.h)
//   <dir>/snap/     snapshots (snapshot_store.h)
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "raft/storage/error.h"
#include "raft/storage/io.h"

namespace tern::storage {

struct Identity {
  std::uint64_t cluster_id = 0;
  std::uint64_t node_id = 0;
};

// IDENTITY of `dir`: nullopt if it does not exist (ENOENT only), an error if it cannot be read,
// `corrupt` if its syntax or checksum is wrong.
Result<std::optional<Identity>, StorageError> read_identity(const std::string& dir, Io& io);

class DataDir {
 public:
  // Locks the directory (creating it, wal/ and snap/ durably if needed), records the ids on
  // first use and checks them afterwards. Fails with `locked` if another process holds it,
  // `id_mismatch` if the ids differ, `corrupt` if IDENTITY is damaged, if wal/ is missing while
  // IDENTITY exists, or if IDENTITY is missing while wal/ or snap/ holds files.
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
