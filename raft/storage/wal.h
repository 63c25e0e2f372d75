#pragma once
// The write-ahead log: Raft entries and hard state, in segment files, with group commit.
//
// ON-DISK FORMAT 2 (docs/storage-format.md has the full specification; format 1 is refused)
//   <dir>/<seq:020>.wal   segment files, seq consecutive; preallocated to segment_bytes (zeros).
//   segment = header | record*  ; header = "TERNWAL2" | seq u64 | salt u64 | crc u32 (of the 24 bytes)
//   record  = length u32 (of payload) | crc u32 | type u8 | synced u32 | payload   (all LE)
//     crc: CRC32C of type|synced|payload seeded with CRC32C(salt): client bytes never pass as a record
//     synced: every byte of the segment below it was durable when this record was written
//     type 1 entry:      term u64 | index u64 | entry type u8 | data
//     type 2 hard state: term u64 | vote u64 | commit u64
//     type 3 truncate:   index u64            — entries >= index are discarded (a log conflict)
//     type 4 reset:      index u64 | term u64 — the log restarts after a snapshot at (index, term)
//   A zero length and crc ends a segment's data (preallocated space).
//   A new segment's header and current hard state are synced before anything else goes in.
//
// RECOVERY replays the segments in order. An invalid record at offset X of the last segment is
// a torn write (zeroed and reported) unless a later valid record's `synced` exceeds X, which
// proves X was durable: then, as for any invalid record in an earlier segment, a missing
// segment or entries out of sequence, open fails with `corrupt`, naming file and offset. An
// all-zero newest segment is re-initialized; the hard state is rewritten into the last segment
// if it lacks it; what was read back is fdatasynced and the directory fsynced (the names found may
// have been only in the page cache, after a fail-stop). Nothing acknowledged is dropped silently.
//
// THREADS: submit() queues a batch for the disk thread, which writes every queued batch, issues
// one fdatasync for all of them (group commit) and then calls each callback with the durable
// last index. An fdatasync error is fatal: the WAL fails every later call (fail-stop; an fsync
// is never retried). The other methods may be called from any thread (one internal mutex).
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "raft/storage/error.h"
#include "raft/storage/io.h"
#include "raft/types.h"

namespace tern::storage {

using raft::Entry;
using raft::HardState;
using raft::Index;
using raft::Term;

// Tests only: skips one durability rule of docs/storage-format.md, so that the crash-state
// explorer (tests/storage/explorer.h) can show that it notices the rule's absence
// (docs/testing.md). Rules that a lying disk cannot break need it. Never set by the node or ternutl.
struct BrokenRules {
  bool seal_sync = false;                  // R3: no fdatasync of a full segment before the next is created
  bool new_segment_hard_state = false;     // R7: a new segment does not start with the hard state
  bool recovery_rewrites_hard_state = false;  // R7: recovery does not write it into the active segment
  bool recovery_rewrites_reset = false;    // R13: recover_storage does not write a lost reset again
};

struct WalOptions {
  std::size_t segment_bytes = 64 << 20;
  std::size_t max_queued_batches = 4096;  // submit() beyond this returns queue_full
  Io* io = &posix_io();
  std::function<void(const std::string&)> log;  // notes such as a truncated torn tail
  bool read_only = false;  // inspect only (ternutl): report a torn tail but do not repair it; no writes
  std::uint64_t salt_seed = 0;  // 0: each segment's salt is random; else derived from it (tests)
  BrokenRules broken;           // tests only (above)
};

struct WriteBatch {
  std::optional<std::pair<Index, Term>> reset_to;  // a snapshot was installed: restart the log after it
  std::vector<Entry> entries;                       // may replace the suffix from entries.front().index
  std::optional<HardState> hard_state;
};

struct Recovered {
  HardState hard_state;
  std::optional<std::pair<Index, Term>> reset;  // the newest reset record, if any
  std::vector<Entry> entries;                   // contiguous
  std::vector<std::string> notes;               // e.g. "truncated a torn record at FILE:OFFSET"
};

class Wal {
 public:
  using Callback = std::function<void(Result<Index, StorageError>)>;

  static Result<std::unique_ptr<Wal>, StorageError> open(const std::string& dir, WalOptions options, Recovered* out);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Writes and syncs one batch now; returns the durable last index. Batches already handed to
  // submit() are written first: write() never overtakes them (a queued older hard state must
  // not land after a newer one).
  Result<Index, StorageError> write(const WriteBatch& batch);
  // Group commit: the disk thread writes and syncs; `done` runs on that thread.
  Result<void, StorageError> submit(WriteBatch batch, Callback done);
  // Drops whole segments whose entries are all <= upto (after a snapshot at upto or later).
  Result<void, StorageError> compact(Index upto);
  Result<std::vector<Entry>, StorageError> read(Index from, Index to);

  Index first_index() const;
  Index last_index() const;
  Index durable_index() const;
  std::size_t segment_count() const;

 private:
  struct Segment {
    std::uint64_t seq = 0;
    std::string path;
    int fd = -1;
    off_t end = 0;         // next write offset
    off_t synced = 0;      // every byte before it is durable
    off_t data_start = 0;  // after the header and leading hard state
    std::uint64_t salt = 0;
    std::uint32_t seed = 0;  // CRC32C of the salt: every record checksum starts from it
    bool has_hard_state = false;
  };
  struct Loc {
    std::uint64_t seq;
    off_t offset;  // of the record header
    std::uint32_t length;
  };

  Wal(std::string dir, WalOptions options);
  Result<void, StorageError> recover(Recovered* out);
  Result<void, StorageError> replay_segment(Segment& seg, bool last, Recovered* out);
  Result<void, StorageError> append_batch(const WriteBatch& batch);  // mu_ held; no sync
  Result<void, StorageError> append_record(std::uint8_t type, const std::string& payload);
  Result<void, StorageError> flush();
  Result<void, StorageError> sync();
  Result<void, StorageError> new_segment();
  Segment* find_segment(std::uint64_t seq);
  void run_disk_thread();
  StorageError failure(StorageError e);

  const std::string dir_;
  const WalOptions opt_;
  Io& io_;
  mutable std::mutex mu_;
  std::vector<Segment> segments_;
  std::vector<Loc> locs_;  // locs_[i] is the entry first_ + i
  Index first_{1};
  HardState hard_state_;
  Index durable_;
  std::string pending_;      // encoded records not yet written to the active segment
  off_t pending_offset_ = 0;
  std::optional<StorageError> failed_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::pair<WriteBatch, Callback>> queue_;
  bool stopping_ = false;
  std::size_t unwritten_batches_ = 0;  // submitted, not yet appended (queue_mu_)
  std::thread disk_thread_;
};

}  // namespace tern::storage
