#pragma once
// SimFs: an in-memory file system behind storage::Io that models what a power cut does, for
// tests that run the real Wal, SnapshotStore and DataDir (issue 15; docs/storage-format.md,
// "The crash model").
//
// DURABILITY RULES (what survives crash())
//   - File data is cached in 4 KiB pages. A page written since the file's last fsync/fdatasync is
//     dirty; at a crash each dirty page independently keeps its last durable content, any of the
//     versions it had since (the newest SimFs::max_page_versions), or a torn mix: each 512-byte
//     sector either old or newest. Pages reach the disk in any order.
//   - File size: changes (writes past the end, ftruncate, fallocate) are durable only after
//     fsync or fdatasync of the file. fdatasync persists the size like fsync does (Linux: the size
//     is metadata needed to read the data back). At a crash an unsynced file has its durable
//     size or any size it had since. Bytes never written durably read as zeros (so preallocated
//     space reads as zeros, as does space exposed by a larger size).
//   - Names: create, mkdir, rename and unlink change a directory; each is durable only after
//     fsync_dir of every directory it touches. At a crash each non-durable one is independently
//     kept or undone (replayed in order from the durable names; an op whose precondition no
//     longer holds is skipped); entries whose directory vanished vanish too. fsync of a file does
//     NOT make its name durable (POSIX; ext4 happens to, others need not).
//   - A crash closes every descriptor and releases every lock.
// FAULTS: a predicate sees every operation before it runs and may make it fail with an errno
// (EIO from fsync, ENOSPC from pwrite/fallocate, ...); fail_nth() is the common case. A failed
// fsync leaves the pages dirty (they may still be lost). A failed write changes nothing.
// TRACE: every operation can be recorded (and mark() adds labels such as acknowledgements); an
// observer is called after each operation, outside the lock (it may clone() the file system).
// THREADS: every method takes one mutex, so the WAL's disk thread may call it; the workloads
// that need determinism call it from one thread at a time.
// Descriptors are allocated like POSIX does (lowest free number from 3), so closing a stale
// descriptor really closes another file; bad_closes() counts closes of unused descriptors.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "raft/storage/io.h"

namespace tern::testing {

class SimFs : public storage::Io {
 public:
  static constexpr std::size_t page_bytes = 4096;
  static constexpr std::size_t sector_bytes = 512;
  static constexpr std::size_t max_page_versions = 4;  // intermediate versions kept per dirty page
  static constexpr std::size_t max_trace = 1 << 20;    // trace records kept (oldest dropped)

  enum class Op : std::uint8_t { open, pwrite, pread, fdatasync, fsync, ftruncate, fallocate, size, close, rename, unlink,
                                 mkdir, fsync_dir, list, lock, mark };
  static const char* op_name(Op op);

  struct Record {
    std::uint64_t seq = 0;  // 1, 2, ... per operation (marks included)
    Op op = Op::mark;
    std::string path;   // the file or directory (for fd operations: the path it was opened as)
    std::string path2;  // rename target; mark label
    int fd = -1;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;  // bytes, or the size for ftruncate/fallocate
    std::int64_t result = 0;   // as returned (>= 0 or -errno)
  };

  // One decision a crash makes; a Chooser returns a number in [0, n). Alternative n-1 is always
  // "as if everything had been synced" (keep the op, the newest size, the newest page).
  enum class Choice : std::uint8_t { keep_op, size, page, sector };
  using Chooser = std::function<std::size_t(Choice what, std::size_t n)>;
  using Fault = std::function<int(const Record& op)>;  // 0: run it; else fail it with -errno

  SimFs();
  SimFs(const SimFs&) = delete;
  SimFs& operator=(const SimFs&) = delete;
  // A copy of the current state (contents, names, durability, open descriptors), without the
  // fault predicate, observer or trace.
  std::unique_ptr<SimFs> clone() const;

  // ---- storage::Io ----
  int open(const std::string& path, int flags, int mode) override;
  ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) override;
  ssize_t pread(int fd, void* buf, std::size_t n, off_t off) override;
  int fdatasync(int fd) override;
  int fsync(int fd) override;
  int ftruncate(int fd, off_t size) override;
  int fallocate(int fd, off_t size) override;
  off_t size(int fd) override;
  int close(int fd) override;
  int rename(const std::string& from, const std::string& to) override;
  int unlink(const std::string& path) override;
  int mkdir(const std::string& path) override;
  int fsync_dir(const std::string& path) override;
  std::vector<std::string> list(const std::string& dir) override;
  int lock(const std::string& path) override;
  bool is_dir(const std::string& path) override;

  // ---- power cuts ----
  void crash(const Chooser& choose);
  void crash(std::mt19937_64& rng);  // uniform choices, torn pages 1 in 8
  void crash_keep_all();             // everything issued survives, as if synced
  void crash_lose_all();             // only what was made durable survives
  // Every crash state, systematically (odometer order over the choices), up to `limit` of them:
  // fn gets each as a fresh file system. Returns how many were produced (all if < limit).
  std::size_t enumerate_crashes(std::size_t limit, const std::function<void(SimFs&)>& fn) const;
  // How many decisions a crash would make now (0: the state is fully durable).
  std::size_t pending_choices() const;

  // ---- setup and inspection ----
  void mkdirs_durable(const std::string& path);  // creates every missing component, durably
  bool exists(const std::string& path) const;
  std::string read_file(const std::string& path) const;  // current contents ("" if absent)
  void write_file_durable(const std::string& path, const std::string& data);
  std::vector<std::string> all_paths() const;  // current names, sorted
  std::size_t bad_closes() const;
  std::size_t open_fds() const;

  // ---- faults and tracing ----
  void set_fault(Fault f);
  // A lying disk, to show which syncs a guarantee depends on: an fsync, fdatasync or fsync_dir
  // for which `lie` returns true succeeds without making anything durable.
  void set_lie(std::function<bool(const Record& op)> lie);
  // The nth (1-based, counted from now) operation of kind `op` fails with -err; later ones pass.
  void fail_nth(Op op, std::uint64_t n, int err);
  void set_trace(bool on);
  std::vector<Record> trace() const;
  void mark(const std::string& label);
  void set_observer(std::function<void(const Record&)> f);
  std::uint64_t op_count() const;

  static std::string normalize(const std::string& path);
  static std::string parent_of(const std::string& path);

 private:
  using Page = std::shared_ptr<const std::string>;
  struct Inode {
    std::map<std::uint64_t, Page> cur, dur;  // absent page = zeros
    std::uint64_t cur_size = 0, dur_size = 0;
    std::vector<std::uint64_t> sizes;                 // sizes since the last sync (newest last)
    std::map<std::uint64_t, std::vector<Page>> dirty;  // page -> versions since the last sync
  };
  struct Entry {
    bool dir = false;
    std::uint64_t inode = 0;  // files only
  };
  enum class NsKind : std::uint8_t { create, mkdir, rename, unlink };
  struct NsOp {
    NsKind kind;
    std::string a, b;
    Entry e;
    std::set<std::string> unsynced_dirs;  // durable once empty
  };
  struct OpenFile {
    std::uint64_t inode;
    std::string path;
    bool writable;
  };
  struct State {
    std::map<std::string, Entry> names, durable_names;
    std::vector<NsOp> pending;
    std::map<std::uint64_t, Inode> inodes;
    std::uint64_t next_inode = 1;
    std::map<int, OpenFile> fds;
    std::set<std::string> locked;
    std::map<int, std::string> lock_fds;
  };

  std::int64_t begin(Record& r);  // consults the fault predicate; returns 0 or -errno
  void finish(std::unique_lock<std::mutex>& lk, Record r, std::int64_t result);
  int alloc_fd();
  int sync_locked(int fd);
  void write_locked(Inode& ino, const char* buf, std::size_t n, std::uint64_t off);
  void set_size_locked(Inode& ino, std::uint64_t size);
  void add_ns_op(NsKind k, const std::string& a, const std::string& b, Entry e);
  static bool apply(std::map<std::string, Entry>& names, const NsOp& op, bool check_parent);
  static void prune(std::map<std::string, Entry>& names);
  static std::vector<std::string> children(const std::map<std::string, Entry>& names, const std::string& dir);

  mutable std::mutex mu_;
  State s_;
  Fault fault_;
  std::function<bool(const Record&)> lie_;
  std::function<void(const Record&)> observer_;
  bool tracing_ = false;
  std::vector<Record> trace_;
  std::uint64_t seq_ = 0;
  std::size_t bad_closes_ = 0;
};

}  // namespace tern::testing
