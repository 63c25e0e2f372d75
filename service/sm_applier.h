#pragma once
// SmApplier: the coordination state machine (service/sm) behind the replica's Applier interface.
// Commands and queries are sm's binary encodings (service/sm/command.h, query.h); answers are
// encoded sm::Response (sm::decode_response). The events each entry produces go to an
// EventSink, in index order and whole entries at a time (what the watch hub expects).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "service/applier.h"
#include "service/sm/state_machine.h"

namespace tern::service {

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void publish(const std::vector<sm::Event>& events) = 0;
  // The state was replaced by a snapshot taken at `index`: events up to it were never seen here.
  virtual void restored(std::uint64_t index) = 0;
};

class SmApplier final : public Applier {
 public:
  explicit SmApplier(sm::Limits limits = {}, EventSink* sink = nullptr) : sm_(limits), sink_(sink) {}

  std::string apply(raft::Index index, std::uint64_t cluster_time_ms, std::string_view command) override;
  std::string query(std::string_view q) const override;
  std::string snapshot() const override { return sm_.snapshot(); }
  void begin_snapshot() override { sm_.begin_snapshot(); }
  std::optional<std::vector<std::string>> continue_snapshot(std::size_t budget_bytes) override {
    return sm_.continue_snapshot(budget_bytes);
  }
  void abandon_snapshot() override { sm_.abandon_snapshot(); }
  Result<void, std::string> restore(std::string_view data) override;
  std::uint64_t digest() const override { return sm_.digest(); }
  // Commands applied by this process (a restored snapshot's are not counted).
  std::uint64_t applied_commands() const override { return applied_; }

  const sm::StateMachine& state() const { return sm_; }
  void set_sink(EventSink* sink) { sink_ = sink; }

 private:
  sm::StateMachine sm_;
  EventSink* sink_;
  std::uint64_t applied_ = 0;
};

}  // namespace tern::service
