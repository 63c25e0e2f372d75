#include "jepsen-like/runner/history.h"

#include <nlohmann/json.hpp>

namespace tern::jepsen {

void Recorder::add(std::int64_t process, const char* type, const std::string& f, const std::string& key,
                   const std::string& value_json) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0_).count();
  // The key is escaped by nlohmann; the value is trusted JSON built by the workloads.
  std::string line = "{\"process\":" + std::to_string(process) + ",\"type\":\"" + type + "\",\"f\":\"" + f +
                     "\",\"key\":" + nlohmann::json(key).dump() + ",\"value\":" + value_json +
                     ",\"time\":" + std::to_string(ns) + "}";
  std::string t = type;
  if (t == "ok") ++ok_;
  if (t == "fail") ++fail_;
  if (t == "info") ++info_;
  std::lock_guard<std::mutex> lock(mu_);
  lines_.push_back(std::move(line));
}

std::string Recorder::text() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& l : lines_) out += l + "\n";
  return out;
}

}  // namespace tern::jepsen
