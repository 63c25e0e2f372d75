// ternadm: calls the admin RPC of one ternd node (service/proto/admin.capnp).
//   ternadm [--addr HOST:PORT] status
//   ternadm [--addr HOST:PORT] propose TEXT
//   ternadm [--addr HOST:PORT] read QUERY        (linearizable, on any node)
//   ternadm [--addr HOST:PORT] transfer ID
//   ternadm [--addr HOST:PORT] add ID PEER_HOST:PORT [--learner]
//   ternadm [--addr HOST:PORT] promote ID
//   ternadm [--addr HOST:PORT] remove ID
// --addr defaults to $TERN_CLIENT_ADDR, then 127.0.0.1:7201. Exit 0 on success, 1 when the
// node answered with an error (printed, with the leader hint), 2 on usage or connection errors.
// TLS (a node started with --client-tls-cert): --tls-ca FILE (the CA that signed the node's
// certificate), and for a node with --client-tls-ca also --tls-cert FILE --tls-key FILE;
// --tls-server-name NAME when the address is not a name in the node's certificate. Defaults:
// $TERN_TLS_CA, $TERN_TLS_CERT, $TERN_TLS_KEY, $TERN_TLS_SERVER_NAME (client/connect.h).
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/connect.h"
#include "service/proto/admin.capnp.h"

namespace {

using tern::proto::AdminCode;

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
  return "?";
}

int report(tern::proto::AdminResult::Reader r) {
  if (r.getCode() == AdminCode::OK) {
    std::printf("ok index=%llu term=%llu\n", static_cast<unsigned long long>(r.getIndex()),
                static_cast<unsigned long long>(r.getTerm()));
    return 0;
  }
  std::printf("error: %s (%s) leader_hint=%llu\n", code_name(r.getCode()), r.getMessage().cStr(),
              static_cast<unsigned long long>(r.getLeaderHint()));
  return 1;
}

int usage() {
  std::fputs(
      "usage: ternadm [--addr HOST:PORT] [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]\n"
      "               status | propose TEXT | read QUERY | transfer ID | add ID PEER_HOST:PORT [--learner]\n"
      "                                  | promote ID | remove ID\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = std::getenv("TERN_CLIENT_ADDR") ? std::getenv("TERN_CLIENT_ADDR") : "127.0.0.1:7201";
  std::vector<std::string> args;
  bool learner = false;
  auto tls = tern::client::tls_options_from_env();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--addr" && i + 1 < argc) {
      addr = argv[++i];
    } else if (a == "--tls-ca" && i + 1 < argc) {
      tls.ca_file = argv[++i];
    } else if (a == "--tls-cert" && i + 1 < argc) {
      tls.cert_file = argv[++i];
    } else if (a == "--tls-key" && i + 1 < argc) {
      tls.key_file = argv[++i];
    } else if (a == "--tls-server-name" && i + 1 < argc) {
      tls.server_name = argv[++i];
    } else if (a == "--learner") {
      learner = true;
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) return usage();
  auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0) return usage();
  auto connector = tern::client::Connector::make(tls);
  if (!connector) {
    std::fprintf(stderr, "ternadm: %s\n", connector.error().c_str());
    return 2;
  }
  try {
    auto io = kj::setupAsyncIo();
    auto& ws = io.waitScope;
    auto port = static_cast<std::uint16_t>(std::strtoul(addr.c_str() + colon + 1, nullptr, 10));
    auto stream = io.provider->getTimer()
                      .timeoutAfter(10 * kj::SECONDS, (*connector)->connect(io.provider->getNetwork(), addr.substr(0, colon), port))
                      .wait(ws);
    capnp::TwoPartyClient client(*stream);
    auto admin = client.bootstrap().castAs<tern::proto::Admin>();
    const std::string& cmd = args[0];
    auto id_arg = [&](std::size_t i) { return i < args.size() ? std::strtoull(args[i].c_str(), nullptr, 10) : 0ULL; };
    if (cmd == "status" && args.size() == 1) {
      // The response owns the message the reader points into: keep it (ASan: use after free).
      auto response = admin.statusRequest().send().wait(ws);
      auto s = response.getStatus();
      std::printf("id %llu  role %s  term %llu  leader %llu\ncommit %llu  applied %llu  last %llu  snapshot %llu  "
                  "commands %llu  digest %016llx\n",
                  (unsigned long long)s.getId(), s.getRole().cStr(), (unsigned long long)s.getTerm(),
                  (unsigned long long)s.getLeader(), (unsigned long long)s.getCommitIndex(),
                  (unsigned long long)s.getAppliedIndex(), (unsigned long long)s.getLastIndex(),
                  (unsigned long long)s.getSnapshotIndex(), (unsigned long long)s.getAppliedCommands(),
                  (unsigned long long)s.getDigest());
      for (auto m : s.getMembers())
        std::printf("member %llu  %s  %s  match %llu\n", (unsigned long long)m.getId(), m.getAddress().cStr(),
                    m.getVoter() ? "voter" : "learner", (unsigned long long)m.getMatchIndex());
      return 0;
    }
    if (cmd == "propose" && args.size() == 2) {
      auto req = admin.proposeRequest();
      req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(args[1].data()), args[1].size()));
      return report(req.send().wait(ws).getResult());
    }
    if (cmd == "read" && args.size() == 2) {
      auto req = admin.readRequest();
      req.setQuery(kj::arrayPtr(reinterpret_cast<const kj::byte*>(args[1].data()), args[1].size()));
      auto response = req.send().wait(ws);
      auto r = response.getResult();
      if (r.getCode() != AdminCode::OK) return report(r);
      auto d = r.getResponse();
      std::printf("%.*s (read index %llu)\n", static_cast<int>(d.size()), reinterpret_cast<const char*>(d.begin()),
                  static_cast<unsigned long long>(r.getIndex()));
      return 0;
    }
    if (cmd == "transfer" && args.size() == 2) {
      auto req = admin.transferLeadershipRequest();
      req.setTo(id_arg(1));
      return report(req.send().wait(ws).getResult());
    }
    if (cmd == "add" && args.size() == 3) {
      auto req = admin.addMemberRequest();
      req.setId(id_arg(1));
      req.setAddress(args[2]);
      req.setLearner(learner);
      return report(req.send().wait(ws).getResult());
    }
    if (cmd == "promote" && args.size() == 2) {
      auto req = admin.promoteMemberRequest();
      req.setId(id_arg(1));
      return report(req.send().wait(ws).getResult());
    }
    if (cmd == "remove" && args.size() == 2) {
      auto req = admin.removeMemberRequest();
      req.setId(id_arg(1));
      return report(req.send().wait(ws).getResult());
    }
    return usage();
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "ternadm: %s: %s\n", addr.c_str(), e.getDescription().cStr());
    return 2;
  }
}
