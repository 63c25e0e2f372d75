#pragma once
// Snapshot files: the state machine's bytes with a checksummed header.
//
// ON-DISK FORMAT (docs/storage-format.md)
//   <dir>/snap-<index:020>-<term:020>.snap, written as <dir>/snap.tmp, fsynced, renamed, and the
//   directory fsynced. The two newest are kept.
//   file   = header | data
//   header = "TERNSNP1" | header_length u32 | index u64 | term u64 | flags u32 | voter count u32
//            | voter ids u64* | learner count u32 | learner ids u64* | data_size u64 | data_crc u32
//            | header_crc u32
//   (little-endian; flags bit 0: data is one zstd frame; data_size and data_crc describe the
//   stored bytes; header_crc is the CRC32C of every header byte before it).
// load_newest() returns the newest snapshot whose header and data verify; a damaged one is
// reported in `notes` and the previous one is used.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "raft/storage/error.h"
#include "raft/storage/io.h"
#include "raft/types.h"

namespace tern::storage {

struct SnapshotFile {
  raft::SnapshotMeta meta;
  std::string path;
  std::uint64_t data_offset = 0;
  std::uint64_t data_size = 0;  // stored bytes (compressed if `compressed`)
  bool compressed = false;
};

// Streams one snapshot to disk in chunks (as they arrive from a leader, or from the state machine).
class SnapshotWriter {
 public:
  ~SnapshotWriter();
  Result<void, StorageError> write(std::string_view chunk);
  // Verifies, fsyncs, renames into place, fsyncs the directory and keeps the two newest.
  Result<SnapshotFile, StorageError> finish();

 private:
  friend class SnapshotStore;
  SnapshotWriter(Io& io, std::string dir, raft::SnapshotMeta meta, int fd, std::uint64_t header_size, bool compress);
  Result<void, StorageError> put(const char* data, std::size_t n);
  Result<void, StorageError> compress_chunk(std::string_view chunk, bool last);
  Io& io_;
  void* zstd_ = nullptr;  // ZSTD_CCtx* when compressing
  std::string dir_;
  raft::SnapshotMeta meta_;
  int fd_;
  std::uint64_t header_size_;
  std::uint64_t size_ = 0;
  std::uint32_t crc_ = 0;
  bool done_ = false;
};

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string dir, Io& io = posix_io());
  // compress: store the data as one zstd frame (chunks are compressed as they are written).
  Result<std::unique_ptr<SnapshotWriter>, StorageError> begin(const raft::SnapshotMeta& meta, bool compress = false);
  Result<SnapshotFile, StorageError> save(const raft::SnapshotMeta& meta, std::string_view data, bool compress = false);
  // The newest valid snapshot, or nullopt if there is none; damaged files are listed in notes.
  Result<std::optional<SnapshotFile>, StorageError> load_newest(std::vector<std::string>* notes = nullptr);
  // Reads [offset, offset + n) of the stored bytes (for streaming the file to a follower).
  Result<std::string, StorageError> read(const SnapshotFile& f, std::uint64_t offset, std::uint64_t n);
  // The state machine's bytes, decompressed if needed.
  Result<std::string, StorageError> read_all(const SnapshotFile& f);
  // Parses and verifies one file (used by ternutl).
  Result<SnapshotFile, StorageError> verify(const std::string& path);

  static constexpr int keep = 2;

 private:
  std::string dir_;
  Io& io_;
};

}  // namespace tern::storage
