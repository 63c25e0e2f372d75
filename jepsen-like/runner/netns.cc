#include "jepsen-like/runner/netns.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>

namespace tern::jepsen {

namespace fs = std::filesystem;

int run_command(const std::string& cmd, std::string* output) {
  // Bounded: `timeout` stops a command that hangs (ip and nft answer in milliseconds).
  std::string full = "timeout 10 sh -c '" + [&] {
    std::string q;
    for (char c : cmd) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q;
  }() + "' 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[512];
  std::string out;
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  int status = ::pclose(p);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

namespace {

// Deletes what earlier runs left behind: namespaces "ternj<pid>-..." whose pid is not alive.
void sweep_leftovers() {
  std::error_code ec;
  std::set<std::string> dead;
  for (auto& e : fs::directory_iterator("/run/netns", ec)) {
    auto name = e.path().filename().string();
    if (name.rfind("ternj", 0) != 0) continue;
    auto dash = name.find('-');
    if (dash == std::string::npos || dash == 5) continue;
    auto pid = std::strtol(name.substr(5, dash - 5).c_str(), nullptr, 10);
    if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      dead.insert(name);
  }
  // A ternd still running in one (its harness was killed with SIGKILL and could not stop it)
  // keeps the namespace alive: it was started by that run of tern-jepsen, which is gone.
  for (auto& n : dead) run_command("for p in $(ip netns pids " + n + "); do kill -9 $p; done; ip netns del " + n);
}

// A /24 of 10.0.0.0/8 that no address or route of this host uses (bounded search).
std::string free_subnet() {
  std::string used;
  run_command("ip -4 -o addr; ip -4 route", &used);
  for (int i = 0; i < 64; ++i) {
    int a = 200 + static_cast<int>((::getpid() + i * 7) % 50), b = static_cast<int>((::getpid() / 50 + i * 13) % 250);
    std::string s = "10." + std::to_string(a) + "." + std::to_string(b) + ".";
    if (used.find(s) == std::string::npos && used.find("10." + std::to_string(a) + ".0.0/16") == std::string::npos)
      return s;
  }
  return "";
}

}  // namespace

std::unique_ptr<NetnsNetwork> NetnsNetwork::make(const std::vector<std::uint64_t>& ids, std::string* why) {
  if (::geteuid() != 0) {
    *why = "not running as root";
    return nullptr;
  }
  sweep_leftovers();
  std::unique_ptr<NetnsNetwork> net(new NetnsNetwork());
  net->prefix_ = "ternj" + std::to_string(::getpid()) + "-";
  net->link_ = "tj" + std::to_string(::getpid());
  net->subnet_ = free_subnet();
  net->ids_ = ids;
  if (net->subnet_.empty()) {
    *why = "no free 10.x.y.0/24 subnet";
    return nullptr;
  }
  std::string out;
  auto step = [&](const std::string& cmd) {
    if (run_command(cmd, &out) == 0) return true;
    *why = "'" + cmd + "' failed: " + out;
    while (!why->empty() && why->back() == '\n') why->pop_back();
    return false;
  };
  auto make_ns = [&](const std::string& name) {
    if (!step("ip netns add " + name)) return false;
    net->created_ns_.push_back(name);
    return step("ip -n " + name + " link set lo up");
  };
  // The hub: a bridge that every node's link and the harness's link plug into.
  const std::string hub = net->prefix_ + "hub";
  bool ok = make_ns(hub) && step("ip -n " + hub + " link add br0 type bridge") &&
            step("ip -n " + hub + " link set br0 up") &&
            step("ip link add " + net->link_ + "h type veth peer name " + net->link_ + "hb") &&
            step("ip link set " + net->link_ + "hb netns " + hub) &&
            step("ip -n " + hub + " link set " + net->link_ + "hb master br0 up") &&
            step("ip addr add " + net->subnet_ + "254/24 dev " + net->link_ + "h") &&
            step("ip link set " + net->link_ + "h up");
  for (auto id : ids) {
    if (!ok) break;
    std::string ns = net->ns_name(id), dev = net->link_ + "n" + std::to_string(id);
    ok = make_ns(ns) && step("ip link add " + dev + " type veth peer name " + dev + "b") &&
         step("ip link set " + dev + " netns " + ns) && step("ip link set " + dev + "b netns " + hub) &&
         step("ip -n " + hub + " link set " + dev + "b master br0 up") &&
         step("ip -n " + ns + " addr add " + net->host(id) + "/24 dev " + dev) &&
         step("ip -n " + ns + " link set " + dev + " up") &&
         // One table per node, one chain on the output hook: the cuts are rules in it.
         step("ip netns exec " + ns + " nft add table inet ternj") &&
         step("ip netns exec " + ns +
              " nft add chain inet ternj out '{ type filter hook output priority 0; policy accept; }'");
  }
  if (!ok) return nullptr;  // the destructor removes what was made
  return net;
}

NetnsNetwork::~NetnsNetwork() { cleanup(); }

void NetnsNetwork::cleanup() {
  // Deleting a namespace deletes the veth ends inside it, and with them their peers.
  for (auto it = created_ns_.rbegin(); it != created_ns_.rend(); ++it) run_command("ip netns del " + *it);
  created_ns_.clear();
  // A link not yet moved into a namespace when make() failed (errors ignored: usually gone).
  run_command("ip link del " + link_ + "h 2>/dev/null; true");
  for (auto id : ids_) run_command("ip link del " + link_ + "n" + std::to_string(id) + " 2>/dev/null; true");
}

std::string NetnsNetwork::host(std::uint64_t id) const { return subnet_ + std::to_string(id); }

std::string NetnsNetwork::netns_path(std::uint64_t id) const { return "/run/netns/" + ns_name(id); }

bool NetnsNetwork::apply(const Cuts& cuts) {
  std::map<std::uint64_t, std::vector<std::uint64_t>> from;
  for (auto [a, b] : cuts) from[a].push_back(b);
  for (auto [a, b] : current_) from[a];  // a node whose cuts are all healed gets an empty chain
  bool ok = true;
  for (auto& [a, tos] : from) {
    std::string cmd = "ip netns exec " + ns_name(a) + " nft flush chain inet ternj out";
    if (!tos.empty()) {
      cmd += " && ip netns exec " + ns_name(a) + " nft add rule inet ternj out ip daddr '{ ";
      for (std::size_t i = 0; i < tos.size(); ++i) cmd += (i ? ", " : "") + host(tos[i]);
      cmd += " }' drop";
    }
    ok = run_command(cmd) == 0 && ok;
  }
  current_ = cuts;
  return ok;
}

}  // namespace tern::jepsen
