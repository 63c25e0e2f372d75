#include "raft/storage/snapshot_store.h"

#include <fcntl.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include <zstd.h>

#include "common/le.h"
#include "raft/storage/crc32c.h"

namespace tern::storage {

namespace {
constexpr char magic[8] = {'T', 'E', 'R', 'N', 'S', 'N', 'P', '1'};
constexpr std::uint64_t max_ids = 1 << 16;

using le::get;
using le::put_u32;
using le::put_u64;

constexpr std::uint32_t flag_zstd = 1;

std::string encode_header(const raft::SnapshotMeta& m, std::uint32_t flags, std::uint64_t data_size, std::uint32_t data_crc) {
  std::string h(magic, 8);
  put_u32(h, 0);  // header length, patched below
  put_u64(h, m.index.value);
  put_u64(h, m.term.value);
  put_u32(h, flags);
  put_u32(h, static_cast<std::uint32_t>(m.conf.voters.size()));
  for (auto v : m.conf.voters) put_u64(h, v.value);
  put_u32(h, static_cast<std::uint32_t>(m.conf.learners.size()));
  for (auto l : m.conf.learners) put_u64(h, l.value);
  put_u64(h, data_size);
  put_u32(h, data_crc);
  std::uint32_t len = static_cast<std::uint32_t>(h.size() + 4);
  for (int i = 0; i < 4; ++i) h[8 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
  put_u32(h, crc32c(h.data(), h.size()));
  return h;
}

std::string final_name(const raft::SnapshotMeta& m) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "snap-%020" PRIu64 "-%020" PRIu64 ".snap", m.index.value, m.term.value);
  return buf;
}
}  // namespace

SnapshotWriter::SnapshotWriter(Io& io, std::string dir, raft::SnapshotMeta meta, int fd, std::uint64_t header_size,
                               bool compress)
    : io_(io), dir_(std::move(dir)), meta_(std::move(meta)), fd_(fd), header_size_(header_size) {
  if (compress) zstd_ = ZSTD_createCCtx();
}

SnapshotWriter::~SnapshotWriter() {
  if (zstd_) ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(zstd_));
  if (fd_ >= 0) io_.close(fd_);
  if (!done_) io_.unlink(dir_ + "/snap.tmp");
}

Result<void, StorageError> SnapshotWriter::put(const char* data, std::size_t n) {
  if (int r = write_full(io_, fd_, data, n, static_cast<off_t>(header_size_ + size_)); r < 0)
    return fail(errno_error(r, "write " + dir_ + "/snap.tmp"));
  crc_ = crc32c(data, n, crc_);
  size_ += n;
  return {};
}

Result<void, StorageError> SnapshotWriter::compress_chunk(std::string_view chunk, bool last) {
  auto* cctx = static_cast<ZSTD_CCtx*>(zstd_);
  std::string out(ZSTD_CStreamOutSize(), '\0');
  ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
  while (true) {
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    std::size_t left = ZSTD_compressStream2(cctx, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) return fail(StorageError{StorageErrc::io_error, std::string("zstd: ") + ZSTD_getErrorName(left)});
    if (o.pos > 0)
      if (auto r = put(out.data(), o.pos); !r) return r;
    if (last ? left == 0 : in.pos == in.size) return {};
  }
}

Result<void, StorageError> SnapshotWriter::write(std::string_view chunk) {
  if (zstd_) return compress_chunk(chunk, false);
  return put(chunk.data(), chunk.size());
}

Result<SnapshotFile, StorageError> SnapshotWriter::finish() {
  std::string tmp = dir_ + "/snap.tmp";
  if (zstd_)
    if (auto r = compress_chunk({}, true); !r) return fail(r.error());
  std::string header = encode_header(meta_, zstd_ ? flag_zstd : 0, size_, crc_);
  if (header.size() != header_size_) return fail(StorageError{StorageErrc::bad_argument, "snapshot header size changed"});
  if (int r = write_full(io_, fd_, header.data(), header.size(), 0); r < 0) return fail(errno_error(r, "write " + tmp));
  if (int r = io_.fsync(fd_); r < 0) return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + tmp).message});
  io_.close(fd_);
  fd_ = -1;
  std::string path = dir_ + "/" + final_name(meta_);
  if (int r = io_.rename(tmp, path); r < 0) return fail(errno_error(r, "rename " + tmp));
  if (int r = io_.fsync_dir(dir_); r < 0) return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + dir_).message});
  done_ = true;
  // Keep the newest `keep` snapshots.
  std::vector<std::string> snaps;
  for (auto& n : io_.list(dir_))
    if (n.rfind("snap-", 0) == 0 && n.size() > 5 && n.substr(n.size() - 5) == ".snap") snaps.push_back(n);
  for (std::size_t i = 0; i + SnapshotStore::keep < snaps.size(); ++i) io_.unlink(dir_ + "/" + snaps[i]);
  return SnapshotFile{meta_, path, header.size(), size_, zstd_ != nullptr};
}

SnapshotStore::SnapshotStore(std::string dir, Io& io) : dir_(std::move(dir)), io_(io) {}

Result<std::unique_ptr<SnapshotWriter>, StorageError> SnapshotStore::begin(const raft::SnapshotMeta& meta, bool compress) {
  if (int r = io_.mkdir(dir_); r < 0) return fail(errno_error(r, "create " + dir_));
  // The directory is durable in its parent before a snapshot (and WAL compaction after it)
  // depends on it.
  if (int r = io_.fsync_dir(parent_dir(dir_)); r < 0)
    return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + parent_dir(dir_)).message});
  std::string tmp = dir_ + "/snap.tmp";
  int fd = io_.open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return fail(errno_error(fd, "create " + tmp));
  std::uint64_t header_size = encode_header(meta, 0, 0, 0).size();
  return std::unique_ptr<SnapshotWriter>(new SnapshotWriter(io_, dir_, meta, fd, header_size, compress));
}

Result<SnapshotFile, StorageError> SnapshotStore::save(const raft::SnapshotMeta& meta, std::string_view data, bool compress) {
  auto w = begin(meta, compress);
  if (!w) return fail(w.error());
  if (auto r = (*w)->write(data); !r) return fail(r.error());
  return (*w)->finish();
}

Result<SnapshotFile, StorageError> SnapshotStore::verify(const std::string& path) {
  auto bad = [&](const std::string& why) { return StorageError{StorageErrc::corrupt, path + ": " + why}; };
  int fd = io_.open(path, O_RDONLY, 0);
  if (fd < 0) return fail(errno_error(fd, "open " + path));
  struct Closer {
    Io& io;
    int fd;
    ~Closer() { io.close(fd); }
  } closer{io_, fd};
  off_t size = io_.size(fd);
  char fixed[12];
  if (size < 12 || read_full(io_, fd, fixed, 12, 0) < 0 || std::memcmp(fixed, magic, 8) != 0) return fail(bad("bad magic"));
  std::uint64_t hlen = get(fixed + 8, 4);
  if (hlen < 52 || hlen > 12 + 16 + 4 + 2 * 4 + 2 * 8 * max_ids + 16 || static_cast<std::uint64_t>(size) < hlen)
    return fail(bad("bad header length"));
  std::string h(hlen, '\0');
  if (read_full(io_, fd, h.data(), hlen, 0) < 0) return fail(bad("short header"));
  if (crc32c(h.data(), hlen - 4) != get(h.data() + hlen - 4, 4)) return fail(bad("header checksum mismatch"));
  SnapshotFile f;
  f.path = path;
  const char* p = h.data() + 12;
  f.meta.index = raft::Index{get(p, 8)};
  f.meta.term = raft::Term{get(p + 8, 8)};
  std::uint64_t flags = get(p + 16, 4);
  if (flags & ~std::uint64_t{flag_zstd}) return fail(bad("unknown flags"));
  f.compressed = (flags & flag_zstd) != 0;
  p += 20;
  for (auto* ids : {&f.meta.conf.voters, &f.meta.conf.learners}) {
    std::uint64_t n = get(p, 4);
    p += 4;
    if (n > max_ids || p + 8 * n > h.data() + hlen) return fail(bad("bad membership"));
    for (std::uint64_t i = 0; i < n; ++i, p += 8) ids->push_back(raft::NodeId{get(p, 8)});
  }
  f.data_size = get(p, 8);
  std::uint32_t data_crc = static_cast<std::uint32_t>(get(p + 8, 4));
  f.data_offset = hlen;
  if (hlen + f.data_size != static_cast<std::uint64_t>(size)) return fail(bad("size does not match the header"));
  std::uint32_t crc = 0;
  std::string buf(1 << 20, '\0');
  for (std::uint64_t off = 0; off < f.data_size;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), f.data_size - off));
    if (int r = read_full(io_, fd, buf.data(), n, static_cast<off_t>(hlen + off)); r < 0) return fail(errno_error(r, "read " + path));
    crc = crc32c(buf.data(), n, crc);
    off += n;
  }
  if (crc != data_crc) return fail(bad("data checksum mismatch"));
  return f;
}

Result<std::optional<SnapshotFile>, StorageError> SnapshotStore::load_newest(std::vector<std::string>* notes) {
  std::vector<std::string> snaps;
  for (auto& n : io_.list(dir_))
    if (n.rfind("snap-", 0) == 0 && n.size() > 5 && n.substr(n.size() - 5) == ".snap") snaps.push_back(n);
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it) {
    auto f = verify(dir_ + "/" + *it);
    if (f) return std::optional<SnapshotFile>(*f);
    if (notes) notes->push_back("skipping damaged snapshot: " + f.error().message);
  }
  return std::optional<SnapshotFile>();
}

Result<std::string, StorageError> SnapshotStore::read_all(const SnapshotFile& f) {
  auto stored = read(f, 0, f.data_size);
  if (!stored || !f.compressed) return stored;
  unsigned long long raw = ZSTD_getFrameContentSize(stored->data(), stored->size());
  if (raw == ZSTD_CONTENTSIZE_ERROR) return fail(StorageError{StorageErrc::corrupt, f.path + ": not a zstd frame"});
  std::string out;
  ZSTD_DCtx* d = ZSTD_createDCtx();
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{stored->data(), stored->size(), 0};
  std::size_t ret = 1;
  while (in.pos < in.size && ret != 0) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    ret = ZSTD_decompressStream(d, &o, &in);
    if (ZSTD_isError(ret)) {
      ZSTD_freeDCtx(d);
      return fail(StorageError{StorageErrc::corrupt, f.path + ": zstd: " + ZSTD_getErrorName(ret)});
    }
    out.append(buf.data(), o.pos);
  }
  ZSTD_freeDCtx(d);
  if (ret != 0) return fail(StorageError{StorageErrc::corrupt, f.path + ": truncated zstd frame"});
  return out;
}

Result<std::string, StorageError> SnapshotStore::read(const SnapshotFile& f, std::uint64_t offset, std::uint64_t n) {
  if (offset > f.data_size) return fail(StorageError{StorageErrc::bad_argument, "read beyond the snapshot"});
  n = std::min(n, f.data_size - offset);
  int fd = io_.open(f.path, O_RDONLY, 0);
  if (fd < 0) return fail(errno_error(fd, "open " + f.path));
  std::string out(n, '\0');
  int r = read_full(io_, fd, out.data(), n, static_cast<off_t>(f.data_offset + offset));
  io_.close(fd);
  if (r < 0) return fail(errno_error(r, "read " + f.path));
  return out;
}

}  // namespace tern::storage
