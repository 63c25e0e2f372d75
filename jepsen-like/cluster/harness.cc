#include "jepsen-like/cluster/harness.h"

#include <random>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace tern::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void issue_certificates(const std::string& dir, const std::vector<std::string>& server_names) {
  std::string cmd = std::string(TERN_SOURCE_DIR) + "/scripts/tern-certs.sh '" + dir + "'";
  for (const auto& n : server_names) cmd += " '" + n + "'";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("certificates: '" + cmd + "' failed");
}

namespace {
// Issuing takes a few hundred milliseconds of openssl: once per test process, then each cluster
// gets its own copy (tests may overwrite their cluster's files).
const std::string& certificate_cache() {
  // Never destroyed: the atexit handler below runs after static destructors registered later.
  static const std::string* dir = [] {
    char tmpl[] = "/tmp/tern_certs_XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    auto* d = new std::string(tmpl);
    issue_certificates(*d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(certificate_cache(), ec);
    });
    return d;
  }();
  return *dir;
}
}  // namespace

double process_cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {  // fields 14 and 15 are utime and stime (man 5 proc)
    in >> field;
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

Cluster::Cluster(std::string ternd_path, ClusterOptions options)
    : ternd_(std::move(ternd_path)), opt_(std::move(options)), io_(kj::setupAsyncIo()) {
  if (opt_.root.empty()) {
    char tmpl[] = "/tmp/tern_cluster_XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    opt_.root = tmpl;
    own_root_ = true;
  }
  if (!opt_.insecure) {
    std::random_device rd;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 64; ++i) secret_ += hex[rd() % 16];
    secret_file_ = opt_.root + "/peer.secret";
    std::ofstream(secret_file_) << secret_ << "\n";
  }
  // A ternd from before issue 17 (TERN_HARNESS_OLD_TERND, below) has no TLS.
  // TERN_HARNESS_CLIENT_TLS=0 makes plaintext client ports the default (to compare).
  bool tls_default = !opt_.insecure;
  if (const char* e = std::getenv("TERN_HARNESS_CLIENT_TLS")) tls_default = tls_default && std::string(e) != "0";
  if (opt_.client_tls.value_or(tls_default) && std::getenv("TERN_HARNESS_OLD_TERND") == nullptr) {
    fs::create_directories(tls_dir());
    fs::copy(certificate_cache(), tls_dir(), fs::copy_options::overwrite_existing | fs::copy_options::recursive);
    client_tls_.ca_file = tls_dir() + "/ca.pem";
    client_tls_.cert_file = tls_dir() + "/client.pem";
    client_tls_.key_file = tls_dir() + "/client.key";
    client_tls_.server_name = opt_.tls_server_name;
  }
  auto connector = client::Connector::make(client_tls_);
  if (!connector) throw std::runtime_error("client TLS: " + connector.error());
  connector_ = *connector;
  std::set<std::uint16_t> used;
  auto port = [&] {
    for (;;) {
      auto p = free_port();
      if (used.insert(p).second) return p;
    }
  };
  for (int i = 1; i <= opt_.size; ++i) {
    ProcessNode n;
    n.id = static_cast<std::uint64_t>(i);
    n.peer_port = port();
    n.client_port = port();
    n.admin_port = port();
    n.dir = opt_.root + "/n" + std::to_string(i);
    if (opt_.node_host) n.host = opt_.node_host(n.id);
    nodes_[n.id] = n;
    initial_.push_back(n.id);
  }
}

Cluster::~Cluster() {
  conns_.clear();
  for (auto& [id, n] : nodes_) {
    if (n.pid > 0) {
      ::kill(n.pid, SIGKILL);
      ::waitpid(n.pid, nullptr, 0);
      n.pid = -1;
    }
  }
  // A sanitizer report in any node's log (an ASan+UBSan ternd aborts on the first error; leaks
  // show at a clean exit) fails the whole test process, whatever the test itself concluded.
  for (auto& [id, n] : nodes_) {
    auto log = log_of(id);
    for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
      auto at = log.find(marker);
      if (at == std::string::npos) continue;
      std::fprintf(stderr, "sanitizer report in node %llu's log (%s.log):\n%s\n", static_cast<unsigned long long>(id),
                   n.dir.c_str(), log.substr(at > 200 ? at - 200 : 0, 4000).c_str());
      std::fflush(stderr);
      std::_Exit(99);
    }
  }
  if (own_root_ && std::getenv("TERN_KEEP_CLUSTER_DIR") == nullptr) {
    std::error_code ec;
    fs::remove_all(opt_.root, ec);
  }
}

std::vector<std::uint64_t> Cluster::ids() const {
  std::vector<std::uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

std::string Cluster::peer_address(std::uint64_t id) const {
  return nodes_.at(id).host + ":" + std::to_string(nodes_.at(id).peer_port);
}

std::string Cluster::client_address(std::uint64_t id) const {
  return nodes_.at(id).host + ":" + std::to_string(nodes_.at(id).client_port);
}

namespace {
// waitpid's status as one number: the exit code, or 128 + the signal.
int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
}  // namespace

std::string Cluster::initial_cluster() const {
  std::string out;
  for (auto id : initial_) {
    if (!out.empty()) out += ",";
    out += std::to_string(id) + "=" + peer_address(id);
  }
  return out;
}

std::string Cluster::log_of(std::uint64_t id) const {
  std::ifstream f(nodes_.at(id).dir + ".log");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void Cluster::spawn(ProcessNode& n, bool join) {
  if (n.pid > 0) throw std::runtime_error("node already running");
  std::string cluster = initial_cluster();
  if (join) cluster += "," + std::to_string(n.id) + "=" + peer_address(n.id);
  std::vector<std::string> args = {ternd_,
                                   "--id", std::to_string(n.id),
                                   "--data-dir", n.dir,
                                   "--initial-cluster", cluster,
                                   "--initial-cluster-state", join ? "existing" : "new",
                                   "--client-addr", n.host + ":" + std::to_string(n.client_port),
                                   "--admin-addr", n.host + ":" + std::to_string(n.admin_port),
                                   "--election-timeout-ms", std::to_string(opt_.election_timeout_ms),
                                   "--heartbeat-interval-ms", std::to_string(opt_.heartbeat_interval_ms),
                                   "--snapshot-entries", std::to_string(opt_.snapshot_entries),
                                   "--log-level", opt_.log_level,
                                   "--debug-fault-injection", opt_.fault_injection ? "1" : "0",
                                   "--debug-raw-state-machine", opt_.raw_state_machine ? "1" : "0"};
  args.insert(args.end(), opt_.extra_args.begin(), opt_.extra_args.end());
  if (std::getenv("TERN_HARNESS_OLD_TERND") != nullptr) {
    // A ternd from before issue 17 (no security flags): to show a regression test fails on it.
  } else {
    if (opt_.insecure || !client_tls_.enabled()) args.push_back("--insecure");
    if (!opt_.insecure) args.insert(args.end(), {"--peer-secret-file", secret_file_});
    if (client_tls_.enabled()) {
      args.insert(args.end(), {"--client-tls-cert", tls_dir() + "/server.pem", "--client-tls-key", tls_dir() + "/server.key"});
      if (opt_.client_certs) args.insert(args.end(), {"--client-tls-ca", tls_dir() + "/ca.pem"});
    }
  }
  std::string log = n.dir + ".log";
  // Everything the child needs is built before fork (the parent has threads: no allocation after).
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  if (opt_.node_env) {
    for (auto& extra : opt_.node_env(n.id)) {
      auto name = extra.substr(0, extra.find('=') + 1);
      std::erase_if(env, [&](const std::string& v) { return v.rfind(name, 0) == 0; });
      env.push_back(extra);
    }
  }
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string netns = opt_.node_netns ? opt_.node_netns(n.id) : "";
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (!netns.empty()) {
      int ns = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) std::_Exit(126);
    }
    ::execve(argv[0], argv.data(), envp.data());
    std::_Exit(127);
  }
  n.pid = pid;
  conns_.erase(n.id);
}

void Cluster::start_all() {
  for (auto id : initial_) start(id);
}

void Cluster::start(std::uint64_t id) { spawn(nodes_.at(id), false); }

void Cluster::kill9(std::uint64_t id) {
  auto& n = nodes_.at(id);
  conns_.erase(id);
  if (n.pid <= 0) return;
  ::kill(n.pid, SIGKILL);
  int status = 0;
  if (::waitpid(n.pid, &status, 0) == n.pid) n.last_exit = exit_code(status);
  n.pid = -1;
}

void Cluster::terminate(std::uint64_t id) {
  auto& n = nodes_.at(id);
  conns_.erase(id);
  if (n.pid <= 0) return;
  ::kill(n.pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {  // at most 5 s, then SIGKILL
    int status = 0;
    if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
      n.last_exit = exit_code(status);
      n.pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill9(id);
}

void Cluster::pause(std::uint64_t id) {
  if (nodes_.at(id).pid > 0) ::kill(nodes_.at(id).pid, SIGSTOP);
}

void Cluster::resume(std::uint64_t id) {
  if (nodes_.at(id).pid > 0) ::kill(nodes_.at(id).pid, SIGCONT);
}

bool Cluster::running(std::uint64_t id) {
  auto& n = nodes_.at(id);
  if (n.pid <= 0) return false;
  int status = 0;
  if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
    n.last_exit = exit_code(status);
    n.pid = -1;
    return false;
  }
  return true;
}

void Cluster::wipe(std::uint64_t id) {
  auto& n = nodes_.at(id);
  if (n.pid > 0) throw std::runtime_error("wipe of a running node");
  std::error_code ec;
  fs::remove_all(n.dir, ec);
}

ProcessNode& Cluster::add_spare(std::uint64_t id) {
  ProcessNode n;
  n.id = id;
  n.peer_port = free_port();
  n.client_port = free_port();
  n.admin_port = free_port();
  n.dir = opt_.root + "/n" + std::to_string(id);
  if (opt_.node_host) n.host = opt_.node_host(id);
  return nodes_[id] = n;
}

void Cluster::start_joining(std::uint64_t id) { spawn(nodes_.at(id), true); }

proto::Admin::Client& Cluster::admin(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it != conns_.end()) return it->second.admin;
  auto& n = nodes_.at(id);
  // Bounded: a node that accepts but never finishes the TLS handshake must not hang the test.
  io_.waitScope.poll();  // let the loop's clock catch up (see wait_for)
  auto stream = io_.provider->getTimer()
                    .timeoutAfter(3 * kj::SECONDS, connector_->connect(io_.provider->getNetwork(), n.host, n.client_port))
                    .wait(io_.waitScope);
  Conn c;
  c.stream = kj::mv(stream);
  c.client = kj::heap<capnp::TwoPartyClient>(*c.stream);
  c.admin = c.client->bootstrap().castAs<proto::Admin>();
  return conns_.emplace(id, kj::mv(c)).first->second.admin;
}

namespace {

template <class T>
std::optional<T> wait_for(kj::AsyncIoContext& io, kj::Promise<T> p, std::chrono::milliseconds timeout) {
  // The loop's clock only advances when it polls: after a long stretch of blocking work on this
  // thread (e.g. opening a thousand sockets) the timeout would otherwise fire at once.
  io.waitScope.poll();
  auto guarded = io.provider->getTimer().timeoutAfter(timeout.count() * kj::MILLISECONDS, kj::mv(p));
  try {
    return guarded.wait(io.waitScope);
  } catch (const kj::Exception& e) {
    if (std::getenv("TERN_HARNESS_DEBUG") != nullptr) std::fprintf(stderr, "harness: %s\n", e.getDescription().cStr());
    return std::nullopt;
  }
}

ProposeOutcome outcome_of(proto::AdminResult::Reader r) {
  ProposeOutcome o;
  o.code = r.getCode();
  o.index = r.getIndex();
  o.term = r.getTerm();
  o.leader_hint = r.getLeaderHint();
  o.message = r.getMessage();
  auto d = r.getResponse();
  o.response.assign(reinterpret_cast<const char*>(d.begin()), d.size());
  return o;
}

}  // namespace

std::optional<StatusView> Cluster::status(std::uint64_t id, std::chrono::milliseconds timeout) {
  if (!running(id)) return std::nullopt;
  try {
    auto p = admin(id).statusRequest().send().then([](capnp::Response<proto::Admin::StatusResults>&& r) {
      auto s = r.getStatus();
      StatusView v;
      v.id = s.getId();
      v.term = s.getTerm();
      v.leader = s.getLeader();
      v.commit = s.getCommitIndex();
      v.applied = s.getAppliedIndex();
      v.last = s.getLastIndex();
      v.snapshot = s.getSnapshotIndex();
      v.applied_commands = s.getAppliedCommands();
      v.digest = s.getDigest();
      v.role = s.getRole();
      for (auto m : s.getMembers()) v.members.emplace_back(m.getId(), m.getVoter());
      return v;
    });
    auto r = wait_for(io_, kj::mv(p), timeout);
    if (!r) conns_.erase(id);  // a broken or stuck connection: reconnect next time
    return r;
  } catch (const kj::Exception& e) {
    if (std::getenv("TERN_HARNESS_DEBUG") != nullptr) std::fprintf(stderr, "harness status: %s\n", e.getDescription().cStr());
    conns_.erase(id);
    return std::nullopt;
  }
}

#define TERN_ADMIN_CALL(ID, REQ, SETUP, TIMEOUT)                                                                 \
  do {                                                                                                           \
    if (!running(ID)) return std::nullopt;                                                                       \
    try {                                                                                                        \
      auto req = admin(ID).REQ();                                                                                \
      SETUP;                                                                                                     \
      auto p = req.send().then([](auto&& r) { return outcome_of(r.getResult()); });                              \
      auto out = wait_for(io_, kj::mv(p), TIMEOUT);                                                              \
      if (!out) conns_.erase(ID);                                                                                \
      return out;                                                                                                \
    } catch (const kj::Exception&) {                                                                             \
      conns_.erase(ID);                                                                                          \
      return std::nullopt;                                                                                       \
    }                                                                                                            \
  } while (false)

std::optional<ProposeOutcome> Cluster::propose(std::uint64_t id, const std::string& data, std::chrono::milliseconds timeout) {
  TERN_ADMIN_CALL(id, proposeRequest,
                  req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size())), timeout);
}

std::optional<ProposeOutcome> Cluster::add_member(std::uint64_t on, std::uint64_t id, const std::string& address, bool learner) {
  TERN_ADMIN_CALL(on, addMemberRequest, (req.setId(id), req.setAddress(address), req.setLearner(learner)),
                  std::chrono::milliseconds(5000));
}

std::optional<ProposeOutcome> Cluster::promote_member(std::uint64_t on, std::uint64_t id) {
  TERN_ADMIN_CALL(on, promoteMemberRequest, req.setId(id), std::chrono::milliseconds(5000));
}

std::optional<ProposeOutcome> Cluster::remove_member(std::uint64_t on, std::uint64_t id) {
  TERN_ADMIN_CALL(on, removeMemberRequest, req.setId(id), std::chrono::milliseconds(5000));
}

std::optional<ProposeOutcome> Cluster::read(std::uint64_t on, const std::string& query, std::chrono::milliseconds timeout) {
  TERN_ADMIN_CALL(on, readRequest,
                  req.setQuery(kj::arrayPtr(reinterpret_cast<const kj::byte*>(query.data()), query.size())), timeout);
}

std::optional<ProposeOutcome> Cluster::block_peers(std::uint64_t on, const std::vector<std::uint64_t>& peers) {
  TERN_ADMIN_CALL(on, injectPartitionRequest,
                  ([&] {
                    auto l = req.initPeers(static_cast<unsigned>(peers.size()));
                    for (unsigned i = 0; i < peers.size(); ++i) l.set(i, peers[i]);
                  })(),
                  std::chrono::milliseconds(2000));
}

void Cluster::partition(std::uint64_t victim) {
  std::vector<std::uint64_t> others;
  for (auto id : ids())
    if (id != victim) {
      others.push_back(id);
      block_peers(id, {victim});
    }
  block_peers(victim, others);
}

void Cluster::heal() {
  for (auto id : ids()) block_peers(id, {});
}

std::optional<ProposeOutcome> Cluster::transfer_leadership(std::uint64_t on, std::uint64_t to) {
  TERN_ADMIN_CALL(on, transferLeadershipRequest, req.setTo(to), std::chrono::milliseconds(2000));
}

std::uint64_t Cluster::wait_for_leader(std::chrono::milliseconds timeout, std::uint64_t not_this) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::map<std::uint64_t, int> votes;
    int up = 0;
    for (auto id : ids()) {
      auto s = status(id, std::chrono::milliseconds(300));
      if (!s) continue;
      ++up;
      if (s->leader != 0) ++votes[s->leader];
      if (s->role == "leader" && s->id != not_this) ++votes[s->id];  // counted twice only for itself; fine
    }
    for (auto [l, v] : votes)
      if (l != not_this && v >= 2 && running(l)) {
        auto s = status(l, std::chrono::milliseconds(300));
        if (s && s->role == "leader") return l;
      }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}

std::optional<ProposeOutcome> Cluster::propose_anywhere(const std::string& data, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::uint64_t target = 0;
  while (Clock::now() < deadline) {
    if (target == 0 || !running(target)) target = wait_for_leader(std::chrono::milliseconds(2000));
    if (target == 0) continue;
    auto r = propose(target, data, std::chrono::milliseconds(3000));
    if (r && r->code == proto::AdminCode::OK) return r;
    if (r && r->code == proto::AdminCode::UNKNOWN_OUTCOME) return r;  // the caller decides
    target = (r && r->leader_hint != 0 && nodes_.count(r->leader_hint)) ? r->leader_hint : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

bool Cluster::wait_applied(const std::vector<std::uint64_t>& ids, std::uint64_t index, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool all = true;
    for (auto id : ids) {
      auto s = status(id, std::chrono::milliseconds(300));
      if (!s || s->applied < index) all = false;
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace tern::testing
