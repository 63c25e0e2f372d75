#pragma once
// A small metrics registry rendered as Prometheus text (docs/operations.md). Single-threaded by
// design: the node's event loop owns it, as it owns every other piece of node state.
#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace tern::service {

// Latency histogram with fixed power-of-two microsecond buckets: 1 µs .. ~1 s, then +Inf.
class LatencyHistogram {
 public:
  static constexpr std::size_t kBuckets = 21;  // upper bounds 2^0 .. 2^20 µs
  void observe_us(std::uint64_t us);
  std::uint64_t count() const { return count_; }
  std::uint64_t sum_us() const { return sum_us_; }
  // Upper bound (µs) of the bucket holding quantile q in [0,1]; an over-estimate by < 2x.
  std::uint64_t quantile_us(double q) const;
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::array<std::uint64_t, kBuckets + 1> buckets_{};  // last = overflow
  std::uint64_t count_ = 0;
  std::uint64_t sum_us_ = 0;
};

class Metrics {
 public:
  void inc(const std::string& counter, std::uint64_t by = 1) { counters_[counter] += by; }
  // For counters kept as plain integers on a hot path and copied in when rendering.
  void set_counter(const std::string& counter, std::uint64_t value) { counters_[counter] = value; }
  void set(const std::string& gauge, double v) { gauges_[gauge] = v; }
  LatencyHistogram& histogram(const std::string& name) { return histograms_[name]; }
  std::uint64_t counter(const std::string& name) const;
  std::string render() const;

 private:
  std::map<std::string, std::uint64_t> counters_;
  std::map<std::string, double> gauges_;
  std::map<std::string, LatencyHistogram> histograms_;
};

}  // namespace tern::service
