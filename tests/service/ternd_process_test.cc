// Starts the real ternd binary on 127.0.0.1 and talks plain HTTP to its admin port.
#include <gtest/gtest.h>

#include <fstream>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <filesystem>
#include <thread>
#include <vector>

#include "tests/common/loopback.h"

namespace {

using tern::testing::free_port;
std::string http_get(std::uint16_t port, const std::string& raw) { return tern::testing::http_request(port, raw); }

TEST(TerndProcess, AdminHttpAndCleanShutdown) {
  const char* bin = std::getenv("TERND_BIN");
  ASSERT_NE(bin, nullptr);
  char dir[] = "/tmp/ternd_test_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto port = free_port();
  std::string admin = "127.0.0.1:" + std::to_string(port);
  std::string client = "127.0.0.1:" + std::to_string(free_port());
  std::string cluster = "1=127.0.0.1:" + std::to_string(free_port());
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(bin, bin, "--id", "1", "--data-dir", dir, "--initial-cluster", cluster.c_str(), "--admin-addr",
            admin.c_str(), "--client-addr", client.c_str(), "--election-timeout-ms", "200",
            "--heartbeat-interval-ms", "20", "--insecure", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string live;
  for (int i = 0; i < 100 && live.empty(); ++i) {  // bounded: 5 s
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    live = http_get(port, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  EXPECT_NE(live.find("200 OK"), std::string::npos) << live;
  // A one-node cluster elects itself: /readyz turns 200 within a few election timeouts.
  std::string ready;
  for (int i = 0; i < 100; ++i) {  // bounded: 5 s
    ready = http_get(port, "GET /readyz HTTP/1.1\r\n\r\n");
    if (ready.find("200 OK") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(ready.find("200 OK"), std::string::npos) << ready;
  // --insecure is visible to operators (issue 17).
  std::string status_body = http_get(port, "GET /status HTTP/1.1\r\n\r\n");
  EXPECT_NE(status_body.find("\"peer_auth\":\"insecure\""), std::string::npos) << status_body;
  EXPECT_NE(status_body.find("\"client_auth\":\"insecure\""), std::string::npos) << status_body;
  auto metrics = http_get(port, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_NE(metrics.find("tern_has_leader 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("tern_wal_write_seconds_count"), std::string::npos) << metrics;
  auto status_json = http_get(port, "GET /status HTTP/1.1\r\n\r\n");
  EXPECT_NE(status_json.find("\"id\":1"), std::string::npos) << status_json;
  EXPECT_NE(status_json.find("\"role\":\"leader\""), std::string::npos) << status_json;
  EXPECT_NE(status_json.find("\"members\":[{\"id\":1,"), std::string::npos) << status_json;
  EXPECT_NE(http_get(port, "GET /nope HTTP/1.1\r\n\r\n").find("404"), std::string::npos);
  // Garbage and an oversized head are answered 400 and do not hurt the server.
  EXPECT_NE(http_get(port, std::string(20000, 'x')).find("400"), std::string::npos);
  EXPECT_NE(http_get(port, "GET /livez HTTP/1.1\r\n\r\n").find("200 OK"), std::string::npos);

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  for (int i = 0; i < 100; ++i) {  // bounded: 5 s
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (i == 99) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "ternd did not exit on SIGTERM";
    }
  }
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  // The data directory now belongs to node 1 of this cluster: another id, or another cluster
  // name, must refuse to start (exit 1, naming the mismatch) and leave the directory alone.
  auto run_and_wait = [&](std::vector<std::string> args) {
    pid_t p = ::fork();
    if (p == 0) {
      std::vector<char*> argv{const_cast<char*>(bin)};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin, argv.data());
      ::_exit(127);
    }
    int st = 0;
    for (int i = 0; i < 100; ++i) {  // bounded: 5 s
      if (::waitpid(p, &st, WNOHANG) == p) return st;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(p, SIGKILL);
    ::waitpid(p, &st, 0);
    return -1;
  };
  std::string two = cluster + ",2=127.0.0.1:" + std::to_string(free_port());
  int st = run_and_wait({"--id", "2", "--data-dir", dir, "--initial-cluster", two, "--admin-addr", admin,
                         "--client-addr", client, "--insecure"});
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << "status " << st;
  st = run_and_wait({"--id", "1", "--data-dir", dir, "--initial-cluster", cluster, "--admin-addr", admin,
                     "--client-addr", client, "--cluster-name", "another", "--insecure"});
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << "status " << st;
  // Issue 17: no peer authentication without saying so. Neither a secret nor --insecure: exit 2;
  // a secret file that is too short: exit 2.
  st = run_and_wait({"--id", "1", "--data-dir", dir, "--initial-cluster", cluster, "--admin-addr", admin,
                     "--client-addr", client});
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << "status " << st;
  std::string short_secret = std::string(dir) + "/short.secret";
  { std::ofstream(short_secret) << "tooshort\n"; }
  st = run_and_wait({"--id", "1", "--data-dir", dir, "--initial-cluster", cluster, "--admin-addr", admin,
                     "--client-addr", client, "--peer-secret-file", short_secret});
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << "status " << st;
  // A good secret but a plaintext client port without --insecure: exit 2; a TLS file that
  // cannot be read: exit 2.
  std::string secret = std::string(dir) + "/peer.secret";
  { std::ofstream(secret) << std::string(64, 'a') << "\n"; }
  st = run_and_wait({"--id", "1", "--data-dir", dir, "--initial-cluster", cluster, "--admin-addr", admin,
                     "--client-addr", client, "--peer-secret-file", secret});
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << "status " << st;
  st = run_and_wait({"--id", "1", "--data-dir", dir, "--initial-cluster", cluster, "--admin-addr", admin,
                     "--client-addr", client, "--peer-secret-file", secret, "--client-tls-cert", secret + ".nope",
                     "--client-tls-key", secret + ".nope"});
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << "status " << st;
  std::filesystem::remove_all(dir);
}

}  // namespace
