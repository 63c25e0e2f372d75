#pragma once
// The file operations storage uses, behind an interface so tests can inject faults (short
// writes, ENOSPC, EIO on fsync, torn writes and lost unsynced data at a simulated crash).
// Every call returns >= 0 on success or -errno.
#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

namespace tern::storage {

class Io {
 public:
  virtual ~Io() = default;
  virtual int open(const std::string& path, int flags, int mode);
  virtual ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off);
  virtual ssize_t pread(int fd, void* buf, std::size_t n, off_t off);
  virtual int fdatasync(int fd);
  virtual int fsync(int fd);
  virtual int ftruncate(int fd, off_t size);
  virtual int fallocate(int fd, off_t size);
  virtual off_t size(int fd);
  virtual int close(int fd);
  virtual int rename(const std::string& from, const std::string& to);
  virtual int unlink(const std::string& path);
  virtual int mkdir(const std::string& path);
  virtual int fsync_dir(const std::string& path);
  // Names in a directory (no "." or ".."), sorted; empty if it does not exist.
  virtual std::vector<std::string> list(const std::string& dir);
  // Creates `path` if needed and takes an exclusive lock on it; returns a descriptor whose
  // close() releases the lock, or -EWOULDBLOCK if another process (or descriptor) holds it.
  virtual int lock(const std::string& path);
  virtual bool is_dir(const std::string& path);
};

Io& posix_io();

// The directory holding `path` ("." for a bare name); trailing slashes are ignored.
std::string parent_dir(const std::string& path);

// Writes all of buf at off, retrying short writes. Returns 0 or -errno.
int write_full(Io& io, int fd, const void* buf, std::size_t n, off_t off);
// Reads exactly n bytes at off. Returns 0, -errno, or -EIO on a short read.
int read_full(Io& io, int fd, void* buf, std::size_t n, off_t off);

}  // namespace tern::storage
