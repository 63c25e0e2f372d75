#pragma once
// What tern-jepsen's nemesis acts on (issue 13): the processes, network, clocks and disks of a
// cluster the runner started (LocalTarget), or an existing cluster through commands the user
// gives (HookTarget, --endpoints with --hook-*). A fault a target cannot inject returns false
// and the nemesis skips it (and says so in its log).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "jepsen-like/cluster/harness.h"
#include "jepsen-like/runner/netns.h"

namespace tern::jepsen {

// Disk faults through libfiu: every fdatasync fails with EIO, or every pwrite with ENOSPC.
enum class DiskFault { fsync_eio, write_enospc };

class Target {
 public:
  virtual ~Target() = default;
  virtual std::vector<std::uint64_t> ids() = 0;
  // The current leader as the cluster reports it, waiting up to `timeout`; 0 if unknown.
  virtual std::uint64_t leader(std::chrono::milliseconds timeout) = 0;
  virtual bool kill(std::uint64_t id) = 0;       // SIGKILL
  virtual bool terminate(std::uint64_t id) = 0;  // SIGTERM (a clean stop), waits for the exit
  virtual bool start(std::uint64_t id) = 0;      // same data directory
  virtual bool pause(std::uint64_t id) = 0;      // SIGSTOP
  virtual bool resume(std::uint64_t id) = 0;     // SIGCONT
  // nullopt: not known (a hook target); else whether the process runs, and its last exit status.
  virtual std::optional<bool> running(std::uint64_t id) = 0;
  virtual int last_exit(std::uint64_t) { return -1; }
  // Replaces every cut with `cuts` (empty heals). `one_way` is false if the mechanism can only cut
  // both ways (then (a, b) also cuts (b, a)).
  virtual bool cut(const Cuts& cuts) = 0;
  virtual bool one_way() const { return false; }
  // The network mechanism: "netns+nftables", "ternd-hook", "user-hook" or "none".
  virtual std::string network() const = 0;
  // The node's wall clock offset from the real one, in seconds (libfaketime); false if unsupported.
  virtual bool set_clock_offset(std::uint64_t, double) { return false; }
  virtual bool disk_fault(std::uint64_t, DiskFault) { return false; }
  virtual bool disk_heal(std::uint64_t) { return false; }
  // Membership (the admin RPC): add a new node as a learner and start it, promote, remove.
  virtual std::uint64_t add_learner() { return 0; }
  virtual bool promote(std::uint64_t) { return false; }
  virtual bool remove(std::uint64_t) { return false; }
  // Client endpoints of the current members (membership changes them).
  virtual std::vector<std::string> endpoints() = 0;
};

// The cluster tern-jepsen started. The nemesis families named decide what is prepared before
// the nodes start: network namespaces (partition: when root and possible, else the hook),
// libfaketime (clock), libfiu (disk).
struct LocalSetup {
  std::vector<std::string> kinds;  // nemesis families
  std::string net = "auto";        // auto | netns | hook
};

class LocalTarget : public Target {
 public:
  // Makes the cluster directory and sets the cluster options' per-node hooks; construct it
  // before the Cluster (it must outlive it), then attach() the Cluster. Throws if a family
  // cannot be prepared (libfaketime or libfiu missing; --net netns impossible).
  // why_not_netns() explains a fallback to ternd's hook.
  LocalTarget(const LocalSetup& setup, int nodes, testing::ClusterOptions& co);
  ~LocalTarget() override;
  void attach(testing::Cluster* cluster) { cluster_ = cluster; }
  const std::string& why_not_netns() const { return why_not_netns_; }

  std::vector<std::uint64_t> ids() override;
  std::uint64_t leader(std::chrono::milliseconds timeout) override;
  bool kill(std::uint64_t id) override;
  bool terminate(std::uint64_t id) override;
  bool start(std::uint64_t id) override;
  bool pause(std::uint64_t id) override;
  bool resume(std::uint64_t id) override;
  std::optional<bool> running(std::uint64_t id) override;
  int last_exit(std::uint64_t id) override;
  bool cut(const Cuts& cuts) override;
  bool one_way() const override { return net_ != nullptr; }
  std::string network() const override;
  bool set_clock_offset(std::uint64_t id, double seconds) override;
  bool disk_fault(std::uint64_t id, DiskFault f) override;
  bool disk_heal(std::uint64_t id) override;
  std::uint64_t add_learner() override;
  bool promote(std::uint64_t id) override;
  bool remove(std::uint64_t id) override;
  std::vector<std::string> endpoints() override;

 private:
  std::string faketime_file(std::uint64_t id) const { return root_ + "/faketime-n" + std::to_string(id); }
  std::string fiu_prefix(std::uint64_t id) const { return root_ + "/fiu-n" + std::to_string(id); }
  bool fiu(std::uint64_t id, const std::string& command);

  testing::Cluster* cluster_ = nullptr;
  std::unique_ptr<NetnsNetwork> net_;
  bool hook_ = false, clock_ = false, disk_ = false;
  std::string why_not_netns_;
  std::string root_;
  std::set<std::uint64_t> removed_, joined_, paused_;
  std::uint64_t next_id_ = 0, last_id_ = 0;  // spare ids for membership
};

// An existing cluster (--endpoints): faults only through the user's commands, where "{node}"
// becomes the node's number (1-based, in --endpoints order) and "{endpoint}" its HOST:PORT;
// a partition command also gets "{peers}" (the comma-separated nodes it is cut from).
struct Hooks {
  std::string kill, start, pause, resume, partition, heal;
};

class HookTarget : public Target {
 public:
  HookTarget(std::vector<std::string> endpoints, Hooks hooks);
  std::vector<std::uint64_t> ids() override;
  std::uint64_t leader(std::chrono::milliseconds) override { return 0; }
  bool kill(std::uint64_t id) override { return run(hooks_.kill, id); }
  bool terminate(std::uint64_t id) override { return run(hooks_.kill, id); }
  bool start(std::uint64_t id) override { return run(hooks_.start, id); }
  bool pause(std::uint64_t id) override { return run(hooks_.pause, id); }
  bool resume(std::uint64_t id) override { return run(hooks_.resume, id); }
  std::optional<bool> running(std::uint64_t) override { return std::nullopt; }
  bool cut(const Cuts& cuts) override;
  std::string network() const override { return hooks_.partition.empty() ? "none" : "user-hook"; }
  std::vector<std::string> endpoints() override { return endpoints_; }
  const Hooks& hooks() const { return hooks_; }

 private:
  bool run(const std::string& tmpl, std::uint64_t id, const std::string& peers = "");
  std::vector<std::string> endpoints_;
  Hooks hooks_;
};

}  // namespace tern::jepsen
