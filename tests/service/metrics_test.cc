#include "service/metrics.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace tern::service {
namespace {

TEST(LatencyHistogram, QuantilesBoundTheTruth) {
  LatencyHistogram h;
  for (std::uint64_t us = 1; us <= 1000; ++us) h.observe_us(us);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.sum_us(), 500500u);
  EXPECT_EQ(h.quantile_us(0.5), 512u);    // true p50 = 500
  EXPECT_EQ(h.quantile_us(0.99), 1024u);  // true p99 = 990
}

RC_GTEST_PROP(LatencyHistogram, QuantileWithinFactorTwo, (std::vector<std::uint32_t> raw)) {
  RC_PRE(!raw.empty());
  LatencyHistogram h;
  std::vector<std::uint64_t> v;
  for (auto x : raw) {
    v.push_back(x % 2'000'000 + 1);
    h.observe_us(v.back());
  }
  std::sort(v.begin(), v.end());
  for (double q : {0.5, 0.99}) {
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    std::uint64_t truth = v[std::max<std::size_t>(rank, 1) - 1];
    auto est = h.quantile_us(q);
    if (truth <= (1u << 20)) {
      RC_ASSERT(est >= truth);
      RC_ASSERT(est < 2 * truth || truth == 1);
    }
  }
}

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.inc("tern_proposals_committed_total", 3);
  m.set("tern_has_leader", 1);
  m.histogram("tern_commit_latency_seconds").observe_us(300);
  auto text = m.render();
  EXPECT_NE(text.find("tern_proposals_committed_total 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tern_has_leader 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tern_commit_latency_seconds_bucket{le=\"0.000512\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tern_commit_latency_seconds_count 1\n"), std::string::npos) << text;
  EXPECT_EQ(m.counter("tern_proposals_committed_total"), 3u);
}

}  // namespace
}  // namespace tern::service
