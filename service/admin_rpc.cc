#include "service/admin_rpc.h"

#include <memory>
#include <optional>

#include "service/node_await.h"
#include "service/proto/admin.capnp.h"

namespace tern::service {
namespace {

proto::AdminCode code_of(NodeErrc e) {
  switch (e) {
    case NodeErrc::not_leader: return proto::AdminCode::NOT_LEADER;
    case NodeErrc::unknown_outcome: return proto::AdminCode::UNKNOWN_OUTCOME;
    case NodeErrc::busy: return proto::AdminCode::BUSY;
    case NodeErrc::too_large: return proto::AdminCode::TOO_LARGE;
    case NodeErrc::conf_change_pending: return proto::AdminCode::CONF_CHANGE_PENDING;
    case NodeErrc::transfer_in_progress: return proto::AdminCode::TRANSFER_IN_PROGRESS;
    case NodeErrc::invalid: return proto::AdminCode::INVALID;
    case NodeErrc::shutting_down: return proto::AdminCode::SHUTTING_DOWN;
    case NodeErrc::timed_out: return proto::AdminCode::TIMED_OUT;
  }
  return proto::AdminCode::INVALID;
}

void set_error(proto::AdminResult::Builder b, const NodeError& e) {
  b.setCode(code_of(e.code));
  b.setLeaderHint(e.leader_hint.value);
  b.setMessage(e.message);
}

void set_response(proto::AdminResult::Builder b, const std::string& response) {
  b.setResponse(kj::arrayPtr(reinterpret_cast<const kj::byte*>(response.data()), response.size()));
}

void fill(proto::AdminResult::Builder b, const Result<Committed, NodeError>& r) {
  if (!r) return set_error(b, r.error());
  b.setCode(proto::AdminCode::OK);
  b.setIndex(r->index.value);
  b.setTerm(r->term.value);
  set_response(b, r->response);
}

void fill(proto::AdminResult::Builder b, const Result<ReadResult, NodeError>& r) {
  if (!r) return set_error(b, r.error());
  b.setCode(proto::AdminCode::OK);
  b.setIndex(r->index.value);
  set_response(b, r->response);
}

void fill(proto::AdminResult::Builder b, const Result<void, NodeError>& r) {
  if (!r) return set_error(b, r.error());
  b.setCode(proto::AdminCode::OK);
}

class AdminImpl final : public proto::Admin::Server {
 public:
  explicit AdminImpl(Node& node) : node_(node) {}

  kj::Promise<void> propose(ProposeContext ctx) override {
    auto data = ctx.getParams().getData();
    std::string command(reinterpret_cast<const char*>(data.begin()), data.size());
    ctx.releaseParams();
    return await_result(ctx, [&](ProposeCallback cb) { node_.propose(std::move(command), std::move(cb)); });
  }

  kj::Promise<void> read(ReadContext ctx) override {
    auto q = ctx.getParams().getQuery();
    std::string query(reinterpret_cast<const char*>(q.begin()), q.size());
    ctx.releaseParams();
    return await_node<Result<ReadResult, NodeError>>([&](auto cb) { node_.read(std::move(query), std::move(cb)); })
        .then([ctx](auto holder) mutable { fill(ctx.getResults().initResult(), **holder); });
  }

  kj::Promise<void> injectPartition(InjectPartitionContext ctx) override {
    std::vector<raft::NodeId> peers;
    for (auto id : ctx.getParams().getPeers()) peers.push_back(raft::NodeId{id});
    fill(ctx.getResults().initResult(), node_.inject_partition(peers));
    return kj::READY_NOW;
  }

  kj::Promise<void> status(StatusContext ctx) override {
    auto s = node_.status();
    auto b = ctx.getResults().initStatus();
    b.setId(s.id.value);
    b.setRole(s.role);
    b.setTerm(s.term.value);
    b.setLeader(s.leader.value);
    b.setCommitIndex(s.commit.value);
    b.setAppliedIndex(s.applied.value);
    b.setLastIndex(s.last.value);
    b.setSnapshotIndex(s.snapshot.value);
    b.setAppliedCommands(s.applied_commands);
    b.setDigest(node_.digest());
    b.setPendingProposals(s.pending);
    auto ms = b.initMembers(static_cast<unsigned>(s.members.size()));
    for (unsigned i = 0; i < s.members.size(); ++i) {
      ms[i].setId(s.members[i].id.value);
      ms[i].setAddress(s.members[i].address);
      ms[i].setVoter(s.members[i].voter);
      ms[i].setMatchIndex(s.members[i].match.value);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> transferLeadership(TransferLeadershipContext ctx) override {
    fill(ctx.getResults().initResult(), node_.transfer_leadership(raft::NodeId{ctx.getParams().getTo()}));
    return kj::READY_NOW;
  }

  kj::Promise<void> addMember(AddMemberContext ctx) override {
    auto p = ctx.getParams();
    raft::NodeId id{p.getId()};
    std::string address = p.getAddress();
    bool learner = p.getLearner();
    return await_result(ctx, [&](ProposeCallback cb) { node_.add_member(id, address, learner, std::move(cb)); });
  }

  kj::Promise<void> promoteMember(PromoteMemberContext ctx) override {
    raft::NodeId id{ctx.getParams().getId()};
    return await_result(ctx, [&](ProposeCallback cb) { node_.promote_member(id, std::move(cb)); });
  }

  kj::Promise<void> removeMember(RemoveMemberContext ctx) override {
    raft::NodeId id{ctx.getParams().getId()};
    return await_result(ctx, [&](ProposeCallback cb) { node_.remove_member(id, std::move(cb)); });
  }

 private:
  // Starts a node operation whose callback fills the call's result (service/node_await.h).
  template <class Context, class Start>
  kj::Promise<void> await_result(Context& ctx, Start start) {
    return await_node<Result<Committed, NodeError>>(std::move(start)).then([ctx](auto holder) mutable {
      fill(ctx.getResults().initResult(), **holder);
    });
  }

  Node& node_;
};

}  // namespace

capnp::Capability::Client make_admin_capability(Node& node) { return kj::heap<AdminImpl>(node); }
kj::Own<capnp::Capability::Server> make_admin_server(Node& node) { return kj::heap<AdminImpl>(node); }

}  // namespace tern::service
