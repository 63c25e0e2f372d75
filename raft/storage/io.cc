#include "raft/storage/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace tern::storage {

namespace {
int ret(int r) { return r < 0 ? -errno : r; }
}  // namespace

int Io::open(const std::string& path, int flags, int mode) { return ret(::open(path.c_str(), flags | O_CLOEXEC, mode)); }
ssize_t Io::pwrite(int fd, const void* buf, std::size_t n, off_t off) {
  ssize_t r = ::pwrite(fd, buf, n, off);
  return r < 0 ? -errno : r;
}
ssize_t Io::pread(int fd, void* buf, std::size_t n, off_t off) {
  ssize_t r = ::pread(fd, buf, n, off);
  return r < 0 ? -errno : r;
}
int Io::fdatasync(int fd) { return ret(::fdatasync(fd)); }
int Io::fsync(int fd) { return ret(::fsync(fd)); }
int Io::ftruncate(int fd, off_t size) { return ret(::ftruncate(fd, size)); }
int Io::fallocate(int fd, off_t size) {
  int r = ::posix_fallocate(fd, 0, size);
  return r == 0 ? 0 : -r;
}
off_t Io::size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return -errno;
  return st.st_size;
}
int Io::close(int fd) { return ret(::close(fd)); }
int Io::rename(const std::string& from, const std::string& to) { return ret(::rename(from.c_str(), to.c_str())); }
int Io::unlink(const std::string& path) { return ret(::unlink(path.c_str())); }
int Io::mkdir(const std::string& path) {
  int r = ::mkdir(path.c_str(), 0755);
  return r < 0 && errno != EEXIST ? -errno : 0;
}
int Io::fsync_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int r = ::fsync(fd);
  int e = errno;
  ::close(fd);
  return r < 0 ? -e : 0;
}
std::vector<std::string> Io::list(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

int Io::lock(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  if (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  return fd;
}

bool Io::is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Io& posix_io() {
  static Io io;
  return io;
}

std::string parent_dir(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::size_t k = p.rfind('/');
  if (k == std::string::npos) return ".";
  if (k == 0) return "/";
  return p.substr(0, k);
}

int write_full(Io& io, int fd, const void* buf, std::size_t n, off_t off) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = io.pwrite(fd, p, n, off);
    if (w < 0) return static_cast<int>(w);
    if (w == 0) return -EIO;
    p += w;
    n -= static_cast<std::size_t>(w);
    off += w;
  }
  return 0;
}

int read_full(Io& io, int fd, void* buf, std::size_t n, off_t off) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = io.pread(fd, p, n, off);
    if (r < 0) return static_cast<int>(r);
    if (r == 0) return -EIO;
    p += r;
    n -= static_cast<std::size_t>(r);
    off += r;
  }
  return 0;
}

}  // namespace tern::storage
