// The peer wire codec (issue 4, first piece): every Raft message survives the Cap'n Proto round
// trip exactly; garbage, truncated and oversized frames are errors, never crashes.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <chrono>

#include "service/net/peer_codec.h"
#include "service/proto/peer.capnp.h"

namespace tern::net {
namespace {

using namespace tern::raft;

rc::Gen<std::uint64_t> u64() { return rc::gen::arbitrary<std::uint64_t>(); }

Message random_message() {
  Message m{NodeId{*u64()}, NodeId{*u64()}, Term{*u64()}, TimeoutNow{}};
  switch (*rc::gen::inRange(0, 14)) {
    case 0: {
      AppendRequest r{Index{*u64()}, Term{*u64()}, {}, Index{*u64()}};
      int n = *rc::gen::inRange(0, 5);
      for (int i = 0; i < n; ++i)
        r.entries.push_back(Entry{Term{*u64()}, Index{*u64()}, static_cast<EntryType>(*rc::gen::inRange(0, 3)),
                                  *rc::gen::arbitrary<std::string>()});
      m.body = r;
      break;
    }
    case 1: m.body = AppendReply{*rc::gen::arbitrary<bool>(), Index{*u64()}, Index{*u64()}, Index{*u64()}, Term{*u64()}}; break;
    case 2: m.body = VoteRequest{Index{*u64()}, Term{*u64()}, *rc::gen::arbitrary<bool>(), *rc::gen::arbitrary<bool>()}; break;
    case 3: m.body = VoteReply{*rc::gen::arbitrary<bool>(), *rc::gen::arbitrary<bool>()}; break;
    case 4: m.body = HeartbeatRequest{Index{*u64()}, *u64()}; break;
    case 5: m.body = HeartbeatReply{*u64()}; break;
    case 6: {
      ConfState c;
      for (auto v : *rc::gen::container<std::vector<std::uint64_t>>(u64())) c.voters.push_back(NodeId{v});
      for (auto v : *rc::gen::container<std::vector<std::uint64_t>>(u64())) c.learners.push_back(NodeId{v});
      m.body = InstallSnapshotRequest{SnapshotMeta{Index{*u64()}, Term{*u64()}, c},
                                      std::make_shared<const std::string>(*rc::gen::arbitrary<std::string>())};
      break;
    }
    case 7: m.body = InstallSnapshotReply{Index{*u64()}}; break;
    case 8: m.body = TimeoutNow{}; break;
    case 9: m.body = ReadIndexRequest{*rc::gen::arbitrary<std::string>()}; break;
    case 10: m.body = ReadIndexReply{*rc::gen::arbitrary<std::string>(), Index{*u64()}, *rc::gen::arbitrary<bool>()}; break;
    case 11: m.body = ProposeRequest{*u64(), *rc::gen::arbitrary<std::string>(), *u64(), *rc::gen::arbitrary<std::uint8_t>()}; break;
    case 12: m.body = ProposeReply{*u64(), Index{*u64()}, *rc::gen::arbitrary<bool>()}; break;
    default: m.body = CommitNotice{Index{*u64()}}; break;
  }
  return m;
}

bool same(const Message& a, const Message& b) {
  if (a.from != b.from || a.to != b.to || a.term != b.term || a.body.index() != b.body.index()) return false;
  if (auto* x = std::get_if<InstallSnapshotRequest>(&a.body)) {
    auto* y = std::get_if<InstallSnapshotRequest>(&b.body);
    return x->meta == y->meta && *x->data == *y->data;
  }
  if (auto* x = std::get_if<AppendRequest>(&a.body)) {
    auto* y = std::get_if<AppendRequest>(&b.body);
    return x->prev_index == y->prev_index && x->prev_term == y->prev_term && x->commit == y->commit && x->entries == y->entries;
  }
  // The remaining bodies are flat: compare their encodings.
  return encode_peer_frame(0, a) == encode_peer_frame(0, b);
}

RC_GTEST_PROP(PeerCodec, EveryMessageRoundTrips, ()) {
  Message m = random_message();
  auto cluster = *u64();
  auto frame = encode_peer_frame(cluster, m);
  auto back = decode_peer_frame(frame);
  RC_ASSERT(back.has_value());
  RC_ASSERT(back->cluster_id == cluster);
  RC_ASSERT(same(back->message, m));
}

RC_GTEST_PROP(PeerCodec, GarbageAndTruncatedFramesNeverCrash, ()) {
  auto garbage = *rc::gen::arbitrary<std::string>();
  (void)decode_peer_frame(garbage);  // an error, or some valid message: never a crash
  auto frame = encode_peer_frame(7, random_message());
  std::size_t cut = *rc::gen::inRange<std::size_t>(0, frame.size());
  auto truncated = decode_peer_frame(std::string_view(frame).substr(0, cut & ~std::size_t{7}));
  if (cut < 8) RC_ASSERT(!truncated.has_value());
  std::string flipped = frame;
  flipped[*rc::gen::inRange<std::size_t>(0, flipped.size())] ^= static_cast<char>(1 + *rc::gen::inRange(0, 255));
  (void)decode_peer_frame(flipped);
}

TEST(PeerCodec, OversizedAndMisalignedFramesAreRejected) {
  EXPECT_EQ(decode_peer_frame(std::string(max_peer_frame_bytes + 8, '\0')).error(), CodecError::too_large);
  EXPECT_EQ(decode_peer_frame("abc").error(), CodecError::malformed);
  EXPECT_EQ(decode_peer_frame("").error(), CodecError::malformed);
  // A segment table claiming a huge segment.
  std::string lie(16, '\0');
  lie[4] = '\xff';
  lie[5] = '\xff';
  lie[6] = '\xff';
  EXPECT_FALSE(decode_peer_frame(lie).has_value());
}

// Issue 17: a ~100-byte frame holding a list of millions of zero-sized entries was decoded into
// that many raft::Entry objects (3.7 s, 450 MiB) before the cluster id was checked.
std::string zero_sized_entries_frame(std::uint64_t cluster, unsigned count) {
  capnp::MallocMessageBuilder builder;
  auto msg = builder.initRoot<proto::PeerMessage>();
  msg.setClusterId(cluster);
  msg.setFrom(1);
  msg.setTo(2);
  msg.setTerm(5);
  auto ar = msg.initBody().initAppendRequest();
  capnp::toAny(ar).getPointerSection()[0].initAsListOfAnyStruct(0, 0, count);
  auto words = capnp::messageToFlatArray(builder);
  return std::string(words.asChars().begin(), words.asChars().size());
}

TEST(PeerCodec, ZeroSizedEntryListsAreRejectedBeforeAnyEntryIsBuilt) {
  auto frame = zero_sized_entries_frame(7, 8'400'000);
  EXPECT_LT(frame.size(), 200u);
  auto start = std::chrono::steady_clock::now();
  auto r = decode_peer_frame(frame);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), CodecError::malformed);
  EXPECT_LT(took, std::chrono::milliseconds(50));
  // The header is checked first: a frame for another cluster costs only the header reads.
  ExpectedHeader other{8, NodeId{2}, NodeId{0}};
  EXPECT_EQ(decode_peer_frame(frame, &other).error(), CodecError::wrong_cluster);
  ExpectedHeader wrong_from{7, NodeId{2}, NodeId{3}};
  EXPECT_EQ(decode_peer_frame(frame, &wrong_from).error(), CodecError::wrong_sender);
  ExpectedHeader wrong_to{7, NodeId{3}, NodeId{0}};
  EXPECT_EQ(decode_peer_frame(frame, &wrong_to).error(), CodecError::wrong_receiver);
  // Just a few zero-sized entries also fail: each needs more bytes than the frame has.
  EXPECT_FALSE(decode_peer_frame(zero_sized_entries_frame(7, 64)).has_value());
}

}  // namespace
}  // namespace tern::net
