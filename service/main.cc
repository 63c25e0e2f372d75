// ternd: loads the configuration, sets up logging and serves the admin HTTP endpoints.
// The Raft node driver is not wired in yet (issue 4): /readyz answers 503 until it is.
#include <asio.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "service/admin_http.h"
#include "service/config.h"
#include "service/metrics.h"

namespace {

void setup_logging(const tern::service::Config& c) {
  auto logger = spdlog::stdout_color_mt("ternd");
  if (::isatty(STDOUT_FILENO) == 0) {
    // JSON lines for log shippers; message text is escaped by fmt's {:?}-free quoting below.
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","node":)" + std::to_string(c.id) +
                            R"(,"msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  }
  logger->set_level(spdlog::level::from_str(c.log_level));
  spdlog::set_default_logger(logger);
}

}  // namespace

int main(int argc, char** argv) {
  auto env = [](const std::string& k) -> std::optional<std::string> {
    const char* v = std::getenv(k.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  auto cfg = tern::service::load_config(argc, argv, env);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().c_str());
    return 2;
  }
  if (cfg->print_config) {
    std::fputs(tern::service::to_toml(*cfg).c_str(), stdout);
    return 0;
  }
  setup_logging(*cfg);

  asio::io_context io;
  tern::service::Metrics metrics;
  auto colon = cfg->admin_addr.rfind(':');
  std::uint16_t admin_port = static_cast<std::uint16_t>(std::atoi(cfg->admin_addr.c_str() + colon + 1));
  std::unique_ptr<tern::service::AdminHttpServer> admin;
  try {
    admin = std::make_unique<tern::service::AdminHttpServer>(io, cfg->admin_addr.substr(0, colon), admin_port);
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on admin address {}: {}", cfg->admin_addr, e.what());
    return 1;
  }
  admin->handle("/livez", [] { return tern::service::HttpResponse{200, "text/plain", "ok\n"}; });
  admin->handle("/readyz", [] { return tern::service::HttpResponse{503, "text/plain", "no raft node yet\n"}; });
  admin->handle("/metrics", [&] {
    metrics.set("tern_has_leader", 0);
    return tern::service::HttpResponse{200, "text/plain; version=0.0.4", metrics.render()};
  });
  admin->handle("/status", [&] {
    return tern::service::HttpResponse{200, "application/json",
                                       "{\"id\":" + std::to_string(cfg->id) + ",\"role\":\"none\"}\n"};
  });
  admin->start();
  spdlog::info("ternd {} listening: admin http {}", cfg->id, cfg->admin_addr);

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int sig) {
    spdlog::info("signal {}: shutting down", sig);
    io.stop();
  });
  auto guard = asio::make_work_guard(io);
  io.run();
  return 0;
}
