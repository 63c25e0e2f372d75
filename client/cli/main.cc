// tern: the command-line tool on the client library (docs/cli.md). Data commands map one to one
// onto tern::Client calls; lock and elect run a command under a recipe; status, member and leader
// go through the admin RPC (client/cli/admin_client.h, shared with ternadm).
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "client/cli/output.h"
#include "client/cli/shell.h"
#include "client/cli/admin_client.h"
#include "raft/storage/snapshot_store.h"
#include "tern/client.h"
#include "tern/recipes.h"

namespace tern::cli {
namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

// --- Global options -----------------------------------------------------------------------------

struct Globals {
  std::string endpoints;
  std::string timeout = "10s";
  std::string session_timeout = "10s";
  std::string consistency = "linearizable";
  std::string output = "simple";
  Format format = Format::simple;
  Ms request_timeout{10000}, session{10000};
  ClientOptions options;  // resolved
};
Globals g;

constexpr const char* kDefaultEndpoints = "127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203";

int fail_line(const std::string& what, int code) {
  std::fprintf(stderr, "tern: %s\n", what.c_str());
  return code;
}

// A reply's error as one line naming the path: "tern: /a/b: no_node (the node does not exist)".
int fail_reply(const std::string& subject, const Reply& r) {
  std::string line = subject + ": " + error_name(r.error);
  if (!r.message.empty()) {
    std::string m = r.message;
    if (auto nl = m.find('\n'); nl != std::string::npos) m.resize(nl);
    line += " (" + m + ")";
  }
  return fail_line(line, exit_code(r.error));
}

std::optional<Ms> parse_duration(const std::string& s) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = s.substr(pos);
  double ms = unit == "ms" ? v : unit == "s" || unit.empty() ? v * 1000 : unit == "m" ? v * 60000 : -1;
  if (ms < 0 || v < 0) return std::nullopt;
  return Ms(static_cast<std::int64_t>(ms));
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);)
    if (!part.empty()) out.push_back(part);
  return out;
}

// scripts/cluster.sh writes <data-dir>/tls/client.env ("export TERN_TLS_CA=... ..." with bash %q
// quoting). Used only for the default endpoints when TERN_TLS_* is not set: TERN_CLUSTER_DIR, else
// the newest /tmp/tern-cluster.* that has one.
std::string cluster_env_file() {
  if (const char* dir = std::getenv("TERN_CLUSTER_DIR"); dir != nullptr && *dir != '\0')
    return std::string(dir) + "/tls/client.env";
  glob_t gl{};
  std::string best;
  std::int64_t best_time = -1;
  if (::glob("/tmp/tern-cluster.*/tls/client.env", 0, nullptr, &gl) == 0) {
    for (std::size_t i = 0; i < gl.gl_pathc; ++i) {
      struct stat st{};
      if (::stat(gl.gl_pathv[i], &st) == 0 && st.st_mtime > best_time) {
        best_time = st.st_mtime;
        best = gl.gl_pathv[i];
      }
    }
  }
  ::globfree(&gl);
  return best;
}

void load_cluster_env(const std::string& file, ClientOptions& o) {
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string word;
  auto take = [&] {
    auto eq = word.find('=');
    if (eq != std::string::npos) {
      std::string k = word.substr(0, eq), v = word.substr(eq + 1);
      if (k == "TERN_TLS_CA") o.tls_ca_file = v;
      if (k == "TERN_TLS_CERT") o.tls_cert_file = v;
      if (k == "TERN_TLS_KEY") o.tls_key_file = v;
    }
    word.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) word += text[++i];
    else if (c == ' ' || c == '\n') take();
    else if (c != '\'' && c != '"') word += c;
  }
  take();
}

int resolve_globals() {
  if (g.output == "simple") g.format = Format::simple;
  else if (g.output == "table") g.format = Format::table;
  else if (g.output == "json") g.format = Format::json;
  else if (g.output == "ndjson") g.format = Format::ndjson;
  else if (g.output == "raw") g.format = Format::raw;
  else return fail_line("-o " + g.output + ": want simple, table, json, ndjson or raw", exit_usage);
  auto t = parse_duration(g.timeout);
  if (!t || t->count() == 0) return fail_line("--timeout " + g.timeout + ": not a duration (like 500ms, 10s)", exit_usage);
  auto st = parse_duration(g.session_timeout);
  if (!st || st->count() == 0)
    return fail_line("--session-timeout " + g.session_timeout + ": not a duration (like 500ms, 10s)", exit_usage);
  if (g.consistency != "linearizable" && g.consistency != "serializable")
    return fail_line("--consistency " + g.consistency + ": want linearizable or serializable", exit_usage);
  g.request_timeout = *t;
  g.session = *st;
  bool defaulted = false;
  if (g.endpoints.empty()) {
    const char* env = std::getenv("TERN_ENDPOINTS");
    g.endpoints = env != nullptr && *env != '\0' ? env : kDefaultEndpoints;
    defaulted = env == nullptr || *env == '\0';
  }
  g.options.endpoints = split(g.endpoints, ',');
  if (g.options.endpoints.empty()) return fail_line("--endpoints: empty", exit_usage);
  g.options.request_timeout = g.request_timeout;
  g.options.session_timeout = g.session;
  const char* ca = std::getenv("TERN_TLS_CA");
  if (defaulted && (ca == nullptr || *ca == '\0')) {
    if (auto f = cluster_env_file(); !f.empty() && ::access(f.c_str(), R_OK) == 0) load_cluster_env(f, g.options);
  }
  return exit_ok;
}

client::TlsOptions admin_tls() {
  if (g.options.tls_ca_file.empty()) return client::tls_options_from_env();
  return client::TlsOptions{g.options.tls_ca_file, g.options.tls_cert_file, g.options.tls_key_file, ""};
}

ReadOptions read_options() {
  ReadOptions r;
  r.consistency = g.consistency == "serializable" ? Consistency::serializable : Consistency::linearizable;
  return r;
}

// The interactive shell's one session (null outside the shell): every command of the shell uses it.
std::shared_ptr<Client> g_shell_client;

std::shared_ptr<Client> connect_or_report(int& code, std::function<void(ConnectionState)> on_state = {}) {
  if (g_shell_client) return g_shell_client;
  auto o = g.options;
  o.on_state = std::move(on_state);
  std::string err;
  auto c = Client::connect(o, &err);
  if (!c) code = fail_line(g.endpoints + ": unavailable (" + (err.empty() ? "no endpoint answered" : err) + ")", exit_unavailable);
  return c;
}

// --- Values -------------------------------------------------------------------------------------

struct ValueSource {
  std::optional<std::string> arg;
  std::string file;
};

// The value from the argument, --file (- is stdin) or, when neither is given, stdin unless it is
// a terminal (`required`: then a usage error; else empty).
int read_value(const ValueSource& v, bool required, std::string& out) {
  if (v.arg && !v.file.empty()) return fail_line("give the value as an argument or --file, not both", exit_usage);
  if (v.arg) {
    out = *v.arg;
    return exit_ok;
  }
  if (!v.file.empty() && v.file != "-") {
    std::ifstream in(v.file, std::ios::binary);
    if (!in) return fail_line(v.file + ": cannot read", exit_usage);
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return exit_ok;
  }
  if (v.file.empty() && ::isatty(0)) {
    out.clear();
    return required ? fail_line("missing VALUE (an argument, --file FILE, or stdin)", exit_usage) : exit_ok;
  }
  out.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  return exit_ok;
}

void write_raw(const std::string& bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  std::fflush(stdout);
}

// --- Data commands ------------------------------------------------------------------------------

Json node_json(const std::string& path, const Reply& r, bool with_value, bool with_stat) {
  Json j;
  j["path"] = path;
  if (with_value) put_value(j, r.data);
  if (with_stat) j["stat"] = stat_json(r.stat);
  j["index"] = r.index;
  return j;
}

void print_stat_simple(const Stat& s) {
  auto j = stat_json(s);
  for (auto& [k, v] : j.items()) std::printf("%-16s %s\n", k.c_str(), v.dump().c_str());
}

int cmd_get(const std::string& path, bool with_stat) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  auto r = c->get(path, read_options());
  if (!r.ok()) return fail_reply(path, r);
  if (g.format == Format::raw) {
    write_raw(r.data);
    return exit_ok;
  }
  auto j = node_json(path, r, true, with_stat);
  if (g.format == Format::table) {
    std::vector<std::string> cols = {"path", "value"};
    if (with_stat) {
      auto stat = j["stat"];  // a copy: inserting into j moves what j["stat"] refers to
      for (auto& [k, v] : stat.items()) j[k] = v;
      for (const char* k : {"version", "modified_index", "data_length", "child_count", "ephemeral_owner"}) cols.push_back(k);
    }
    emit_structured(g.format, {j}, cols, true);
    return exit_ok;
  }
  if (emit_structured(g.format, {j}, {}, true)) return exit_ok;
  write_raw(r.data);
  if (r.data.empty() || r.data.back() != '\n') std::printf("\n");
  if (with_stat) print_stat_simple(r.stat);
  return exit_ok;
}

int cmd_stat(const std::string& path) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  auto r = c->exists(path, read_options());
  if (!r.ok()) return fail_reply(path, r);
  Json j;
  j["path"] = path;
  j["stat"] = stat_json(r.stat);
  if (g.format == Format::table) {
    Json flat = stat_json(r.stat);
    flat["path"] = path;
    std::vector<std::string> cols = {"path"};
    auto stat = stat_json(r.stat);
    for (auto& [k, v] : stat.items()) cols.push_back(k);
    emit_structured(g.format, {flat}, cols, true);
    return exit_ok;
  }
  if (emit_structured(g.format, {j}, {}, true)) return exit_ok;
  print_stat_simple(r.stat);
  return exit_ok;
}

void print_written(const std::string& path, const Reply& r, const char* what) {
  Json j;
  j["path"] = path;
  j["result"] = what;
  j["version"] = r.stat.version;
  j["index"] = r.index;
  if (emit_structured(g.format, {j}, {"path", "result", "version", "index"}, true)) return;
  std::printf("%s %s (index %llu)\n", what, path.c_str(), static_cast<unsigned long long>(r.index));
}

// put: sets the node, creating it when it does not exist (and no --version was given).
int cmd_put(const std::string& path, const ValueSource& v, std::int64_t version) {
  std::string value;
  if (int rc = read_value(v, true, value); rc != 0) return rc;
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  auto r = c->set(path, value, version);
  const char* what = "updated";
  // A bounded loop: the node can vanish or appear between the two calls.
  for (int attempt = 0; attempt < 3 && version < 0; ++attempt) {
    if (r.error == Error::no_node) {
      r = c->create(path, value);
      what = "created";
    } else if (r.error == Error::node_exists) {
      r = c->set(path, value, version);
      what = "updated";
    } else {
      break;
    }
  }
  if (!r.ok()) return fail_reply(path, r);
  print_written(path, r, what);
  return exit_ok;
}

struct CreateFlags {
  bool ephemeral = false, sequential = false, container = false, parents = false;
  std::string ttl;
  std::uint64_t lease = 0;
};

int wait_for_signal();

int cmd_create(const std::string& path, const ValueSource& v, const CreateFlags& f) {
  std::string value;
  if (int rc = read_value(v, false, value); rc != 0) return rc;
  CreateOptions o;
  o.ephemeral = f.ephemeral;
  o.sequential = f.sequential;
  o.container = f.container;
  o.lease = f.lease;
  if (!f.ttl.empty()) {
    auto t = parse_duration(f.ttl);
    if (!t || t->count() == 0) return fail_line("--ttl " + f.ttl + ": not a duration", exit_usage);
    o.ttl_ms = t->count();
  }
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  if (f.parents) {
    auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      auto e = recipes::ensure_path(*c, path.substr(0, slash));
      if (e != Error::ok) return fail_line(path.substr(0, slash) + ": " + error_name(e), exit_code(e));
    }
  }
  auto r = c->create(path, value, o);
  if (!r.ok()) return fail_reply(path, r);
  print_written(r.path.empty() ? path : r.path, r, "created");
  // An ephemeral node lives as long as the session: hold it until interrupted (in the shell, the
  // shell's session holds it).
  if (f.ephemeral && !g_shell_client) {
    std::fflush(stdout);
    return wait_for_signal();
  }
  return exit_ok;
}

int cmd_rm(const std::string& path, bool recursive, std::int64_t version) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  auto r = c->remove(path, version, recursive);
  if (!r.ok()) return fail_reply(path, r);
  print_written(path, r, "deleted");
  return exit_ok;
}

std::string child_path(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

// Every child name of `path`, page by page (the server's cursor).
Error all_children(Client& c, const std::string& path, std::vector<std::string>& out, Reply& failed) {
  std::string cursor;
  for (int page = 0; page < 1'000'000; ++page) {
    auto r = c.children(path, cursor, 1000, read_options());
    if (!r.ok()) {
      failed = r;
      return r.error;
    }
    out.insert(out.end(), r.names.begin(), r.names.end());
    if (r.path.empty() || r.names.empty()) break;
    cursor = r.path;
  }
  return Error::ok;
}

int cmd_ls(const std::string& path, bool long_form, bool recursive) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  std::vector<Json> rows;
  std::vector<std::string> stack = {path};
  while (!stack.empty()) {
    auto dir = stack.back();
    stack.pop_back();
    std::vector<std::string> names;
    Reply failed;
    if (all_children(*c, dir, names, failed) != Error::ok) {
      if (dir != path && failed.error == Error::no_node) continue;  // deleted meanwhile
      return fail_reply(dir, failed);
    }
    std::vector<std::string> subdirs;
    for (const auto& n : names) {
      Json j;
      auto p = child_path(dir, n);
      j["name"] = recursive ? p : n;
      j["path"] = p;
      if (long_form || recursive) {
        auto s = c->exists(p, read_options());
        if (!s.ok()) continue;  // deleted meanwhile
        if (long_form) {
          j["version"] = s.stat.version;
          j["data_length"] = s.stat.data_length;
          j["child_count"] = s.stat.child_count;
          j["ephemeral_owner"] = s.stat.ephemeral_owner;
          j["modified_index"] = s.stat.modified_index;
        }
        if (recursive && s.stat.child_count > 0) subdirs.push_back(p);
      }
      rows.push_back(std::move(j));
    }
    // Depth first, in name order.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(*it);
  }
  if (recursive) {
    std::stable_sort(rows.begin(), rows.end(), [](const Json& a, const Json& b) {
      return a["path"].get<std::string>() < b["path"].get<std::string>();
    });
  }
  std::vector<std::string> cols = {"name"};
  if (long_form)
    for (const char* k : {"version", "data_length", "child_count", "ephemeral_owner", "modified_index"}) cols.push_back(k);
  if (emit_structured(g.format, rows, cols, false)) return exit_ok;
  if (long_form) {
    std::vector<std::vector<std::string>> cells;
    for (const auto& r : rows) {
      std::vector<std::string> row;
      for (const auto& k : cols) row.push_back(cell(r[k]));
      cells.push_back(row);
    }
    print_table(cols, cells);
    return exit_ok;
  }
  for (const auto& r : rows) std::printf("%s\n", r["name"].get<std::string>().c_str());
  return exit_ok;
}

int cmd_tree(const std::string& root) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  std::vector<Json> rows;
  struct Item {
    std::string path;
    int depth;
  };
  std::vector<Item> stack = {{root, 0}};
  for (std::size_t visited = 0; !stack.empty() && visited < 10'000'000; ++visited) {
    auto it = stack.back();
    stack.pop_back();
    auto r = c->get(it.path, read_options());
    if (!r.ok()) {
      if (it.path != root && r.error == Error::no_node) continue;
      return fail_reply(it.path, r);
    }
    Json j;
    j["path"] = it.path;
    j["depth"] = it.depth;
    put_value(j, r.data);
    j["version"] = r.stat.version;
    rows.push_back(j);
    if (r.stat.child_count == 0) continue;
    std::vector<std::string> names;
    Reply failed;
    if (all_children(*c, it.path, names, failed) != Error::ok) {
      if (failed.error == Error::no_node) continue;
      return fail_reply(it.path, failed);
    }
    for (auto n = names.rbegin(); n != names.rend(); ++n) stack.push_back({child_path(it.path, *n), it.depth + 1});
  }
  if (emit_structured(g.format, rows, {"path", "value", "version"}, false)) return exit_ok;
  for (const auto& r : rows) {
    auto p = r["path"].get<std::string>();
    auto depth = r["depth"].get<int>();
    auto name = depth == 0 ? p : p.substr(p.rfind('/') + 1);
    std::string value = r.contains("value") ? printable(r["value"].get<std::string>()) : "<binary>";
    std::printf("%s%s%s%s\n", std::string(2 * depth, ' ').c_str(), name.c_str(), value.empty() ? "" : " = ",
                value.c_str());
  }
  return exit_ok;
}

// txn: [{"op": "...", ...}, ...] or {"ops": [...]} (docs/cli.md, txn).
int parse_txn(const std::string& text, std::vector<TxnOp>& ops) {
  Json doc;
  try {
    doc = Json::parse(text);
  } catch (const std::exception& e) {
    return fail_line(std::string("txn: not JSON: ") + e.what(), exit_usage);
  }
  if (doc.is_object() && doc.contains("ops")) doc = doc["ops"];
  if (!doc.is_array()) return fail_line("txn: want an array of operations (or {\"ops\": [...]})", exit_usage);
  int n = 0;
  for (const auto& o : doc) {
    ++n;
    auto where = "txn: operation " + std::to_string(n);
    if (!o.is_object() || !o.contains("op") || !o["op"].is_string() || !o.contains("path") || !o["path"].is_string())
      return fail_line(where + ": want {\"op\": ..., \"path\": ...}", exit_usage);
    TxnOp t;
    t.path = o["path"].get<std::string>();
    auto kind = o["op"].get<std::string>();
    using K = TxnOp::Kind;
    if (kind == "check_version") t.kind = K::check_version;
    else if (kind == "check_exists") t.kind = K::check_exists;
    else if (kind == "check_not_exists") t.kind = K::check_not_exists;
    else if (kind == "check_value") t.kind = K::check_value;
    else if (kind == "create") t.kind = K::create;
    else if (kind == "set") t.kind = K::set;
    else if (kind == "remove" || kind == "rm") t.kind = K::remove;
    else return fail_line(where + ": unknown op '" + kind + "'", exit_usage);
    try {
      if (o.contains("value")) t.data = o["value"].get<std::string>();
      if (o.contains("value_base64") && !base64_decode(o["value_base64"].get<std::string>(), t.data))
        return fail_line(where + ": value_base64 is not base64", exit_usage);
      if (o.contains("version")) t.version = o["version"].get<std::int64_t>();
      t.create.ephemeral = o.value("ephemeral", false);
      t.create.sequential = o.value("sequential", false);
      t.create.container = o.value("container", false);
      t.create.ttl_ms = o.value("ttl_ms", std::int64_t{0});
      t.create.lease = o.value("lease", std::uint64_t{0});
    } catch (const std::exception& e) {
      return fail_line(where + ": " + e.what(), exit_usage);
    }
    if (t.kind == K::check_version && !o.contains("version"))
      return fail_line(where + ": check_version needs \"version\"", exit_usage);
    ops.push_back(std::move(t));
  }
  return exit_ok;
}

int cmd_txn(const std::string& file) {
  std::string text;
  if (int rc = read_value(ValueSource{std::nullopt, file.empty() ? "-" : file}, true, text); rc != 0) return rc;
  std::vector<TxnOp> ops;
  if (int rc = parse_txn(text, ops); rc != 0) return rc;
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  auto r = c->multi(ops);
  std::vector<Json> rows;
  for (std::size_t i = 0; i < r.results.size() && i < ops.size(); ++i) {
    Json j;
    j["op"] = i + 1;
    j["path"] = r.results[i].path.empty() ? ops[i].path : r.results[i].path;
    j["error"] = error_name(r.results[i].error);
    if (!r.results[i].data.empty()) put_value(j, r.results[i].data);
    rows.push_back(j);
  }
  if (!r.ok()) {
    // Name the operation that failed when the server says which.
    for (std::size_t i = 0; i < r.results.size() && i < ops.size(); ++i)
      if (!r.results[i].ok()) return fail_reply("txn operation " + std::to_string(i + 1) + " " + ops[i].path, r.results[i]);
    return fail_reply("txn", r);
  }
  if (emit_structured(g.format, rows, {"op", "path", "error"}, false)) return exit_ok;
  std::printf("committed %zu operations (index %llu)\n", ops.size(), static_cast<unsigned long long>(r.index));
  return exit_ok;
}

// --- Signals and child processes ----------------------------------------------------------------

sigset_t g_signals;  // SIGINT, SIGTERM, SIGCHLD: blocked in every thread, taken with sigtimedwait

void block_signals() {
  sigemptyset(&g_signals);
  sigaddset(&g_signals, SIGINT);
  sigaddset(&g_signals, SIGTERM);
  sigaddset(&g_signals, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &g_signals, nullptr);
}

// The next signal within `wait` (0: none).
int next_signal(Ms wait) {
  timespec ts{static_cast<time_t>(wait.count() / 1000), static_cast<long>((wait.count() % 1000) * 1000000)};
  int s = sigtimedwait(&g_signals, nullptr, &ts);
  return s < 0 ? 0 : s;
}

int wait_for_signal() {
  for (;;) {
    int s = next_signal(1s);
    if (s == SIGINT || s == SIGTERM) return exit_ok;
  }
}

pid_t spawn(const std::vector<std::string>& cmd, const std::vector<std::pair<std::string, std::string>>& env) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
  for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& a : cmd) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  std::fprintf(stderr, "tern: %s: %s\n", cmd[0].c_str(), std::strerror(errno));
  ::_exit(127);
}

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return exit_error;
}

// Supervises CMD: forwards SIGINT/SIGTERM, and when `lost()` says so, sends SIGTERM (SIGKILL
// after 5 s) and returns exit_lock_lost. Otherwise CMD's status. `check` runs about every second.
int supervise(pid_t child, const std::function<bool()>& lost, const std::string& what) {
  auto next_check = std::chrono::steady_clock::now() + 1s;
  for (;;) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) return status_code(status);
    int s = next_signal(100ms);
    if (s == SIGINT || s == SIGTERM) ::kill(child, s);
    if (std::chrono::steady_clock::now() < next_check) continue;
    next_check = std::chrono::steady_clock::now() + 1s;
    if (!lost()) continue;
    std::fprintf(stderr, "tern: %s: lost; stopping the command\n", what.c_str());
    ::kill(child, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (::waitpid(child, &status, WNOHANG) != child) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
        break;
      }
      next_signal(50ms);
    }
    return exit_lock_lost;
  }
}

// --- Coordination -------------------------------------------------------------------------------

struct LockFlags {
  bool shared = false, try_only = false;
  std::string timeout;
};

int cmd_lock(const std::string& name, const LockFlags& f, const std::vector<std::string>& cmd) {
  Ms wait = recipes::forever;
  if (!f.timeout.empty()) {
    auto t = parse_duration(f.timeout);
    if (!t) return fail_line("--timeout " + f.timeout + ": not a duration", exit_usage);
    wait = *t;
  }
  std::atomic<bool> expired{false};
  int code = 0;
  auto c = connect_or_report(code, [&](ConnectionState s) {
    if (s == ConnectionState::session_expired) expired = true;
  });
  if (!c) return code;
  recipes::LockGuard guard;
  if (f.shared) {
    recipes::ReadWriteLock l(*c, name);
    guard = f.try_only ? l.try_read_lock() : l.read_lock(wait);
  } else {
    recipes::Mutex l(*c, name);
    guard = f.try_only ? l.try_lock() : l.lock(wait);
  }
  if (!guard) {
    if (guard.error() == Error::busy || guard.error() == Error::timed_out)
      return fail_line("lock " + name + ": not acquired (" + error_name(guard.error()) + ")", exit_not_acquired);
    return fail_line("lock " + name + ": " + error_name(guard.error()), exit_code(guard.error()));
  }
  auto token = std::to_string(guard.token());
  if (cmd.empty()) {
    // No command: report the token and hold the lock until interrupted.
    Json j;
    j["lock"] = name;
    j["token"] = guard.token();
    if (!emit_structured(g.format, {j}, {"lock", "token"}, true)) std::printf("%s %s\n", name.c_str(), token.c_str());
    std::fflush(stdout);
    for (;;) {
      int s = next_signal(1s);
      if (s == SIGINT || s == SIGTERM) return exit_ok;
      if (expired) return fail_line("lock " + name + ": lost (session expired)", exit_lock_lost);
    }
  }
  pid_t child = spawn(cmd, {{"TERN_FENCING_TOKEN", token}, {"TERN_LOCK_NAME", name}});
  if (child < 0) return fail_line(std::string("fork: ") + std::strerror(errno), exit_error);
  auto lost = [&] {
    if (expired) return true;
    auto r = c->check_token(name, guard.token());
    // Only the server's "no" counts; an unreachable cluster is not a loss yet (the session may live).
    return r.error == Error::check_failed || r.error == Error::not_held || r.error == Error::unknown_session;
  };
  int rc = supervise(child, lost, "lock " + name);
  guard.release();
  return rc;
}

struct ElectFlags {
  bool observe = false;
};

int cmd_observe(const std::string& name) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  std::mutex mu;
  std::condition_variable cv;
  bool changed = true;
  auto w = c->watch(name, WatchKind::events, [&](const WatchEvent&) {
    std::lock_guard l(mu);
    changed = true;
    cv.notify_all();
  });
  if (!w.ok()) return fail_reply("elect " + name, w);
  std::string last = "\x01";
  for (;;) {
    int s = next_signal(0ms);
    if (s == SIGINT || s == SIGTERM) break;
    {
      std::unique_lock l(mu);
      cv.wait_for(l, 500ms, [&] { return changed; });
      changed = false;
    }
    auto r = c->leader(name, read_options());
    Json j;
    j["election"] = name;
    if (r.ok()) {
      put_value(j, r.data);
      j["token"] = r.id;
    } else if (r.error != Error::no_node) {
      continue;  // transient: ask again at the next event or tick
    }
    j["leader"] = r.ok();
    auto key = j.dump();
    if (key == last) continue;
    last = key;
    if (!emit_structured(g.format == Format::json ? Format::ndjson : g.format, {j}, {"election", "leader", "value", "token"},
                         true)) {
      if (r.ok()) std::printf("%s %s token %llu\n", name.c_str(), printable(r.data).c_str(), static_cast<unsigned long long>(r.id));
      else std::printf("%s (no leader)\n", name.c_str());
    }
    std::fflush(stdout);
  }
  c->unwatch(w.id);
  return exit_ok;
}

int cmd_elect(const std::string& name, const std::string& value, const ElectFlags& f, const std::vector<std::string>& cmd) {
  if (f.observe) return cmd_observe(name);
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  std::mutex mu;
  std::uint64_t elected = 0;
  bool lost_flag = false;
  auto election = std::make_unique<recipes::LeaderElection>(
      *c, name, value,
      [&](std::uint64_t token) {
        std::lock_guard l(mu);
        elected = token;
      },
      [&](std::uint64_t) {
        std::lock_guard l(mu);
        if (elected != 0) lost_flag = true;
      });
  // Wait to be elected (or interrupted).
  std::uint64_t token = 0;
  for (;;) {
    {
      std::lock_guard l(mu);
      token = elected;
      if (election->failed()) return fail_line("elect " + name + ": session expired", exit_unavailable);
    }
    if (token != 0) break;
    int s = next_signal(50ms);
    if (s == SIGINT || s == SIGTERM) return exit_ok;
  }
  Json j;
  j["election"] = name;
  put_value(j, value);
  j["token"] = token;
  if (!emit_structured(g.format, {j}, {"election", "value", "token"}, true))
    std::printf("elected %s token %llu\n", name.c_str(), static_cast<unsigned long long>(token));
  std::fflush(stdout);
  auto lost = [&] {
    std::lock_guard l(mu);
    return lost_flag;
  };
  if (cmd.empty()) {
    for (;;) {
      int s = next_signal(200ms);
      if (s == SIGINT || s == SIGTERM) return exit_ok;
      if (lost()) return fail_line("elect " + name + ": leadership lost", exit_lock_lost);
    }
  }
  pid_t child = spawn(cmd, {{"TERN_FENCING_TOKEN", std::to_string(token)}, {"TERN_ELECTION_NAME", name}, {"TERN_ELECTION_VALUE", value}});
  if (child < 0) return fail_line(std::string("fork: ") + std::strerror(errno), exit_error);
  int rc = supervise(child, lost, "elect " + name);
  election.reset();  // resigns
  return rc;
}

int cmd_check_token(const std::string& name, std::uint64_t token) {
  int code = 0;
  auto c = connect_or_report(code);
  if (!c) return code;
  auto r = c->check_token(name, token);
  Json j;
  j["lock"] = name;
  j["token"] = token;
  j["valid"] = r.ok();
  if (!r.ok() && r.error != Error::check_failed && r.error != Error::not_held) return fail_reply("lock " + name, r);
  if (!emit_structured(g.format, {j}, {"lock", "token", "valid"}, true))
    std::printf("%s\n", r.ok() ? "valid" : "stale");
  return r.ok() ? exit_ok : exit_conflict;
}

// --- Watch --------------------------------------------------------------------------------------

const char* event_name(WatchEvent::Type t) {
  switch (t) {
    case WatchEvent::Type::created: return "created";
    case WatchEvent::Type::deleted: return "deleted";
    case WatchEvent::Type::data_changed: return "changed";
    case WatchEvent::Type::children_changed: return "children";
    case WatchEvent::Type::session_expired: return "session_expired";
    case WatchEvent::Type::lease_expired: return "lease_expired";
    case WatchEvent::Type::lock_granted: return "lock_granted";
    case WatchEvent::Type::leader_changed: return "leader_changed";
    case WatchEvent::Type::resync: return "resync";
  }
  return "unknown";
}

int cmd_watch(const std::string& path, bool recursive, bool children, std::uint64_t count, std::uint64_t from) {
  std::atomic<bool> expired{false};
  int code = 0;
  auto c = connect_or_report(code, [&](ConnectionState s) {
    if (s == ConnectionState::session_expired) expired = true;
  });
  if (!c) return code;
  std::mutex mu;
  std::uint64_t printed = 0;
  auto r = c->watch(
      path, children ? WatchKind::children : WatchKind::exists,
      [&](const WatchEvent& e) {
        std::lock_guard l(mu);
        if (count != 0 && printed >= count) return;
        ++printed;
        Json j;
        j["index"] = e.index;
        j["type"] = event_name(e.type);
        j["path"] = e.path;
        if (e.type == WatchEvent::Type::created || e.type == WatchEvent::Type::data_changed) put_value(j, e.data);
        // json and ndjson: one object a line (an event stream has no end to close an array at).
        if (!emit_structured(g.format == Format::json ? Format::ndjson : g.format == Format::table ? Format::simple : g.format,
                             {j}, {}, true)) {
          std::string v = j.contains("value") ? " " + printable(e.data) : j.contains("value_base64") ? " <binary>" : "";
          std::printf("%llu %s %s%s\n", static_cast<unsigned long long>(e.index), event_name(e.type), e.path.c_str(), v.c_str());
        }
        std::fflush(stdout);
      },
      true, recursive, from);
  if (!r.ok()) return fail_reply(path, r);
  for (;;) {
    int s = next_signal(100ms);
    if (s == SIGINT || s == SIGTERM) break;
    if (expired) {
      c->unwatch(r.id);
      return fail_line(path + ": watch ended (session expired)", exit_unavailable);
    }
    std::lock_guard l(mu);
    if (count != 0 && printed >= count) break;
  }
  c->unwatch(r.id);
  return exit_ok;
}

// --- Leases -------------------------------------------------------------------------------------

int cmd_lease(const std::string& action, const std::string& arg, bool once) {
  int code = 0;
  if (action == "grant") {
    auto ttl = parse_duration(arg);
    if (!ttl || ttl->count() == 0) return fail_line("lease grant " + arg + ": TTL is not a duration (like 30s)", exit_usage);
    auto c = connect_or_report(code);
    if (!c) return code;
    auto r = c->grant_lease(*ttl);
    if (!r.ok()) return fail_reply("lease", r);
    Json j;
    j["lease"] = r.id;
    j["ttl_ms"] = ttl->count();
    if (!emit_structured(g.format, {j}, {"lease", "ttl_ms"}, true)) std::printf("%llu\n", static_cast<unsigned long long>(r.id));
    return exit_ok;
  }
  char* end = nullptr;
  auto id = std::strtoull(arg.c_str(), &end, 10);
  if (arg.empty() || *end != '\0') return fail_line("lease " + action + ": " + arg + " is not a lease id", exit_usage);
  auto c = connect_or_report(code);
  if (!c) return code;
  if (action == "ttl") {
    auto r = c->lease_ttl(id, read_options());
    if (!r.ok()) return fail_reply("lease " + arg, r);
    if (!emit_structured(g.format, {Json{{"lease", id}, {"ttl_ms", r.ttl_ms}}}, {"lease", "ttl_ms"}, true))
      std::printf("%llu ttl %lldms\n", static_cast<unsigned long long>(id), static_cast<long long>(r.ttl_ms));
    return exit_ok;
  }
  if (action == "revoke") {
    auto r = c->revoke_lease(id);
    if (!r.ok()) return fail_reply("lease " + arg, r);
    if (!emit_structured(g.format, {Json{{"lease", id}, {"revoked", true}}}, {"lease", "revoked"}, true))
      std::printf("revoked %llu\n", static_cast<unsigned long long>(id));
    return exit_ok;
  }
  // keep-alive: renews every third of the TTL the server reports, until interrupted.
  for (;;) {
    auto r = c->keep_alive_lease(id);
    if (!r.ok()) return fail_reply("lease " + arg, r);
    if (!emit_structured(g.format == Format::json ? Format::ndjson : g.format, {Json{{"lease", id}, {"ttl_ms", r.ttl_ms}}},
                         {"lease", "ttl_ms"}, true))
      std::printf("%llu ttl %lldms\n", static_cast<unsigned long long>(id), static_cast<long long>(r.ttl_ms));
    std::fflush(stdout);
    if (once) return exit_ok;
    auto until = std::chrono::steady_clock::now() + Ms(std::max<std::int64_t>(r.ttl_ms / 3, 100));
    while (std::chrono::steady_clock::now() < until) {
      int s = next_signal(100ms);
      if (s == SIGINT || s == SIGTERM) return exit_ok;
    }
  }
}

// --- Cluster (admin RPC) ------------------------------------------------------------------------

struct NodeView {
  std::string endpoint;
  std::optional<admin::Status> status;
  std::string error;
};

std::vector<NodeView> poll_nodes(admin::AdminClient& a) {
  std::vector<NodeView> out;
  for (const auto& e : g.options.endpoints) {
    NodeView v{e, std::nullopt, {}};
    auto s = a.status(e);
    if (s) v.status = *s;
    else v.error = s.error();
    out.push_back(std::move(v));
  }
  return out;
}

std::unique_ptr<admin::AdminClient> admin_or_report(int& code) {
  auto a = admin::AdminClient::make(admin_tls(), g.request_timeout);
  if (!a) {
    code = fail_line(a.error(), exit_usage);
    return nullptr;
  }
  return std::move(*a);
}

int cmd_status() {
  int code = 0;
  auto a = admin_or_report(code);
  if (!a) return code;
  auto nodes = poll_nodes(*a);
  std::uint64_t commit = 0;
  for (const auto& n : nodes)
    if (n.status) commit = std::max(commit, n.status->commit);
  std::vector<Json> rows;
  bool any = false;
  for (const auto& n : nodes) {
    Json j;
    j["endpoint"] = n.endpoint;
    if (n.status) {
      any = true;
      const auto& s = *n.status;
      j["id"] = s.id;
      j["role"] = s.role;
      j["term"] = s.term;
      j["leader"] = s.leader;
      j["commit"] = s.commit;
      j["applied"] = s.applied;
      j["last"] = s.last;
      j["snapshot"] = s.snapshot;
      j["lag"] = commit - std::min(commit, s.applied);
      j["health"] = s.leader != 0 ? "ok" : "no leader";
    } else {
      j["health"] = "unreachable";
      j["error"] = n.error;
    }
    rows.push_back(j);
  }
  emit_structured(g.format == Format::simple || g.format == Format::raw ? Format::table : g.format, rows,
                  {"endpoint", "id", "role", "term", "leader", "commit", "applied", "lag", "health"}, false);
  return any ? exit_ok : fail_line(g.endpoints + ": unavailable (no node answered)", exit_unavailable);
}

// The endpoint of the node that leads, by asking every endpoint; empty if none knows.
std::string leader_endpoint(const std::vector<NodeView>& nodes) {
  for (const auto& n : nodes)
    if (n.status && n.status->role == "leader") return n.endpoint;
  return {};
}

int admin_outcome(const std::string& what, const Result<admin::Outcome, std::string>& r) {
  if (!r) return fail_line(what + ": " + r.error(), exit_unavailable);
  if (!r->ok()) {
    int code = r->code == "invalid" ? exit_usage
               : r->code == "conf_change_pending" || r->code == "transfer_in_progress" || r->code == "busy" ? exit_conflict
                                                                                                             : exit_unavailable;
    return fail_line(what + ": " + r->code + (r->message.empty() ? "" : " (" + r->message + ")"), code);
  }
  Json j{{"result", "ok"}, {"index", r->index}, {"term", r->term}};
  if (!emit_structured(g.format, {j}, {"result", "index", "term"}, true))
    std::printf("ok (index %llu, term %llu)\n", static_cast<unsigned long long>(r->index), static_cast<unsigned long long>(r->term));
  return exit_ok;
}

int cmd_member(const std::string& action, std::uint64_t id, const std::string& peer, bool learner) {
  int code = 0;
  auto a = admin_or_report(code);
  if (!a) return code;
  auto nodes = poll_nodes(*a);
  if (action == "list") {
    // The leader's view has match indices; any answering node's otherwise.
    const NodeView* best = nullptr;
    for (const auto& n : nodes)
      if (n.status && (best == nullptr || n.status->role == "leader")) best = &n;
    if (best == nullptr) return fail_line(g.endpoints + ": unavailable (no node answered)", exit_unavailable);
    std::vector<Json> rows;
    for (const auto& m : best->status->members)
      rows.push_back(Json{{"id", m.id},
                          {"peer_address", m.address},
                          {"role", m.voter ? "voter" : "learner"},
                          {"leader", m.id == best->status->leader},
                          {"match_index", m.match_index}});
    emit_structured(g.format == Format::simple || g.format == Format::raw ? Format::table : g.format, rows,
                    {"id", "peer_address", "role", "leader", "match_index"}, false);
    return exit_ok;
  }
  auto leader = leader_endpoint(nodes);
  if (leader.empty()) return fail_line("member " + action + ": no leader known to " + g.endpoints, exit_unavailable);
  auto what = "member " + action + " " + std::to_string(id);
  if (action == "add") return admin_outcome(what, a->add_member(leader, id, peer, learner));
  if (action == "promote") return admin_outcome(what, a->promote_member(leader, id));
  return admin_outcome(what, a->remove_member(leader, id));
}

int cmd_transfer(std::uint64_t to) {
  int code = 0;
  auto a = admin_or_report(code);
  if (!a) return code;
  auto leader = leader_endpoint(poll_nodes(*a));
  if (leader.empty()) return fail_line("leader transfer: no leader known to " + g.endpoints, exit_unavailable);
  return admin_outcome("leader transfer " + std::to_string(to), a->transfer_leadership(leader, to));
}

// --- Snapshot -----------------------------------------------------------------------------------

// Writes every byte or says why (one line).
bool write_all(int fd, std::string_view bytes, const std::string& file, std::string& why) {
  while (!bytes.empty()) {
    auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      why = file + ": " + std::strerror(errno);
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string directory_of(const std::string& file) {
  auto slash = file.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : file.substr(0, slash);
}

// Progress on stderr: rewritten in place on a terminal, else one line per 10% (and the end).
struct Progress {
  bool on = false, tty = false;
  int last_decile = -1;
  void operator()(std::uint64_t done, std::uint64_t total) {
    if (!on) return;
    int pct = total == 0 ? 100 : static_cast<int>(done * 100 / total);
    if (tty) {
      std::fprintf(stderr, "\rsnapshot: %llu/%llu bytes (%d%%)", static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(total), pct);
      if (done >= total) std::fprintf(stderr, "\n");
    } else if (pct / 10 != last_decile || done >= total) {
      last_decile = pct / 10;
      std::fprintf(stderr, "snapshot: %llu/%llu bytes (%d%%)\n", static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(total), pct);
    }
    std::fflush(stderr);
  }
};

// snapshot save FILE: the leader's snapshot (or the first answering node's when no leader is
// known), pulled in chunks into FILE.part, fsynced, verified (header and data checksums, the
// same check ternutl and the node make), renamed into place and the directory fsynced: FILE is
// either the complete verified snapshot or left as it was.
int cmd_snapshot_save(const std::string& file, bool progress_flag) {
  int code = 0;
  auto a = admin_or_report(code);
  if (!a) return code;
  auto nodes = poll_nodes(*a);
  std::string from = leader_endpoint(nodes);
  for (const auto& n : nodes)
    if (from.empty() && n.status) from = n.endpoint;
  if (from.empty()) return fail_line(g.endpoints + ": unavailable (no node answered)", exit_unavailable);
  auto tmp = file + ".part";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail_line(tmp + ": " + std::strerror(errno), exit_error);
  auto abandon = [&](const std::string& why, int rc) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return fail_line(why, rc);
  };
  Progress progress{progress_flag || ::isatty(2) != 0, ::isatty(2) != 0};
  auto r = a->download_snapshot(
      from, 1 << 20, [&](std::string_view chunk, std::string& why) { return write_all(fd, chunk, tmp, why); },
      [&](std::uint64_t done, std::uint64_t total) { progress(done, total); });
  if (!r) return abandon("snapshot save: " + r.error(), exit_unavailable);
  if (!r->outcome.ok())
    return abandon("snapshot save: " + from + ": " + r->outcome.code +
                       (r->outcome.message.empty() ? "" : " (" + r->outcome.message + ")"),
                   r->outcome.code == "busy" ? exit_conflict : exit_unavailable);
  if (::fsync(fd) != 0) return abandon(tmp + ": fsync: " + std::strerror(errno), exit_error);
  ::close(fd);
  fd = -1;
  storage::SnapshotStore store(directory_of(file));
  auto v = store.verify(tmp);
  if (!v) return abandon("snapshot save: the received file does not verify: " + v.error().message, exit_error);
  if (v->meta.index.value != r->outcome.index || v->meta.term.value != r->outcome.term)
    return abandon("snapshot save: the received file is another snapshot than announced", exit_error);
  if (::rename(tmp.c_str(), file.c_str()) != 0) return abandon(file + ": rename: " + std::strerror(errno), exit_error);
  // The rename is durable only once the directory is synced.
  int dfd = ::open(directory_of(file).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    if (dfd >= 0) ::close(dfd);
    return fail_line(directory_of(file) + ": fsync: " + std::strerror(errno), exit_error);
  }
  ::close(dfd);
  Json j{{"file", file},     {"index", r->outcome.index}, {"term", r->outcome.term},
         {"bytes", r->size}, {"from", from},              {"voters", v->meta.conf.voters.size()}};
  if (!emit_structured(g.format, {j}, {"file", "index", "term", "bytes", "from"}, true))
    std::printf("saved %s: snapshot at index %llu term %llu, %llu bytes, from %s\n", file.c_str(),
                static_cast<unsigned long long>(r->outcome.index), static_cast<unsigned long long>(r->outcome.term),
                static_cast<unsigned long long>(r->size), from.c_str());
  return exit_ok;
}

// --- Command line -------------------------------------------------------------------------------

int run_shell();

const char* kExitCodes =
    "Exit codes: 0 ok, 1 other error, 2 usage (bad flag, argument, path or value), 3 not found,\n"
    "4 conflict (version or check failed, exists, not empty, stale token), 5 unavailable or timed out,\n"
    "6 lock or leadership lost while CMD ran, 7 lock not acquired (--try, --timeout);\n"
    "lock/elect -- CMD exit with CMD's status (128+N if killed by signal N). See docs/cli.md.";

int dispatch(std::vector<std::string> args, bool in_shell) {
  // `lock NAME [flags] -- CMD...` and `elect NAME [VALUE] -- CMD...`: everything after the first
  // "--" that follows the subcommand is the command, untouched by the parser.
  std::vector<std::string> cmd;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--") continue;
    bool runner = false;
    for (std::size_t k = 0; k < i; ++k) runner = runner || args[k] == "lock" || args[k] == "elect";
    if (runner) {
      cmd.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      args.resize(i);
    }
    break;
  }

  CLI::App app{"tern: the command-line client of a tern cluster (docs/cli.md)", "tern"};
  app.footer(kExitCodes);
  app.require_subcommand(0, 1);  // none: the interactive shell
  app.fallthrough();
  app.add_option("--endpoints", g.endpoints,
                 "comma-separated HOST:PORT client ports [env TERN_ENDPOINTS; default "
                 "127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203, the cluster of scripts/cluster.sh, with its "
                 "tls/client.env from TERN_CLUSTER_DIR or the newest /tmp/tern-cluster.*]")
      ->type_name("LIST");
  app.add_option("--timeout", g.timeout, "per-request deadline, retries included (like 500ms, 10s)")
      ->type_name("DURATION")
      ->capture_default_str();
  app.add_option("--session-timeout", g.session_timeout, "session timeout: ephemerals, locks and leadership outlive a dead tern this long")
      ->type_name("DURATION")
      ->capture_default_str();
  app.add_option("--consistency", g.consistency, "reads: linearizable (ReadIndex) or serializable (the node's state, maybe stale)")
      ->type_name("MODE")
      ->capture_default_str();
  app.add_option("-o,--output", g.output, "simple | table | json | ndjson | raw (value bytes exactly)")
      ->type_name("FORMAT")
      ->capture_default_str();
  std::function<int()> action;

  std::string path, name;
  ValueSource value;
  bool flag_stat = false, recursive = false, long_form = false, children = false, once = false, learner = false;
  std::int64_t version = -1;
  std::uint64_t count = 0, id = 0, token = 0, from_index = 0;
  CreateFlags cf;
  LockFlags lf;
  ElectFlags ef;
  std::string file, text, elect_value, lease_action, lease_arg, member_action, peer;

  auto sub = [&](const char* n, const char* help) {
    auto* s = app.add_subcommand(n, help);
    s->fallthrough();
    return s;
  };
  auto path_arg = [&](CLI::App* s) { s->add_option("PATH", path, "absolute node path, like /config/db")->required()->type_name(""); };
  auto value_args = [&](CLI::App* s) {
    s->add_option("VALUE", value.arg, "the value's bytes (else --file, else stdin when not a terminal)")->type_name("");
    s->add_option("-f,--file", value.file, "read the value from FILE (- for stdin)")->type_name("FILE");
  };

  auto* get = sub("get", "print a node's value");
  path_arg(get);
  get->add_flag("--stat", flag_stat, "print the node's stat too");
  get->callback([&] { action = [&] { return cmd_get(path, flag_stat); }; });

  for (const char* n : {"put", "set"}) {
    auto* s = sub(n, "set a node's value, creating the node if it does not exist");
    path_arg(s);
    value_args(s);
    s->add_option("--version", version, "only if the node's version is V (compare-and-set; never creates)")->type_name("V");
    s->callback([&] { action = [&] { return cmd_put(path, value, version); }; });
  }

  auto* create = sub("create", "create a node (ephemeral ones live until tern is interrupted)");
  path_arg(create);
  value_args(create);
  create->add_flag("-e,--ephemeral", cf.ephemeral, "deleted when this tern's session ends; tern holds it until interrupted");
  create->add_flag("-s,--sequential", cf.sequential, "append a unique increasing number to the name (printed)");
  create->add_flag("--container", cf.container, "deleted by the server once its last child is gone");
  create->add_option("--ttl", cf.ttl, "deleted when not modified for this long")->type_name("DURATION");
  create->add_option("--lease", cf.lease, "attach to lease ID (deleted when it ends)")->type_name("ID");
  create->add_flag("-p,--parents", cf.parents, "create missing ancestors (persistent, empty)");
  create->callback([&] { action = [&] { return cmd_create(path, value, cf); }; });

  auto* rm = sub("rm", "delete a node");
  path_arg(rm);
  rm->add_flag("-r,--recursive", recursive, "delete its subtree too (one atomic server operation)");
  rm->add_option("--version", version, "only if the node's version is V")->type_name("V");
  rm->callback([&] { action = [&] { return cmd_rm(path, recursive, version); }; });

  auto* ls = sub("ls", "list a node's children (all pages)");
  path_arg(ls);
  ls->add_flag("-l,--long", long_form, "with version, size, child count, owner and modified index");
  ls->add_flag("-r,--recursive", recursive, "the whole subtree, as paths");
  ls->callback([&] { action = [&] { return cmd_ls(path, long_form, recursive); }; });

  auto* st = sub("stat", "print a node's stat");
  path_arg(st);
  st->callback([&] { action = [&] { return cmd_stat(path); }; });

  auto* tree = sub("tree", "print a subtree with its values");
  path_arg(tree);
  tree->callback([&] { action = [&] { return cmd_tree(path); }; });

  auto* txn = sub("txn", "run a transaction: checks and operations as JSON (docs/cli.md), all or nothing");
  txn->add_option("FILE", file, "the JSON document (default: stdin)")->type_name("");
  txn->callback([&] { action = [&] { return cmd_txn(file); }; });

  auto* watch = sub("watch", "print each change of a node (or its subtree) as one line, until interrupted");
  path_arg(watch);
  watch->add_flag("-r,--recursive", recursive, "every node of the subtree");
  watch->add_flag("--children", children, "changes of its child list");
  watch->add_option("--count", count, "exit after N events")->type_name("N");
  watch->add_option("--from", from_index, "first every change after log INDEX (the index a reply or event showed), then on")
      ->type_name("INDEX");
  watch->callback([&] { action = [&] { return cmd_watch(path, recursive, children, count, from_index); }; });

  auto* lock = sub("lock", "hold lock NAME while CMD runs: tern lock NAME [flags] -- CMD ARGS...");
  lock->add_option("NAME", name, "the lock's name (not a node path)")->type_name("")->required();
  lock->add_flag("--shared", lf.shared, "a shared (read) lock: holders share it, a writer waits");
  lock->add_flag("--try", lf.try_only, "do not wait: exit 7 if it is taken");
  lock->add_option("--timeout", lf.timeout, "wait at most this long, then exit 7 (default: forever)")->type_name("DURATION");
  lock->footer("CMD gets TERN_FENCING_TOKEN and TERN_LOCK_NAME; tern exits with CMD's status, or 6 after signalling "
               "CMD if the lock was lost. Without CMD: prints the token and holds the lock until interrupted.");
  lock->callback([&] { action = [&] { return cmd_lock(name, lf, cmd); }; });

  auto* elect = sub("elect", "campaign in election NAME: tern elect NAME [VALUE] [-- CMD ARGS...]");
  elect->add_option("NAME", name, "the election's name")->type_name("")->required();
  elect->add_option("VALUE", elect_value, "this candidate's value, shown to observers")->type_name("");
  elect->add_flag("--observe", ef.observe, "do not campaign: print the leader at each change");
  elect->footer("Once leader: prints it and holds leadership until interrupted, or runs CMD (with TERN_FENCING_TOKEN, "
                "TERN_ELECTION_NAME, TERN_ELECTION_VALUE) and exits with its status; 6 if leadership was lost.");
  elect->callback([&] { action = [&] { return cmd_elect(name, elect_value, ef, cmd); }; });

  auto* lease = sub("lease", "leases: grant TTL | keep-alive ID | revoke ID | ttl ID");
  lease->add_option("ACTION", lease_action, "grant, keep-alive, revoke or ttl")->type_name("")->required()->check(CLI::IsMember({"grant", "keep-alive", "revoke", "ttl"}));
  lease->add_option("ARG", lease_arg, "grant: the TTL (like 30s); else the lease id")->type_name("")->required();
  lease->add_flag("--once", once, "keep-alive: renew once and exit");
  lease->callback([&] { action = [&] { return cmd_lease(lease_action, lease_arg, once); }; });

  auto* check = sub("check-token", "is TOKEN the current fencing token of lock NAME? exit 0 valid, 4 stale");
  check->add_option("NAME", name, "the lock's name")->type_name("")->required();
  check->add_option("TOKEN", token, "the fencing token")->type_name("")->required();
  check->callback([&] { action = [&] { return cmd_check_token(name, token); }; });

  auto* status = sub("status", "every member: role, term, leader, indices, lag, health");
  status->callback([&] { action = [&] { return cmd_status(); }; });

  auto* member = sub("member", "membership: list | add ID PEER_HOST:PORT [--learner] | promote ID | remove ID");
  member->add_option("ACTION", member_action, "list, add, promote or remove")->type_name("")->required()->check(CLI::IsMember({"list", "add", "promote", "remove"}));
  member->add_option("ID", id, "the member's node id")->type_name("");
  member->add_option("PEER", peer, "add: the new member's peer address HOST:PORT")->type_name("");
  member->add_flag("--learner", learner, "add: as a learner (no vote), to promote once caught up");
  member->callback([&] {
    action = [&] {
      if (member_action != "list" && id == 0) return fail_line("member " + member_action + ": missing ID", exit_usage);
      if (member_action == "add" && peer.empty()) return fail_line("member add: missing PEER_HOST:PORT", exit_usage);
      return cmd_member(member_action, id, peer, learner);
    };
  });

  auto* leader = sub("leader", "leader transfer ID: hand leadership to member ID");
  std::string leader_action;
  leader->add_option("ACTION", leader_action, "transfer")->type_name("")->required()->check(CLI::IsMember({"transfer"}));
  leader->add_option("ID", id, "the member to lead")->type_name("")->required();
  leader->callback([&] { action = [&] { return cmd_transfer(id); }; });

  auto* snapshot = sub("snapshot", "snapshot save FILE: a consistent snapshot of the cluster's state, from a live node");
  std::string snapshot_action;
  bool progress = false;
  snapshot->add_option("ACTION", snapshot_action, "save")->type_name("")->required()->check(CLI::IsMember({"save"}));
  snapshot->add_option("FILE", file, "where to write it (FILE.part until complete and verified)")->type_name("")->required();
  snapshot->add_flag("--progress", progress, "bytes done/total on stderr (the default when stderr is a terminal)");
  snapshot->footer("From the leader (else the first node that answers): its newest snapshot if it holds everything "
                   "the node applied, else one taken now. Restore offline with ternutl restore (docs/operations.md).");
  snapshot->callback([&] { action = [&] { return cmd_snapshot_save(file, progress); }; });

  auto* shell = sub("shell", "an interactive shell (also: tern with no command): history, completion, one session");
  shell->callback([&] { action = [&] { return in_shell ? fail_line("already in the shell", exit_usage) : run_shell(); }; });

  // Every subcommand's --help lists the global flags too (CLI11 shows only a command's own), from
  // the options themselves so the text cannot drift, then the exit codes.
  std::string globals = "Global flags (before or after the command; tern --help):\n";
  for (const auto* o : app.get_options()) {
    if (o->get_name() == "--help") continue;
    std::string names = o->get_name(false, true);
    std::string line = "  " + names + " " + o->get_type_name();
    line.resize(std::max<std::size_t>(line.size() + 1, 34), ' ');
    line += o->get_description();
    if (!o->get_default_str().empty()) line += " [" + o->get_default_str() + "]";
    globals += line + "\n";
  }
  for (auto* s : app.get_subcommands([](CLI::App*) { return true; })) {
    std::string own = s->get_footer();
    s->footer((own.empty() ? "" : own + "\n\n") + globals + "\n" + kExitCodes);
  }

  // CLI11 parses argv in reverse from a vector.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    return fail_line(what + " (tern --help)", exit_usage);
  }
  if (!cmd.empty() && lock->parsed() == false && elect->parsed() == false)
    return fail_line("'--' CMD only follows lock or elect", exit_usage);
  if (int rc = resolve_globals(); rc != 0) return rc;
  if (!action) {
    if (in_shell) return fail_line("no command (help: --help)", exit_usage);
    return run_shell();
  }
  return action();
}

// One line of the shell: words split like a shell does (quotes, backslash), then the command.
int run_shell() {
  int code = 0;
  auto client = connect_or_report(code, [](ConnectionState s) {
    if (s == ConnectionState::session_expired) std::fprintf(stderr, "tern: the shell's session expired: restart the shell\n");
  });
  if (!client) return code;
  g_shell_client = client;
  const Globals saved = g;
  ShellHooks hooks;
  hooks.run = [&](const std::vector<std::string>& words) {
    g = saved;
    while (next_signal(Ms(0)) != 0) {
    }  // a Ctrl-C typed at the prompt must not end the next command
    int rc = dispatch(words, true);
    std::fflush(stdout);
    return rc;
  };
  hooks.children = [&](const std::string& dir) {
    std::vector<std::string> names;
    Reply failed;
    if (all_children(*client, dir, names, failed) != Error::ok) names.clear();
    return names;
  };
  int rc = shell_loop(hooks);
  g_shell_client.reset();
  return rc;
}

int run(int argc, char** argv) { return dispatch(std::vector<std::string>(argv + 1, argv + argc), false); }

}  // namespace
}  // namespace tern::cli

int main(int argc, char** argv) {
  // Before any thread starts, so the library's threads inherit the mask and signals reach
  // sigtimedwait (clean exit on SIGINT/SIGTERM: the session closes, ephemerals and locks go).
  tern::cli::block_signals();
  ::signal(SIGPIPE, SIG_IGN);
  return tern::cli::run(argc, argv);
}
