#include "jepsen-like/runner/target.h"

#include <glob.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace tern::jepsen {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

bool has(const std::vector<std::string>& kinds, const char* k) {
  return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
}

// The first existing file matching one of the patterns ("" if none).
std::string find_library(std::initializer_list<const char*> patterns) {
  for (const char* p : patterns) {
    glob_t g{};
    if (::glob(p, 0, nullptr, &g) == 0 && g.gl_pathc > 0) {
      std::string found = g.gl_pathv[0];
      ::globfree(&g);
      return found;
    }
    ::globfree(&g);
  }
  return "";
}

}  // namespace

LocalTarget::LocalTarget(const LocalSetup& s, int nodes, testing::ClusterOptions& co) {
  char tmpl[] = "/tmp/tern_jepsen_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
  root_ = tmpl;
  co.root = root_;
  next_id_ = static_cast<std::uint64_t>(nodes) + 1;
  clock_ = has(s.kinds, "clock");
  disk_ = has(s.kinds, "disk");
  // Membership adds nodes with new ids (a removed id is never reused); a network namespace is
  // made for each ahead of time.
  last_id_ = has(s.kinds, "membership") ? static_cast<std::uint64_t>(nodes) + (s.net == "hook" ? 50 : 8)
                                         : static_cast<std::uint64_t>(nodes);
  if (has(s.kinds, "partition")) {
    if (s.net == "hook") {
      why_not_netns_ = "--net hook";
    } else {
      std::vector<std::uint64_t> ids;
      for (std::uint64_t id = 1; id <= last_id_; ++id) ids.push_back(id);
      net_ = NetnsNetwork::make(ids, &why_not_netns_);
      if (!net_ && s.net == "netns") throw std::runtime_error("--net netns: " + why_not_netns_);
    }
    if (!net_) {
      hook_ = true;
      co.fault_injection = true;
    }
  }
  if (net_) {
    auto* net = net_.get();
    co.node_host = [net](std::uint64_t id) { return net->host(id); };
    co.node_netns = [net](std::uint64_t id) { return net->netns_path(id); };
    co.tls_server_name = "localhost";  // the certificates name 127.0.0.1 and localhost, not 10.x.y.z
  }
  std::string preload;
  if (clock_) {
    auto lib = find_library({"/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/local/lib/faketime/libfaketimeMT.so.1"});
    if (lib.empty()) throw std::runtime_error("nemesis clock needs libfaketime (Debian package faketime)");
    preload = lib;
    for (std::uint64_t id = 1; id <= last_id_; ++id) std::ofstream(faketime_file(id)) << "+0\n";
    // A node's client certificate check uses its wall clock: a node set behind the moment the
    // harness issued the certificates would refuse every client. Under clock faults the client
    // port is plaintext (peers still authenticate with the cluster secret).
    co.client_tls = false;
  }
  if (disk_) {
    auto run = find_library({"/usr/lib/fiu/fiu_run_preload.so", "/usr/local/lib/fiu/fiu_run_preload.so"});
    auto posix = find_library({"/usr/lib/fiu/fiu_posix_preload.so", "/usr/local/lib/fiu/fiu_posix_preload.so"});
    if (run.empty() || posix.empty()) throw std::runtime_error("nemesis disk needs libfiu (Debian packages fiu-utils, libfiu-dev)");
    if (run_command("command -v fiu-ctrl") != 0) throw std::runtime_error("nemesis disk needs fiu-ctrl (Debian package fiu-utils)");
    preload += (preload.empty() ? "" : " ") + run + " " + posix;
  }
  if (!preload.empty()) {
    co.node_env = [this, preload](std::uint64_t id) {
      std::vector<std::string> env{"LD_PRELOAD=" + preload};
      if (clock_) {
        // Only the wall clock (CLOCK_REALTIME: std::chrono::system_clock) is faked; ternd's
        // timers and elections run on CLOCK_MONOTONIC (steady_clock), left alone. The offset
        // file is read again at most a second after it changes.
        env.push_back("FAKETIME_TIMESTAMP_FILE=" + faketime_file(id));
        env.push_back("FAKETIME_DONT_FAKE_MONOTONIC=1");
        env.push_back("FAKETIME_CACHE_DURATION=1");
      }
      if (disk_) {
        env.push_back("FIU_CTRL_FIFO=" + fiu_prefix(id));  // fiu-ctrl's pipes: <prefix>-<pid>.in/.out
        env.push_back("FIU_ENABLE=");
      }
      return env;
    };
  }
}

LocalTarget::~LocalTarget() {
  net_.reset();  // after the Cluster killed its processes (it is destroyed first)
  if (std::getenv("TERN_KEEP_CLUSTER_DIR") == nullptr) {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
}

std::vector<std::uint64_t> LocalTarget::ids() {
  std::vector<std::uint64_t> out;
  for (auto id : cluster_->ids())
    if (removed_.count(id) == 0) out.push_back(id);
  return out;
}

std::uint64_t LocalTarget::leader(std::chrono::milliseconds timeout) { return cluster_->wait_for_leader(timeout); }

bool LocalTarget::kill(std::uint64_t id) {
  cluster_->kill9(id);
  return true;
}

bool LocalTarget::terminate(std::uint64_t id) {
  cluster_->terminate(id);
  return true;
}

bool LocalTarget::start(std::uint64_t id) {
  if (cluster_->running(id)) return true;
  // A node added by membership is not in the initial cluster: it restarts as it joined.
  if (joined_.count(id) != 0) {
    cluster_->start_joining(id);
    return true;
  }
  cluster_->start(id);
  return true;
}

bool LocalTarget::pause(std::uint64_t id) {
  cluster_->pause(id);
  paused_.insert(id);
  return true;
}

bool LocalTarget::resume(std::uint64_t id) {
  cluster_->resume(id);
  paused_.erase(id);
  return true;
}

std::optional<bool> LocalTarget::running(std::uint64_t id) { return cluster_->running(id); }

int LocalTarget::last_exit(std::uint64_t id) { return cluster_->last_exit(id); }

bool LocalTarget::cut(const Cuts& cuts) {
  if (net_) return net_->apply(cuts);
  if (!hook_) return false;
  // ternd's hook drops both directions: a node blocks every peer it has a cut with, either way.
  std::map<std::uint64_t, std::vector<std::uint64_t>> blocked;
  for (auto id : ids()) blocked[id];
  for (auto [a, b] : cuts) {
    blocked[a].push_back(b);
    blocked[b].push_back(a);
  }
  bool ok = true;
  for (auto& [id, peers] : blocked) {
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    // A paused node cannot answer the admin RPC (an overlapping partition, --overlap): the
    // others' blocks cut it off; it is told nothing (it holds no cut at the heal either).
    if (cluster_->running(id) && paused_.count(id) == 0) ok = cluster_->block_peers(id, peers).has_value() && ok;
  }
  return ok;
}

std::string LocalTarget::network() const { return net_ ? "netns+nftables" : hook_ ? "ternd-hook" : "none"; }

bool LocalTarget::set_clock_offset(std::uint64_t id, double seconds) {
  if (!clock_) return false;
  // Written to a new file and renamed: libfaketime never reads half a line.
  char buf[64];
  std::snprintf(buf, sizeof buf, "%+.3f\n", seconds);
  auto tmp = faketime_file(id) + ".tmp";
  std::ofstream(tmp) << buf;
  std::error_code ec;
  fs::rename(tmp, faketime_file(id), ec);
  return !ec;
}

bool LocalTarget::fiu(std::uint64_t id, const std::string& command) {
  auto pid = cluster_->node(id).pid;
  if (pid <= 0) return false;
  // fiu-run's preload library opens its control pipes when the process starts: wait for them.
  auto in = fiu_prefix(id) + "-" + std::to_string(pid) + ".in";
  for (int i = 0; i < 50 && !fs::exists(in); ++i) std::this_thread::sleep_for(20ms);
  return run_command("fiu-ctrl -f '" + fiu_prefix(id) + "' -c '" + command + "' " + std::to_string(pid)) == 0;
}

bool LocalTarget::disk_fault(std::uint64_t id, DiskFault f) {
  if (!disk_) return false;
  // failinfo is the errno the preload library sets (5 EIO, 28 ENOSPC).
  return f == DiskFault::fsync_eio ? fiu(id, "enable name=posix/io/sync/*,failinfo=5")
                                   : fiu(id, "enable name=posix/io/rw/pwrite,failinfo=28");
}

bool LocalTarget::disk_heal(std::uint64_t id) {
  if (!disk_ || !cluster_->running(id)) return false;
  return fiu(id, "disable name=posix/io/sync/*") && fiu(id, "disable name=posix/io/rw/pwrite");
}

std::uint64_t LocalTarget::add_learner() {
  if (next_id_ > last_id_) return 0;
  auto leader = cluster_->wait_for_leader(2s);
  if (leader == 0) return 0;
  auto id = next_id_++;
  cluster_->add_spare(id);
  auto r = cluster_->add_member(leader, id, cluster_->peer_address(id), true);
  if (!r || r->code != proto::AdminCode::OK) {
    removed_.insert(id);  // never a member (or unknown): not a target; the id is not reused
    return 0;
  }
  joined_.insert(id);
  cluster_->start_joining(id);
  return id;
}

bool LocalTarget::promote(std::uint64_t id) {
  auto leader = cluster_->wait_for_leader(2s);
  if (leader == 0) return false;
  auto r = cluster_->promote_member(leader, id);
  return r && r->code == proto::AdminCode::OK;
}

bool LocalTarget::remove(std::uint64_t id) {
  auto leader = cluster_->wait_for_leader(2s);
  if (leader == 0) return false;
  auto r = cluster_->remove_member(leader, id);
  if (!r || r->code != proto::AdminCode::OK) return false;
  removed_.insert(id);
  cluster_->kill9(id);
  return true;
}

std::vector<std::string> LocalTarget::endpoints() {
  std::vector<std::string> out;
  for (auto id : ids()) out.push_back(cluster_->client_address(id));
  return out;
}

HookTarget::HookTarget(std::vector<std::string> endpoints, Hooks hooks)
    : endpoints_(std::move(endpoints)), hooks_(std::move(hooks)) {}

std::vector<std::uint64_t> HookTarget::ids() {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 1; i <= endpoints_.size(); ++i) out.push_back(i);
  return out;
}

bool HookTarget::run(const std::string& tmpl, std::uint64_t id, const std::string& peers) {
  if (tmpl.empty()) return false;
  std::string cmd;
  for (std::size_t i = 0; i < tmpl.size();) {
    auto sub = [&](const char* name, const std::string& value) {
      std::string n = name;
      if (tmpl.compare(i, n.size(), n) != 0) return false;
      cmd += value;
      i += n.size();
      return true;
    };
    if (sub("{node}", std::to_string(id)) || sub("{endpoint}", id >= 1 && id <= endpoints_.size() ? endpoints_[id - 1] : "") ||
        sub("{peers}", peers))
      continue;
    cmd += tmpl[i++];
  }
  return run_command(cmd) == 0;
}

bool HookTarget::cut(const Cuts& cuts) {
  if (cuts.empty()) return hooks_.heal.empty() ? false : run(hooks_.heal, 0);
  if (hooks_.partition.empty()) return false;
  std::map<std::uint64_t, std::string> peers;
  for (auto [a, b] : cuts) peers[a] += (peers[a].empty() ? "" : ",") + std::to_string(b);
  bool ok = true;
  for (auto& [a, list] : peers) ok = run(hooks_.partition, a, list) && ok;
  return ok;
}

}  // namespace tern::jepsen
