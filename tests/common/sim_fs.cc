#include "tests/common/sim_fs.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/assert.h"

namespace tern::testing {

namespace {
const std::string& zero_page() {
  static const std::string z(SimFs::page_bytes, '\0');
  return z;
}
}  // namespace

const char* SimFs::op_name(Op op) {
  switch (op) {
    case Op::open: return "open";
    case Op::pwrite: return "pwrite";
    case Op::pread: return "pread";
    case Op::fdatasync: return "fdatasync";
    case Op::fsync: return "fsync";
    case Op::ftruncate: return "ftruncate";
    case Op::fallocate: return "fallocate";
    case Op::size: return "size";
    case Op::close: return "close";
    case Op::rename: return "rename";
    case Op::unlink: return "unlink";
    case Op::mkdir: return "mkdir";
    case Op::fsync_dir: return "fsync_dir";
    case Op::list: return "list";
    case Op::lock: return "lock";
    case Op::mark: return "mark";
  }
  return "?";
}

std::string SimFs::normalize(const std::string& path) {
  std::string out = "/";
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    if (!part.empty() && part != ".") {
      if (out.size() > 1) out += '/';
      out += part;
    }
    i = j + 1;
  }
  return out;
}

std::string SimFs::parent_of(const std::string& path) {
  std::size_t k = path.rfind('/');
  if (k == std::string::npos || k == 0) return "/";
  return path.substr(0, k);
}

SimFs::SimFs() {
  s_.names["/"] = Entry{true, 0};
  s_.durable_names["/"] = Entry{true, 0};
}

std::unique_ptr<SimFs> SimFs::clone() const {
  auto c = std::make_unique<SimFs>();
  std::lock_guard lk(mu_);
  c->s_ = s_;
  c->seq_ = seq_;
  return c;
}

// ---- bookkeeping ----

std::int64_t SimFs::begin(Record& r) {
  r.seq = ++seq_;
  if (fault_)
    if (int e = fault_(r); e != 0) return -std::abs(e);
  return 0;
}

void SimFs::finish(std::unique_lock<std::mutex>& lk, Record r, std::int64_t result) {
  r.result = result;
  if (tracing_) {
    if (trace_.size() >= max_trace) trace_.erase(trace_.begin(), trace_.begin() + max_trace / 2);
    trace_.push_back(r);
  }
  auto obs = observer_;
  lk.unlock();
  if (obs) obs(r);
}

int SimFs::alloc_fd() {
  int fd = 3;
  for (auto& [k, v] : s_.fds) {
    if (k != fd) break;
    ++fd;
  }
  return fd;
}

std::vector<std::string> SimFs::children(const std::map<std::string, Entry>& names, const std::string& dir) {
  std::vector<std::string> out;
  std::string prefix = dir == "/" ? "/" : dir + "/";
  for (auto it = names.lower_bound(prefix); it != names.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    if (it->first == "/") continue;
    std::string rest = it->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) out.push_back(rest);
  }
  return out;
}

void SimFs::add_ns_op(NsKind k, const std::string& a, const std::string& b, Entry e) {
  NsOp op{k, a, b, e, {}};
  op.unsynced_dirs.insert(parent_of(a));
  if (k == NsKind::rename) op.unsynced_dirs.insert(parent_of(b));
  s_.pending.push_back(std::move(op));
}

bool SimFs::apply(std::map<std::string, Entry>& names, const NsOp& op, bool check_parent) {
  auto parent_is_dir = [&](const std::string& p) {
    if (!check_parent) return true;  // a synced entry whose directory is not durable: pruned at a crash
    auto it = names.find(parent_of(p));
    return it != names.end() && it->second.dir;
  };
  switch (op.kind) {
    case NsKind::create:
    case NsKind::mkdir:
      if (!parent_is_dir(op.a)) return false;
      names[op.a] = op.e;
      return true;
    case NsKind::rename: {
      auto it = names.find(op.a);
      if (it == names.end() || it->second.dir || !parent_is_dir(op.b)) return false;
      Entry e = it->second;
      names.erase(it);
      names[op.b] = e;
      return true;
    }
    case NsKind::unlink:
      return names.erase(op.a) > 0;
  }
  return false;
}

void SimFs::prune(std::map<std::string, Entry>& names) {
  // Parents sort before their children, so one pass removes whole vanished subtrees.
  for (auto it = names.begin(); it != names.end();) {
    if (it->first != "/") {
      auto p = names.find(parent_of(it->first));
      if (p == names.end() || !p->second.dir) {
        it = names.erase(it);
        continue;
      }
    }
    ++it;
  }
}

// ---- storage::Io ----

int SimFs::open(const std::string& path_in, int flags, int /*mode*/) {
  std::unique_lock lk(mu_);
  std::string path = normalize(path_in);
  Record r{0, Op::open, path, "", -1, 0, static_cast<std::uint64_t>(flags), 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    auto it = s_.names.find(path);
    auto parent = s_.names.find(parent_of(path));
    if (it != s_.names.end() && it->second.dir) {
      res = -EISDIR;
    } else if (it == s_.names.end()) {
      if (!(flags & O_CREAT)) res = -ENOENT;
      else if (parent == s_.names.end() || !parent->second.dir) res = -ENOENT;
      else {
        Entry e{false, s_.next_inode++};
        s_.inodes[e.inode] = Inode{};
        s_.names[path] = e;
        add_ns_op(NsKind::create, path, "", e);
        it = s_.names.find(path);
      }
    } else if ((flags & O_CREAT) && (flags & O_EXCL)) {
      res = -EEXIST;
    }
    if (res == 0) {
      Inode& ino = s_.inodes.at(it->second.inode);
      bool writable = (flags & O_ACCMODE) != O_RDONLY;
      if ((flags & O_TRUNC) && writable) set_size_locked(ino, 0);
      int fd = alloc_fd();
      s_.fds[fd] = OpenFile{it->second.inode, path, writable};
      res = fd;
    }
  }
  r.fd = res >= 0 ? static_cast<int>(res) : -1;
  finish(lk, r, res);
  return static_cast<int>(res);
}

void SimFs::set_size_locked(Inode& ino, std::uint64_t size) {
  if (size < ino.cur_size) {
    // Drop whole pages past the end and zero the tail of the last partial page.
    for (auto it = ino.cur.lower_bound((size + page_bytes - 1) / page_bytes); it != ino.cur.end();) it = ino.cur.erase(it);
    if (size % page_bytes != 0) {
      std::uint64_t p = size / page_bytes;
      auto it = ino.cur.find(p);
      if (it != ino.cur.end()) {
        auto page = std::make_shared<std::string>(*it->second);
        std::memset(page->data() + size % page_bytes, 0, page_bytes - size % page_bytes);
        it->second = page;
        auto& v = ino.dirty[p];
        v.push_back(page);
        if (v.size() > max_page_versions) v.erase(v.begin());
      }
    }
  }
  if (size != ino.cur_size) {
    ino.cur_size = size;
    ino.sizes.push_back(size);
    if (ino.sizes.size() > max_page_versions) ino.sizes.erase(ino.sizes.begin());
  }
}

void SimFs::write_locked(Inode& ino, const char* buf, std::size_t n, std::uint64_t off) {
  std::uint64_t end = off + n;
  for (std::uint64_t p = off / page_bytes; p * page_bytes < end; ++p) {
    auto it = ino.cur.find(p);
    auto page = std::make_shared<std::string>(it == ino.cur.end() ? zero_page() : *it->second);
    std::uint64_t from = std::max(off, p * page_bytes), to = std::min(end, (p + 1) * page_bytes);
    std::memcpy(page->data() + (from - p * page_bytes), buf + (from - off), to - from);
    ino.cur[p] = page;
    auto& v = ino.dirty[p];
    v.push_back(page);
    if (v.size() > max_page_versions) v.erase(v.begin());
  }
  if (end > ino.cur_size) set_size_locked(ino, end);
}

ssize_t SimFs::pwrite(int fd, const void* buf, std::size_t n, off_t off) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::pwrite, f == s_.fds.end() ? "" : f->second.path, "", fd, static_cast<std::uint64_t>(off), n, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    if (f == s_.fds.end() || !f->second.writable) res = -EBADF;
    else if (off < 0) res = -EINVAL;
    else {
      write_locked(s_.inodes.at(f->second.inode), static_cast<const char*>(buf), n, static_cast<std::uint64_t>(off));
      res = static_cast<std::int64_t>(n);
    }
  }
  finish(lk, r, res);
  return static_cast<ssize_t>(res);
}

ssize_t SimFs::pread(int fd, void* buf, std::size_t n, off_t off) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::pread, f == s_.fds.end() ? "" : f->second.path, "", fd, static_cast<std::uint64_t>(off), n, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    if (f == s_.fds.end()) res = -EBADF;
    else if (off < 0) res = -EINVAL;
    else {
      const Inode& ino = s_.inodes.at(f->second.inode);
      std::uint64_t o = static_cast<std::uint64_t>(off);
      std::uint64_t end = std::min<std::uint64_t>(ino.cur_size, o + n);
      auto* out = static_cast<char*>(buf);
      for (std::uint64_t at = o; at < end;) {
        std::uint64_t p = at / page_bytes, in = at % page_bytes;
        std::uint64_t k = std::min<std::uint64_t>(page_bytes - in, end - at);
        auto it = ino.cur.find(p);
        std::memcpy(out + (at - o), (it == ino.cur.end() ? zero_page() : *it->second).data() + in, k);
        at += k;
      }
      res = end > o ? static_cast<std::int64_t>(end - o) : 0;
    }
  }
  finish(lk, r, res);
  return static_cast<ssize_t>(res);
}

int SimFs::sync_locked(int fd) {
  auto f = s_.fds.find(fd);
  if (f == s_.fds.end()) return -EBADF;
  Inode& ino = s_.inodes.at(f->second.inode);
  ino.dur = ino.cur;
  ino.dur_size = ino.cur_size;
  ino.dirty.clear();
  ino.sizes.clear();
  return 0;
}

int SimFs::fdatasync(int fd) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::fdatasync, f == s_.fds.end() ? "" : f->second.path, "", fd, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0 && !(lie_ && lie_(r))) res = sync_locked(fd);  // data and size (see the header)
  else if (res == 0 && f == s_.fds.end()) res = -EBADF;
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::fsync(int fd) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::fsync, f == s_.fds.end() ? "" : f->second.path, "", fd, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0 && !(lie_ && lie_(r))) res = sync_locked(fd);
  else if (res == 0 && f == s_.fds.end()) res = -EBADF;
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::ftruncate(int fd, off_t size) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::ftruncate, f == s_.fds.end() ? "" : f->second.path, "", fd, 0, static_cast<std::uint64_t>(size), 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    if (f == s_.fds.end() || !f->second.writable) res = -EBADF;
    else if (size < 0) res = -EINVAL;
    else set_size_locked(s_.inodes.at(f->second.inode), static_cast<std::uint64_t>(size));
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::fallocate(int fd, off_t size) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::fallocate, f == s_.fds.end() ? "" : f->second.path, "", fd, 0, static_cast<std::uint64_t>(size), 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    if (f == s_.fds.end() || !f->second.writable) res = -EBADF;
    else if (size < 0) res = -EINVAL;
    else {
      Inode& ino = s_.inodes.at(f->second.inode);
      if (static_cast<std::uint64_t>(size) > ino.cur_size) set_size_locked(ino, static_cast<std::uint64_t>(size));
    }
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

off_t SimFs::size(int fd) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::size, f == s_.fds.end() ? "" : f->second.path, "", fd, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0) res = f == s_.fds.end() ? -EBADF : static_cast<std::int64_t>(s_.inodes.at(f->second.inode).cur_size);
  finish(lk, r, res);
  return static_cast<off_t>(res);
}

int SimFs::close(int fd) {
  std::unique_lock lk(mu_);
  auto f = s_.fds.find(fd);
  Record r{0, Op::close, f == s_.fds.end() ? "" : f->second.path, "", fd, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    if (f == s_.fds.end()) {
      ++bad_closes_;
      res = -EBADF;
    } else {
      s_.fds.erase(f);
      auto l = s_.lock_fds.find(fd);
      if (l != s_.lock_fds.end()) {
        s_.locked.erase(l->second);
        s_.lock_fds.erase(l);
      }
    }
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::rename(const std::string& from_in, const std::string& to_in) {
  std::unique_lock lk(mu_);
  std::string from = normalize(from_in), to = normalize(to_in);
  Record r{0, Op::rename, from, to, -1, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    auto it = s_.names.find(from);
    auto parent = s_.names.find(parent_of(to));
    auto dst = s_.names.find(to);
    if (it == s_.names.end() || parent == s_.names.end() || !parent->second.dir) res = -ENOENT;
    else if (it->second.dir || (dst != s_.names.end() && dst->second.dir)) res = -EISDIR;  // not modelled
    else {
      NsOp op{NsKind::rename, from, to, it->second, {}};
      apply(s_.names, op, true);
      add_ns_op(NsKind::rename, from, to, op.e);
    }
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::unlink(const std::string& path_in) {
  std::unique_lock lk(mu_);
  std::string path = normalize(path_in);
  Record r{0, Op::unlink, path, "", -1, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    auto it = s_.names.find(path);
    if (it == s_.names.end()) res = -ENOENT;
    else if (it->second.dir) res = -EISDIR;
    else {
      Entry e = it->second;
      s_.names.erase(it);
      add_ns_op(NsKind::unlink, path, "", e);
    }
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::mkdir(const std::string& path_in) {
  std::unique_lock lk(mu_);
  std::string path = normalize(path_in);
  Record r{0, Op::mkdir, path, "", -1, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    auto it = s_.names.find(path);
    auto parent = s_.names.find(parent_of(path));
    if (it != s_.names.end()) res = it->second.dir ? 0 : -EEXIST;  // like Io::mkdir: an existing dir is fine
    else if (parent == s_.names.end() || !parent->second.dir) res = -ENOENT;
    else {
      s_.names[path] = Entry{true, 0};
      add_ns_op(NsKind::mkdir, path, "", Entry{true, 0});
    }
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

int SimFs::fsync_dir(const std::string& path_in) {
  std::unique_lock lk(mu_);
  std::string path = normalize(path_in);
  Record r{0, Op::fsync_dir, path, "", -1, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0) {
    auto it = s_.names.find(path);
    if (it == s_.names.end() || !it->second.dir) res = -ENOENT;
    else if (lie_ && lie_(r)) {
      // a lying disk: nothing becomes durable
    } else {
      // Ops that become durable are applied to the durable names in their original order.
      std::vector<NsOp> still;
      for (auto& op : s_.pending) {
        op.unsynced_dirs.erase(path);
        if (op.unsynced_dirs.empty()) apply(s_.durable_names, op, false);
        else still.push_back(std::move(op));
      }
      s_.pending = std::move(still);
    }
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

std::vector<std::string> SimFs::list(const std::string& dir_in) {
  std::unique_lock lk(mu_);
  std::string dir = normalize(dir_in);
  Record r{0, Op::list, dir, "", -1, 0, 0, 0};
  std::vector<std::string> out;
  std::int64_t res = begin(r);
  if (res == 0) {
    auto it = s_.names.find(dir);
    if (it != s_.names.end() && it->second.dir) out = children(s_.names, dir);
    res = static_cast<std::int64_t>(out.size());
  }
  finish(lk, r, res);
  return out;
}

int SimFs::lock(const std::string& path_in) {
  std::string path = normalize(path_in);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) return fd;
  std::unique_lock lk(mu_);
  Record r{0, Op::lock, path, "", fd, 0, 0, 0};
  std::int64_t res = begin(r);
  if (res == 0 && s_.locked.count(path)) res = -EWOULDBLOCK;
  if (res == 0) {
    s_.locked.insert(path);
    s_.lock_fds[fd] = path;
    res = fd;
  } else {
    s_.fds.erase(fd);
  }
  finish(lk, r, res);
  return static_cast<int>(res);
}

bool SimFs::is_dir(const std::string& path) {
  std::lock_guard lk(mu_);
  auto it = s_.names.find(normalize(path));
  return it != s_.names.end() && it->second.dir;
}

// ---- power cuts ----

std::size_t SimFs::pending_choices() const {
  std::lock_guard lk(mu_);
  std::size_t n = s_.pending.size();
  for (auto& [id, ino] : s_.inodes) n += ino.dirty.size() + (ino.sizes.empty() ? 0 : 1);
  return n;
}

void SimFs::crash(const Chooser& choose) {
  std::lock_guard lk(mu_);
  // Names: durable ones, then each pending op kept or undone.
  std::map<std::string, Entry> names = s_.durable_names;
  for (auto& op : s_.pending)
    if (choose(Choice::keep_op, 2) == 1) apply(names, op, true);
  prune(names);
  // Contents of every file that still has a name.
  std::map<std::uint64_t, Inode> inodes;
  for (auto& [path, e] : names) {
    if (e.dir || inodes.count(e.inode)) continue;
    const Inode& old = s_.inodes.at(e.inode);
    Inode ino;
    ino.dur = old.dur;
    ino.dur_size = old.dur_size;
    if (!old.sizes.empty()) {
      std::size_t k = choose(Choice::size, old.sizes.size() + 1);
      if (k > 0) ino.dur_size = old.sizes[k - 1];
    }
    for (auto& [p, versions] : old.dirty) {
      // Alternatives: 0 torn, 1 the durable page, 2.. the versions since (newest last).
      std::size_t k = choose(Choice::page, versions.size() + 2);
      if (k == 1) continue;
      if (k >= 2) {
        ino.dur[p] = versions[k - 2];
        continue;
      }
      auto it = old.dur.find(p);
      auto page = std::make_shared<std::string>(it == old.dur.end() ? zero_page() : *it->second);
      const std::string& newest = *versions.back();
      for (std::size_t s = 0; s < page_bytes / sector_bytes; ++s)
        if (choose(Choice::sector, 2) == 1) std::memcpy(page->data() + s * sector_bytes, newest.data() + s * sector_bytes, sector_bytes);
      ino.dur[p] = page;
    }
    // Nothing past the (chosen) size survives; a partial last page reads zeros past the end.
    for (auto it = ino.dur.lower_bound((ino.dur_size + page_bytes - 1) / page_bytes); it != ino.dur.end();) it = ino.dur.erase(it);
    if (ino.dur_size % page_bytes != 0) {
      auto it = ino.dur.find(ino.dur_size / page_bytes);
      if (it != ino.dur.end()) {
        auto page = std::make_shared<std::string>(*it->second);
        std::memset(page->data() + ino.dur_size % page_bytes, 0, page_bytes - ino.dur_size % page_bytes);
        it->second = page;
      }
    }
    ino.cur = ino.dur;
    ino.cur_size = ino.dur_size;
    inodes[e.inode] = std::move(ino);
  }
  s_.names = names;
  s_.durable_names = names;
  s_.pending.clear();
  s_.inodes = std::move(inodes);
  s_.fds.clear();
  s_.locked.clear();
  s_.lock_fds.clear();
}

void SimFs::crash(std::mt19937_64& rng) {
  crash([&](Choice what, std::size_t n) -> std::size_t {
    if (what == Choice::page && rng() % 8 != 0) return 1 + rng() % (n - 1);  // torn (0) 1 in 8
    return rng() % n;
  });
}

std::size_t SimFs::enumerate_crashes(std::size_t limit, const std::function<void(SimFs&)>& fn) const {
  std::vector<std::size_t> digits;  // the choices of the next state; beyond its end, 0
  std::size_t produced = 0;
  while (produced < limit) {
    std::vector<std::size_t> radix;
    auto c = clone();
    c->crash([&](Choice, std::size_t n) {
      std::size_t i = radix.size();
      radix.push_back(n);
      return i < digits.size() ? digits[i] : 0;
    });
    fn(*c);
    ++produced;
    digits.resize(radix.size(), 0);
    // Next in odometer order: increment the last digit that can be, reset those after it.
    std::size_t k = radix.size();
    while (k > 0 && digits[k - 1] + 1 >= radix[k - 1]) --k;
    if (k == 0) break;
    ++digits[k - 1];
    digits.resize(k);
  }
  return produced;
}

void SimFs::crash_keep_all() {
  crash([](Choice, std::size_t n) { return n - 1; });
}

void SimFs::crash_lose_all() {
  crash([](Choice what, std::size_t n) -> std::size_t {
    if (what == Choice::page) return n > 1 ? 1 : 0;
    return 0;
  });
}

// ---- setup and inspection ----

void SimFs::mkdirs_durable(const std::string& path_in) {
  std::string path = normalize(path_in);
  std::string at;
  std::size_t i = 1;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    at = path.substr(0, j);
    TERN_ASSERT(mkdir(at) == 0);
    TERN_ASSERT(fsync_dir(parent_of(at)) == 0);
    i = j + 1;
  }
}

bool SimFs::exists(const std::string& path) const {
  std::lock_guard lk(mu_);
  return s_.names.count(normalize(path)) > 0;
}

std::string SimFs::read_file(const std::string& path) const {
  std::lock_guard lk(mu_);
  auto it = s_.names.find(normalize(path));
  if (it == s_.names.end() || it->second.dir) return "";
  const Inode& ino = s_.inodes.at(it->second.inode);
  std::string out(ino.cur_size, '\0');
  for (auto& [p, page] : ino.cur) {
    std::uint64_t at = p * page_bytes;
    if (at >= out.size()) break;
    std::memcpy(out.data() + at, page->data(), std::min<std::uint64_t>(page_bytes, out.size() - at));
  }
  return out;
}

void SimFs::write_file_durable(const std::string& path, const std::string& data) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  TERN_ASSERT(fd >= 0);
  TERN_ASSERT(storage::write_full(*this, fd, data.data(), data.size(), 0) == 0);
  TERN_ASSERT(fsync(fd) == 0);
  close(fd);
  TERN_ASSERT(fsync_dir(parent_of(normalize(path))) == 0);
}

std::vector<std::string> SimFs::all_paths() const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (auto& [p, e] : s_.names) out.push_back(p);
  return out;
}

std::size_t SimFs::bad_closes() const {
  std::lock_guard lk(mu_);
  return bad_closes_;
}

std::size_t SimFs::open_fds() const {
  std::lock_guard lk(mu_);
  return s_.fds.size();
}

// ---- faults and tracing ----

void SimFs::set_fault(Fault f) {
  std::lock_guard lk(mu_);
  fault_ = std::move(f);
}

void SimFs::set_lie(std::function<bool(const Record&)> lie) {
  std::lock_guard lk(mu_);
  lie_ = std::move(lie);
}

void SimFs::fail_nth(Op op, std::uint64_t n, int err) {
  auto count = std::make_shared<std::uint64_t>(0);
  set_fault([op, n, err, count](const Record& r) {
    if (r.op != op) return 0;
    return ++*count == n ? err : 0;
  });
}

void SimFs::set_trace(bool on) {
  std::lock_guard lk(mu_);
  tracing_ = on;
}

std::vector<SimFs::Record> SimFs::trace() const {
  std::lock_guard lk(mu_);
  return trace_;
}

void SimFs::mark(const std::string& label) {
  std::unique_lock lk(mu_);
  Record r{++seq_, Op::mark, "", label, -1, 0, 0, 0};
  finish(lk, r, 0);
}

void SimFs::set_observer(std::function<void(const Record&)> f) {
  std::lock_guard lk(mu_);
  observer_ = std::move(f);
}

std::uint64_t SimFs::op_count() const {
  std::lock_guard lk(mu_);
  return seq_;
}

}  // namespace tern::testing
