// The `tern` command-line tool (issue 12, docs/cli.md): the real binary against real 3-node
// clusters (mutual TLS on the client ports, as scripts/cluster.sh runs them): commands, output
// formats, exit codes, lock and elect around a command, watch across a kill -9 of its server.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include "tests/cluster/harness.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

std::string bin(const char* var, const char* fallback) {
  const char* b = std::getenv(var);
  return b != nullptr ? b : fallback;
}

std::string slurp(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary);
  out << bytes;
}

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

struct Outcome {
  int code = -1;  // exit status; 128+N if killed by signal N; -1 if it did not exit in time
  std::string out, err;
};

// Runs tern (or any command) with the cluster's endpoints and TLS in its environment; stdout and
// stderr go to files in `dir`. Background processes are started by pid and killed by pid.
class Tern {
 public:
  Tern(Cluster& c, std::string dir) : c_(c), dir_(std::move(dir)) {}

  std::string endpoints(std::uint64_t first = 0) const {
    std::string e;
    auto add = [&](std::uint64_t id) {
      if (!e.empty()) e += ',';
      e += "127.0.0.1:" + std::to_string(c_.node(id).client_port);
    };
    if (first != 0) add(first);
    for (auto id : c_.ids())
      if (id != first) add(id);
    return e;
  }

  pid_t start(const std::vector<std::string>& args, const std::string& name, std::uint64_t first = 0,
              const std::string& input = "", bool raw_command = false) {
    auto in = dir_ + "/" + name + ".in";
    write_file(in, input);
    auto eps = endpoints(first);
    const auto& tls = c_.client_tls();
    pid_t pid = fork();
    if (pid == 0) {
      int fd_in = ::open(in.c_str(), O_RDONLY);
      int fd_out = ::open((dir_ + "/" + name + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int fd_err = ::open((dir_ + "/" + name + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd_in, 0);
      ::dup2(fd_out, 1);
      ::dup2(fd_err, 2);
      ::setenv("TERN_ENDPOINTS", eps.c_str(), 1);
      ::setenv("TERN_TLS_CA", tls.ca_file.c_str(), 1);
      ::setenv("TERN_TLS_CERT", tls.cert_file.c_str(), 1);
      ::setenv("TERN_TLS_KEY", tls.key_file.c_str(), 1);
      ::chdir(dir_.c_str());
      std::vector<std::string> full;
      if (!raw_command) full.push_back(bin("TERN_BIN", TERN_CLI_BIN));
      full.insert(full.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : full) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(126);
    }
    return pid;
  }

  Outcome wait(pid_t pid, const std::string& name, std::chrono::milliseconds timeout = 15s) {
    Outcome r;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    r.out = slurp(dir_ + "/" + name + ".out");
    r.err = slurp(dir_ + "/" + name + ".err");
    return r;
  }

  Outcome operator()(const std::vector<std::string>& args, const std::string& input = "", std::uint64_t first = 0) {
    auto name = "run" + std::to_string(++runs_);
    return wait(start(args, name, first, input), name);
  }

  std::string out_of(const std::string& name) const { return slurp(dir_ + "/" + name + ".out"); }
  std::string file(const std::string& name) const { return slurp(dir_ + "/" + name); }
  const std::string& dir() const { return dir_; }

 private:
  Cluster& c_;
  std::string dir_;
  int runs_ = 0;
};

// Polls `pred` every 20 ms for at most `timeout`.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.raw_state_machine = false;
    cluster_ = std::make_unique<Cluster>(bin("TERND_BIN", "ternd"), o);
    cluster_->start_all();
    ASSERT_NE(cluster_->wait_for_leader(10s), 0u);
    char tmpl[] = "/tmp/tern-cli-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    tern_ = std::make_unique<Tern>(*cluster_, dir_);
  }
  void TearDown() override {
    tern_.reset();
    cluster_.reset();
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  Tern& tern() { return *tern_; }
  Cluster& cluster() { return *cluster_; }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<Tern> tern_;
  std::string dir_;
};

// One line on stderr, naming the subject.
void expect_one_line(const Outcome& r, const std::string& subject) {
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(subject), std::string::npos) << r.err;
  EXPECT_EQ(r.err.rfind("tern: ", 0), 0u) << r.err;
}

TEST_F(CliTest, DataCommandsPrintEveryFormatAndExitWithTheDocumentedCodes) {
  auto& t = tern();
  auto r = t({"put", "/config", "v1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("created /config"), std::string::npos) << r.out;
  r = t({"put", "/config", "v2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("updated /config"), std::string::npos) << r.out;
  r = t({"get", "/config"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "v2\n");
  r = t({"get", "/config", "-o", "raw"});
  EXPECT_EQ(r.out, "v2");
  r = t({"get", "/config", "--stat", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = Json::parse(r.out);
  EXPECT_EQ(j["value"], "v2");
  EXPECT_EQ(j["stat"]["version"], 1);
  // Compare-and-set: the wrong version conflicts (4), the right one succeeds.
  r = t({"set", "/config", "v3", "--version", "0"});
  EXPECT_EQ(r.code, 4);
  expect_one_line(r, "/config");
  EXPECT_NE(r.err.find("bad_version"), std::string::npos);
  r = t({"set", "/config", "--version", "1", "--file", "-"}, "v3");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(t({"get", "/config"}).out, "v3\n");
  // Not found: 3, one line naming the path.
  r = t({"get", "/nope"});
  EXPECT_EQ(r.code, 3);
  expect_one_line(r, "/nope");
  EXPECT_NE(r.err.find("no_node"), std::string::npos);
  // create: exists (4), --parents, --sequential prints the actual path.
  EXPECT_EQ(t({"create", "/config", "x"}).code, 4);
  EXPECT_EQ(t({"create", "/app/a", "1"}).code, 3);  // no parent
  r = t({"create", "--parents", "/app/a", "1"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = t({"create", "-s", "/app/job-", "j", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto seq = Json::parse(r.out)["path"].get<std::string>();
  EXPECT_EQ(seq.rfind("/app/job-", 0), 0u);
  EXPECT_GT(seq.size(), std::string("/app/job-").size());
  EXPECT_EQ(t({"create", "/app/b", "2"}).code, 0);
  // ls in every format; paging is the tool's business (2,500 children > one page of 1,000).
  r = t({"ls", "/app"});
  EXPECT_EQ(r.out, "a\nb\n" + seq.substr(5) + "\n");
  r = t({"ls", "/app", "-o", "ndjson"});
  EXPECT_EQ(lines(r.out), 3u);
  EXPECT_EQ(Json::parse(r.out.substr(0, r.out.find('\n')))["name"], "a");
  r = t({"ls", "-l", "/app", "-o", "table"});
  EXPECT_EQ(r.out.rfind("NAME", 0), 0u) << r.out;
  EXPECT_EQ(lines(r.out), 4u);
  r = t({"ls", "-r", "/", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::set<std::string> paths;
  for (const auto& row : Json::parse(r.out)) paths.insert(row["path"].get<std::string>());
  EXPECT_TRUE(paths.count("/app/a") && paths.count("/config")) << r.out;
  r = t({"stat", "/app", "-o", "json"});
  EXPECT_EQ(Json::parse(r.out)["stat"]["child_count"], 3);
  r = t({"tree", "/app"});
  EXPECT_NE(r.out.find("  a = 1\n"), std::string::npos) << r.out;
  // txn: all or nothing; a failed check is 4 and changes nothing.
  r = t({"txn"}, R"([{"op":"check_version","path":"/config","version":2},{"op":"set","path":"/app/a","value":"tx"},)"
                 R"({"op":"create","path":"/app/c","value":"new"}])");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(t({"get", "/app/c"}).out, "new\n");
  r = t({"txn"}, R"({"ops":[{"op":"check_version","path":"/config","version":9},{"op":"remove","path":"/app/a"}]})");
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_EQ(t({"get", "/app/a"}).out, "tx\n");
  r = t({"txn"}, "not json");
  EXPECT_EQ(r.code, 2);
  // rm: not empty (4), --recursive, --version.
  EXPECT_EQ(t({"rm", "/app"}).code, 4);
  EXPECT_EQ(t({"rm", "/config", "--version", "7"}).code, 4);
  EXPECT_EQ(t({"rm", "/config", "--version", "2"}).code, 0);
  EXPECT_EQ(t({"rm", "-r", "/app"}).code, 0);
  EXPECT_EQ(t({"get", "/app/a"}).code, 3);
  // Paging: more children than one page (1,000), created by two transactions (at most 1,024
  // operations each).
  ASSERT_EQ(t({"create", "/many"}).code, 0);
  for (int half = 0; half < 2; ++half) {
    std::string ops = "[";
    for (int i = 0; i < 750; ++i)
      ops += std::string(i ? "," : "") + R"({"op":"create","path":"/many/n)" + std::to_string(10000 + half * 750 + i) + "\"}";
    ops += "]";
    r = t({"txn", "-o", "ndjson"}, ops);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(lines(r.out), 750u);
  }
  r = t({"ls", "/many"});
  EXPECT_EQ(lines(r.out), 1500u);
}

TEST_F(CliTest, BinaryValuesRoundTripThroughRawAndJsonUsesBase64) {
  auto& t = tern();
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  bytes += std::string("\0\xff\n", 3);
  write_file(t.dir() + "/blob", bytes);
  ASSERT_EQ(t({"put", "/blob", "--file", "blob"}).code, 0);
  auto r = t({"get", "/blob", "-o", "raw"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, bytes);
  r = t({"get", "/blob", "-o", "json"});
  auto j = Json::parse(r.out);
  EXPECT_FALSE(j.contains("value"));
  ASSERT_TRUE(j.contains("value_base64"));
  // And stdin: the same bytes in, the same bytes out.
  ASSERT_EQ(t({"put", "/blob2"}, bytes).code, 0);
  EXPECT_EQ(t({"get", "/blob2", "-o", "raw"}).out, bytes);
  // UTF-8 stays a string.
  ASSERT_EQ(t({"put", "/utf", "h\xc3\xa9llo"}).code, 0);
  EXPECT_EQ(Json::parse(t({"get", "/utf", "-o", "json"}).out)["value"], "h\xc3\xa9llo");
}

TEST_F(CliTest, BadInputGivesTheDocumentedCodeAndOneLine) {
  auto& t = tern();
  auto r = t({"get", "no-slash"});
  EXPECT_EQ(r.code, 2);
  expect_one_line(r, "no-slash");
  r = t({"get"});
  EXPECT_EQ(r.code, 2);
  expect_one_line(r, "PATH");
  r = t({"get", "/x", "--frobnicate"});
  EXPECT_EQ(r.code, 2);
  expect_one_line(r, "--frobnicate");
  r = t({"nosuchcommand"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  r = t({"get", "/x", "-o", "yaml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  write_file(t.dir() + "/big", std::string(2 << 20, 'x'));
  r = t({"put", "/big", "--file", "big"});
  EXPECT_EQ(r.code, 2);
  expect_one_line(r, "/big");
  EXPECT_NE(r.err.find("too_large"), std::string::npos) << r.err;
  r = t({"--endpoints", "127.0.0.1:1", "--timeout", "1s", "get", "/x"});
  EXPECT_EQ(r.code, 5);
  expect_one_line(r, "127.0.0.1:1");
  r = t({"--endpoints", "127.0.0.1:1", "--timeout", "1s", "status"});
  EXPECT_EQ(r.code, 5);
  r = t({"lock", "L", "--try", "--", "true", "--frobnicate"});  // flags after -- belong to CMD
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(CliTest, LockRunsContendersInOrderWithIncreasingTokensAndPassesTheStatusThrough) {
  auto& t = tern();
  // A holds the lock for a while and exits 3; B queues behind it, then C.
  auto a = t.start({"lock", "L", "--", "sh", "-c", "echo $TERN_FENCING_TOKEN $TERN_LOCK_NAME > a.token; sleep 1.5; date +%s%N > a.end; exit 3"}, "a");
  ASSERT_TRUE(eventually([&] { return !t.file("a.token").empty(); }));
  auto r = t({"lock", "L", "--try", "--", "true"});
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  auto b = t.start({"lock", "L", "--", "sh", "-c", "date +%s%N > b.start; echo $TERN_FENCING_TOKEN > b.token; sleep 0.5"}, "b");
  std::this_thread::sleep_for(300ms);
  auto c = t.start({"lock", "L", "--", "sh", "-c", "date +%s%N > c.start; echo $TERN_FENCING_TOKEN > c.token"}, "c");
  auto ra = t.wait(a, "a");
  auto rb = t.wait(b, "b");
  auto rc = t.wait(c, "c");
  EXPECT_EQ(ra.code, 3) << ra.err;
  EXPECT_EQ(rb.code, 0) << rb.err;
  EXPECT_EQ(rc.code, 0) << rc.err;
  auto ta = std::stoull(t.file("a.token")), tb = std::stoull(t.file("b.token")), tc = std::stoull(t.file("c.token"));
  EXPECT_NE(t.file("a.token").find(" L"), std::string::npos);
  EXPECT_LT(ta, tb);
  EXPECT_LT(tb, tc);
  EXPECT_LE(std::stoull(t.file("a.end")), std::stoull(t.file("b.start")));
  EXPECT_LT(std::stoull(t.file("b.start")), std::stoull(t.file("c.start")));  // FIFO
  // A killed command releases the lock, and tern reports the signal (128+9).
  auto d = t.start({"lock", "L", "--", "sh", "-c", "echo $$ > d.pid; exec sleep 30"}, "d");
  ASSERT_TRUE(eventually([&] { return !t.file("d.pid").empty(); }));
  ::kill(static_cast<pid_t>(std::stol(t.file("d.pid"))), SIGKILL);
  auto rd = t.wait(d, "d");
  EXPECT_EQ(rd.code, 137);
  r = t({"lock", "L", "--try", "--", "sh", "-c", "exit 0"});
  EXPECT_EQ(r.code, 0) << r.err;
  // check-token: the newest token is valid while held, stale after.
  auto e = t.start({"lock", "L"}, "e");
  ASSERT_TRUE(eventually([&] { return !t.out_of("e").empty(); }));
  auto token = t.out_of("e").substr(2);
  token.pop_back();
  EXPECT_EQ(t({"check-token", "L", token}).code, 0);
  EXPECT_EQ(t({"check-token", "L", std::to_string(ta)}).code, 4);
  ::kill(e, SIGTERM);  // a clean exit releases
  EXPECT_EQ(t.wait(e, "e").code, 0);
  EXPECT_EQ(t({"check-token", "L", token}).code, 4);
}

TEST_F(CliTest, ALockLostWhileTheCommandRunsSignalsItAndExitsSix) {
  auto& t = tern();
  // The holder's tern is stopped (SIGSTOP) past its 1 s session timeout: the server expires the
  // session and grants the lock to another session; resumed, tern sees the loss, signals CMD and
  // exits 6.
  auto a = t.start({"--session-timeout", "1s", "lock", "L", "--", "sh", "-c",
                    "trap 'echo term > a.got; exit 0' TERM; echo $$ > a.pid; while :; do sleep 0.05; done"},
                   "a");
  ASSERT_TRUE(eventually([&] { return !t.file("a.pid").empty(); }));
  ::kill(a, SIGSTOP);
  Outcome b;
  EXPECT_TRUE(eventually([&] { return (b = t({"lock", "L", "--try", "--", "true"})).code == 0; }, 10s)) << b.err;
  ::kill(a, SIGCONT);
  auto ra = t.wait(a, "a");
  EXPECT_EQ(ra.code, 6) << ra.err;
  EXPECT_EQ(lines(ra.err), 1u) << ra.err;
  EXPECT_NE(ra.err.find("lock L"), std::string::npos) << ra.err;
  EXPECT_EQ(t.file("a.got"), "term\n");
}

TEST_F(CliTest, LeasesEphemeralsAndSerializableReads) {
  auto& t = tern();
  auto r = t({"lease", "grant", "30s", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto lease = std::to_string(Json::parse(r.out)["lease"].get<std::uint64_t>());
  r = t({"lease", "keep-alive", lease, "--once"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(lease + " ttl "), std::string::npos) << r.out;
  r = t({"lease", "ttl", lease, "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto ttl = Json::parse(r.out)["ttl_ms"].get<std::int64_t>();
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 30000);
  ASSERT_EQ(t({"create", "/leased", "x", "--lease", lease}).code, 0);
  r = t({"lease", "revoke", lease});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(t({"lease", "ttl", lease}).code, 3);  // gone
  EXPECT_TRUE(eventually([&] { return t({"get", "/leased"}).code == 3; }));
  r = t({"lease", "revoke", lease});
  EXPECT_EQ(r.code, 3);  // unknown_lease
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_EQ(t({"lease", "grant", "soon"}).code, 2);
  // An ephemeral node lives while its tern runs; SIGTERM ends the session cleanly.
  auto e = t.start({"create", "-e", "/eph", "here"}, "e");
  ASSERT_TRUE(eventually([&] { return t({"get", "/eph"}).code == 0; }));
  EXPECT_EQ(t({"stat", "/eph", "-o", "json"}).code, 0);
  ::kill(e, SIGTERM);
  EXPECT_EQ(t.wait(e, "e").code, 0);
  EXPECT_EQ(t({"get", "/eph"}).code, 3);
  // A TTL node goes once unmodified for its TTL; a serializable read may lag, never invent.
  EXPECT_EQ(t({"create", "/ttl", "x", "--ttl", "300ms"}).code, 0);
  EXPECT_TRUE(eventually([&] { return t({"get", "/ttl"}).code == 3; }));
  EXPECT_EQ(t({"create", "/plain", "x"}).code, 0);
  EXPECT_TRUE(eventually([&] { return t({"--consistency", "serializable", "get", "/plain"}).out == "x\n"; }));
  EXPECT_EQ(t({"--consistency", "sometimes", "get", "/plain"}).code, 2);
  EXPECT_EQ(t({"create", "/c", "--container"}).code, 0);
}

TEST_F(CliTest, TheShellKeepsOneSessionForAllItsCommands) {
  auto& t = tern();
  // An ephemeral node created in the shell lives while the shell does: the next command of the
  // same shell sees it, and it is gone once the shell has exited.
  auto r = t({"shell"}, "create -e /shell-eph 'one value'\nget /shell-eph\nls / -o json\n# a comment\nget /nope\n");
  EXPECT_EQ(r.code, 3) << r.err;  // the last command's status, on a pipe
  EXPECT_NE(r.out.find("created /shell-eph"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("one value\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"shell-eph\""), std::string::npos) << r.out;
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_EQ(t({"get", "/shell-eph"}).code, 3);
  r = t({}, "put /s 1\nexit\nput /s 2\n");  // tern alone is the shell; exit leaves it
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(t({"get", "/s"}).out, "1\n");
}

TEST_F(CliTest, ElectHandsLeadershipOverWhenTheLeadersCommandOrProcessIsKilled) {
  auto& t = tern();
  auto obs = t.start({"elect", "--observe", "E", "-o", "ndjson"}, "obs");
  auto a = t.start({"elect", "E", "alpha", "--", "sh", "-c", "echo $$ $TERN_FENCING_TOKEN > a.run; exec sleep 30"}, "a");
  ASSERT_TRUE(eventually([&] { return !t.file("a.run").empty(); }));
  auto b = t.start({"--session-timeout", "2s", "elect", "E", "beta", "--", "sh", "-c", "echo $$ $TERN_FENCING_TOKEN > b.run; exec sleep 30"}, "b");
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(t.file("b.run").empty());  // only one leader
  std::istringstream ia(t.file("a.run"));
  pid_t a_cmd = 0;
  std::uint64_t a_token = 0;
  ia >> a_cmd >> a_token;
  ::kill(a_cmd, SIGKILL);
  EXPECT_EQ(t.wait(a, "a").code, 137);
  ASSERT_TRUE(eventually([&] { return !t.file("b.run").empty(); }));
  std::istringstream ib(t.file("b.run"));
  pid_t b_cmd = 0;
  std::uint64_t b_token = 0;
  ib >> b_cmd >> b_token;
  EXPECT_GT(b_token, a_token);
  // A third candidate takes over when the leading tern itself is killed (its session expires).
  auto c = t.start({"elect", "E", "gamma", "--", "sh", "-c", "echo $TERN_FENCING_TOKEN > c.run; exec sleep 30"}, "c");
  std::this_thread::sleep_for(300ms);
  ::kill(b, SIGKILL);
  t.wait(b, "b");
  ::kill(b_cmd, SIGKILL);
  ASSERT_TRUE(eventually([&] { return !t.file("c.run").empty(); }, 15s));
  EXPECT_GT(std::stoull(t.file("c.run")), b_token);
  ::kill(c, SIGTERM);
  EXPECT_EQ(t.wait(c, "c").code, 128 + SIGTERM);  // forwarded to CMD, whose status passes through
  ASSERT_TRUE(eventually([&] { return t.out_of("obs").find("gamma") != std::string::npos; }));
  ::kill(obs, SIGTERM);
  auto ro = t.wait(obs, "obs");
  EXPECT_EQ(ro.code, 0);
  auto alpha = ro.out.find("alpha"), beta = ro.out.find("beta"), gamma = ro.out.find("gamma");
  EXPECT_TRUE(alpha < beta && beta < gamma) << ro.out;
}

TEST_F(CliTest, WatchKeepsPrintingAcrossAKillOfItsServerWithoutGapOrDuplicate) {
  auto& t = tern();
  auto& c = cluster();
  ASSERT_EQ(t({"create", "/w"}).code, 0);
  // The watcher starts on node 1; writes go elsewhere first.
  std::uint64_t victim = c.ids()[0];
  auto w = t.start({"watch", "-r", "/w", "-o", "ndjson", "--count", "25"}, "w", victim);
  std::this_thread::sleep_for(500ms);
  std::uint64_t other = c.ids()[1];
  for (int i = 0; i < 24; ++i) {
    if (i == 8) c.kill9(victim);
    ASSERT_EQ(t({"put", "/w/k", std::to_string(i)}, "", other).code, 0);
  }
  auto rw = t.wait(w, "w", 20s);
  EXPECT_EQ(rw.code, 0) << rw.err;
  // Creating /w/k also changes /w's child list (a `children` event of the same entry): every
  // event once, indices never going back, and every value once, in order.
  std::istringstream in(rw.out);
  std::uint64_t last = 0;
  int expect = 0;
  std::set<std::string> seen;
  for (std::string line; std::getline(in, line);) {
    auto j = Json::parse(line);
    EXPECT_TRUE(seen.insert(line).second) << "duplicate: " << line;
    EXPECT_GE(j["index"].get<std::uint64_t>(), last) << line;
    last = j["index"].get<std::uint64_t>();
    if (j["path"] != "/w/k") continue;
    EXPECT_EQ(j["value"], std::to_string(expect)) << line;
    ++expect;
  }
  EXPECT_EQ(expect, 24);
}

// watch --from INDEX prints the changes after INDEX that happened before it started, then the
// live ones.
TEST_F(CliTest, WatchFromAnIndexPrintsTheChangesAfterItFirst) {
  auto& t = tern();
  auto r = t({"create", "/from", "a", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto after = Json::parse(r.out)["index"].get<std::uint64_t>();
  ASSERT_EQ(t({"set", "/from", "b"}).code, 0);
  ASSERT_EQ(t({"set", "/from", "c"}).code, 0);
  auto w = t.start({"watch", "/from", "--from", std::to_string(after), "--count", "3", "-o", "ndjson"}, "wf");
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(t({"set", "/from", "d"}).code, 0);
  auto rw = t.wait(w, "wf", 20s);
  ASSERT_EQ(rw.code, 0) << rw.err;
  std::istringstream in(rw.out);
  std::vector<std::string> values;
  for (std::string line; std::getline(in, line);) values.push_back(Json::parse(line).value("value", std::string()));
  EXPECT_EQ(values, (std::vector<std::string>{"b", "c", "d"})) << rw.out;
}

TEST_F(CliTest, MemberAddPromoteAndRemoveGoThroughTheLeader) {
  auto& t = tern();
  auto& c = cluster();
  c.add_spare(4);
  c.start_joining(4);
  auto r = t({"member", "add", "4", c.peer_address(4), "--learner"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = t({"member", "list", "-o", "json"});
  bool learner = false;
  for (const auto& m : Json::parse(r.out)) learner |= m["id"] == 4 && m["role"] == "learner";
  EXPECT_TRUE(learner) << r.out;
  // Promotion waits for the learner to catch up; the leader refuses it until then.
  Outcome p;
  EXPECT_TRUE(eventually([&] { return (p = t({"member", "promote", "4"})).code == 0; }, 15s)) << p.err;
  r = t({"member", "list", "-o", "table"});
  EXPECT_EQ(lines(r.out), 5u) << r.out;
  EXPECT_EQ(t({"member", "add", "5"}).code, 2);  // no peer address
  r = t({"member", "remove", "4"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = t({"member", "list", "-o", "json"});
  EXPECT_EQ(Json::parse(r.out).size(), 3u) << r.out;
}

TEST_F(CliTest, StatusMemberListAndLeaderTransferUseTheAdminPort) {
  auto& t = tern();
  auto& c = cluster();
  auto r = t({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out), 4u) << r.out;
  EXPECT_NE(r.out.find("leader"), std::string::npos);
  r = t({"status", "-o", "json"});
  auto j = Json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  for (const auto& n : j) EXPECT_EQ(n["health"], "ok") << n;
  r = t({"member", "list", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out).size(), 3u);
  auto leader = c.wait_for_leader(5s);
  std::uint64_t to = leader == c.ids()[0] ? c.ids()[1] : c.ids()[0];
  r = t({"leader", "transfer", std::to_string(to)});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(eventually([&] { return c.wait_for_leader(1s) == to; }));
  r = t({"member", "remove"});
  EXPECT_EQ(r.code, 2);
  // A node down shows as unreachable; the rest still answer.
  c.kill9(leader);
  r = t({"status", "-o", "json"});
  EXPECT_EQ(r.code, 0);
  int unreachable = 0;
  for (const auto& n : Json::parse(r.out)) unreachable += n["health"] == "unreachable";
  EXPECT_EQ(unreachable, 1);
}

TEST_F(CliTest, EveryCommandsHelpShowsTheGlobalFlags) {
  auto& t = tern();
  for (const char* cmd : {"get", "put", "watch", "lock", "elect", "status", "member", "snapshot", "txn"}) {
    auto r = t({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd << ": " << r.err;
    for (const char* flag : {"--endpoints", "--timeout", "--session-timeout", "--consistency", "-o,--output", "Exit codes"})
      EXPECT_NE(r.out.find(flag), std::string::npos) << cmd << " --help lacks " << flag << ":\n" << r.out;
  }
  // The command's own flags and footer stay.
  auto r = t({"lock", "--help"});
  EXPECT_NE(r.out.find("--try"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TERN_FENCING_TOKEN"), std::string::npos) << r.out;
}

// Leadership lost while CMD runs: the elect process is stopped (SIGSTOP) past its 1 s session
// timeout, so the server expires its session and another candidate leads; resumed, tern finds
// its leadership unconfirmed (the recipe's window ran out, then the session is gone), sends CMD
// SIGTERM and exits 6 (docs/cli.md).
TEST_F(CliTest, ElectStopsTheCommandAndExitsSixWhenLeadershipIsLost) {
  auto& t = tern();
  auto a = t.start({"--session-timeout", "1s", "elect", "E", "alpha", "--", "sh", "-c",
                    "trap 'echo term > a.got; exit 0' TERM; echo $$ > a.pid; while :; do sleep 0.05; done"},
                   "a");
  ASSERT_TRUE(eventually([&] { return !t.file("a.pid").empty(); }));
  ::kill(a, SIGSTOP);
  auto b = t.start({"elect", "E", "beta", "--", "sh", "-c", "echo $TERN_FENCING_TOKEN > b.run; exec sleep 30"}, "b");
  bool b_leads = eventually([&] { return !t.file("b.run").empty(); }, 10s);
  ::kill(a, SIGCONT);
  EXPECT_TRUE(b_leads);
  auto ra = t.wait(a, "a");
  EXPECT_EQ(ra.code, 6) << ra.err;
  EXPECT_EQ(lines(ra.err), 1u) << ra.err;
  EXPECT_NE(ra.err.find("elect E"), std::string::npos) << ra.err;
  EXPECT_EQ(t.file("a.got"), "term\n");
  ::kill(b, SIGTERM);
  EXPECT_EQ(t.wait(b, "b").code, 128 + SIGTERM);  // forwarded to CMD (exec sleep), whose status passes through
}

// snapshot save from a live 3-node cluster while a writer runs: the file verifies, holds every
// write acknowledged before the save began, and `ternutl restore` makes it a one-node cluster
// that serves that data.
TEST_F(CliTest, SnapshotSaveUnderWritesRestoresIntoAOneNodeCluster) {
  auto& t = tern();
  std::string ops = "[";
  for (int i = 0; i < 300; ++i)
    ops += std::string(i ? "," : "") + R"({"op":"create","path":"/snap-)" + std::to_string(i) + R"(","value":"v)" +
           std::to_string(i) + "\"}";
  ops += "]";
  ASSERT_EQ(t({"txn"}, ops).code, 0);
  auto r = t({"put", "/before", "acknowledged", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto acked = Json::parse(r.out)["index"].get<std::uint64_t>();
  // A writer that keeps the cluster busy during the save (stopped by pid below).
  auto writer = t.start({"sh", "-c", std::string("i=0; while [ $i -lt 400 ]; do '") + TERN_CLI_BIN +
                                         "' put /during $i > /dev/null || exit 1; i=$((i+1)); done"},
                        "writer", 0, "", true);
  std::this_thread::sleep_for(300ms);
  r = t({"snapshot", "save", "backup.snap", "--progress", "-o", "json"});
  ::kill(writer, SIGTERM);
  t.wait(writer, "writer");
  ASSERT_EQ(r.code, 0) << r.err;
  auto saved = Json::parse(r.out);
  EXPECT_GE(saved["index"].get<std::uint64_t>(), acked) << r.out;
  auto bytes = saved["bytes"].get<std::uint64_t>();
  EXPECT_EQ(slurp(t.dir() + "/backup.snap").size(), bytes);
  EXPECT_NE(r.err.find("/" + std::to_string(bytes) + " bytes (100%)"), std::string::npos) << r.err;
  EXPECT_FALSE(std::ifstream(t.dir() + "/backup.snap.part").good());
  // Restore offline into a new data directory (a damaged file is refused), start it as a
  // one-node cluster, read back.
  auto damaged = slurp(t.dir() + "/backup.snap");
  damaged[damaged.size() / 2] ^= 0x5a;
  write_file(t.dir() + "/damaged.snap", damaged);
  auto root = t.dir() + "/restored";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  auto ternutl = bin("TERNUTL_BIN", TERNUTL_BIN);
  r = t.wait(t.start({ternutl, "restore", "damaged.snap", root + "/n1", "--id", "1"}, "restore1", 0, "", true), "restore1");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("checksum"), std::string::npos) << r.out;
  r = t.wait(t.start({ternutl, "restore", "backup.snap", root + "/n1", "--id", "1"}, "restore2", 0, "", true), "restore2");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("verify: ok"), std::string::npos) << r.out;
  // One KJ event loop per thread: the 3-node cluster (and its Tern) go before the new one starts.
  tern_.reset();
  cluster_.reset();
  ClusterOptions o;
  o.size = 1;
  o.raw_state_machine = false;
  o.root = root;
  Cluster one(bin("TERND_BIN", "ternd"), o);
  one.start_all();
  ASSERT_NE(one.wait_for_leader(10s), 0u) << one.log_of(1);
  Tern t1(one, dir_);
  r = t1({"get", "/before"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "acknowledged\n");
  r = t1({"ls", "/", "-o", "json"});
  std::size_t snaps = 0;
  for (const auto& row : Json::parse(r.out)) snaps += row["name"].get<std::string>().rfind("snap-", 0) == 0;
  EXPECT_EQ(snaps, 300u);
  EXPECT_EQ(t1({"get", "/snap-299"}).out, "v299\n");
  EXPECT_EQ(t1({"put", "/after-restore", "x"}).code, 0);  // it takes writes
  r = t1({"member", "list", "-o", "json"});
  EXPECT_EQ(Json::parse(r.out).size(), 1u) << r.out;
}

// Recovery from a lost quorum (docs/operations.md): two of three members are killed and their
// data deleted; the survivor restarts with --force-new-cluster (here TERN_FORCE_NEW_CLUSTER, the
// harness passes the same flags to every node), keeps every acknowledged write, and takes two
// fresh members back through the normal membership path.
TEST_F(CliTest, ForceNewClusterRecoversTheLastMemberAndTakesNewMembers) {
  auto& t = tern();
  auto& c = cluster();
  auto leader = c.wait_for_leader(5s);
  ASSERT_NE(leader, 0u);
  std::uint64_t survivor = leader == c.ids()[0] ? c.ids()[1] : c.ids()[0];  // a follower
  std::uint64_t acked = 0;
  ASSERT_EQ(t({"create", "/kept"}).code, 0);
  for (int i = 0; i < 20; ++i) {
    auto r = t({"put", "/kept/k" + std::to_string(i), std::to_string(i), "-o", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    acked = Json::parse(r.out)["index"].get<std::uint64_t>();
  }
  ASSERT_TRUE(c.wait_applied({survivor}, acked, 10s));
  for (auto id : c.ids()) {
    c.kill9(id);
    if (id != survivor) c.wipe(id);
  }
  ::setenv("TERN_FORCE_NEW_CLUSTER", "1", 1);
  c.start(survivor);
  ::unsetenv("TERN_FORCE_NEW_CLUSTER");
  ASSERT_EQ(c.wait_for_leader(10s), survivor) << c.log_of(survivor);
  EXPECT_NE(c.log_of(survivor).find("force-new-cluster"), std::string::npos);
  for (int i = 0; i < 20; ++i) {
    auto r = t({"get", "/kept/k" + std::to_string(i)}, "", survivor);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, std::to_string(i) + "\n");
  }
  auto r = t({"member", "list", "-o", "json"}, "", survivor);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out).size(), 1u) << r.out;
  // Two fresh members, one at a time: as learners, promoted once caught up.
  for (std::uint64_t id : {4u, 5u}) {
    c.add_spare(id);
    c.start_joining(id);
    r = t({"member", "add", std::to_string(id), c.peer_address(id), "--learner"}, "", survivor);
    ASSERT_EQ(r.code, 0) << r.err;
    Outcome p;
    EXPECT_TRUE(eventually([&] { return (p = t({"member", "promote", std::to_string(id)}, "", survivor)).code == 0; }, 15s))
        << p.err;
  }
  r = t({"member", "list", "-o", "json"}, "", survivor);
  EXPECT_EQ(Json::parse(r.out).size(), 3u) << r.out;
  r = t({"put", "/after", "recovered", "-o", "json"}, "", 4);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(c.wait_applied({4, 5}, Json::parse(r.out)["index"].get<std::uint64_t>(), 10s));
  EXPECT_EQ(t({"--consistency", "serializable", "get", "/kept/k19"}, "", 5).out, "19\n");
  // With the survivor down, the two new members are a majority: the cluster goes on.
  c.kill9(survivor);
  EXPECT_EQ(t({"put", "/after", "still", "--timeout", "10s"}, "", 4).code, 0);
}

}  // namespace
}  // namespace tern::testing
