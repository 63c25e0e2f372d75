#pragma once
// Network faults with Linux network namespaces (issue 13): every ternd runs in its own namespace
// with its own address on a veth link to a bridge (in a hub namespace, linked to the harness's
// namespace too, so clients reach every node whatever the cuts); a cut drops the packets from one
// node to another with an nftables rule in the sender's namespace (output hook). Needs root (or
// CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and `nft`; a container may refuse: make() then says why
// and the runner falls back to ternd's test-only transport hook.
//
// Every namespace and link is named with a prefix unique to the run ("ternj<pid>-"); the
// destructor deletes them all, and make() first deletes the leftovers of runs whose process is
// gone (a harness killed by SIGKILL cannot clean up after itself; the nodes it left running in
// those namespaces are killed first).
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace tern::jepsen {

// Directed cuts: (from, to) means packets from `from` to `to` are dropped. Empty: all healed.
using Cuts = std::set<std::pair<std::uint64_t, std::uint64_t>>;

class NetnsNetwork {
 public:
  // Creates the namespaces and links for `ids`; nullptr and `why` if not possible here.
  static std::unique_ptr<NetnsNetwork> make(const std::vector<std::uint64_t>& ids, std::string* why);
  ~NetnsNetwork();
  NetnsNetwork(const NetnsNetwork&) = delete;
  NetnsNetwork& operator=(const NetnsNetwork&) = delete;

  std::string host(std::uint64_t id) const;        // the node's address, e.g. 10.213.7.1
  std::string netns_path(std::uint64_t id) const;  // /run/netns/<name>, for the harness to enter
  // Replaces the current cuts with `cuts` (in every namespace); false if a command failed.
  bool apply(const Cuts& cuts);
  const std::string& prefix() const { return prefix_; }

 private:
  NetnsNetwork() = default;
  std::string ns_name(std::uint64_t id) const { return prefix_ + "n" + std::to_string(id); }
  void cleanup();

  std::string prefix_;  // "ternj<pid>-"
  std::string link_;    // "tj<pid>" (interface names are at most 15 characters)
  std::string subnet_;  // "10.A.B."
  std::vector<std::uint64_t> ids_;
  std::vector<std::string> created_ns_;
  Cuts current_;
};

// Runs `cmd` with /bin/sh, its output discarded unless `output` is given; returns the exit status.
int run_command(const std::string& cmd, std::string* output = nullptr);

}  // namespace tern::jepsen
