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

}  // namespace
}  // namespace tern::jepsen
