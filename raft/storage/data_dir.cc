#include "raft/storage/data_dir.h"

#include <fcntl.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "raft/storage/crc32c.h"

namespace tern::storage {

namespace {
std::string identity_text(std::uint64_t cluster, std::uint64_t node) {
  char body[128];
  std::snprintf(body, sizeof body, "tern-data-dir 1\ncluster_id %" PRIu64 "\nnode_id %" PRIu64 "\n", cluster, node);
  std::string s = body;
  char crc[32];
  std::snprintf(crc, sizeof crc, "crc %u\n", crc32c(s.data(), s.size()));
  return s + crc;
}
}  // namespace

Result<std::unique_ptr<DataDir>, StorageError> DataDir::open(const std::string& dir, std::uint64_t cluster_id,
                                                             std::uint64_t node_id, Io& io) {
  if (int r = io.mkdir(dir); r < 0) return fail(errno_error(r, "create data directory " + dir));
  int fd = io.lock(dir + "/LOCK");
  if (fd == -EWOULDBLOCK || fd == -EAGAIN)
    return fail(StorageError{StorageErrc::locked, "data directory " + dir + " is in use by another process"});
  if (fd < 0) return fail(errno_error(fd, "open " + dir + "/LOCK"));
  std::unique_ptr<DataDir> d(new DataDir(dir, fd, io));
  std::string path = dir + "/IDENTITY";
  std::string want = identity_text(cluster_id, node_id);
  int id_fd = io.open(path, O_RDONLY, 0);
  if (id_fd >= 0) {
    off_t size = io.size(id_fd);
    std::string have(size > 0 ? static_cast<std::size_t>(size) : 0, '\0');
    int r = size > 0 ? read_full(io, id_fd, have.data(), have.size(), 0) : 0;
    io.close(id_fd);
    if (r < 0) return fail(errno_error(r, "read " + path));
    if (have != want) {
      return fail(StorageError{StorageErrc::id_mismatch, path + " records another cluster or node (" + have.substr(0, have.find("crc")) +
                                                             "), expected cluster_id " + std::to_string(cluster_id) +
                                                             " node_id " + std::to_string(node_id)});
    }
    return d;
  }
  // First use: write the identity atomically.
  std::string tmp = path + ".tmp";
  int w = io.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (w < 0) return fail(errno_error(w, "create " + tmp));
  int r = write_full(io, w, want.data(), want.size(), 0);
  if (r == 0) r = io.fsync(w);
  io.close(w);
  if (r < 0) return fail(errno_error(r, "write " + tmp));
  if (int e = io.rename(tmp, path); e < 0) return fail(errno_error(e, "rename " + tmp));
  if (int e = io.fsync_dir(dir); e < 0) return fail(errno_error(e, "fsync " + dir));
  d->first_use_ = true;
  return d;
}

DataDir::~DataDir() {
  if (lock_fd_ >= 0) io_.close(lock_fd_);  // releases the lock
}

}  // namespace tern::storage
