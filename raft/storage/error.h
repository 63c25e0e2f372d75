#pragma once
// Storage errors are values; the message names the file and offset involved.
#include <cstdint>
#include <string>

namespace tern::storage {

enum class StorageErrc : std::uint8_t {
  io_error,      // read/write failed (EIO, EROFS, EACCES, ...)
  no_space,      // ENOSPC / EDQUOT: nothing acknowledged was lost; free space and retry the process
  corrupt,       // a checksum failure followed by valid data, or a malformed file: refuse to start
  fsync_failed,  // fail-stop: the process must exit; an fsync is never retried
  failed,        // an earlier fatal error; the store accepts nothing more
  locked,        // another process holds the data directory
  id_mismatch,   // the data directory belongs to another cluster or node
  bad_argument,  // a caller bug (e.g. a gap in appended entries)
  queue_full,    // too many batches queued for the disk thread
};

const char* errc_name(StorageErrc c);

struct StorageError {
  StorageErrc code;
  std::string message;
};

StorageError errno_error(int neg_errno, const std::string& what);

}  // namespace tern::storage
