// ternd: one tern server. Loads the configuration, opens the data directory, and runs the Raft
// node, the peer transport, the admin RPC (on --client-addr) and admin HTTP (on --admin-addr) on
// one event-loop thread (design.md §1a). SIGTERM/SIGINT stop it cleanly; SIGKILL is safe at any
// moment because nothing is acknowledged before it is durable.
#include <algorithm>
#include <asio.hpp>
#include <functional>
#include <kj/async.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>

#include "service/admin_http.h"
#include "service/admin_rpc.h"
#include "service/client_api.h"
#include "service/sm_applier.h"
#include "service/watch_hub.h"
#include "service/applier.h"
#include "service/config.h"
#include "service/metrics.h"
#include "service/net/kj_asio.h"
#include "service/net/rpc_listener.h"
#include "service/net/tls.h"
#include "service/node.h"

namespace {

// %* : the message as the body of a JSON string (quotes, backslashes, control bytes escaped).
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char ch : msg.payload) {
      auto c = static_cast<unsigned char>(ch);
      if (ch == '"' || ch == '\\') {
        dest.push_back('\\');
        dest.push_back(ch);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        dest.append(buf, buf + 6);
      } else {
        dest.push_back(ch);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return spdlog::details::make_unique<JsonEscapedMessage>(); }
};

void setup_logging(const tern::service::Config& c) {
  auto logger = spdlog::stderr_color_mt("ternd");
  if (::isatty(STDERR_FILENO) == 0) {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","node":)" + std::to_string(c.id) + R"(,"msg":"%*"})");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern("%H:%M:%S.%f %^%l%$ [n" + std::to_string(c.id) + "] %v");
  }
  logger->set_level(spdlog::level::from_str(c.log_level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

// Client connections are capped (RpcListener) well below this, so peers and the admin listener
// always find a file descriptor even when the client port is saturated.
void raise_fd_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  rlim_t want = std::min<rlim_t>(r.rlim_max, 65536);
  if (r.rlim_cur < want) {
    r.rlim_cur = want;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

// The client port's TLS context from the configured files (issue 17): null and "insecure" for a
// plaintext port, which needs --insecure; nullopt (after logging why) when ternd must not start.
struct ClientPortSecurity {
  std::shared_ptr<kj::TlsContext> tls;
  std::string mode;  // "mutual_tls", "tls" or "insecure": reported in /status
};
std::optional<ClientPortSecurity> client_port_security(const tern::service::Config& c) {
  if (c.client_tls_cert.empty()) {
    if (!c.insecure) {
      spdlog::critical(
          "cannot start: no --client-tls-cert/--client-tls-key. The client port serves TLS (docs/security.md, "
          "docs/operations.md); to serve it in plaintext anyway, pass --insecure");
      return std::nullopt;
    }
    spdlog::warn("INSECURE: the client port {} is plaintext (--insecure, no --client-tls-cert). Anyone who can reach "
                 "it can read and change the cluster's data and membership. Use TLS outside tests.",
                 c.client_addr);
    return ClientPortSecurity{nullptr, "insecure"};
  }
  auto tls = tern::net::make_server_tls({c.client_tls_cert, c.client_tls_key, c.client_tls_ca});
  if (!tls) {
    spdlog::critical("cannot start: {}", tls.error());
    return std::nullopt;
  }
  if (c.client_tls_ca.empty()) {
    spdlog::warn("client port {}: TLS without client certificates (no --client-tls-ca): any client that can reach it "
                 "is served",
                 c.client_addr);
  }
  return ClientPortSecurity{*tls, c.client_tls_ca.empty() ? "tls" : "mutual_tls"};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tern::service;
  auto env = [](const std::string& k) -> std::optional<std::string> {
    const char* v = std::getenv(k.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  auto cfg = load_config(argc, argv, env);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().c_str());
    return 2;
  }
  if (cfg->print_config) {
    std::fputs(to_toml(*cfg).c_str(), stdout);
    return 0;
  }
  setup_logging(*cfg);
  raise_fd_limit();
  std::string peer_secret;
  if (!cfg->peer_secret_file.empty()) {
    auto secret = load_peer_secret(*cfg);
    if (!secret) {
      spdlog::critical("cannot start: {}", secret.error());
      return 2;
    }
    peer_secret = std::move(*secret);
  } else if (!cfg->insecure) {
    spdlog::critical(
        "cannot start: no --peer-secret-file. Peers must prove a shared cluster secret (docs/security.md); "
        "to run without authentication anyway, pass --insecure");
    return 2;
  } else {
    spdlog::warn("INSECURE: peer authentication is off (--insecure). Anyone who can reach the peer port can "
                 "speak Raft to this node and corrupt or crash the cluster. Use --peer-secret-file outside tests.");
  }

  auto client_security = client_port_security(*cfg);
  if (!client_security) return 2;

  // Loop thread objects, in the order the KJ bridge requires (service/net/kj_asio.h).
  asio::io_context io{1};
  tern::net::AsioEventPort port(io);
  kj::EventLoop kj_loop(port);
  kj::WaitScope wait_scope(kj_loop);
  port.attach(kj_loop, wait_scope);

  Metrics metrics;
  NodeOptions no;
  no.id = tern::raft::NodeId{cfg->id};
  no.cluster_id = cluster_id_of(cfg->cluster_name);
  no.data_dir = cfg->data_dir;
  no.client_address = cfg->client_addr;  // announced to the cluster (clients discover it)
  for (const auto& p : cfg->initial_cluster) no.initial_cluster[tern::raft::NodeId{p.id}] = p.host + ":" + std::to_string(p.port);
  no.bootstrap = cfg->initial_cluster_state == "new";
  no.tick = std::chrono::milliseconds(cfg->heartbeat_interval_ms);
  no.election_ticks = std::max<std::uint32_t>(2, cfg->election_timeout_ms / cfg->heartbeat_interval_ms);
  no.snapshot_entries = cfg->snapshot_entries;
  no.fault_injection = cfg->debug_fault_injection == 1;
  no.force_new_cluster = cfg->force_new_cluster;
  no.peer_secret = peer_secret;
  if (no.fault_injection) spdlog::warn("fault injection is enabled (--debug-fault-injection): for tests only");

  // The coordination state machine, feeding this server's watch hub through the client API from
  // recovery on (the events of replayed entries are history a watch may resume from).
  tern::WatchHub hub;
  std::unique_ptr<Applier> applier;
  std::unique_ptr<ClientApi> api;
  if (cfg->debug_raw_state_machine == 1) {
    spdlog::warn("the bare-log placeholder replaces the state machine (--debug-raw-state-machine): for tests only");
    applier = std::make_unique<RawLog>();
  } else {
    tern::sm::Command tick;
    tick.op.type = tern::sm::OpType::tick;
    no.clock_tick_command = tern::sm::encode(tick);
    auto sm = std::make_unique<SmApplier>();
    ClientApiLimits limits;
    limits.requests_per_second = cfg->client_rate_limit;
    limits.requests_in_flight = cfg->client_max_in_flight;
    api = std::make_unique<ClientApi>(*sm, hub, limits);
    sm->set_sink(api.get());
    applier = std::move(sm);
  }
  auto node = Node::open(io, no, std::move(applier), metrics);
  if (!node) {
    spdlog::critical("cannot start: {}", node.error());
    return 1;
  }
  Node& n = **node;
  std::unique_ptr<AdminHttpServer> http;
  std::unique_ptr<tern::net::RpcListener> rpc;
  try {
    n.start();
    auto admin_addr = parse_host_port(cfg->admin_addr).value();  // validated by load_config
    http = std::make_unique<AdminHttpServer>(io, admin_addr.host, admin_addr.port);
    auto client_addr = parse_host_port(cfg->client_addr).value();
    // The client port serves the Admin interface and, unless the bare log stands in for the
    // state machine, the client API (client/api/tern.capnp).
    // One bootstrap object per connection: the client API's admission limits are per connection.
    tern::net::RpcListener::BootstrapFactory bootstrap = [&n]() { return make_admin_capability(n); };
    if (api) {
      api->bind(n);
      bootstrap = [&n, a = api.get()]() { return make_bootstrap(make_admin_server(n), a->tern_server()); };
    }
    // A client may keep as many replies unreleased as it may have calls in flight (it sends N,
    // waits for all N, then drops them): the held-answers bound is never below the in-flight one.
    tern::net::RpcLimits rpc_limits;
    rpc_limits.max_held_answers = std::max<std::size_t>(rpc_limits.max_held_answers, cfg->client_max_in_flight);
    rpc = std::make_unique<tern::net::RpcListener>(io, std::move(bootstrap),
                                                   [](const std::string& s) { spdlog::warn("{}", s); }, rpc_limits);
    rpc->set_tls(client_security->tls, !cfg->client_tls_ca.empty());
    rpc->listen(client_addr.host, client_addr.port);
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen: {}", e.what());
    return 1;
  }
  http->handle("/livez", [] { return HttpResponse{200, "text/plain", "ok\n"}; });
  http->handle("/readyz", [&] {
    return n.is_ready() ? HttpResponse{200, "text/plain", "ok\n"}
                        : HttpResponse{503, "text/plain", "no leader, or applying far behind the commit index\n"};
  });
  http->handle("/metrics", [&] {
    n.update_metrics();
    const auto& rs = rpc->stats();
    metrics.set("tern_rpc_connections", static_cast<double>(rpc->connections()));
    metrics.set_counter("tern_rpc_connections_evicted_total", rs.evicted);
    metrics.set_counter("tern_rpc_connections_slow_reader_total", rs.slow_readers);
    metrics.set_counter("tern_rpc_connections_timed_out_total", rs.timed_out);
    metrics.set_counter("tern_rpc_connections_unfinished_total", rs.unfinished);
    metrics.set("tern_peer_auth_enabled", peer_secret.empty() ? 0 : 1);
    metrics.set("tern_client_tls_enabled", rpc->tls() ? 1 : 0);
    metrics.set_counter("tern_rpc_tls_handshakes_total", rs.tls_handshakes);
    metrics.set_counter("tern_rpc_tls_handshake_failures_total", rs.tls_handshake_failures);
    if (api) metrics.set_counter("tern_keep_alive_batches_total", api->keep_alive_batches());
    return HttpResponse{200, "text/plain; version=0.0.4", metrics.render()};
  });
  // /status says whether peers and clients authenticate (an insecure node must be visible as such).
  const std::string auth_field = std::string(peer_secret.empty() ? R"("peer_auth":"insecure",)" : R"("peer_auth":"secret",)") +
                                 R"("client_auth":")" + client_security->mode + R"(",)";
  http->handle("/status", [&] {
    std::string s = n.status_json();
    if (!s.empty() && s[0] == '{') s.insert(1, auth_field);
    return HttpResponse{200, "application/json", s};
  });
  http->start();
  spdlog::info("ternd {} up: peers {}, client {}, admin http {}", cfg->id, no.initial_cluster[no.id], cfg->client_addr,
               cfg->admin_addr);

  // The client API's housekeeping (stuck watch sinks), about once a second.
  asio::steady_timer sweep_timer(io);
  std::function<void()> sweep = [&] {
    sweep_timer.expires_after(std::chrono::seconds(1));
    sweep_timer.async_wait([&](std::error_code ec) {
      if (ec) return;
      if (api) api->sweep(std::chrono::steady_clock::now());
      sweep();
    });
  };
  sweep();

  // SIGHUP: reload the client port's certificate, key and CA from the same files; connections
  // accepted from then on use them, open ones keep theirs. A file that does not load keeps the
  // old context (docs/operations.md: rotation).
  asio::signal_set hup(io, SIGHUP);
  std::function<void()> on_hup = [&] {
    hup.async_wait([&](std::error_code ec, int) {
      if (ec) return;
      if (rpc->tls()) {
        auto tls = tern::net::make_server_tls({cfg->client_tls_cert, cfg->client_tls_key, cfg->client_tls_ca});
        if (tls) {
          rpc->set_tls(*tls, !cfg->client_tls_ca.empty());
          spdlog::info("SIGHUP: client TLS certificate, key and CA reloaded");
        } else {
          spdlog::error("SIGHUP: client TLS not reloaded, keeping the old files' context: {}", tls.error());
        }
      }
      on_hup();
    });
  };
  on_hup();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int sig) {
    spdlog::info("signal {}: shutting down", sig);
    n.stop();
    rpc->stop();
    sweep_timer.cancel();
    hup.cancel();
    io.stop();
  });
  io.run();
  rpc.reset();
  http.reset();
  node->reset();
  spdlog::info("stopped");
  return 0;
}
