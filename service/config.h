#pragma once
// ternd configuration (docs/operations.md): defaults < TOML file < TERN_* environment < flags.
// Unknown TOML keys and malformed values are errors, reported as text for the operator.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace tern::service {

struct PeerAddress {
  std::uint64_t id = 0;
  std::string host;
  std::uint16_t port = 0;
};

struct Config {
  std::uint64_t id = 0;
  std::string data_dir;
  std::vector<PeerAddress> initial_cluster;
  std::string client_addr = "127.0.0.1:7201";
  std::string admin_addr = "127.0.0.1:7301";
  std::uint32_t election_timeout_ms = 1000;
  std::uint32_t heartbeat_interval_ms = 100;
  std::string log_level = "info";
  // Frames from another cluster are refused: the cluster id is derived from this name (like
  // etcd's --initial-cluster-token); give each cluster on one network its own name.
  std::string cluster_name = "tern-cluster";
  // "new": the members of --initial-cluster bootstrap a new cluster together; "existing": this
  // node joins a running cluster (after `addMember` on it) and starts with an empty log.
  std::string initial_cluster_state = "new";
  std::uint64_t snapshot_entries = 100000;  // take a snapshot after this many applied entries (replica.h)
  // Admission limits of the client API, per connection (all its sessions together): requests per
  // second (a token bucket with one second of burst; 0: no limit), and requests waiting for their
  // answers; beyond either a request is answered slowDown.
  std::uint32_t client_rate_limit = 0;
  std::uint32_t client_max_in_flight = 4096;
  std::uint32_t debug_fault_injection = 0;  // 1: allow the admin injectPartition call (tests only)
  // 1: replicate opaque commands into the bare-log placeholder (service/applier.h) instead of the
  // coordination state machine: for tests and benchmarks of the log itself, never production.
  std::uint32_t debug_raw_state_machine = 0;
  // Peer authentication (docs/security.md): a file holding the cluster secret (at least 32
  // bytes; surrounding whitespace ignored), the same on every member. ternd refuses to start
  // without one unless `insecure` (--insecure) says explicitly that anyone who can reach the
  // peer port may speak Raft.
  std::string peer_secret_file;
  // Client port TLS (docs/security.md, docs/operations.md): PEM certificate and key of this
  // server; with a CA file as well, clients must present a certificate that CA signed (mutual
  // TLS). Without cert and key the client port is plaintext, which ternd also refuses unless
  // `insecure` is set.
  std::string client_tls_cert;
  std::string client_tls_key;
  std::string client_tls_ca;
  // Runs without the authentication that is not configured: peers without a cluster secret,
  // and/or a plaintext client port. ternd says so in its log and in /status.
  bool insecure = false;
  // Recovery from a lost quorum (docs/operations.md): at start, this node's data dir becomes a
  // one-node cluster (service/replica.h NodeOptions::force_new_cluster). For one start only.
  bool force_new_cluster = false;
  std::string config_file;
  bool print_config = false;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
// "host:port" with a non-empty host and a port in 1..65535 (a port that does not fit is an
// error, not a wrap-around); nullopt otherwise.
std::optional<HostPort> parse_host_port(const std::string& text);

// Parses "1=127.0.0.1:7101,2=127.0.0.1:7102".
Result<std::vector<PeerAddress>, std::string> parse_initial_cluster(const std::string& text);

// Parses argv (argv[0] is skipped), the environment (via `env`) and the TOML file named by
// --config / TERN_CONFIG. Validates the result (id in the cluster, timing sane, data dir set).
Result<Config, std::string> load_config(int argc, const char* const* argv, const EnvLookup& env);

// The 64-bit cluster id carried by every peer frame and recorded in the data directory.
std::uint64_t cluster_id_of(const std::string& cluster_name);

// The cluster secret from c.peer_secret_file, trimmed; an error if unreadable or too short.
Result<std::string, std::string> load_peer_secret(const Config& c);

// The merged configuration as TOML, loadable again by --config.
std::string to_toml(const Config& c);

}  // namespace tern::service
