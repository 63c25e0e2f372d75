#include "service/net/peer_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <vector>

#include "common/assert.h"
#include "common/overloaded.h"
#include "service/proto/peer.capnp.h"

namespace tern::net {

using namespace tern::raft;

const char* codec_error_name(CodecError e) {
  switch (e) {
    case CodecError::malformed: return "malformed";
    case CodecError::too_large: return "too_large";
    case CodecError::unaligned: return "unaligned";
    case CodecError::wrong_cluster: return "wrong_cluster";
    case CodecError::wrong_sender: return "wrong_sender";
    case CodecError::wrong_receiver: return "wrong_receiver";
  }
  return "?";
}

namespace {

kj::ArrayPtr<const kj::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}
std::string string_of(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }

void put_conf(proto::ConfState::Builder b, const ConfState& c) {
  auto v = b.initVoters(static_cast<unsigned>(c.voters.size()));
  for (unsigned i = 0; i < c.voters.size(); ++i) v.set(i, c.voters[i].value);
  auto l = b.initLearners(static_cast<unsigned>(c.learners.size()));
  for (unsigned i = 0; i < c.learners.size(); ++i) l.set(i, c.learners[i].value);
}
// The smallest encoding of one Entry element in a list (3 data words + 1 pointer, as our encoder
// writes it); a list claiming more elements than the frame could hold is an amplification attempt.
constexpr std::size_t kMinEntryBytes = 4 * sizeof(capnp::word);

bool conf_fits(proto::ConfState::Reader r) {
  return r.getVoters().size() <= max_conf_members && r.getLearners().size() <= max_conf_members;
}
ConfState get_conf(proto::ConfState::Reader r) {
  ConfState c;
  for (auto v : r.getVoters()) c.voters.push_back(NodeId{v});
  for (auto l : r.getLearners()) c.learners.push_back(NodeId{l});
  return c;
}

}  // namespace

namespace {

proto::PeerMessage::Body::Builder init_header(capnp::MallocMessageBuilder& builder, std::uint64_t cluster_id,
                                              const Message& m) {
  auto msg = builder.initRoot<proto::PeerMessage>();
  msg.setClusterId(cluster_id);
  msg.setFrom(m.from.value);
  msg.setTo(m.to.value);
  msg.setTerm(m.term.value);
  return msg.initBody();
}

void put_snapshot(proto::PeerMessage::InstallSnapshot::Builder b, const SnapshotMeta& m, std::uint64_t offset,
                  kj::ArrayPtr<const kj::byte> chunk, bool done) {
  auto meta = b.initMeta();
  meta.setIndex(m.index.value);
  meta.setTerm(m.term.value);
  put_conf(meta.initConf(), m.conf);
  b.setOffset(offset);
  b.setChunk(chunk);
  b.setDone(done);
}

std::string to_bytes(capnp::MallocMessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto chars = words.asChars();
  return std::string(chars.begin(), chars.size());
}

}  // namespace

std::string encode_snapshot_chunk(std::uint64_t cluster_id, const Message& header, std::uint64_t offset,
                                  std::string_view chunk, bool done) {
  const auto* req = std::get_if<InstallSnapshotRequest>(&header.body);
  TERN_ASSERT(req != nullptr);
  capnp::MallocMessageBuilder builder;
  auto body = init_header(builder, cluster_id, header);
  put_snapshot(body.initInstallSnapshot(), req->meta, offset,
               kj::arrayPtr(reinterpret_cast<const kj::byte*>(chunk.data()), chunk.size()), done);
  return to_bytes(builder);
}

std::string encode_peer_frame(std::uint64_t cluster_id, const Message& m) {
  capnp::MallocMessageBuilder builder;
  auto body = init_header(builder, cluster_id, m);
  std::visit(Overloaded{
                 [&](const AppendRequest& r) {
                   auto b = body.initAppendRequest();
                   b.setPrevIndex(r.prev_index.value);
                   b.setPrevTerm(r.prev_term.value);
                   b.setCommit(r.commit.value);
                   auto es = b.initEntries(static_cast<unsigned>(r.entries.size()));
                   for (unsigned i = 0; i < r.entries.size(); ++i) {
                     const Entry& e = r.entries[i];
                     es[i].setTerm(e.term.value);
                     es[i].setIndex(e.index.value);
                     es[i].setType(static_cast<std::uint8_t>(e.type));
                     es[i].setData(bytes_of(e.data));
                   }
                 },
                 [&](const AppendReply& r) {
                   auto b = body.initAppendReply();
                   b.setSuccess(r.success);
                   b.setMatchIndex(r.match_index.value);
                   b.setRejectedIndex(r.rejected_index.value);
                   b.setConflictIndex(r.conflict_index.value);
                   b.setConflictTerm(r.conflict_term.value);
                 },
                 [&](const VoteRequest& r) {
                   auto b = body.initVoteRequest();
                   b.setLastIndex(r.last_index.value);
                   b.setLastTerm(r.last_term.value);
                   b.setPreVote(r.pre_vote);
                   b.setTransfer(r.transfer);
                 },
                 [&](const VoteReply& r) {
                   auto b = body.initVoteReply();
                   b.setGranted(r.granted);
                   b.setPreVote(r.pre_vote);
                 },
                 [&](const HeartbeatRequest& r) {
                   auto b = body.initHeartbeatRequest();
                   b.setCommit(r.commit.value);
                   b.setReadSeq(r.read_seq);
                 },
                 [&](const HeartbeatReply& r) { body.initHeartbeatReply().setReadSeq(r.read_seq); },
                 [&](const InstallSnapshotRequest& r) {
                   put_snapshot(body.initInstallSnapshot(), r.meta, 0,
                                r.data ? bytes_of(*r.data) : kj::ArrayPtr<const kj::byte>(), true);
                 },
                 [&](const InstallSnapshotReply& r) { body.initInstallSnapshotReply().setMatchIndex(r.match_index.value); },
                 [&](const TimeoutNow&) { body.setTimeoutNow(); },
                 [&](const ReadIndexRequest& r) { body.initReadIndexRequest().setContext(bytes_of(r.context)); },
                 [&](const ReadIndexReply& r) {
                   auto b = body.initReadIndexReply();
                   b.setContext(bytes_of(r.context));
                   b.setIndex(r.index.value);
                   b.setOk(r.ok);
                 },
                 [&](const ProposeRequest& r) {
                   auto b = body.initProposeRequest();
                   b.setContext(r.context);
                   b.setCommand(bytes_of(r.command));
                   b.setTrace(r.trace);
                   b.setKind(r.kind);
                 },
                 [&](const ProposeReply& r) {
                   auto b = body.initProposeReply();
                   b.setContext(r.context);
                   b.setIndex(r.index.value);
                   b.setOk(r.ok);
                 },
                 [&](const CommitNotice& r) { body.initCommitNotice().setCommit(r.commit.value); },
             },
             m.body);
  return to_bytes(builder);
}

Result<PeerFrame, CodecError> decode_peer_frame(std::string_view bytes, const ExpectedHeader* expect) {
  if (bytes.size() > max_peer_frame_bytes) return fail(CodecError::too_large);
  if (bytes.size() % sizeof(capnp::word) != 0 || bytes.empty()) return fail(CodecError::malformed);
  // Cap'n Proto reads words in place: copy into aligned storage.
  std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.data(), bytes.data(), bytes.size());
  PeerFrame f;
  try {
    capnp::ReaderOptions options;
    // Every word of the frame may be read about once (header fields twice); Cap'n Proto charges a
    // zero-sized list element one word, so amplification stops at a few times the frame size.
    options.traversalLimitInWords = 2 * words.size() + 64;
    options.nestingLimit = 8;  // PeerMessage > body > InstallSnapshot > meta > conf > list
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()), options);
    auto msg = reader.getRoot<proto::PeerMessage>();
    f.cluster_id = msg.getClusterId();
    Message& m = f.message;
    m.from = NodeId{msg.getFrom()};
    m.to = NodeId{msg.getTo()};
    m.term = Term{msg.getTerm()};
    if (expect != nullptr) {
      if (f.cluster_id != expect->cluster_id) return fail(CodecError::wrong_cluster);
      if (m.to != expect->to) return fail(CodecError::wrong_receiver);
      if (expect->from != NodeId{0} && m.from != expect->from) return fail(CodecError::wrong_sender);
    }
    auto body = msg.getBody();
    switch (body.which()) {
      case proto::PeerMessage::Body::APPEND_REQUEST: {
        auto b = body.getAppendRequest();
        AppendRequest r{Index{b.getPrevIndex()}, Term{b.getPrevTerm()}, {}, Index{b.getCommit()}};
        auto entries = b.getEntries();
        if (entries.size() > bytes.size() / kMinEntryBytes) return fail(CodecError::malformed);
        r.entries.reserve(entries.size());
        for (auto e : entries) {
          if (e.getType() > 2) return fail(CodecError::malformed);
          r.entries.push_back(Entry{Term{e.getTerm()}, Index{e.getIndex()}, static_cast<EntryType>(e.getType()), string_of(e.getData())});
        }
        m.body = std::move(r);
        break;
      }
      case proto::PeerMessage::Body::APPEND_REPLY: {
        auto b = body.getAppendReply();
        m.body = AppendReply{b.getSuccess(), Index{b.getMatchIndex()}, Index{b.getRejectedIndex()}, Index{b.getConflictIndex()},
                             Term{b.getConflictTerm()}};
        break;
      }
      case proto::PeerMessage::Body::VOTE_REQUEST: {
        auto b = body.getVoteRequest();
        m.body = VoteRequest{Index{b.getLastIndex()}, Term{b.getLastTerm()}, b.getPreVote(), b.getTransfer()};
        break;
      }
      case proto::PeerMessage::Body::VOTE_REPLY: {
        auto b = body.getVoteReply();
        m.body = VoteReply{b.getGranted(), b.getPreVote()};
        break;
      }
      case proto::PeerMessage::Body::HEARTBEAT_REQUEST: {
        auto b = body.getHeartbeatRequest();
        m.body = HeartbeatRequest{Index{b.getCommit()}, b.getReadSeq()};
        break;
      }
      case proto::PeerMessage::Body::HEARTBEAT_REPLY: m.body = HeartbeatReply{body.getHeartbeatReply().getReadSeq()}; break;
      case proto::PeerMessage::Body::INSTALL_SNAPSHOT: {
        auto b = body.getInstallSnapshot();
        auto meta = b.getMeta();
        if (!conf_fits(meta.getConf())) return fail(CodecError::malformed);
        InstallSnapshotRequest r{SnapshotMeta{Index{meta.getIndex()}, Term{meta.getTerm()}, get_conf(meta.getConf())}, nullptr};
        if (b.getOffset() == 0 && b.getDone()) {
          r.data = std::make_shared<const std::string>(b.hasChunk() ? string_of(b.getChunk()) : std::string());
        } else {  // part of a longer snapshot: the transport reassembles the chunks
          f.chunk = SnapshotChunk{b.getOffset(), b.getDone(), b.hasChunk() ? string_of(b.getChunk()) : std::string()};
        }
        m.body = std::move(r);
        break;
      }
      case proto::PeerMessage::Body::INSTALL_SNAPSHOT_REPLY:
        m.body = InstallSnapshotReply{Index{body.getInstallSnapshotReply().getMatchIndex()}};
        break;
      case proto::PeerMessage::Body::TIMEOUT_NOW: m.body = TimeoutNow{}; break;
      case proto::PeerMessage::Body::READ_INDEX_REQUEST:
        m.body = ReadIndexRequest{string_of(body.getReadIndexRequest().getContext())};
        break;
      case proto::PeerMessage::Body::READ_INDEX_REPLY: {
        auto b = body.getReadIndexReply();
        m.body = ReadIndexReply{string_of(b.getContext()), Index{b.getIndex()}, b.getOk()};
        break;
      }
      case proto::PeerMessage::Body::PROPOSE_REQUEST: {
        auto b = body.getProposeRequest();
        m.body = ProposeRequest{b.getContext(), string_of(b.getCommand()), b.getTrace(), b.getKind()};
        break;
      }
      case proto::PeerMessage::Body::PROPOSE_REPLY: {
        auto b = body.getProposeReply();
        m.body = ProposeReply{b.getContext(), Index{b.getIndex()}, b.getOk()};
        break;
      }
      case proto::PeerMessage::Body::COMMIT_NOTICE: m.body = CommitNotice{Index{body.getCommitNotice().getCommit()}}; break;
      default: return fail(CodecError::malformed);  // a union member from a newer schema
    }
  } catch (const kj::Exception&) {
    return fail(CodecError::malformed);
  }
  return f;
}

}  // namespace tern::net
