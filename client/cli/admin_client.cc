#include "client/cli/admin_client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "service/proto/admin.capnp.h"

namespace tern::admin {
namespace {

using proto::AdminCode;

const char* code_name(AdminCode c) {
  switch (c) {
    case AdminCode::OK: return "ok";
    case AdminCode::NOT_LEADER: return "not_leader";
    case AdminCode::UNKNOWN_OUTCOME: return "unknown_outcome";
    case AdminCode::BUSY: return "busy";
    case AdminCode::TOO_LARGE: return "too_large";
    case AdminCode::CONF_CHANGE_PENDING: return "conf_change_pending";
    case AdminCode::TRANSFER_IN_PROGRESS: return "transfer_in_progress";
    case AdminCode::INVALID: return "invalid";
    case AdminCode::SHUTTING_DOWN: return "shutting_down";
    case AdminCode::TIMED_OUT: return "timed_out";
  }
  return "unknown";
}

Outcome outcome(proto::AdminResult::Reader r) {
  Outcome o;
  o.code = code_name(r.getCode());
  o.index = r.getIndex();
  o.term = r.getTerm();
  o.leader_hint = r.getLeaderHint();
  o.message = r.getMessage().cStr();
  auto d = r.getResponse();
  o.response.assign(reinterpret_cast<const char*>(d.begin()), d.size());
  return o;
}

kj::ArrayPtr<const kj::byte> bytes(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

}  // namespace

struct AdminClient::Impl {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::shared_ptr<client::Connector> connector;
  std::chrono::milliseconds timeout;

  // Connects to `addr`, calls `fn(admin)` (which returns a promise of T) and waits, all bounded
  // by the timeout; any failure becomes one line naming the address.
  template <class T, class Fn>
  Result<T, std::string> call(const std::string& addr, Fn&& fn) {
    return session<T>(addr, [&](proto::Admin::Client& admin, kj::Duration deadline) {
      // The response owns the message the readers point into: convert inside the promise.
      return io.provider->getTimer().timeoutAfter(deadline, fn(admin)).wait(io.waitScope);
    });
  }

  // Connects to `addr` and runs `body(admin, deadline)` on that one connection (body waits on
  // its own calls, each bounded by the deadline); any failure becomes one line naming the address.
  template <class T, class Body>
  Result<T, std::string> session(const std::string& addr, Body&& body) {
    auto colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size())
      return fail(addr + ": not HOST:PORT");
    char* end = nullptr;
    auto port = std::strtoul(addr.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || port == 0 || port > 65535) return fail(addr + ": bad port");
    auto deadline = static_cast<std::int64_t>(timeout.count()) * kj::MILLISECONDS;
    try {
      auto& ws = io.waitScope;
      auto stream = io.provider->getTimer()
                        .timeoutAfter(deadline, connector->connect(io.provider->getNetwork(), addr.substr(0, colon),
                                                                   static_cast<std::uint16_t>(port)))
                        .wait(ws);
      capnp::TwoPartyClient rpc(*stream);
      auto admin = rpc.bootstrap().castAs<proto::Admin>();
      return body(admin, deadline);
    } catch (const kj::Exception& e) {
      std::string why = e.getDescription().cStr();
      if (auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
      return fail(addr + ": " + why);
    }
  }

  Result<Outcome, std::string> result_call(const std::string& addr, auto&& make_request) {
    return call<Outcome>(addr, [&](proto::Admin::Client& admin) {
      return make_request(admin).send().then([](auto response) { return outcome(response.getResult()); });
    });
  }
};

Result<std::unique_ptr<AdminClient>, std::string> AdminClient::make(const client::TlsOptions& tls,
                                                                    std::chrono::milliseconds timeout) {
  auto connector = client::Connector::make(tls);
  if (!connector) return fail(connector.error());
  auto impl = std::make_unique<Impl>();
  impl->connector = *connector;
  impl->timeout = timeout;
  return std::unique_ptr<AdminClient>(new AdminClient(std::move(impl)));
}

AdminClient::AdminClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AdminClient::~AdminClient() = default;

Result<Status, std::string> AdminClient::status(const std::string& addr) {
  return impl_->call<Status>(addr, [](proto::Admin::Client& admin) {
    return admin.statusRequest().send().then([](auto response) {
      auto s = response.getStatus();
      Status v;
      v.id = s.getId();
      v.role = s.getRole().cStr();
      v.term = s.getTerm();
      v.leader = s.getLeader();
      v.commit = s.getCommitIndex();
      v.applied = s.getAppliedIndex();
      v.last = s.getLastIndex();
      v.snapshot = s.getSnapshotIndex();
      v.applied_commands = s.getAppliedCommands();
      v.digest = s.getDigest();
      v.pending_proposals = s.getPendingProposals();
      for (auto m : s.getMembers())
        v.members.push_back(Member{m.getId(), m.getMatchIndex(), m.getAddress().cStr(), m.getVoter()});
      return v;
    });
  });
}

Result<Outcome, std::string> AdminClient::propose(const std::string& addr, const std::string& data) {
  return impl_->result_call(addr, [&](proto::Admin::Client& a) {
    auto req = a.proposeRequest();
    req.setData(bytes(data));
    return req;
  });
}

Result<Outcome, std::string> AdminClient::read(const std::string& addr, const std::string& query) {
  return impl_->result_call(addr, [&](proto::Admin::Client& a) {
    auto req = a.readRequest();
    req.setQuery(bytes(query));
    return req;
  });
}

Result<Outcome, std::string> AdminClient::transfer_leadership(const std::string& addr, std::uint64_t to) {
  return impl_->result_call(addr, [&](proto::Admin::Client& a) {
    auto req = a.transferLeadershipRequest();
    req.setTo(to);
    return req;
  });
}

Result<Outcome, std::string> AdminClient::add_member(const std::string& addr, std::uint64_t id,
                                                     const std::string& peer_address, bool learner) {
  return impl_->result_call(addr, [&](proto::Admin::Client& a) {
    auto req = a.addMemberRequest();
    req.setId(id);
    req.setAddress(peer_address);
    req.setLearner(learner);
    return req;
  });
}

Result<Outcome, std::string> AdminClient::promote_member(const std::string& addr, std::uint64_t id) {
  return impl_->result_call(addr, [&](proto::Admin::Client& a) {
    auto req = a.promoteMemberRequest();
    req.setId(id);
    return req;
  });
}

Result<Outcome, std::string> AdminClient::remove_member(const std::string& addr, std::uint64_t id) {
  return impl_->result_call(addr, [&](proto::Admin::Client& a) {
    auto req = a.removeMemberRequest();
    req.setId(id);
    return req;
  });
}

Result<AdminClient::SnapshotDownload, std::string> AdminClient::download_snapshot(
    const std::string& addr, std::uint32_t chunk_bytes, const std::function<bool(std::string_view, std::string&)>& sink,
    const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  auto& io = impl_->io;
  return impl_->session<SnapshotDownload>(
      addr, [&](proto::Admin::Client& admin, kj::Duration deadline) -> Result<SnapshotDownload, std::string> {
        auto& timer = io.provider->getTimer();
        auto resp = timer.timeoutAfter(deadline, admin.snapshotRequest().send()).wait(io.waitScope);
        SnapshotDownload d;
        d.outcome = outcome(resp.getResult());
        d.size = resp.getSize();
        if (!d.outcome.ok()) return d;
        auto reader = resp.getReader();
        // One chunk in flight: the next is asked for only once `sink` has taken this one.
        std::uint64_t done = 0;
        for (std::uint64_t calls = 0; done < d.size && calls <= d.size; ++calls) {
          auto req = reader.readRequest();
          req.setOffset(done);
          req.setLength(chunk_bytes);
          auto chunk = timer.timeoutAfter(deadline, req.send()).wait(io.waitScope);
          auto data = chunk.getData();
          if (data.size() == 0) return fail(addr + ": the snapshot ended early, at byte " + std::to_string(done));
          std::string why;
          if (!sink(std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()), why)) return fail(why);
          done += data.size();
          if (progress) progress(done, d.size);
        }
        return d;
      });
}

}  // namespace tern::admin
