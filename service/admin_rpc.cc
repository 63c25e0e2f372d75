#include "service/admin_rpc.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

// Open snapshot readers on this node (all connections; the loop thread only): each holds a file
// descriptor until its client drops it.
constexpr int kMaxSnapshotReaders = 4;
int g_snapshot_readers = 0;
constexpr std::uint32_t kMaxSnapshotChunk = 1 << 20;

// Serves one snapshot file from an open descriptor, so the file may be unlinked meanwhile (a
// newer snapshot replaced it). Reads are small (<= 1 MiB) preads on the loop thread, like the
// snapshot reads that feed a follower (Replica::snapshot_data).
class SnapshotReaderImpl final : public proto::SnapshotReader::Server {
 public:
  SnapshotReaderImpl(int fd, std::uint64_t size) : fd_(fd), size_(size) { ++g_snapshot_readers; }
  ~SnapshotReaderImpl() noexcept(false) {
    ::close(fd_);
    --g_snapshot_readers;
  }

  kj::Promise<void> read(ReadContext ctx) override {
    auto p = ctx.getParams();
    std::uint64_t offset = std::min(p.getOffset(), size_);
    std::uint64_t n = std::min<std::uint64_t>({p.getLength(), kMaxSnapshotChunk, size_ - offset});
    auto data = ctx.getResults().initData(static_cast<unsigned>(n));
    std::uint64_t done = 0;
    while (done < n) {
      auto r = ::pread(fd_, data.begin() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        const char* why = r < 0 ? std::strerror(errno) : "the file is shorter than it was";
        return KJ_EXCEPTION(FAILED, "snapshot read failed", why);
      }
      done += static_cast<std::uint64_t>(r);
    }
    return kj::READY_NOW;
  }

 private:
  int fd_;
  std::uint64_t size_;
};

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
      ms[i].setClientAddress(s.members[i].client_address);
      ms[i].setMatchIndex(s.members[i].match.value);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> snapshot(SnapshotContext ctx) override {
    if (g_snapshot_readers >= kMaxSnapshotReaders) {
      set_error(ctx.getResults().initResult(), NodeError{NodeErrc::busy, raft::NodeId{}, "too many snapshot downloads; retry later"});
      return kj::READY_NOW;
    }
    return await_node<Result<storage::SnapshotFile, NodeError>>([&](auto cb) { node_.snapshot_now(std::move(cb)); })
        .then([ctx](auto holder) mutable {
          const auto& r = **holder;
          auto res = ctx.getResults();
          if (!r) return set_error(res.initResult(), r.error());
          if (g_snapshot_readers >= kMaxSnapshotReaders)
            return set_error(res.initResult(), NodeError{NodeErrc::busy, raft::NodeId{}, "too many snapshot downloads; retry later"});
          // Opened at once: the node keeps two snapshots, and a newer one may unlink this file.
          int fd = ::open(r->path.c_str(), O_RDONLY | O_CLOEXEC);
          struct stat st{};
          if (fd < 0 || ::fstat(fd, &st) != 0) {
            std::string why = r->path + ": " + std::strerror(errno);
            if (fd >= 0) ::close(fd);
            return set_error(res.initResult(), NodeError{NodeErrc::busy, raft::NodeId{}, why + "; retry"});
          }
          auto b = res.initResult();
          b.setCode(proto::AdminCode::OK);
          b.setIndex(r->meta.index.value);
          b.setTerm(r->meta.term.value);
          res.setSize(static_cast<std::uint64_t>(st.st_size));
          res.setReader(kj::heap<SnapshotReaderImpl>(fd, static_cast<std::uint64_t>(st.st_size)));
        });
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
