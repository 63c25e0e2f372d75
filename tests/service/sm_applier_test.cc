// SmApplier: the coordination state machine behind the replica's Applier interface.
#include <gtest/gtest.h>

#include "service/sm/command.h"
#include "service/sm/query.h"
#include "service/sm_applier.h"

namespace tern::service {
namespace {

struct RecordingSink : EventSink {
  std::vector<sm::Event> events;
  std::vector<std::uint64_t> restores;
  void publish(const std::vector<sm::Event>& e) override { events.insert(events.end(), e.begin(), e.end()); }
  void restored(std::uint64_t index) override { restores.push_back(index); }
};

std::string create(const std::string& path, const std::string& data) {
  sm::Command c;
  c.op.type = sm::OpType::create;
  c.op.path = path;
  c.op.data = data;
  return sm::encode(c);
}

sm::Response answer(const std::string& bytes) {
  auto r = sm::decode_response(bytes);
  EXPECT_TRUE(r.has_value());
  return r.value_or(sm::Response{});
}

TEST(SmApplier, AppliesCommandsAnswersQueriesAndPublishesEvents) {
  RecordingSink sink;
  SmApplier a({}, &sink);
  auto r = answer(a.apply(raft::Index(1), 1000, create("/a", "x")));
  EXPECT_EQ(r.err, sm::Errc::ok);
  EXPECT_EQ(r.path, "/a");
  ASSERT_EQ(sink.events.size(), 2u);  // created /a, children_changed /
  EXPECT_EQ(sink.events[0].type, sm::EventType::created);
  EXPECT_EQ(sink.events[0].index, 1u);

  sm::Query q;
  q.path = "/a";
  auto g = answer(a.query(sm::encode(q)));
  EXPECT_EQ(g.err, sm::Errc::ok);
  EXPECT_EQ(g.data, "x");
  EXPECT_EQ(g.stat.created_index, 1u);

  EXPECT_EQ(answer(a.apply(raft::Index(2), 1001, create("/a", "y"))).err, sm::Errc::node_exists);
  EXPECT_EQ(answer(a.apply(raft::Index(3), 1002, "garbage")).err, sm::Errc::bad_request);
  EXPECT_EQ(answer(a.query("garbage")).err, sm::Errc::bad_request);
  EXPECT_EQ(a.applied_commands(), 3u);
}

TEST(SmApplier, RestoreReplacesTheStateAndTellsTheSinkOrChangesNothing) {
  SmApplier a;
  a.apply(raft::Index(1), 1000, create("/a", "x"));
  std::string snap = a.snapshot();
  RecordingSink sink;
  SmApplier b({}, &sink);
  b.apply(raft::Index(1), 1000, create("/b", "y"));
  auto digest = b.digest();
  EXPECT_FALSE(b.restore("not a snapshot").has_value());
  EXPECT_EQ(b.digest(), digest);
  EXPECT_TRUE(sink.restores.empty());
  ASSERT_TRUE(b.restore(snap).has_value());
  EXPECT_EQ(b.digest(), a.digest());
  EXPECT_EQ(sink.restores, std::vector<std::uint64_t>{1});
  sm::Query q;
  q.type = sm::QueryType::exists;
  q.path = "/b";
  EXPECT_EQ(answer(b.query(sm::encode(q))).err, sm::Errc::no_node);
}

TEST(SmQuery, EncodingRoundTripsAndRejectsTrailingOrUnknownBytes) {
  sm::Query q{sm::QueryType::children, "/x", "c", 7, 9};
  auto bytes = sm::encode(q);
  EXPECT_EQ(sm::decode_query(bytes), q);
  EXPECT_FALSE(sm::decode_query(bytes + "!").has_value());
  bytes[0] = 99;
  EXPECT_FALSE(sm::decode_query(bytes).has_value());
}

}  // namespace
}  // namespace tern::service
