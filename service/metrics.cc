#include "service/metrics.h"

#include <bit>
#include <cmath>
#include <cstdio>

namespace tern::service {

void LatencyHistogram::observe_us(std::uint64_t us) {
  std::size_t b = us <= 1 ? 0 : static_cast<std::size_t>(std::bit_width(us - 1));
  if (b > kBuckets) b = kBuckets;
  ++buckets_[b];
  ++count_;
  sum_us_ += us;
}

std::uint64_t LatencyHistogram::quantile_us(double q) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b <= kBuckets; ++b) {
    seen += buckets_[b];
    if (seen >= rank) return std::uint64_t{1} << b;
  }
  return std::uint64_t{1} << kBuckets;
}

void LatencyHistogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  std::uint64_t cum = 0;
  char line[160];
  for (std::size_t b = 0; b < kBuckets; ++b) {
    cum += buckets_[b];
    std::snprintf(line, sizeof line, "%s_bucket{le=\"%.6f\"} %llu\n", name.c_str(),
                  static_cast<double>(std::uint64_t{1} << b) / 1e6, static_cast<unsigned long long>(cum));
    out += line;
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  std::snprintf(line, sizeof line, "%s_sum %.6f\n", name.c_str(), static_cast<double>(sum_us_) / 1e6);
  out += line;
  out += name + "_count " + std::to_string(count_) + "\n";
}

std::uint64_t Metrics::counter(const std::string& name) const {
  auto it = counters_.find(name);
  return it == counters_.end() ? 0 : it->second;
}

std::string Metrics::render() const {
  std::string out;
  for (const auto& [k, v] : counters_) out += "# TYPE " + k + " counter\n" + k + " " + std::to_string(v) + "\n";
  char line[160];
  for (const auto& [k, v] : gauges_) {
    std::snprintf(line, sizeof line, "%s %.17g\n", k.c_str(), v);
    out += "# TYPE " + k + " gauge\n" + line;
  }
  for (const auto& [k, h] : histograms_) h.render(out, k, "latency in seconds");
  return out;
}

}  // namespace tern::service
