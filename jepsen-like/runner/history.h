#pragma once
// The history a tern-jepsen run records (JSON lines, docs/checker.md): thread-safe, one line per
// event in the order the events happened, with counts of completions by type.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tern::jepsen {

using Clock = std::chrono::steady_clock;

class Recorder {
 public:
  explicit Recorder(Clock::time_point t0) : t0_(t0) {}
  // `value_json` is already JSON ("null", "3", "[1,2]").
  void add(std::int64_t process, const char* type, const std::string& f, const std::string& key,
           const std::string& value_json);
  std::string text() const;
  int ok() const { return ok_; }
  int fail() const { return fail_; }
  int info() const { return info_; }

 private:
  Clock::time_point t0_;
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
  std::atomic<int> ok_{0}, fail_{0}, info_{0};
};

// Milliseconds since `t0`, for logs.
inline long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

}  // namespace tern::jepsen
