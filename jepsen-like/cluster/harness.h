#pragma once
// Runs real ternd processes on loopback for integration tests, the cluster benchmark and
// tern-jepsen (jepsen-like/runner):
// free ports, a temporary data directory per node, logs in the node's directory, and an admin
// client (Cap'n Proto RPC) for each node. Every process is started and killed by its pid; the
// destructor kills what is still running.
#include <sys/types.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/connect.h"
#include "service/proto/admin.capnp.h"
#include "tests/common/loopback.h"

namespace tern::testing {

struct ProcessNode {
  std::uint64_t id = 0;
  std::uint16_t peer_port = 0, client_port = 0, admin_port = 0;
  std::string dir;
  pid_t pid = -1;
  std::string host = "127.0.0.1";  // where its ports listen (its own address in a network namespace)
  int last_exit = -1;  // the last incarnation's wait status: exit code, or 128 + signal; -1 none yet
};

struct ClusterOptions {
  int size = 3;
  std::uint32_t election_timeout_ms = 300;
  std::uint32_t heartbeat_interval_ms = 30;
  std::uint64_t snapshot_entries = 10000;
  std::string log_level = "info";
  bool fault_injection = false;  // ternd --debug-fault-injection 1
  // ternd --debug-raw-state-machine 1: the bare-log placeholder (raw proposals, "reg" commands)
  // that the log-level tests drive; false runs the coordination state machine and client API.
  bool raw_state_machine = true;
  std::vector<std::string> extra_args;  // more ternd flags, for every node
  std::string root;  // data directories go under it; empty: a new /tmp directory, removed at the end
  // Peer authentication: by default the harness writes a random cluster secret to
  // <root>/peer.secret and passes it to every node; insecure runs them with --insecure.
  bool insecure = false;
  // TLS on the client port (issue 17). Unset: on unless `insecure` (or TERN_HARNESS_CLIENT_TLS=0). On: the harness issues a CA,
  // one server certificate and a client certificate into <root>/tls with scripts/tern-certs.sh,
  // starts every node with --client-tls-cert/--client-tls-key (and, with client_certs,
  // --client-tls-ca), and connects with them. Off without `insecure`: peers authenticate and
  // the client port is plaintext (--insecure).
  std::optional<bool> client_tls;
  bool client_certs = true;
  // tern-jepsen's nemeses (jepsen-like/runner): per node, the address its ports listen on, a
  // network namespace (path, e.g. /run/netns/NAME) the process enters before exec, and extra
  // environment ("NAME=VALUE": LD_PRELOAD of libfaketime or libfiu). Unset: loopback, none.
  std::function<std::string(std::uint64_t)> node_host;
  std::function<std::string(std::uint64_t)> node_netns;
  std::function<std::vector<std::string>(std::uint64_t)> node_env;
  // The name clients check in the nodes' certificates (empty: the address they connect to; the
  // harness's certificates name 127.0.0.1 and localhost only).
  std::string tls_server_name;
};

struct ProposeOutcome {
  proto::AdminCode code = proto::AdminCode::INVALID;
  std::uint64_t index = 0, term = 0, leader_hint = 0;
  std::string message;
  std::string response;
};

struct StatusView {
  std::uint64_t id = 0, term = 0, leader = 0, commit = 0, applied = 0, last = 0, snapshot = 0;
  std::uint64_t applied_commands = 0, digest = 0;
  std::string role;
  std::vector<std::pair<std::uint64_t, bool>> members;  // (id, voter)
};

class Cluster {
 public:
  Cluster(std::string ternd_path, ClusterOptions options);
  ~Cluster();

  // Starts every initial member.
  void start_all();
  void start(std::uint64_t id);
  void kill9(std::uint64_t id);
  void terminate(std::uint64_t id);  // SIGTERM, then wait; returns after the process exited
  bool running(std::uint64_t id);
  // The last exited incarnation's status (exit code, or 128 + signal); -1 if none exited yet.
  int last_exit(std::uint64_t id) const { return nodes_.at(id).last_exit; }
  std::string client_address(std::uint64_t id) const;  // HOST:PORT of the client port
  void pause(std::uint64_t id);   // SIGSTOP
  void resume(std::uint64_t id);  // SIGCONT
  void wipe(std::uint64_t id);       // removes the node's data directory (node must be stopped)
  // A node that joins later: allocates ports; start_joining() runs it with
  // --initial-cluster-state existing.
  ProcessNode& add_spare(std::uint64_t id);
  void start_joining(std::uint64_t id);
  ProcessNode& node(std::uint64_t id) { return nodes_.at(id); }
  std::vector<std::uint64_t> ids() const;
  std::string peer_address(std::uint64_t id) const;
  std::string log_of(std::uint64_t id) const;
  const std::string& peer_secret() const { return secret_; }  // empty when insecure
  // How the harness reaches client ports (TLS files, or plaintext), for tests that open their
  // own connections with client::Connector; tls_dir() holds ca.pem, server.pem, client.pem...
  const client::TlsOptions& client_tls() const { return client_tls_; }
  std::string tls_dir() const { return opt_.root + "/tls"; }

  // Admin RPC (blocking, with a timeout). nullopt: the node did not answer.
  std::optional<StatusView> status(std::uint64_t id, std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));
  std::optional<ProposeOutcome> propose(std::uint64_t id, const std::string& data,
                                        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  std::optional<ProposeOutcome> add_member(std::uint64_t on, std::uint64_t id, const std::string& address, bool learner);
  std::optional<ProposeOutcome> promote_member(std::uint64_t on, std::uint64_t id);
  std::optional<ProposeOutcome> remove_member(std::uint64_t on, std::uint64_t id);
  std::optional<ProposeOutcome> transfer_leadership(std::uint64_t on, std::uint64_t to);
  // Fault injection: node `on` drops all peer traffic with `peers` (empty heals).
  std::optional<ProposeOutcome> block_peers(std::uint64_t on, const std::vector<std::uint64_t>& peers);
  // Cuts `victim` off from every other node, both ways; heal() undoes every cut.
  void partition(std::uint64_t victim);
  void heal();
  // A linearizable read (ReadIndex) on node `on`; the answer is in `response`.
  std::optional<ProposeOutcome> read(std::uint64_t on, const std::string& query,
                                     std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));

  // The leader that a majority of running nodes agree on, waiting up to `timeout`; 0 if none.
  std::uint64_t wait_for_leader(std::chrono::milliseconds timeout, std::uint64_t not_this = 0);
  // Proposes on whichever node is leader, following hints; nullopt if nothing committed in time.
  std::optional<ProposeOutcome> propose_anywhere(const std::string& data, std::chrono::milliseconds timeout);
  // Waits until every listed node has applied at least `index`.
  bool wait_applied(const std::vector<std::uint64_t>& ids, std::uint64_t index, std::chrono::milliseconds timeout);

  // The KJ event loop of this process (one per thread), for callers that pipeline requests.
  kj::AsyncIoContext& kj_io() { return io_; }
  proto::Admin::Client& admin(std::uint64_t id);
  void drop_connection(std::uint64_t id) { conns_.erase(id); }

 private:
  struct Conn {
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<capnp::TwoPartyClient> client;
    proto::Admin::Client admin = nullptr;
  };
  void spawn(ProcessNode& n, bool join);
  std::string initial_cluster() const;

  std::string ternd_;
  ClusterOptions opt_;
  std::string secret_, secret_file_;
  client::TlsOptions client_tls_;
  std::shared_ptr<client::Connector> connector_;
  bool own_root_ = false;
  std::map<std::uint64_t, ProcessNode> nodes_;
  std::vector<std::uint64_t> initial_;
  kj::AsyncIoContext io_;
  std::map<std::uint64_t, Conn> conns_;
};

// Runs scripts/tern-certs.sh DIR NAMES... (a CA, server certificates NAME.pem/.key, client.pem/.key);
// throws if it fails. Tests use it for a second CA too.
void issue_certificates(const std::string& dir, const std::vector<std::string>& server_names = {"server"});

// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
double process_cpu_seconds(pid_t pid);

}  // namespace tern::testing
