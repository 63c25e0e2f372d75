#pragma once
// A warning sink that lets at most `burst` messages through per interval and reports how many it
// swallowed: a flood of refused connections or malformed frames must not become a flood of log
// (22 MB in 10 s before this existed, issue 17).
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace tern::net {

class RateLimitedWarn {
 public:
  static constexpr std::uint32_t kDefaultBurst = 10;

  explicit RateLimitedWarn(std::function<void(const std::string&)> sink, std::uint32_t burst = kDefaultBurst,
                           std::chrono::milliseconds interval = std::chrono::seconds(1))
      : sink_(std::move(sink)), burst_(burst), interval_(interval) {}

  void operator()(const std::string& text) {
    if (!sink_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= interval_) {
      if (suppressed_ > 0) sink_("(" + std::to_string(suppressed_) + " similar warnings suppressed)");
      window_start_ = now;
      in_window_ = 0;
      suppressed_ = 0;
    }
    if (in_window_ < burst_) {
      ++in_window_;
      sink_(text);
    } else {
      ++suppressed_;
    }
  }

 private:
  std::function<void(const std::string&)> sink_;
  std::uint32_t burst_;
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point window_start_{};
  std::uint32_t in_window_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace tern::net
