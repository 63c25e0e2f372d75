// ternadm: calls the admin RPC of one ternd node (service/proto/admin.capnp), through the
// AdminClient it shares with the `tern` CLI (which users should prefer: docs/cli.md).
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
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/cli/admin_client.h"

namespace {

int report(const tern::admin::Outcome& r) {
  if (r.ok()) {
    std::printf("ok index=%llu term=%llu\n", static_cast<unsigned long long>(r.index),
                static_cast<unsigned long long>(r.term));
    return 0;
  }
  std::printf("error: %s (%s) leader_hint=%llu\n", r.code.c_str(), r.message.c_str(),
              static_cast<unsigned long long>(r.leader_hint));
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

int connection_error(const std::string& e) {
  std::fprintf(stderr, "ternadm: %s\n", e.c_str());
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
  auto admin = tern::admin::AdminClient::make(tls, std::chrono::seconds(10));
  if (!admin) return connection_error(admin.error());
  auto& a = **admin;
  const std::string& cmd = args[0];
  auto id_arg = [&](std::size_t i) { return i < args.size() ? std::strtoull(args[i].c_str(), nullptr, 10) : 0ULL; };
  auto done = [](const tern::Result<tern::admin::Outcome, std::string>& r) {
    return r ? report(*r) : connection_error(r.error());
  };
  if (cmd == "status" && args.size() == 1) {
    auto r = a.status(addr);
    if (!r) return connection_error(r.error());
    const auto& s = *r;
    std::printf("id %llu  role %s  term %llu  leader %llu\ncommit %llu  applied %llu  last %llu  snapshot %llu  "
                "commands %llu  digest %016llx\n",
                (unsigned long long)s.id, s.role.c_str(), (unsigned long long)s.term, (unsigned long long)s.leader,
                (unsigned long long)s.commit, (unsigned long long)s.applied, (unsigned long long)s.last,
                (unsigned long long)s.snapshot, (unsigned long long)s.applied_commands, (unsigned long long)s.digest);
    for (const auto& m : s.members)
      std::printf("member %llu  %s  %s  match %llu\n", (unsigned long long)m.id, m.address.c_str(),
                  m.voter ? "voter" : "learner", (unsigned long long)m.match_index);
    return 0;
  }
  if (cmd == "propose" && args.size() == 2) return done(a.propose(addr, args[1]));
  if (cmd == "read" && args.size() == 2) {
    auto r = a.read(addr, args[1]);
    if (!r) return connection_error(r.error());
    if (!r->ok()) return report(*r);
    std::printf("%s (read index %llu)\n", r->response.c_str(), static_cast<unsigned long long>(r->index));
    return 0;
  }
  if (cmd == "transfer" && args.size() == 2) return done(a.transfer_leadership(addr, id_arg(1)));
  if (cmd == "add" && args.size() == 3) return done(a.add_member(addr, id_arg(1), args[2], learner));
  if (cmd == "promote" && args.size() == 2) return done(a.promote_member(addr, id_arg(1)));
  if (cmd == "remove" && args.size() == 2) return done(a.remove_member(addr, id_arg(1)));
  return usage();
}
