// ternd configuration: precedence flags > env > TOML > defaults, strict validation.
#include "service/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

namespace tern::service {
namespace {

struct Env {
  std::map<std::string, std::string> vars;
  EnvLookup lookup() const {
    return [this](const std::string& k) -> std::optional<std::string> {
      auto it = vars.find(k);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
};

Result<Config, std::string> load(std::vector<const char*> args, const Env& env = {}) {
  args.insert(args.begin(), "ternd");
  return load_config(static_cast<int>(args.size()), args.data(), env.lookup());
}

std::string temp_toml(const std::string& body) {
  std::string path = "/tmp/tern_config_test_" + std::to_string(::getpid()) + ".toml";
  std::ofstream(path) << body;
  return path;
}

constexpr const char* kCluster = "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103";

TEST(Config, FlagsParse) {
  auto c = load({"--id", "2", "--data-dir", "/d", "--initial-cluster", kCluster, "--admin-addr",
                 "127.0.0.1:9"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->id, 2u);
  EXPECT_EQ(c->data_dir, "/d");
  ASSERT_EQ(c->initial_cluster.size(), 3u);
  EXPECT_EQ(c->initial_cluster[2].port, 7103);
  EXPECT_EQ(c->admin_addr, "127.0.0.1:9");
}

TEST(Config, PrecedenceFlagsOverEnvOverToml) {
  auto path = temp_toml("id = 1\ndata_dir = \"/toml\"\ninitial_cluster = \"" + std::string(kCluster) +
                        "\"\nlog_level = \"debug\"\nheartbeat_interval_ms = 50\n");
  Env env;
  env.vars["TERN_DATA_DIR"] = "/env";
  env.vars["TERN_LOG_LEVEL"] = "warn";
  auto c = load({"--config", path.c_str(), "--log-level", "error"}, env);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->id, 1u);                // toml
  EXPECT_EQ(c->data_dir, "/env");      // env over toml
  EXPECT_EQ(c->log_level, "error");    // flag over env
  EXPECT_EQ(c->heartbeat_interval_ms, 50u);
  std::remove(path.c_str());
}

TEST(Config, UnknownTomlKeyIsError) {
  auto path = temp_toml("id = 1\ndata_dirr = \"/x\"\n");
  auto c = load({"--config", path.c_str()});
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().find("unknown key 'data_dirr'"), std::string::npos) << c.error();
  std::remove(path.c_str());
}

TEST(Config, UnknownFlagIsError) {
  EXPECT_FALSE(load({"--id", "1", "--bogus", "x"}).has_value());
}

TEST(Config, Validation) {
  EXPECT_FALSE(load({"--data-dir", "/d", "--initial-cluster", kCluster}).has_value());  // no id
  EXPECT_FALSE(load({"--id", "4", "--data-dir", "/d", "--initial-cluster", kCluster}).has_value());
  EXPECT_FALSE(load({"--id", "1", "--initial-cluster", kCluster}).has_value());  // no data dir
  EXPECT_FALSE(load({"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster,
                     "--election-timeout-ms", "100", "--heartbeat-interval-ms", "100"})
                   .has_value());
  EXPECT_FALSE(load({"--id", "x", "--data-dir", "/d", "--initial-cluster", kCluster}).has_value());
}

// Regression: --admin-addr 127.0.0.1:99999 used to wrap around to port 34463 and start.
TEST(Config, AddressesMustHaveAPortInRange) {
  for (const char* bad : {"127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1", ":80", "127.0.0.1:http"}) {
    EXPECT_FALSE(load({"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster, "--admin-addr", bad}).has_value()) << bad;
    EXPECT_FALSE(load({"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster, "--client-addr", bad}).has_value()) << bad;
  }
  EXPECT_TRUE(load({"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster, "--admin-addr", "127.0.0.1:65535"}).has_value());
}

// One parser for every host:port (flags, cluster members, addMember): a port that does not fit
// in 16 bits used to wrap around in addMember's own parsing.
TEST(Config, HostPortIsParsedOneWayEverywhere) {
  auto hp = parse_host_port("127.0.0.1:7101");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7101);
  EXPECT_FALSE(parse_host_port("127.0.0.1:70000"));
  EXPECT_FALSE(parse_host_port("127.0.0.1:0"));
  EXPECT_FALSE(parse_host_port(":7101"));
  EXPECT_FALSE(parse_host_port("127.0.0.1"));
  EXPECT_FALSE(parse_host_port("127.0.0.1:71x"));
}

TEST(Config, InitialClusterErrors) {
  EXPECT_FALSE(parse_initial_cluster("").has_value());
  EXPECT_FALSE(parse_initial_cluster("1=host").has_value());
  EXPECT_FALSE(parse_initial_cluster("0=h:1").has_value());
  EXPECT_FALSE(parse_initial_cluster("1=h:1,1=h:2").has_value());
  EXPECT_FALSE(parse_initial_cluster("1=h:70000").has_value());
  EXPECT_TRUE(parse_initial_cluster("1=h:1").has_value());
}

TEST(Config, PrintedConfigLoadsBack) {
  auto c = load({"--id", "3", "--data-dir", "/d", "--initial-cluster", kCluster});
  ASSERT_TRUE(c.has_value()) << c.error();
  auto path = temp_toml(to_toml(*c));
  auto again = load({"--config", path.c_str()});
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(to_toml(*again), to_toml(*c));
  std::remove(path.c_str());
}

// Issue 12: recovery from a lost quorum is a boolean like --insecure, off unless asked for.
TEST(Config, ForceNewClusterIsOffUnlessAFlagVariableOrKeySaysSo) {
  auto base = std::vector<const char*>{"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster};
  ASSERT_FALSE(load(base)->force_new_cluster);
  auto flags = base;
  flags.push_back("--force-new-cluster");
  EXPECT_TRUE(load(flags)->force_new_cluster);
  Env env;
  env.vars["TERN_FORCE_NEW_CLUSTER"] = "1";
  EXPECT_TRUE(load(base, env)->force_new_cluster);
  EXPECT_FALSE(load(base, env)->insecure);
  env.vars["TERN_FORCE_NEW_CLUSTER"] = "yes";
  EXPECT_FALSE(load(base, env).has_value());
  auto path = temp_toml("force_new_cluster = true\n");
  auto t = base;
  t.push_back("--config");
  t.push_back(path.c_str());
  EXPECT_TRUE(load(t)->force_new_cluster);
  std::remove(path.c_str());
}

// Issue 17: peer authentication is chosen explicitly, from any source.
TEST(Config, PeerSecretFileAndInsecureFromEverySource) {
  auto base = std::vector<const char*>{"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster};
  auto c = load(base);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_FALSE(c->insecure);
  EXPECT_TRUE(c->peer_secret_file.empty());
  auto flags = base;
  flags.push_back("--insecure");
  ASSERT_TRUE(load(flags)->insecure);
  Env env;
  env.vars["TERN_INSECURE"] = "1";
  ASSERT_TRUE(load(base, env)->insecure);
  env.vars["TERN_INSECURE"] = "maybe";
  EXPECT_FALSE(load(base, env).has_value());
  auto path = temp_toml("insecure = true\npeer_secret_file = \"/s\"\n");
  auto t = base;
  t.push_back("--config");
  t.push_back(path.c_str());
  auto ct = load(t);
  ASSERT_TRUE(ct.has_value()) << ct.error();
  EXPECT_TRUE(ct->insecure);
  EXPECT_EQ(ct->peer_secret_file, "/s");
  std::remove(path.c_str());
  // The secret: trimmed, at least 32 bytes.
  Config sc;
  sc.peer_secret_file = "/tmp/tern_config_test_secret_" + std::to_string(::getpid());
  std::ofstream(sc.peer_secret_file) << "  short\n";
  EXPECT_FALSE(load_peer_secret(sc).has_value());
  std::ofstream(sc.peer_secret_file) << std::string(40, 'k') << "\n";
  auto secret = load_peer_secret(sc);
  ASSERT_TRUE(secret.has_value()) << secret.error();
  EXPECT_EQ(*secret, std::string(40, 'k'));
  std::remove(sc.peer_secret_file.c_str());
  sc.peer_secret_file = "/nonexistent/secret";
  EXPECT_FALSE(load_peer_secret(sc).has_value());
}

// Issue 17: client port TLS files come as a pair (cert and key); a client CA needs them.
TEST(Config, ClientTlsFlagsFromEverySourceAndTheirPairing) {
  auto base = std::vector<const char*>{"--id", "1", "--data-dir", "/d", "--initial-cluster", kCluster};
  auto flags = base;
  for (const char* f : {"--client-tls-cert", "/c.pem", "--client-tls-key", "/k.pem", "--client-tls-ca", "/ca.pem"})
    flags.push_back(f);
  auto c = load(flags);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->client_tls_cert, "/c.pem");
  EXPECT_EQ(c->client_tls_key, "/k.pem");
  EXPECT_EQ(c->client_tls_ca, "/ca.pem");
  auto path = temp_toml(to_toml(*c));
  auto again = load({"--config", path.c_str()});
  std::remove(path.c_str());
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(again->client_tls_ca, "/ca.pem");
  Env env;
  env.vars["TERN_CLIENT_TLS_CERT"] = "/e.pem";
  env.vars["TERN_CLIENT_TLS_KEY"] = "/ek.pem";
  auto e = load(base, env);
  ASSERT_TRUE(e.has_value()) << e.error();
  EXPECT_EQ(e->client_tls_cert, "/e.pem");
  EXPECT_TRUE(e->client_tls_ca.empty());
  auto cert_only = base;
  cert_only.insert(cert_only.end(), {"--client-tls-cert", "/c.pem"});
  EXPECT_FALSE(load(cert_only).has_value());
  auto key_only = base;
  key_only.insert(key_only.end(), {"--client-tls-key", "/k.pem"});
  EXPECT_FALSE(load(key_only).has_value());
  auto ca_only = base;
  ca_only.insert(ca_only.end(), {"--client-tls-ca", "/ca.pem"});
  EXPECT_FALSE(load(ca_only).has_value());
}

}  // namespace
}  // namespace tern::service

namespace tern::service {
namespace {

// Issue 12: --help describes every flag with its type, default, TERN_* variable and TOML key
// (it used to print "TEXT" and nothing else).
TEST(Config, HelpDescribesEveryFlagWithTypeDefaultVariableAndTomlKey) {
  auto r = load({"--help"});
  ASSERT_FALSE(r.has_value());
  const auto& help = r.error();
  std::istringstream printed(to_toml(Config{}));
  int keys = 0;
  for (std::string line; std::getline(printed, line);) {
    auto eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    auto key = line.substr(0, eq);
    std::string flag = "--" + key, env = "TERN_" + key;
    for (auto& ch : flag) if (ch == '_') ch = '-';
    for (auto& ch : env) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    auto at = help.find("  " + flag + " ");
    ASSERT_NE(at, std::string::npos) << flag << "\n" << help;
    auto end = help.find("[toml: " + key + "]", at);
    ASSERT_NE(end, std::string::npos) << flag;
    auto entry = help.substr(at, end - at);
    EXPECT_EQ(entry.find(" TEXT"), std::string::npos) << entry;
    EXPECT_NE(entry.find("[default: "), std::string::npos) << entry;
    EXPECT_NE(entry.find("[env: " + env + "]"), std::string::npos) << entry;
    ++keys;
  }
  EXPECT_GE(keys, 19);
  EXPECT_NE(help.find("--client-addr HOST:PORT"), std::string::npos);
  EXPECT_NE(help.find("[default: 127.0.0.1:7201]"), std::string::npos);
}

}  // namespace
}  // namespace tern::service
