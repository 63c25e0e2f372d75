#include "service/sm_applier.h"

#include <limits>

#include "service/sm/query.h"

namespace tern::service {

std::string SmApplier::apply(raft::Index index, std::uint64_t cluster_time_ms, std::string_view command) {
  ++applied_;
  // The stamp is the leader's wall clock; one beyond INT64_MAX is not a time any leader sends,
  // and the state machine bounds each step anyway.
  auto stamp = static_cast<std::int64_t>(std::min<std::uint64_t>(cluster_time_ms, std::numeric_limits<std::int64_t>::max()));
  sm::ApplyResult r = sm_.apply(index.value, stamp, command);
  if (sink_ != nullptr && !r.events.empty()) sink_->publish(r.events);
  return sm::encode_response(r.response);
}

std::string SmApplier::query(std::string_view q) const { return sm::encode_response(sm::run_query(sm_, q)); }

Result<void, std::string> SmApplier::restore(std::string_view data) {
  // StateMachine::restore is all-or-nothing: a bad snapshot leaves the state as it was.
  if (!sm_.restore(data)) return fail(std::string("not a valid state machine snapshot"));
  if (sink_ != nullptr) sink_->restored(sm_.applied_index());
  return {};
}

}  // namespace tern::service
