#pragma once
// The admin RPC of one ternd node (service/proto/admin.capnp) as blocking calls with a deadline:
// the code ternadm and the `tern` CLI (status, member, leader transfer) share. Plain C++ types
// out; each call opens its own connection (plaintext or TLS, client/connect.h) on this thread's
// KJ event loop, so an AdminClient lives on one thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "client/connect.h"
#include "common/result.h"

namespace tern::admin {

// An answer of a node (AdminResult). `code` is the AdminCode's name: ok, not_leader, ...
struct Outcome {
  std::string code;
  std::uint64_t index = 0, term = 0, leader_hint = 0;
  std::string message, response;
  bool ok() const { return code == "ok"; }
};

struct Member {
  std::uint64_t id = 0, match_index = 0;
  std::string address;  // the peer address
  bool voter = true;
};

struct Status {
  std::uint64_t id = 0, term = 0, leader = 0, commit = 0, applied = 0, last = 0, snapshot = 0;
  std::uint64_t applied_commands = 0, digest = 0, pending_proposals = 0;
  std::string role;
  std::vector<Member> members;
};

class AdminClient {
 public:
  // Loads the TLS files once; the error names the file otherwise.
  static Result<std::unique_ptr<AdminClient>, std::string> make(const client::TlsOptions& tls,
                                                                std::chrono::milliseconds timeout);
  ~AdminClient();
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;

  // Each call: "host:port" of the node's client port. The error: the connection failed, or the
  // node did not answer within the timeout (a readable reason, one line).
  Result<Status, std::string> status(const std::string& addr);
  Result<Outcome, std::string> propose(const std::string& addr, const std::string& data);
  Result<Outcome, std::string> read(const std::string& addr, const std::string& query);
  Result<Outcome, std::string> transfer_leadership(const std::string& addr, std::uint64_t to);
  Result<Outcome, std::string> add_member(const std::string& addr, std::uint64_t id, const std::string& peer_address,
                                          bool learner);
  Result<Outcome, std::string> promote_member(const std::string& addr, std::uint64_t id);
  Result<Outcome, std::string> remove_member(const std::string& addr, std::uint64_t id);

  // A consistent snapshot of the node at `addr` (admin.capnp `snapshot`): one connection, the
  // file pulled in chunks of at most `chunk_bytes`, each handed to `sink` before the next is asked
  // for (back-pressure: a slow sink slows the node's reads, nothing queues). `progress(done,
  // total)` after each chunk. The timeout bounds each call (the snapshot, then each chunk). The
  // outcome: ok with the snapshot's index and term, or the node's error; the error string: the
  // connection failed, a call timed out, or `sink` returned false (then its message is used).
  struct SnapshotDownload {
    Outcome outcome;
    std::uint64_t size = 0;  // bytes of the whole file
  };
  Result<SnapshotDownload, std::string> download_snapshot(const std::string& addr, std::uint32_t chunk_bytes,
                                                          const std::function<bool(std::string_view, std::string&)>& sink,
                                                          const std::function<void(std::uint64_t, std::uint64_t)>& progress);

  struct Impl;

 private:
  explicit AdminClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::admin
