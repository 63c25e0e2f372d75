#include "raft/storage/error.h"

#include <cerrno>
#include <cstring>

namespace tern::storage {

const char* errc_name(StorageErrc c) {
  switch (c) {
    case StorageErrc::io_error: return "io_error";
    case StorageErrc::no_space: return "no_space";
    case StorageErrc::corrupt: return "corrupt";
    case StorageErrc::fsync_failed: return "fsync_failed";
    case StorageErrc::failed: return "failed";
    case StorageErrc::locked: return "locked";
    case StorageErrc::id_mismatch: return "id_mismatch";
    case StorageErrc::bad_argument: return "bad_argument";
    case StorageErrc::queue_full: return "queue_full";
  }
  return "?";
}

StorageError errno_error(int neg_errno, const std::string& what) {
  int e = -neg_errno;
  StorageErrc code = (e == ENOSPC || e == EDQUOT) ? StorageErrc::no_space : StorageErrc::io_error;
  return StorageError{code, what + ": " + std::strerror(e)};
}

}  // namespace tern::storage
