#pragma once
// What the client-library cluster tests share (client_test, client_abuse_test, client_model_test,
// recipes_test): the ternd binary, a cluster running the coordination state machine, client
// options for a cluster's client ports (TLS as the harness set it up), a watch-event collector,
// writes that each wait for their event, and a bounded poll.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tern/client.h"
#include "tests/cluster/client_tls.h"
#include "tests/cluster/harness.h"

namespace tern::testing {

inline std::string ternd() {
  const char* bin = std::getenv("TERND_BIN");
  return bin != nullptr ? bin : "ternd";
}

// A cluster running the coordination state machine and the client API.
inline ClusterOptions sm_cluster() {
  ClusterOptions o;
  o.raw_state_machine = false;
  return o;
}

// Every node's client port, starting at ids()[first % size] (so clients spread over the nodes).
inline ClientOptions client_options_from(Cluster& c, std::size_t first) {
  ClientOptions o;
  auto ids = c.ids();
  for (std::size_t k = 0; k < ids.size(); ++k)
    o.endpoints.push_back("127.0.0.1:" + std::to_string(c.node(ids[(first + k) % ids.size()]).client_port));
  apply_client_tls(c, o);
  return o;
}

// Every node's client port, node `id` first (the client starts there).
inline ClientOptions client_options_at(Cluster& c, std::uint64_t id) {
  auto ids = c.ids();
  std::size_t at = 0;
  while (at < ids.size() && ids[at] != id) ++at;
  return client_options_from(c, at);
}

// client_options_at with a session timeout and a 10 s request timeout (failovers fit in it).
inline ClientOptions client_options_timed(Cluster& c, std::uint64_t first,
                                          std::chrono::milliseconds session_timeout = std::chrono::milliseconds(5000)) {
  ClientOptions o = client_options_at(c, first);
  o.session_timeout = session_timeout;
  o.request_timeout = std::chrono::seconds(10);
  return o;
}

// A node of `c` other than `leader` (0 if there is none).
inline std::uint64_t a_follower(Cluster& c, std::uint64_t leader) {
  for (auto id : c.ids())
    if (id != leader) return id;
  return 0;
}

// Sets `expired` when the library reports the session expired (on the library's thread).
inline void flag_expiry(ClientOptions& o, std::atomic<bool>& expired) {
  o.on_state = [&expired](ConnectionState s) {
    if (s == ConnectionState::session_expired) expired = true;
  };
}

// Connects; a failure fails the test (and returns null).
inline std::unique_ptr<Client> connect_client(ClientOptions o) {
  std::string err;
  auto client = Client::connect(std::move(o), &err);
  EXPECT_NE(client, nullptr) << err;
  return client;
}

// Collects watch events from the library's thread.
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> got;
  WatchCallback callback() {
    return [this](const WatchEvent& e) {
      std::lock_guard<std::mutex> g(mu);
      got.push_back(e);
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, d, [&] { return got.size() >= n; });
  }
  std::vector<WatchEvent> copy() {
    std::lock_guard<std::mutex> g(mu);
    return got;
  }
};

// The index of each event, in the order the events arrived.
inline std::vector<std::uint64_t> indices(const std::vector<WatchEvent>& events) {
  std::vector<std::uint64_t> out;
  out.reserve(events.size());
  for (const auto& e : events) out.push_back(e.index);
  return out;
}

// Sets `path` to "0", "1", ... `n` times through `writer`, waiting (5 s at most) after each write
// until `events` holds one more event, so the notification stream drains between writes. Returns
// the writes' indexes; a failed write or a missing event fails the test and ends the loop.
inline std::vector<std::uint64_t> set_each_and_await(Client& writer, const std::string& path, int n,
                                                     Events& events) {
  std::vector<std::uint64_t> written;
  for (int i = 0; i < n; ++i) {
    auto r = writer.set(path, std::to_string(i));
    if (!r.ok()) {
      ADD_FAILURE() << "set " << path << " #" << i << ": " << error_name(r.error);
      break;
    }
    written.push_back(r.index);
    if (!events.wait_for(written.size(), std::chrono::seconds(5))) {
      ADD_FAILURE() << "change " << i << " of " << path << " never reached the watcher";
      break;
    }
  }
  return written;
}

// Polls `cond` every 20 ms for at most `d`.
template <class F>
bool eventually(std::chrono::milliseconds d, F cond) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

}  // namespace tern::testing
