#pragma once
// The interface between the node driver and the replicated state machine (design.md §4): the
// driver calls only these, in log order, on its loop thread. Deterministic: the same commands in
// the same order give the same responses, snapshots and digest on every replica.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "raft/types.h"

namespace tern::service {

class Applier {
 public:
  virtual ~Applier() = default;
  // `cluster_time_ms` is the time the leader stamped into the entry (never a local clock).
  virtual std::string apply(raft::Index index, std::uint64_t cluster_time_ms, std::string_view command) = 0;
  // A read-only query against the current state (served after ReadIndex: no log entry).
  virtual std::string query(std::string_view q) const = 0;
  virtual std::string snapshot() const = 0;
  // The same snapshot in slices, so a large state does not stall the loop (issue 14):
  // begin_snapshot() fixes the state as it is now; each continue_snapshot() captures about
  // `budget_bytes` more and, once complete, returns the pieces, whose concatenation is what
  // snapshot() returned at begin_snapshot(). apply() may run between the calls without changing
  // what is captured. One capture at a time; restore() only after abandon_snapshot().
  virtual void begin_snapshot() = 0;
  virtual std::optional<std::vector<std::string>> continue_snapshot(std::size_t budget_bytes) = 0;
  virtual void abandon_snapshot() = 0;
  virtual Result<void, std::string> restore(std::string_view data) = 0;
  virtual std::uint64_t digest() const = 0;
  virtual std::uint64_t applied_commands() const = 0;
};

// The placeholder state machine of issue 4: treats commands as opaque bytes and keeps their
// count and an order-sensitive hash chain, so replicas can be compared and nothing lost is
// hidden. The response to an opaque command is the new count (8 bytes, little-endian).
// Commands starting with "reg " drive a small map of registers, so that fault tests can check
// linearizability of a real cluster (reads go through the log):
//   "reg w KEY VALUE" -> "ok"
//   "reg r KEY"       -> the value, or "null" if never written
//   "reg c KEY OLD NEW" -> "ok" if the value was OLD (now NEW), else "fail"
// KEY and values are single words (no spaces). query("reg r KEY") reads without the log.
class RawLog final : public Applier {
 public:
  std::string apply(raft::Index index, std::uint64_t cluster_time_ms, std::string_view command) override;
  std::string query(std::string_view q) const override;
  std::string snapshot() const override;
  // Small: captured at once.
  void begin_snapshot() override { capture_ = snapshot(); }
  std::optional<std::vector<std::string>> continue_snapshot(std::size_t) override {
    std::vector<std::string> pieces{std::move(capture_.value())};
    capture_.reset();
    return pieces;
  }
  void abandon_snapshot() override { capture_.reset(); }
  Result<void, std::string> restore(std::string_view data) override;
  std::uint64_t digest() const override { return hash_; }
  std::uint64_t applied_commands() const override { return count_; }

 private:
  std::string apply_register(std::string_view args);

  std::uint64_t count_ = 0;
  std::uint64_t hash_ = 0xcbf29ce484222325ULL;
  std::map<std::string, std::string> registers_;
  std::optional<std::string> capture_;
};

}  // namespace tern::service
