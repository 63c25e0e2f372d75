// Issue 17: TLS on the client port, against real ternd processes on loopback (bounded: seconds).
//   - a TLS client with a certificate from the cluster's CA is served (the harness, ternadm);
//   - a plaintext client, a client without a certificate, a client whose certificate another CA
//     signed, and a client that does not trust the server's CA are refused at the handshake,
//     counted and logged, and the node carries on serving;
//   - TLS without --client-tls-ca serves any client that trusts the server;
//   - a connection that opens TCP and never finishes the handshake (silent, or half a
//     ClientHello) is closed by the header timeout while other clients are served;
//   - SIGHUP reloads the certificate, key and CA files (rotation without a restart), and a CA
//     bundle of the old and the new CA accepts clients of both.
#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "client/connect.h"
#include "tests/cluster/harness.h"
#include "tests/common/loopback.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const char* ternd() {
  const char* p = std::getenv("TERND_BIN");
  return p != nullptr ? p : "service/ternd";
}

ClusterOptions one_node(bool client_certs = true) {
  ClusterOptions o;
  o.size = 1;
  o.client_certs = client_certs;
  return o;
}

// A status call on a fresh connection made with `tls`: true if the node answered within 2 s;
// otherwise `why` says what failed.
bool status_answers(Cluster& c, std::uint16_t port, const client::TlsOptions& tls, std::string* why = nullptr) {
  std::string ignored;
  if (why == nullptr) why = &ignored;
  auto connector = client::Connector::make(tls);
  if (!connector) {
    *why = connector.error();
    return false;
  }
  auto& io = c.kj_io();
  io.waitScope.poll();
  try {
    auto call = (*connector)->connect(io.provider->getNetwork(), "127.0.0.1", port).then([](kj::Own<kj::AsyncIoStream> s) {
      auto rpc = kj::heap<capnp::TwoPartyClient>(*s);
      auto admin = rpc->bootstrap().castAs<proto::Admin>();
      // The RPC client goes before the stream it uses.
      return admin.statusRequest().send().then([](auto&& r) { return r.getStatus().getId(); }).attach(kj::mv(rpc)).attach(kj::mv(s));
    });
    auto id = io.provider->getTimer().timeoutAfter(2 * kj::SECONDS, kj::mv(call)).wait(io.waitScope);
    return id != 0;
  } catch (const kj::Exception& e) {
    *why = e.getDescription().cStr();
    return false;
  }
}

std::uint64_t metric(Cluster& c, std::uint64_t id, const std::string& name) {
  auto m = http_request(c.node(id).admin_port, "GET /metrics HTTP/1.1\r\n\r\n");
  auto at = m.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::strtoull(m.c_str() + at + name.size() + 2, nullptr, 10);
}

// ternadm with `args`; its exit status (-1: it did not exit within 10 s).
int run_ternadm(const std::vector<std::string>& args) {
  const char* bin = std::getenv("TERNADM_BIN");
  if (bin == nullptr) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> a = {bin};
    a.insert(a.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 1);
    ::execv(bin, argv.data());
    ::_exit(127);
  }
  for (int i = 0; i < 200; ++i) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::this_thread::sleep_for(50ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

// When the server closed `fd` (EOF or error), waiting at most until `deadline`; nullopt if open.
std::optional<Clock::time_point> closed_by_server(int fd, Clock::time_point deadline) {
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    auto n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return Clock::now();
  }
  return std::nullopt;
}

TEST(ClientTls, MutualTlsServesClientsOfTheClusterCaAndRefusesEveryOtherClient) {
  Cluster c(ternd(), one_node());
  c.start_all();
  // The harness itself connects with TLS and the cluster's client certificate.
  ASSERT_NE(c.wait_for_leader(15s), 0u);
  auto w = c.propose(1, "set tls 1");
  ASSERT_TRUE(w && w->code == proto::AdminCode::OK);
  auto port = c.node(1).client_port;
  auto good = c.client_tls();
  std::string why;
  EXPECT_TRUE(status_answers(c, port, good, &why)) << why;
  auto status = http_request(c.node(1).admin_port, "GET /status HTTP/1.1\r\n\r\n");
  EXPECT_NE(status.find("\"client_auth\":\"mutual_tls\""), std::string::npos) << status;
  EXPECT_NE(status.find("\"peer_auth\":\"secret\""), std::string::npos) << status;

  auto failures_before = metric(c, 1, "tern_rpc_tls_handshake_failures_total");
  // Plaintext Cap'n Proto against the TLS port.
  EXPECT_FALSE(status_answers(c, port, client::TlsOptions{}, &why));
  // TLS, but no client certificate.
  auto no_cert = good;
  no_cert.cert_file.clear();
  no_cert.key_file.clear();
  EXPECT_FALSE(status_answers(c, port, no_cert, &why));
  // A certificate from another CA (which the client trusts nothing of either).
  std::string other = c.tls_dir() + "-other";
  issue_certificates(other);
  auto foreign = good;
  foreign.cert_file = other + "/client.pem";
  foreign.key_file = other + "/client.key";
  EXPECT_FALSE(status_answers(c, port, foreign, &why));
  // The server refused all three at the handshake, counted and logged them.
  auto failures = metric(c, 1, "tern_rpc_tls_handshake_failures_total");
  EXPECT_GE(failures, failures_before + 3) << "handshake failures not counted";
  EXPECT_NE(c.log_of(1).find("TLS handshake failed"), std::string::npos);
  // A client that trusts another CA refuses the server (its own check, before any call).
  auto distrusting = good;
  distrusting.ca_file = other + "/ca.pem";
  EXPECT_FALSE(status_answers(c, port, distrusting, &why));
  EXPECT_NE(why.find("not trusted"), std::string::npos) << why;

  // The node carries on: still running, still serving TLS clients, still committing.
  EXPECT_TRUE(c.running(1));
  EXPECT_TRUE(status_answers(c, port, good, &why)) << why;
  w = c.propose(1, "set tls 2");
  EXPECT_TRUE(w && w->code == proto::AdminCode::OK);
  EXPECT_GE(metric(c, 1, "tern_rpc_tls_handshakes_total"), 2u);

  // ternadm uses the same connector: served with the cluster's files, refused without a
  // certificate or without TLS (exit 2: connection error).
  if (std::getenv("TERNADM_BIN") != nullptr) {
    std::string addr = "127.0.0.1:" + std::to_string(port);
    EXPECT_EQ(run_ternadm({"--addr", addr, "--tls-ca", good.ca_file, "--tls-cert", good.cert_file, "--tls-key",
                           good.key_file, "status"}),
              0);
    EXPECT_EQ(run_ternadm({"--addr", addr, "--tls-ca", good.ca_file, "status"}), 2);
    EXPECT_EQ(run_ternadm({"--addr", addr, "status"}), 2);
  }
  std::filesystem::remove_all(other);
}

TEST(ClientTls, WithoutClientCaAnyClientTrustingTheServerIsServedButPlaintextIsNot) {
  Cluster c(ternd(), one_node(/*client_certs=*/false));
  c.start_all();
  ASSERT_NE(c.wait_for_leader(15s), 0u);
  auto port = c.node(1).client_port;
  auto ca_only = c.client_tls();
  ca_only.cert_file.clear();
  ca_only.key_file.clear();
  std::string why;
  EXPECT_TRUE(status_answers(c, port, ca_only, &why)) << why;
  EXPECT_TRUE(status_answers(c, port, c.client_tls(), &why)) << why;  // a certificate nobody asked for
  EXPECT_FALSE(status_answers(c, port, client::TlsOptions{}, &why));
  EXPECT_GE(metric(c, 1, "tern_rpc_tls_handshake_failures_total"), 1u);
  auto status = http_request(c.node(1).admin_port, "GET /status HTTP/1.1\r\n\r\n");
  EXPECT_NE(status.find("\"client_auth\":\"tls\""), std::string::npos) << status;
  EXPECT_TRUE(status_answers(c, port, ca_only, &why)) << why;
}

TEST(ClientTls, HandshakeThatNeverCompletesIsClosedByTheHeaderTimeout) {
  Cluster c(ternd(), one_node());
  c.start_all();
  ASSERT_NE(c.wait_for_leader(15s), 0u);
  auto port = c.node(1).client_port;
  auto t0 = Clock::now();
  int silent = connect_loopback(port);
  int half = connect_loopback(port);
  ASSERT_GE(silent, 0);
  ASSERT_GE(half, 0);
  // The first bytes of a TLS 1.x ClientHello record (handshake, length 512), then nothing.
  const unsigned char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
  ASSERT_EQ(::write(half, hello, sizeof hello), static_cast<ssize_t>(sizeof hello));
  // Meanwhile the node serves a real client.
  std::string why;
  EXPECT_TRUE(status_answers(c, port, c.client_tls(), &why)) << why;
  // RpcLimits::header_timeout is 5 s; the sweep runs every 100 ms.
  auto deadline = t0 + 9s;
  auto silent_closed = closed_by_server(silent, deadline);
  auto half_closed = closed_by_server(half, deadline);
  ::close(silent);
  ::close(half);
  ASSERT_TRUE(silent_closed) << "a silent connection stayed open";
  ASSERT_TRUE(half_closed) << "a half-finished TLS handshake stayed open";
  EXPECT_GE(*half_closed - t0, 4s) << "closed before the header timeout: by what?";
  EXPECT_GE(metric(c, 1, "tern_rpc_connections_timed_out_total"), 2u);
  EXPECT_NE(c.log_of(1).find("TLS handshake not completed within the header timeout"), std::string::npos);
  EXPECT_TRUE(c.running(1));
  EXPECT_TRUE(status_answers(c, port, c.client_tls(), &why)) << why;
}

// Rotation without a restart: new server certificate from a new CA, and a client CA bundle of
// the old and the new CA, swapped in by SIGHUP.
TEST(ClientTls, SighupReloadsCertificatesAndCaBundlesAcceptBothCas) {
  Cluster c(ternd(), one_node());
  c.start_all();
  ASSERT_NE(c.wait_for_leader(15s), 0u);
  auto port = c.node(1).client_port;
  auto old_files = c.client_tls();
  std::string fresh = c.tls_dir() + "-new";
  issue_certificates(fresh);
  // Keep copies of the old CA (the node's files are overwritten in place).
  std::string old_ca;
  {
    std::ifstream in(old_files.ca_file);
    old_ca.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string saved_old_ca = fresh + "/old-ca.pem";
  std::ofstream(saved_old_ca) << old_ca;
  std::filesystem::copy_file(fresh + "/server.pem", c.tls_dir() + "/server.pem", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(fresh + "/server.key", c.tls_dir() + "/server.key", std::filesystem::copy_options::overwrite_existing);
  std::string both_cas = fresh + "/both-cas.pem";  // a client's bundle during the rotation
  {
    std::ifstream in(fresh + "/ca.pem");
    std::string new_ca((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(c.tls_dir() + "/ca.pem") << old_ca << new_ca;  // the bundle: old and new
    std::ofstream(both_cas) << new_ca << old_ca;
  }
  std::string why;
  auto bundle_client = client::TlsOptions{both_cas, old_files.cert_file, old_files.key_file, ""};
  EXPECT_TRUE(status_answers(c, port, bundle_client, &why)) << why;
  // Before the reload the node still presents the old certificate.
  auto new_client = client::TlsOptions{fresh + "/ca.pem", fresh + "/client.pem", fresh + "/client.key", ""};
  EXPECT_FALSE(status_answers(c, port, new_client, &why));
  ::kill(c.node(1).pid, SIGHUP);
  bool reloaded = false;
  for (int i = 0; i < 50 && !reloaded; ++i) {
    std::this_thread::sleep_for(50ms);
    reloaded = c.log_of(1).find("client TLS certificate, key and CA reloaded") != std::string::npos;
  }
  ASSERT_TRUE(reloaded);
  // New CA and new client certificate: served.
  EXPECT_TRUE(status_answers(c, port, new_client, &why)) << why;
  // A client that still has the old client certificate but the new CA: served (the bundle).
  auto old_cert = client::TlsOptions{fresh + "/ca.pem", old_files.cert_file, old_files.key_file, ""};
  EXPECT_TRUE(status_answers(c, port, old_cert, &why)) << why;
  // A client that trusts both CAs is served before and after.
  EXPECT_TRUE(status_answers(c, port, bundle_client, &why)) << why;
  // A client that trusts only the old CA refuses the new server certificate.
  auto old_trust = client::TlsOptions{saved_old_ca, old_files.cert_file, old_files.key_file, ""};
  EXPECT_FALSE(status_answers(c, port, old_trust, &why));
  // A broken file on the next SIGHUP keeps the working context.
  std::ofstream(c.tls_dir() + "/server.key") << "not a key\n";
  ::kill(c.node(1).pid, SIGHUP);
  bool refused = false;
  for (int i = 0; i < 50 && !refused; ++i) {
    std::this_thread::sleep_for(50ms);
    refused = c.log_of(1).find("client TLS not reloaded") != std::string::npos;
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(status_answers(c, port, new_client, &why)) << why;
  EXPECT_TRUE(c.running(1));
  std::filesystem::remove_all(fresh);
}

}  // namespace
}  // namespace tern::testing
