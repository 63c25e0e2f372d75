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

bool holds_files(Io& io, const std::string& dir) {
  for (auto& n : io.list(dir))
    if (n != "snap.tmp") return true;
  return false;
}
}  // namespace

Result<std::optional<Identity>, StorageError> read_identity(const std::string& dir, Io& io) {
  std::string path = dir + "/IDENTITY";
  int fd = io.open(path, O_RDONLY, 0);
  // Only ENOENT means "not written yet"; any other error (EACCES, EIO, EMFILE...) is an error,
  // never a first use (which would let another node's ids take the directory over).
  if (fd == -ENOENT) return std::optional<Identity>();
  if (fd < 0) return fail(errno_error(fd, "open " + path));
  off_t size = io.size(fd);
  std::string have(size > 0 && size < 4096 ? static_cast<std::size_t>(size) : 0, '\0');
  int r = size < 0 ? static_cast<int>(size) : (size > 0 && size < 4096 ? read_full(io, fd, have.data(), have.size(), 0) : 0);
  io.close(fd);
  if (r < 0) return fail(errno_error(r, "read " + path));
  unsigned long long cluster = 0, node = 0;
  int used = 0;
  if (std::sscanf(have.c_str(), "tern-data-dir 1\ncluster_id %llu\nnode_id %llu\n%n", &cluster, &node, &used) != 2 || used <= 0 ||
      identity_text(cluster, node) != have)
    return fail(StorageError{StorageErrc::corrupt, path + " is damaged (" + std::to_string(have.size()) + " bytes, checksum or syntax wrong)"});
  return std::optional<Identity>(Identity{cluster, node});
}

Result<std::unique_ptr<DataDir>, StorageError> DataDir::open(const std::string& dir, std::uint64_t cluster_id,
                                                             std::uint64_t node_id, Io& io) {
  auto dir_synced = [&](const std::string& d) -> Result<void, StorageError> {
    if (int r = io.fsync_dir(d); r < 0) return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + d).message});
    return {};
  };
  // Every directory is durable in its parent before anything acknowledged goes into it.
  if (int r = io.mkdir(dir); r < 0) return fail(errno_error(r, "create data directory " + dir));
  if (auto r = dir_synced(parent_dir(dir)); !r) return fail(r.error());
  int fd = io.lock(dir + "/LOCK");
  if (fd == -EWOULDBLOCK || fd == -EAGAIN)
    return fail(StorageError{StorageErrc::locked, "data directory " + dir + " is in use by another process"});
  if (fd < 0) return fail(errno_error(fd, "open " + dir + "/LOCK"));
  std::unique_ptr<DataDir> d(new DataDir(dir, fd, io));
  auto have = read_identity(dir, io);
  if (!have) return fail(have.error());
  if (*have) {
    if ((*have)->cluster_id != cluster_id || (*have)->node_id != node_id)
      return fail(StorageError{StorageErrc::id_mismatch, dir + "/IDENTITY records cluster_id " + std::to_string((*have)->cluster_id) +
                                                             " node_id " + std::to_string((*have)->node_id) + ", expected cluster_id " +
                                                             std::to_string(cluster_id) + " node_id " + std::to_string(node_id)});
    if (!io.is_dir(d->wal_dir()))
      return fail(StorageError{StorageErrc::corrupt, d->wal_dir() + " is missing (IDENTITY is written only after it exists)"});
    return d;
  }
  // First use. IDENTITY is written last, so a directory with data but without IDENTITY is not a
  // crash state: refuse it rather than stamp someone's data with our ids.
  if (holds_files(io, d->wal_dir()) || holds_files(io, d->snap_dir()))
    return fail(StorageError{StorageErrc::corrupt, dir + "/IDENTITY is missing but the directory holds data"});
  for (const auto& sub : {d->wal_dir(), d->snap_dir()})
    if (int r = io.mkdir(sub); r < 0) return fail(errno_error(r, "create " + sub));
  if (auto r = dir_synced(dir); !r) return fail(r.error());
  std::string path = dir + "/IDENTITY";
  std::string tmp = path + ".tmp";
  std::string want = identity_text(cluster_id, node_id);
  int w = io.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (w < 0) return fail(errno_error(w, "create " + tmp));
  int r = write_full(io, w, want.data(), want.size(), 0);
  if (r == 0) {
    r = io.fsync(w);
    if (r < 0) {
      io.close(w);
      return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + tmp).message});
    }
  }
  io.close(w);
  if (r < 0) return fail(errno_error(r, "write " + tmp));
  if (int e = io.rename(tmp, path); e < 0) return fail(errno_error(e, "rename " + tmp));
  if (auto e = dir_synced(dir); !e) return fail(e.error());
  d->first_use_ = true;
  return d;
}

DataDir::~DataDir() {
  if (lock_fd_ >= 0) io_.close(lock_fd_);  // releases the lock
}

}  // namespace tern::storage
