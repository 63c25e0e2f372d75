#include "raft/storage/wal.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>

#include "common/assert.h"
#include "common/le.h"
#include "raft/storage/crc32c.h"

namespace tern::storage {

namespace {

// Format 2 (docs/storage-format.md). Format 1 ("TERNWAL1") is refused with a clear message.
constexpr char magic[8] = {'T', 'E', 'R', 'N', 'W', 'A', 'L', '2'};
constexpr char magic_v1[8] = {'T', 'E', 'R', 'N', 'W', 'A', 'L', '1'};
constexpr std::size_t header_bytes = 28;         // magic | seq u64 | salt u64 | crc u32
constexpr std::size_t record_header_bytes = 13;  // length u32 | crc u32 | type u8 | synced u32
constexpr std::uint32_t max_record_bytes = 256u << 20;
enum RecordType : std::uint8_t { rec_entry = 1, rec_hard_state = 2, rec_truncate = 3, rec_reset = 4 };

using le::get_u32;
using le::get_u64;
using le::put_u32;
using le::put_u64;

std::string segment_name(std::uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020" PRIu64 ".wal", seq);
  return buf;
}

// Minimum payload size per record type; 0 for unknown types.
std::size_t min_payload(std::uint8_t type) {
  switch (type) {
    case rec_entry: return 17;
    case rec_hard_state: return 24;
    case rec_truncate: return 8;
    case rec_reset: return 16;
    default: return 0;
  }
}

std::uint32_t salt_crc(std::uint64_t salt) {
  std::string s;
  put_u64(s, salt);
  return crc32c_of(s);
}

std::string encode_header(std::uint64_t seq, std::uint64_t salt) {
  std::string h(magic, 8);
  put_u64(h, seq);
  put_u64(h, salt);
  put_u32(h, crc32c_of(h));
  return h;
}

// Does a well-formed record of this segment (checksum seeded with the segment's salt) start at
// `off`? Bytes a client put into a value cannot pass: they do not know the salt.
bool valid_record_at(const std::string& buf, std::size_t off, std::uint32_t seed) {
  if (off + record_header_bytes > buf.size()) return false;
  std::uint32_t len = get_u32(buf.data() + off);
  auto type = static_cast<std::uint8_t>(buf[off + 8]);
  std::size_t min = min_payload(type);
  if (min == 0 || len < min || len > max_record_bytes || off + record_header_bytes + len > buf.size()) return false;
  return crc32c(buf.data() + off + 8, std::size_t{5} + len, seed) == get_u32(buf.data() + off + 4);
}

std::uint64_t new_salt(std::uint64_t seed, std::uint64_t seq) {
  if (seed == 0) {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ rd() ^ seq;
  }
  std::uint64_t z = seed + seq * 0x9e3779b97f4a7c15ULL;  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string location(const std::string& path, std::size_t off) { return path + " at offset " + std::to_string(off); }

}  // namespace

Wal::Wal(std::string dir, WalOptions options) : dir_(std::move(dir)), opt_(std::move(options)), io_(*opt_.io) {}

Wal::~Wal() {
  {
    std::lock_guard lk(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (disk_thread_.joinable()) disk_thread_.join();
  for (auto& s : segments_)
    if (s.fd >= 0) io_.close(s.fd);
}

Result<std::unique_ptr<Wal>, StorageError> Wal::open(const std::string& dir, WalOptions options, Recovered* out) {
  if (options.segment_bytes >= (std::size_t{1} << 32) || options.segment_bytes < 4096)
    return fail(StorageError{StorageErrc::bad_argument, "segment_bytes must be in [4 KiB, 4 GiB)"});
  std::unique_ptr<Wal> wal(new Wal(dir, std::move(options)));
  if (!wal->opt_.read_only) {
    if (int r = wal->io_.mkdir(dir); r < 0) return fail(errno_error(r, "create " + dir));
    // The directory must be durable in its parent before anything acknowledged goes into it.
    if (int r = wal->io_.fsync_dir(parent_dir(dir)); r < 0)
      return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + parent_dir(dir)).message});
  }
  Recovered scratch;
  if (!out) out = &scratch;
  *out = Recovered{};
  if (auto r = wal->recover(out); !r) return fail(r.error());
  if (wal->opt_.read_only) return wal;
  wal->disk_thread_ = std::thread([w = wal.get()] { w->run_disk_thread(); });
  return wal;
}

Result<void, StorageError> Wal::recover(Recovered* out) {
  std::vector<std::string> names;
  for (auto& n : io_.list(dir_))
    if (n.size() == 24 && n.substr(20) == ".wal" && n.find_first_not_of("0123456789") == 20) names.push_back(n);
  first_ = Index{0};  // unset until the first entry or reset
  for (std::size_t i = 0; i < names.size(); ++i) {
    Segment seg;
    seg.seq = std::strtoull(names[i].c_str(), nullptr, 10);
    seg.path = dir_ + "/" + names[i];
    // Compaction removes segments oldest first, each removal durable before the next, so the
    // segments on disk are always consecutive.
    if (!segments_.empty() && seg.seq != segments_.back().seq + 1)
      return fail(StorageError{StorageErrc::corrupt, "WAL segment " + std::to_string(segments_.back().seq + 1) + " is missing in " +
                                                         dir_ + " (found " + names[i] + " after " +
                                                         segment_name(segments_.back().seq) + ")"});
    seg.fd = io_.open(seg.path, opt_.read_only ? O_RDONLY : O_RDWR, 0644);
    if (seg.fd < 0) return fail(errno_error(seg.fd, "open " + seg.path));
    segments_.push_back(seg);
    if (auto r = replay_segment(segments_.back(), i + 1 == names.size(), out); !r) return r;
  }
  if (first_ == Index{0}) first_ = Index{1};
  hard_state_ = out->hard_state;
  durable_ = last_index();
  if (!opt_.read_only && !segments_.empty()) {
    // The names found are made durable before anything is written into them: after a kill -9
    // (not a power cut) inside a segment roll, the newest segment can exist in the page cache
    // only, its directory entry never synced; everything appended to it would vanish with its
    // name at the next power cut (found by tern-sim --node --seed 2328 --voters 1 --spares 1;
    // PowerCut.ASegmentFoundAfterAKilledRollIsMadeDurableBeforeItIsUsed).
    if (int r = io_.fsync_dir(dir_); r < 0)
      return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + dir_).message});
  }
  if (opt_.read_only) {
    if (!segments_.empty() && hard_state_ != HardState{} && !segments_.back().has_hard_state &&
        !opt_.broken.recovery_rewrites_hard_state)
      out->notes.push_back("the node will rewrite the hard state into " + segments_.back().path);
    return {};
  }
  if (segments_.empty()) return new_segment();
  Segment& last = segments_.back();
  if (hard_state_ != HardState{} && !last.has_hard_state && !opt_.broken.recovery_rewrites_hard_state) {
    // The active segment lacks the hard state (its first record was lost with a cut): write it
    // again, or compaction could delete the only copy and the node vote twice in one term.
    std::string p;
    put_u64(p, hard_state_.term.value);
    put_u64(p, hard_state_.vote.value);
    put_u64(p, hard_state_.commit.value);
    pending_offset_ = last.end;
    if (auto r = append_record(rec_hard_state, p); !r) return r;
    last.has_hard_state = true;
    std::string note = "rewrote the hard state into " + last.path;
    out->notes.push_back(note);
    if (opt_.log) opt_.log(note);
  }
  // What was read back may still be only in the page cache (a restart without a power cut):
  // make it durable before anything is built on it or acknowledged as durable. That includes the
  // names: a segment left by a roll that failed before its name was durable (ENOSPC from the
  // preallocation, EIO from a sync; the node stopped) is written into from now on.
  if (auto r = sync(); !r) return r;
  if (int r = io_.fsync_dir(dir_); r < 0)
    return fail(failure(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + dir_).message}));
  return {};
}

Result<void, StorageError> Wal::replay_segment(Segment& seg, bool last, Recovered* out) {
  off_t size = io_.size(seg.fd);
  if (size < 0) return fail(errno_error(static_cast<int>(size), "stat " + seg.path));
  std::string buf(static_cast<std::size_t>(size), '\0');
  if (size > 0)
    if (int r = read_full(io_, seg.fd, buf.data(), buf.size(), 0); r < 0) return fail(errno_error(r, "read " + seg.path));
  if (buf.size() >= 8 && std::memcmp(buf.data(), magic_v1, 8) == 0)
    return fail(StorageError{StorageErrc::corrupt, seg.path + " is in WAL format 1 (tern before issue 15); this tern reads format 2 "
                                                   "only: replace the node (remove its data directory and add it back)"});
  bool header_ok = buf.size() >= header_bytes && std::memcmp(buf.data(), magic, 8) == 0 &&
                   crc32c(buf.data(), header_bytes - 4) == get_u32(buf.data() + header_bytes - 4);
  if (!header_ok || get_u64(buf.data() + 8) != seg.seq) {
    if (last && buf.find_first_not_of('\0') == std::string::npos) {
      // Created, but the cut came before its header was durable (the header is synced before
      // any record goes in, so nothing else can be in it): start it afresh.
      seg.salt = new_salt(opt_.salt_seed, seg.seq);
      seg.seed = salt_crc(seg.salt);
      seg.end = header_bytes;
      if (opt_.read_only) {
        out->notes.push_back("empty newest segment " + seg.path + " (cut before its header was durable): the node re-initializes it");
        return {};
      }
      std::string header = encode_header(seg.seq, seg.salt);
      if (int r = write_full(io_, seg.fd, header.data(), header.size(), 0); r < 0) return fail(errno_error(r, "write " + seg.path));
      if (int r = io_.fdatasync(seg.fd); r < 0)
        return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fdatasync " + seg.path).message});
      seg.synced = seg.end;
      std::string note = "re-initialized the empty newest segment " + seg.path;
      out->notes.push_back(note);
      if (opt_.log) opt_.log(note);
      return {};
    }
    return fail(StorageError{StorageErrc::corrupt, "bad segment header in " + seg.path});
  }
  seg.salt = get_u64(buf.data() + 16);
  seg.seed = salt_crc(seg.salt);
  const std::uint32_t seed = seg.seed;
  std::size_t last_nonzero = buf.find_last_not_of('\0');
  std::size_t off = header_bytes;
  while (true) {
    bool clean_end = off >= buf.size() || last_nonzero == std::string::npos || off > last_nonzero;
    if (clean_end) break;
    if (!valid_record_at(buf, off, seed)) {
      // A sealed segment was synced before the next one was created: nothing in it is torn.
      if (!last)
        return fail(StorageError{StorageErrc::corrupt, "invalid record in a sealed segment: " + location(seg.path, off)});
      // A valid record written after a sync that covered `off` proves `off` was durable: then
      // this is damage, not a cut. Otherwise everything from `off` on was never acknowledged.
      for (std::size_t y = off + 1; y <= last_nonzero; ++y) {
        if (valid_record_at(buf, y, seed) && get_u32(buf.data() + y + 9) > off)
          return fail(StorageError{StorageErrc::corrupt, "invalid record at " + location(seg.path, off) + ", but the record at offset " +
                                                             std::to_string(y) + " was written after it was durable"});
      }
      std::string zeros(last_nonzero + 1 - off, '\0');
      if (opt_.read_only) {
        out->notes.push_back("torn record (" + std::to_string(zeros.size()) + " bytes) at " + location(seg.path, off) +
                             ": the node truncates it");
        break;
      }
      if (int r = write_full(io_, seg.fd, zeros.data(), zeros.size(), static_cast<off_t>(off)); r < 0)
        return fail(errno_error(r, "zero torn tail of " + seg.path));
      if (int r = io_.fdatasync(seg.fd); r < 0)
        return fail(StorageError{StorageErrc::fsync_failed, errno_error(r, "fdatasync " + seg.path).message});
      std::string note = "truncated a torn record (" + std::to_string(zeros.size()) + " bytes) at " + location(seg.path, off);
      out->notes.push_back(note);
      if (opt_.log) opt_.log(note);
      break;
    }
    std::uint32_t len = get_u32(buf.data() + off);
    auto type = static_cast<std::uint8_t>(buf[off + 8]);
    const char* p = buf.data() + off + record_header_bytes;
    auto corrupt = [&](const std::string& why) {
      return StorageError{StorageErrc::corrupt, why + " in " + location(seg.path, off)};
    };
    switch (type) {
      case rec_entry: {
        Entry e{Term{get_u64(p)}, Index{get_u64(p + 8)}, static_cast<raft::EntryType>(p[16]), std::string(p + 17, len - 17)};
        if (first_ == Index{0}) first_ = e.index;
        if (e.index != last_index().next()) return fail(corrupt("entry " + std::to_string(e.index.value) + " out of sequence"));
        locs_.push_back(Loc{seg.seq, static_cast<off_t>(off), len});
        out->entries.push_back(std::move(e));
        break;
      }
      case rec_hard_state:
        out->hard_state = HardState{Term{get_u64(p)}, raft::NodeId{get_u64(p + 8)}, Index{get_u64(p + 16)}};
        seg.has_hard_state = true;
        break;
      case rec_truncate: {
        Index i{get_u64(p)};
        if (first_ == Index{0} || i <= first_) {
          locs_.clear();
          out->entries.clear();
          first_ = i;
        } else if (i <= last_index()) {
          locs_.resize(i - first_);
          out->entries.resize(i - first_);
        }
        break;
      }
      case rec_reset: {
        Index i{get_u64(p)};
        out->reset = std::make_pair(i, Term{get_u64(p + 8)});
        locs_.clear();
        out->entries.clear();
        first_ = i.next();
        break;
      }
    }
    off += record_header_bytes + len;
  }
  seg.end = static_cast<off_t>(off);
  seg.synced = seg.end;
  return {};
}

Index Wal::last_index() const { return first_ == Index{0} ? Index{0} : first_ + locs_.size() - 1; }

Result<void, StorageError> Wal::new_segment() {
  Segment seg;
  seg.seq = segments_.empty() ? 1 : segments_.back().seq + 1;
  seg.path = dir_ + "/" + segment_name(seg.seq);
  seg.salt = new_salt(opt_.salt_seed, seg.seq);
  seg.seed = salt_crc(seg.salt);
  seg.fd = io_.open(seg.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (seg.fd < 0) return fail(failure(errno_error(seg.fd, "create " + seg.path)));
  if (int r = io_.fallocate(seg.fd, static_cast<off_t>(opt_.segment_bytes)); r < 0) {
    io_.close(seg.fd);
    return fail(failure(errno_error(r, "preallocate " + seg.path)));
  }
  seg.end = header_bytes;
  segments_.push_back(seg);
  pending_.clear();
  pending_offset_ = header_bytes;
  if (hard_state_ != HardState{} && !opt_.broken.new_segment_hard_state) {
    // Each segment carries the current hard state, so compaction never drops the newest one.
    std::string payload;
    put_u64(payload, hard_state_.term.value);
    put_u64(payload, hard_state_.vote.value);
    put_u64(payload, hard_state_.commit.value);
    if (auto r = append_record(rec_hard_state, payload); !r) return r;
    segments_.back().has_hard_state = true;
  }
  // The header and the hard state are durable before any record goes in and before the name
  // is: a cut can leave this segment absent, empty, or with them intact, nothing else.
  Segment& s = segments_.back();
  std::string head = encode_header(s.seq, s.salt) + pending_;
  pending_.clear();
  if (int r = write_full(io_, s.fd, head.data(), head.size(), 0); r < 0) return fail(failure(errno_error(r, "write " + s.path)));
  if (int r = io_.fdatasync(s.fd); r < 0)
    return fail(failure(StorageError{StorageErrc::fsync_failed, errno_error(r, "fdatasync " + s.path).message}));
  s.end = static_cast<off_t>(head.size());
  s.synced = s.end;
  s.data_start = s.end;
  if (int r = io_.fsync_dir(dir_); r < 0)
    return fail(failure(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + dir_).message}));
  return {};
}

StorageError Wal::failure(StorageError e) {
  if (!failed_) failed_ = e;
  return e;
}

Result<void, StorageError> Wal::append_record(std::uint8_t type, const std::string& payload) {
  Segment* seg = &segments_.back();
  std::size_t size = record_header_bytes + payload.size();
  off_t at = seg->end + static_cast<off_t>(pending_.size());
  if (static_cast<std::size_t>(at) + size > opt_.segment_bytes && at > seg->data_start) {
    // Seal the full segment durably before starting the next, so that a torn tail can only be
    // in the last segment.
    if (auto r = flush(); !r) return r;
    if (!opt_.broken.seal_sync) {
      if (int r = io_.fdatasync(seg->fd); r < 0)
        return fail(failure(StorageError{StorageErrc::fsync_failed, errno_error(r, "fdatasync " + seg->path).message}));
      seg->synced = seg->end;
    }
    if (auto r = new_segment(); !r) return r;
    seg = &segments_.back();
    at = seg->end + static_cast<off_t>(pending_.size());
  }
  std::string rec;
  rec.reserve(size);
  put_u32(rec, static_cast<std::uint32_t>(payload.size()));
  put_u32(rec, 0);  // crc, below
  rec.push_back(static_cast<char>(type));
  // Every byte before `synced` was durable before this record was written (recovery's proof
  // that a bad record before it is damage, not a cut).
  put_u32(rec, static_cast<std::uint32_t>(seg->synced));
  rec += payload;
  std::uint32_t crc = crc32c(rec.data() + 8, rec.size() - 8, seg->seed);
  for (int i = 0; i < 4; ++i) rec[4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  if (type == rec_entry) locs_.push_back(Loc{seg->seq, at, static_cast<std::uint32_t>(payload.size())});
  pending_ += rec;
  return {};
}

Result<void, StorageError> Wal::append_batch(const WriteBatch& b) {
  if (failed_) return fail(StorageError{StorageErrc::failed, "the WAL failed earlier: " + failed_->message});
  if (b.reset_to) {
    std::string p;
    put_u64(p, b.reset_to->first.value);
    put_u64(p, b.reset_to->second.value);
    if (auto r = append_record(rec_reset, p); !r) return r;
    locs_.clear();
    first_ = b.reset_to->first.next();
  }
  if (!b.entries.empty()) {
    Index i0 = b.entries.front().index;
    if (locs_.empty() && first_ == Index{1} && last_index() == Index{0}) first_ = i0;  // fresh log
    if (i0 > last_index().next() || (locs_.empty() && i0 != first_))
      return fail(StorageError{StorageErrc::bad_argument, "append of entry " + std::to_string(i0.value) +
                                                             " leaves a gap after " + std::to_string(last_index().value)});
    if (i0 <= last_index()) {
      std::string p;
      put_u64(p, i0.value);
      if (auto r = append_record(rec_truncate, p); !r) return r;
      if (i0 <= first_) {
        locs_.clear();
        first_ = i0;
      } else {
        locs_.resize(i0 - first_);
      }
    }
    for (const Entry& e : b.entries) {
      if (e.index != last_index().next() && !(locs_.empty() && e.index == first_))
        return fail(StorageError{StorageErrc::bad_argument, "entries not contiguous at " + std::to_string(e.index.value)});
      std::string p;
      p.reserve(17 + e.data.size());
      put_u64(p, e.term.value);
      put_u64(p, e.index.value);
      p.push_back(static_cast<char>(e.type));
      p += e.data;
      if (auto r = append_record(rec_entry, p); !r) return r;
    }
  }
  if (b.hard_state) {
    std::string p;
    put_u64(p, b.hard_state->term.value);
    put_u64(p, b.hard_state->vote.value);
    put_u64(p, b.hard_state->commit.value);
    if (auto r = append_record(rec_hard_state, p); !r) return r;
    hard_state_ = *b.hard_state;
  }
  return {};
}

Result<void, StorageError> Wal::flush() {
  if (pending_.empty()) return {};
  Segment& seg = segments_.back();
  if (int r = write_full(io_, seg.fd, pending_.data(), pending_.size(), seg.end); r < 0)
    return fail(failure(errno_error(r, "write " + location(seg.path, static_cast<std::size_t>(seg.end)))));
  seg.end += static_cast<off_t>(pending_.size());
  pending_.clear();
  return {};
}

Result<void, StorageError> Wal::sync() {
  if (failed_) return fail(StorageError{StorageErrc::failed, "the WAL failed earlier: " + failed_->message});
  if (auto r = flush(); !r) return r;
  Segment& seg = segments_.back();
  if (int r = io_.fdatasync(seg.fd); r < 0)
    return fail(failure(StorageError{StorageErrc::fsync_failed, errno_error(r, "fdatasync " + seg.path).message}));
  seg.synced = seg.end;
  durable_ = last_index();
  return {};
}

Result<Index, StorageError> Wal::write(const WriteBatch& batch) {
  bool behind_queue;
  {
    std::lock_guard q(queue_mu_);
    behind_queue = unwritten_batches_ > 0;
  }
  if (behind_queue) {
    // Join the queue and wait for the disk thread: order is preserved.
    std::mutex m;
    std::condition_variable cv;
    std::optional<Result<Index, StorageError>> result;
    auto r = submit(batch, [&](Result<Index, StorageError> res) {
      std::lock_guard l(m);
      result = std::move(res);
      cv.notify_one();
    });
    if (!r) return fail(r.error());
    std::unique_lock l(m);
    cv.wait(l, [&] { return result.has_value(); });
    return std::move(*result);
  }
  std::lock_guard lk(mu_);
  if (opt_.read_only) return fail(StorageError{StorageErrc::bad_argument, "the WAL was opened read-only"});
  if (auto r = append_batch(batch); !r) {
    failure(r.error());  // a partly written batch may not be built upon
    return fail(r.error());
  }
  if (auto r = sync(); !r) return fail(r.error());
  return durable_;
}

Result<void, StorageError> Wal::submit(WriteBatch batch, Callback done) {
  {
    std::lock_guard lk(mu_);
    if (opt_.read_only) return fail(StorageError{StorageErrc::bad_argument, "the WAL was opened read-only"});
    if (failed_) return fail(StorageError{StorageErrc::failed, "the WAL failed earlier: " + failed_->message});
  }
  std::lock_guard lk(queue_mu_);
  if (queue_.size() >= opt_.max_queued_batches)
    return fail(StorageError{StorageErrc::queue_full, "more than " + std::to_string(opt_.max_queued_batches) + " batches queued"});
  queue_.emplace_back(std::move(batch), std::move(done));
  ++unwritten_batches_;
  queue_cv_.notify_one();
  return {};
}

void Wal::run_disk_thread() {
  std::deque<std::pair<WriteBatch, Callback>> work;
  while (true) {
    {
      std::unique_lock lk(queue_mu_);
      queue_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      work.swap(queue_);
    }
    // Group commit: write every queued batch, then one fdatasync for all of them.
    std::vector<Result<Index, StorageError>> results;
    results.reserve(work.size());
    {
      std::lock_guard lk(mu_);
      std::optional<StorageError> error;
      for (auto& [batch, cb] : work) {
        if (!error)
          if (auto r = append_batch(batch); !r) error = failure(r.error());
        results.emplace_back(error ? Result<Index, StorageError>(fail(*error)) : Result<Index, StorageError>(Index{}));
      }
      {
        // Appended (under mu_): a write() from now on lands after them.
        std::lock_guard q(queue_mu_);
        unwritten_batches_ -= work.size();
      }
      auto synced = sync();
      for (auto& r : results) {
        if (!r) continue;
        if (!synced) r = fail(synced.error());
        else r = durable_;
      }
    }
    for (std::size_t i = 0; i < work.size(); ++i)
      if (work[i].second) work[i].second(std::move(results[i]));
    work.clear();
  }
}

Result<void, StorageError> Wal::compact(Index upto) {
  std::lock_guard lk(mu_);
  if (failed_) return fail(StorageError{StorageErrc::failed, "the WAL failed earlier: " + failed_->message});
  // Entries are laid out in non-decreasing segment order; keep the segment of the first entry
  // above `upto` (or the active one) and everything after it.
  std::uint64_t keep_from = segments_.back().seq;
  for (std::size_t k = 0; k < locs_.size(); ++k)
    if (first_ + k > upto) {
      keep_from = std::min(keep_from, locs_[k].seq);
      break;
    }
  while (segments_.size() > 1 && segments_.front().seq < keep_from) {
    Segment& s = segments_.front();
    // Oldest first, each removal durable before the next: whatever a cut keeps, the segments on
    // disk stay consecutive. A failed unlink changes nothing here (it can be retried).
    if (int r = io_.unlink(s.path); r < 0) return fail(errno_error(r, "remove " + s.path));
    io_.close(s.fd);
    std::size_t drop = 0;
    while (drop < locs_.size() && locs_[drop].seq == s.seq) ++drop;
    locs_.erase(locs_.begin(), locs_.begin() + static_cast<std::ptrdiff_t>(drop));
    first_ = first_ + drop;
    segments_.erase(segments_.begin());
    if (int r = io_.fsync_dir(dir_); r < 0)
      return fail(failure(StorageError{StorageErrc::fsync_failed, errno_error(r, "fsync " + dir_).message}));
  }
  return {};
}

Wal::Segment* Wal::find_segment(std::uint64_t seq) {
  for (auto& s : segments_)
    if (s.seq == seq) return &s;
  return nullptr;
}

Result<std::vector<Entry>, StorageError> Wal::read(Index from, Index to) {
  std::lock_guard lk(mu_);
  if (auto r = flush(); !r) return fail(r.error());
  std::vector<Entry> out;
  if (from < first_ || to > last_index())
    return fail(StorageError{StorageErrc::bad_argument, "read outside [" + std::to_string(first_.value) + ", " +
                                                            std::to_string(last_index().value) + "]"});
  for (Index i = from; i <= to; i = i.next()) {
    const Loc& loc = locs_[i - first_];
    Segment* seg = find_segment(loc.seq);
    TERN_ASSERT(seg != nullptr);
    std::string rec(record_header_bytes + loc.length, '\0');
    if (int r = read_full(io_, seg->fd, rec.data(), rec.size(), loc.offset); r < 0)
      return fail(errno_error(r, "read " + location(seg->path, static_cast<std::size_t>(loc.offset))));
    if (crc32c(rec.data() + 8, std::size_t{5} + loc.length, seg->seed) != get_u32(rec.data() + 4))
      return fail(StorageError{StorageErrc::corrupt, "checksum failure in " + location(seg->path, static_cast<std::size_t>(loc.offset))});
    const char* p = rec.data() + record_header_bytes;
    out.push_back(Entry{Term{get_u64(p)}, Index{get_u64(p + 8)}, static_cast<raft::EntryType>(p[16]),
                        std::string(p + 17, loc.length - 17)});
  }
  return out;
}

Index Wal::first_index() const {
  std::lock_guard lk(mu_);
  return first_;
}
Index Wal::durable_index() const {
  std::lock_guard lk(mu_);
  return durable_;
}
std::size_t Wal::segment_count() const {
  std::lock_guard lk(mu_);
  return segments_.size();
}

}  // namespace tern::storage
