// Unit tests of tern-jepsen's nemesis pieces that need no cluster: the partition shapes and
// report.html (docs/jepsen.md).
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "jepsen-like/runner/nemesis.h"
#include "jepsen-like/runner/report.h"

namespace tern::jepsen {
namespace {

namespace fs = std::filesystem;

// Who each node can send to under `cuts` (itself included).
std::map<std::uint64_t, std::set<std::uint64_t>> reach(const std::vector<std::uint64_t>& ids, const Cuts& cuts) {
  std::map<std::uint64_t, std::set<std::uint64_t>> r;
  for (auto a : ids)
    for (auto b : ids)
      if (cuts.count({a, b}) == 0) r[a].insert(b);
  return r;
}

TEST(NemesisShapes, IsolateCutsTheSideFromTheRestBothWays) {
  std::vector<std::uint64_t> ids{1, 2, 3, 4, 5};
  auto cuts = isolate(ids, {2, 4});
  EXPECT_EQ(cuts.size(), 12u);  // 2 x 3 pairs, both ways
  auto r = reach(ids, cuts);
  EXPECT_EQ(r[2], (std::set<std::uint64_t>{2, 4}));
  EXPECT_EQ(r[1], (std::set<std::uint64_t>{1, 3, 5}));
}

TEST(NemesisShapes, BridgeNodeSeesBothHalvesWhichDoNotSeeEachOther) {
  std::vector<std::uint64_t> ids{5, 1, 4, 2, 3};  // ids[2] = 4 is the bridge
  auto r = reach(ids, bridge(ids));
  EXPECT_EQ(r[4], (std::set<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(r[5], (std::set<std::uint64_t>{1, 4, 5}));
  EXPECT_EQ(r[2], (std::set<std::uint64_t>{2, 3, 4}));
  auto r3 = reach({1, 2, 3}, bridge({1, 2, 3}));
  EXPECT_EQ(r3[1], (std::set<std::uint64_t>{1, 2}));
  EXPECT_EQ(r3[2], (std::set<std::uint64_t>{1, 2, 3}));
}

TEST(NemesisShapes, RingGivesEveryNodeADifferentMajority) {
  std::vector<std::uint64_t> ids{3, 1, 5, 2, 4};
  auto r = reach(ids, ring(ids));
  std::set<std::set<std::uint64_t>> majorities;
  for (auto& [id, seen] : r) {
    EXPECT_EQ(seen.size(), 3u) << "node " << id;
    majorities.insert(seen);
  }
  EXPECT_EQ(majorities.size(), 5u);
  EXPECT_EQ(r[3], (std::set<std::uint64_t>{3, 1, 4}));  // its ring neighbours in the given order
}

TEST(Report, ShadesFaultWindowsAndLinksTheAnomaly) {
  char tmpl[] = "/tmp/tern_report_test_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::ofstream(dir + "/history.jsonl")
      << R"({"process":0,"type":"invoke","f":"read","key":"a","value":null,"time":1000000})" "\n"
      << R"({"process":0,"type":"ok","f":"read","key":"a","value":0,"time":3000000})" "\n"
      << R"({"process":1,"type":"invoke","f":"write","key":"a","value":1,"time":1500000000})" "\n"
      << R"({"process":1,"type":"info","f":"write","key":"a","value":1,"time":2500000000})" "\n";
  std::ofstream(dir + "/nemesis.log")
      << R"({"time_ms":1000,"fault":"kill","phase":"start","window":1,"action":"kill","nodes":[2],"target":"leader"})" "\n"
      << R"({"time_ms":2000,"fault":"kill","phase":"end","window":1,"action":"start","nodes":[2]})" "\n";
  std::ofstream(dir + "/register-anomaly.html") << "<html></html>";
  nlohmann::json results{{"verdict", "invalid"},
                         {"workload", "register"},
                         {"nemesis", "kill"},
                         {"seed", 7},
                         {"duration_s", 3.0},
                         {"network", "netns+nftables"},
                         {"operations", {{"ok", 1}, {"fail", 0}, {"info", 1}}},
                         {"checks", {{"register", {{"verdict", "invalid"}, {"detail", "not linearizable"}}}}},
                         {"faults", {{"kill", 1}}}};
  std::string error;
  ASSERT_TRUE(write_report(dir, results, &error)) << error;
  std::ifstream in(dir + "/report.html");
  std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("fill=\"#d62728\" opacity=\"0.15\""), std::string::npos) << "the kill window is shaded";
  EXPECT_NE(html.find("href=\"register-anomaly.html\""), std::string::npos);
  EXPECT_NE(html.find("netns+nftables"), std::string::npos);
  EXPECT_NE(html.find("stroke=\"#000\""), std::string::npos) << "the info write is drawn as a square";
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no script: a self-contained page";
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  fs::remove_all(dir);
}

// --- The overlap rule (--overlap; nemesis.h) ---------------------------------------------------

TEST(OverlapRule, PairsAProcessFaultOnlyWithAnEnvironmentFault) {
  EXPECT_TRUE(may_overlap("kill", "partition"));
  EXPECT_TRUE(may_overlap("partition", "kill"));
  EXPECT_TRUE(may_overlap("clock", "pause"));
  EXPECT_TRUE(may_overlap("partition", "clock"));
  EXPECT_TRUE(may_overlap("disk", "clock"));
  EXPECT_TRUE(may_overlap("kill-all", "partition"));
  // Two process faults fight over the same processes; a family never overlaps itself.
  EXPECT_FALSE(may_overlap("kill", "pause"));
  EXPECT_FALSE(may_overlap("disk", "kill-all"));
  EXPECT_FALSE(may_overlap("pause", "disk"));
  // A disk fault's node must keep getting entries to fail-stop: never cut off.
  EXPECT_FALSE(may_overlap("disk", "partition"));
  EXPECT_FALSE(may_overlap("partition", "disk"));
  EXPECT_FALSE(may_overlap("partition", "partition"));
  EXPECT_FALSE(may_overlap("clock", "clock"));
  // Membership steps are instant and already interleave.
  EXPECT_FALSE(may_overlap("membership", "partition"));
  EXPECT_FALSE(may_overlap("clock", "membership"));
  EXPECT_FALSE(may_overlap("none", "kill"));
}

TEST(OverlapRule, TheProcessFaultGoesFirst) {
  EXPECT_EQ(overlap_order("partition", "kill"), (std::pair<std::string, std::string>{"kill", "partition"}));
  EXPECT_EQ(overlap_order("clock", "pause"), (std::pair<std::string, std::string>{"pause", "clock"}));
  EXPECT_EQ(overlap_order("clock", "disk"), (std::pair<std::string, std::string>{"disk", "clock"}));
  EXPECT_EQ(overlap_order("clock", "partition"), (std::pair<std::string, std::string>{"clock", "partition"}));
}

TEST(OverlapRule, PartnerIsSeededAllowedAndSometimesNone) {
  std::vector<std::string> kinds{"kill", "pause", "partition", "clock", "membership"};
  for (const auto& family : kinds) {
    std::mt19937_64 a(11), b(11);
    int none = 0, some = 0;
    for (int i = 0; i < 400; ++i) {
      auto p = pick_partner(kinds, family, a);
      EXPECT_EQ(p, pick_partner(kinds, family, b)) << "same seed, same schedule";
      if (p.empty()) {
        ++none;
        continue;
      }
      ++some;
      EXPECT_TRUE(may_overlap(family, p)) << family << " + " << p;
    }
    if (family == "membership") {
      EXPECT_EQ(some, 0);
    } else {
      EXPECT_GT(some, 100) << family;
      EXPECT_GT(none, 100) << family;
    }
  }
  std::mt19937_64 r(3);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(pick_partner({"kill", "pause", "disk"}, "kill", r), "");
}

TEST(OverlapRule, IsolationKeepsTheNodesDownAMinority) {
  for (std::uint64_t n : {3u, 5u}) {
    std::vector<std::uint64_t> ids;
    for (std::uint64_t id = 1; id <= n; ++id) ids.push_back(id);
    const auto minority = (n - 1) / 2;
    // Every set the process fault may take down that is a minority (the empty one included).
    for (std::uint64_t mask = 0; mask < (1u << n); ++mask) {
      std::vector<std::uint64_t> busy;
      for (std::uint64_t i = 0; i < n; ++i)
        if (mask & (1u << i)) busy.push_back(ids[i]);
      std::mt19937_64 rng(mask * 31 + n);
      std::set<std::size_t> sizes;
      for (int k = 0; k < 200; ++k) {
        auto side = overlap_isolation(ids, busy, rng);
        if (busy.size() > minority) {
          EXPECT_FALSE(side.has_value()) << "an all variant: any shape";
          break;
        }
        ASSERT_TRUE(side.has_value());
        std::set<std::uint64_t> s(side->begin(), side->end());
        EXPECT_EQ(s.size(), side->size());
        EXPECT_GE(s.size(), 1u) << "a partition cuts someone off";
        EXPECT_LE(s.size(), minority) << "n=" << n << " mask=" << mask;
        for (auto b : busy) EXPECT_EQ(s.count(b), 1u) << "the nodes down are the ones cut off";
        for (auto x : s) EXPECT_TRUE(x >= 1 && x <= n);
        sizes.insert(s.size());
      }
      // Room for another node besides the one a partition always cuts: the choice varies.
      if (minority >= busy.size() + (busy.empty() ? 2 : 1)) {
        EXPECT_GT(sizes.size(), 1u) << "n=" << n << " mask=" << mask;
      }
    }
  }
  // On 3 nodes a killed node comes back into isolation, alone.
  std::mt19937_64 rng(1);
  EXPECT_EQ(overlap_isolation({1, 2, 3}, {2}, rng), (std::vector<std::uint64_t>{2}));
}

TEST(Report, OverlappingFaultWindowsAreEachShaded) {
  char tmpl[] = "/tmp/tern_report_test_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::ofstream(dir + "/history.jsonl")
      << R"({"process":0,"type":"invoke","f":"read","key":"a","value":null,"time":1000000})" "\n"
      << R"({"process":0,"type":"ok","f":"read","key":"a","value":0,"time":5000000000})" "\n";
  // Window 2 starts inside window 1 and ends after it (what --overlap writes).
  std::ofstream(dir + "/nemesis.log")
      << R"({"time_ms":1000,"fault":"kill","phase":"start","window":1,"action":"kill","nodes":[2],"target":"one"})" "\n"
      << R"({"time_ms":2000,"fault":"partition","phase":"start","window":2,"action":"partition","nodes":[2],"target":"isolate-overlap","overlaps":1})" "\n"
      << R"({"time_ms":3000,"fault":"kill","phase":"end","window":1,"action":"start","nodes":[2]})" "\n"
      << R"({"time_ms":4000,"fault":"partition","phase":"end","window":2,"action":"heal-partition","nodes":[2]})" "\n";
  nlohmann::json results{{"verdict", "valid"},       {"workload", "register"}, {"nemesis", "kill,partition"},
                         {"seed", 7},                {"duration_s", 5.0},      {"network", "netns+nftables"},
                         {"operations", {{"ok", 1}, {"fail", 0}, {"info", 0}}},
                         {"checks", nlohmann::json::object()},
                         {"faults", {{"kill", 1}, {"partition", 1}}}};
  std::string error;
  ASSERT_TRUE(write_report(dir, results, &error)) << error;
  std::ifstream in(dir + "/report.html");
  std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("kill: kill one n2 (1.00-3.00 s)"), std::string::npos) << "the kill window keeps its own end";
  EXPECT_NE(html.find("partition: partition isolate-overlap n2 (2.00-4.00 s)"), std::string::npos);
  EXPECT_NE(html.find("fill=\"#d62728\" opacity=\"0.15\""), std::string::npos);
  EXPECT_NE(html.find("fill=\"#1f77b4\" opacity=\"0.15\""), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tern::jepsen
