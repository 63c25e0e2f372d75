#include "service/config.h"

#include "common/cluster_id.h"

#include <fstream>
#include <iterator>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <charconv>
#include <memory>
#include <set>
#include <sstream>

namespace tern::service {
namespace {

template <class T>
bool parse_uint(const std::string& s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

std::string join_cluster(const std::vector<PeerAddress>& peers) {
  std::string out;
  for (const auto& p : peers) {
    if (!out.empty()) out += ',';
    out += std::to_string(p.id) + "=" + p.host + ":" + std::to_string(p.port);
  }
  return out;
}

// One setting, settable from all three sources, applied in precedence order.
struct Setting {
  const char* key;  // TOML key; flag is --key with '_' -> '-'; env is TERN_KEY
  std::function<std::optional<std::string>(Config&, const std::string&)> set;  // error text
};

std::vector<Setting> settings() {
  auto str = [](std::string Config::*m) {
    return [m](Config& c, const std::string& v) -> std::optional<std::string> {
      c.*m = v;
      return std::nullopt;
    };
  };
  auto num = [](auto Config::*m) {
    return [m](Config& c, const std::string& v) -> std::optional<std::string> {
      if (!parse_uint(v, c.*m)) return "not a number: '" + v + "'";
      return std::nullopt;
    };
  };
  auto boolean = [](bool Config::*m) {
    return [m](Config& c, const std::string& v) -> std::optional<std::string> {
      if (v == "1" || v == "true") c.*m = true;
      else if (v == "0" || v == "false") c.*m = false;
      else return "want true/false or 1/0, not '" + v + "'";
      return std::nullopt;
    };
  };
  return {
      {"id", num(&Config::id)},
      {"data_dir", str(&Config::data_dir)},
      {"initial_cluster",
       [](Config& c, const std::string& v) -> std::optional<std::string> {
         auto r = parse_initial_cluster(v);
         if (!r) return r.error();
         c.initial_cluster = *r;
         return std::nullopt;
       }},
      {"client_addr", str(&Config::client_addr)},
      {"admin_addr", str(&Config::admin_addr)},
      {"election_timeout_ms", num(&Config::election_timeout_ms)},
      {"heartbeat_interval_ms", num(&Config::heartbeat_interval_ms)},
      {"log_level", str(&Config::log_level)},
      {"cluster_name", str(&Config::cluster_name)},
      {"initial_cluster_state", str(&Config::initial_cluster_state)},
      {"snapshot_entries", num(&Config::snapshot_entries)},
      {"debug_fault_injection", num(&Config::debug_fault_injection)},
      {"debug_raw_state_machine", num(&Config::debug_raw_state_machine)},
      {"client_rate_limit", num(&Config::client_rate_limit)},
      {"client_max_in_flight", num(&Config::client_max_in_flight)},
      {"peer_secret_file", str(&Config::peer_secret_file)},
      {"client_tls_cert", str(&Config::client_tls_cert)},
      {"client_tls_key", str(&Config::client_tls_key)},
      {"client_tls_ca", str(&Config::client_tls_ca)},
      {"insecure", boolean(&Config::insecure)},
      {"force_new_cluster", boolean(&Config::force_new_cluster)},
  };
}

std::string flag_name(const char* key) {
  std::string f = std::string("--") + key;
  for (auto& ch : f) if (ch == '_') ch = '-';
  return f;
}

std::string env_name(const char* key) {
  std::string e = std::string("TERN_") + key;
  for (auto& ch : e) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return e;
}

// What --help says of each setting: its type and what it does (the default, TERN_* variable and
// TOML key are added from the setting itself, so they cannot drift).
struct Help {
  const char* key;
  const char* type;
  const char* text;
};
constexpr Help kHelp[] = {
    {"id", "UINT", "this node's id: non-zero, one of --initial-cluster's (required)"},
    {"data_dir", "DIR", "where the WAL, snapshots and identity live (required; created if missing)"},
    {"initial_cluster", "ID=HOST:PORT,...", "every initial member's id and peer address"},
    {"client_addr", "HOST:PORT", "the client port: client API and admin RPC (Cap'n Proto), TLS when configured"},
    {"admin_addr", "HOST:PORT", "the admin HTTP port: /livez /readyz /status /metrics"},
    {"election_timeout_ms", "MS", "Raft election timeout (at least twice the heartbeat interval)"},
    {"heartbeat_interval_ms", "MS", "Raft heartbeat interval of the leader"},
    {"log_level", "LEVEL", "trace, debug, info, warn, error or off"},
    {"cluster_name", "NAME", "frames from a cluster with another name are refused; one name per cluster"},
    {"initial_cluster_state", "new|existing", "new: bootstrap with --initial-cluster; existing: join a running cluster"},
    {"snapshot_entries", "UINT", "take a snapshot after this many applied entries"},
    {"debug_fault_injection", "0|1", "1: allow the admin injectPartition call (tests only)"},
    {"debug_raw_state_machine", "0|1", "1: the bare-log placeholder instead of the coordination state machine (tests only)"},
    {"client_rate_limit", "UINT", "client requests per second per connection, all its sessions together (0: no limit); beyond: slowDown"},
    {"client_max_in_flight", "UINT", "client requests of one connection waiting for their answers; one more is answered slowDown (keep-alives never)"},
    {"peer_secret_file", "FILE", "the cluster secret (32+ bytes, same on every member) that peers authenticate with"},
    {"client_tls_cert", "FILE", "PEM certificate of the client port (TLS)"},
    {"client_tls_key", "FILE", "PEM private key of the client port (TLS)"},
    {"client_tls_ca", "FILE", "PEM CA bundle: clients must present a certificate it signed (mutual TLS)"},
    {"insecure", "BOOL", "run without the authentication not configured: peers without a cluster secret, a plaintext client port"},
    {"force_new_cluster", "BOOL",
     "recovery from a lost quorum: this node's data dir becomes a one-node cluster (it alone a voter, its whole log committed); "
     "the other old members must never run again with their data. Once, then restart without it (docs/operations.md)"},
};

// The flag's help line: what it does, its default (from a default Config), TERN_* and TOML key.
std::string help_text(const char* key, const toml::table& defaults) {
  std::string text;
  for (const auto& h : kHelp)
    if (std::string(h.key) == key) text = h.text;
  std::string def;
  if (auto n = defaults[key]; n.is_string()) def = n.value_or(std::string());
  else if (n.is_integer()) def = std::to_string(n.value_or(std::int64_t{0}));
  else if (n.is_boolean()) def = n.value_or(false) ? "true" : "false";
  if (def.empty()) def = "none";
  return text + " [default: " + def + "] [env: " + env_name(key) + "] [toml: " + key + "]";
}

const char* type_of(const char* key) {
  for (const auto& h : kHelp)
    if (std::string(h.key) == key) return h.type;
  return "TEXT";
}

}  // namespace

std::optional<HostPort> parse_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  HostPort hp;
  if (colon == std::string::npos || colon == 0 || !parse_uint(text.substr(colon + 1), hp.port) || hp.port == 0)
    return std::nullopt;
  hp.host = text.substr(0, colon);
  return hp;
}

Result<std::vector<PeerAddress>, std::string> parse_initial_cluster(const std::string& text) {
  std::vector<PeerAddress> out;
  std::set<std::uint64_t> seen;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    PeerAddress p;
    auto hp = eq == std::string::npos ? std::nullopt : parse_host_port(item.substr(eq + 1));
    if (!hp || !parse_uint(item.substr(0, eq), p.id) || p.id == 0)
      return fail("bad cluster member '" + item + "' (want id=host:port)");
    p.host = hp->host;
    p.port = hp->port;
    if (!seen.insert(p.id).second) return fail("duplicate member id " + std::to_string(p.id));
    out.push_back(std::move(p));
  }
  if (out.empty()) return fail(std::string("empty initial cluster"));
  return out;
}

Result<Config, std::string> load_config(int argc, const char* const* argv, const EnvLookup& env) {
  auto table = settings();
  CLI::App app{"ternd: a tern coordination server"};
  std::vector<std::string> flag_values(table.size());
  // Boolean settings are flags without a value on the command line.
  auto is_bool = [](const char* key) { return std::string(type_of(key)) == "BOOL"; };
  auto bool_flags = std::make_unique<bool[]>(table.size());  // value-initialized: false
  auto defaults = toml::parse(to_toml(Config{}));
  for (std::size_t i = 0; i < table.size(); ++i) {
    auto help = help_text(table[i].key, defaults);
    if (is_bool(table[i].key)) {
      app.add_flag(flag_name(table[i].key), bool_flags[i], help);
    } else {
      app.add_option(flag_name(table[i].key), flag_values[i], help)->type_name(type_of(table[i].key));
    }
  }
  Config c;
  app.add_option("--config", c.config_file, "TOML configuration file; precedence: defaults < TOML < TERN_* < flags [env: TERN_CONFIG]")
      ->type_name("FILE");
  app.add_flag("--print-config", c.print_config, "print the merged configuration as TOML and exit");
  app.footer("Every setting is a flag, a TERN_* variable and a TOML key (docs/operations.md).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return fail(app.help());
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()));
  }
  if (c.config_file.empty()) {
    if (auto v = env("TERN_CONFIG")) c.config_file = *v;
  }
  // 1. TOML file.
  if (!c.config_file.empty()) {
    toml::table t;
    try {
      t = toml::parse_file(c.config_file);
    } catch (const toml::parse_error& e) {
      return fail(c.config_file + ": " + std::string(e.description()));
    }
    for (auto&& [k, node] : t) {
      const Setting* s = nullptr;
      for (const auto& cand : table) if (k.str() == cand.key) s = &cand;
      if (s == nullptr) return fail(c.config_file + ": unknown key '" + std::string(k.str()) + "'");
      std::string v;
      if (auto i = node.value<std::int64_t>(); i && node.is_integer()) {
        if (*i < 0) return fail(c.config_file + ": negative " + std::string(k.str()));
        v = std::to_string(*i);
      } else if (auto sv = node.value<std::string>()) {
        v = *sv;
      } else if (auto b = node.value<bool>(); b && node.is_boolean()) {
        v = *b ? "true" : "false";
      } else {
        return fail(c.config_file + ": bad type for '" + std::string(k.str()) + "'");
      }
      if (auto err = s->set(c, v)) return fail(c.config_file + ": " + s->key + ": " + *err);
    }
  }
  // 2. Environment, 3. flags.
  for (const auto& s : table) {
    if (auto v = env(env_name(s.key))) {
      if (auto err = s.set(c, *v)) return fail(env_name(s.key) + ": " + *err);
    }
  }
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (is_bool(table[i].key)) {
      if (bool_flags[i]) table[i].set(c, "true");
      continue;
    }
    if (app.count(flag_name(table[i].key)) == 0) continue;
    if (auto err = table[i].set(c, flag_values[i])) return fail(flag_name(table[i].key) + ": " + *err);
  }
  // Validation.
  if (c.id == 0) return fail(std::string("--id is required (non-zero)"));
  if (c.data_dir.empty()) return fail(std::string("--data-dir is required"));
  bool member = false;
  for (const auto& p : c.initial_cluster) member |= p.id == c.id;
  if (!member) return fail("--id " + std::to_string(c.id) + " is not in --initial-cluster");
  if (c.heartbeat_interval_ms == 0 || c.election_timeout_ms < 2 * c.heartbeat_interval_ms)
    return fail(std::string("election timeout must be at least twice the heartbeat interval"));
  if (c.initial_cluster_state != "new" && c.initial_cluster_state != "existing")
    return fail("--initial-cluster-state must be 'new' or 'existing', not '" + c.initial_cluster_state + "'");
  if (c.cluster_name.empty()) return fail(std::string("--cluster-name must not be empty"));
  if (c.client_max_in_flight == 0) return fail(std::string("--client-max-in-flight must be at least 1"));
  if (c.debug_fault_injection > 1) return fail(std::string("--debug-fault-injection must be 0 or 1"));
  if (c.debug_raw_state_machine > 1) return fail(std::string("--debug-raw-state-machine must be 0 or 1"));
  if (c.snapshot_entries < 16) return fail(std::string("--snapshot-entries must be at least 16"));
  if (c.client_tls_cert.empty() != c.client_tls_key.empty())
    return fail(std::string("--client-tls-cert and --client-tls-key go together"));
  if (!c.client_tls_ca.empty() && c.client_tls_cert.empty())
    return fail(std::string("--client-tls-ca needs --client-tls-cert and --client-tls-key (TLS on the client port)"));
  // host:port with a port in 1..65535 (a port that does not fit must not wrap around silently).
  for (auto [flag, addr] : {std::pair{"--client-addr", &c.client_addr}, std::pair{"--admin-addr", &c.admin_addr}}) {
    if (!parse_host_port(*addr))
      return fail(std::string(flag) + ": '" + *addr + "' is not host:port with a port in 1..65535");
  }
  return c;
}

Result<std::string, std::string> load_peer_secret(const Config& c) {
  std::ifstream in(c.peer_secret_file, std::ios::binary);
  if (!in) return fail("--peer-secret-file: cannot read '" + c.peer_secret_file + "'");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto first = s.find_first_not_of(" \t\r\n");
  auto last = s.find_last_not_of(" \t\r\n");
  s = first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
  if (s.size() < 32)
    return fail("--peer-secret-file: '" + c.peer_secret_file + "' holds " + std::to_string(s.size()) +
                " bytes; the cluster secret needs at least 32 (e.g. openssl rand -hex 32)");
  return s;
}

std::uint64_t cluster_id_of(const std::string& cluster_name) { return cluster_id_of_name(cluster_name); }

std::string to_toml(const Config& c) {
  toml::table t{
      {"id", static_cast<std::int64_t>(c.id)},
      {"data_dir", c.data_dir},
      {"initial_cluster", join_cluster(c.initial_cluster)},
      {"client_addr", c.client_addr},
      {"admin_addr", c.admin_addr},
      {"election_timeout_ms", static_cast<std::int64_t>(c.election_timeout_ms)},
      {"heartbeat_interval_ms", static_cast<std::int64_t>(c.heartbeat_interval_ms)},
      {"log_level", c.log_level},
      {"cluster_name", c.cluster_name},
      {"initial_cluster_state", c.initial_cluster_state},
      {"snapshot_entries", static_cast<std::int64_t>(c.snapshot_entries)},
      {"debug_fault_injection", static_cast<std::int64_t>(c.debug_fault_injection)},
      {"debug_raw_state_machine", static_cast<std::int64_t>(c.debug_raw_state_machine)},
      {"client_rate_limit", static_cast<std::int64_t>(c.client_rate_limit)},
      {"client_max_in_flight", static_cast<std::int64_t>(c.client_max_in_flight)},
      {"peer_secret_file", c.peer_secret_file},
      {"client_tls_cert", c.client_tls_cert},
      {"client_tls_key", c.client_tls_key},
      {"client_tls_ca", c.client_tls_ca},
      {"insecure", c.insecure},
      {"force_new_cluster", c.force_new_cluster},
  };
  std::ostringstream os;
  os << t << '\n';
  return os.str();
}

}  // namespace tern::service
