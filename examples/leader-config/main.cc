// A replica of a small service on tern: the replicas elect a leader among themselves, the leader
// publishes the configuration, and every replica reloads it when it changes.
//
//   leader_config_service --endpoints 127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203 \
//       --name replica-1 [--run-seconds 10] [--session-timeout-ms 3000]
//
// Endpoints and timeouts are options so the same binary fits any cluster (docs/client.md).
#include <tern/recipes.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::mutex print_mu;
void say(const std::string& line) {
  std::lock_guard<std::mutex> g(print_mu);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  tern::ClientOptions options;
  std::string name = "replica";
  int run_seconds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--endpoints") options.endpoints = split(value);
    else if (flag == "--name") name = value;
    else if (flag == "--run-seconds") run_seconds = std::atoi(value.c_str());
    else if (flag == "--session-timeout-ms") options.session_timeout = std::chrono::milliseconds(std::atoi(value.c_str()));
    else {
      std::fprintf(stderr, "unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  if (options.endpoints.empty()) {
    std::fprintf(stderr, "usage: %s --endpoints host:port[,host:port...] [--name N] [--run-seconds S]\n", argv[0]);
    return 2;
  }
  std::string error;
  auto client = tern::Client::connect(options, &error);
  if (!client) {
    std::fprintf(stderr, "%s: cannot connect: %s\n", name.c_str(), error.c_str());
    return 1;
  }
  const std::string config = "/example/config";
  if (auto e = tern::recipes::ensure_path(*client, "/example"); e != tern::Error::ok) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), tern::error_name(e));
    return 1;
  }

  // Every replica reloads the configuration when it changes (and loads it at start).
  tern::recipes::ConfigWatcher watcher(*client, config, [&](const std::optional<std::string>& value, std::uint64_t index) {
    if (value) say(name + ": reloaded config \"" + *value + "\" (index " + std::to_string(index) + ")");
    else say(name + ": no config yet");
  });

  // The leader does the leader's work: here, it publishes a new configuration. Its fencing token
  // goes with it, so whoever applies the configuration can refuse an older leader's.
  tern::Client& c = *client;
  tern::recipes::LeaderElection election(
      c, "example-service", name,
      [&](std::uint64_t token) {
        say(name + ": became leader (token " + std::to_string(token) + ")");
        std::string value = "leader=" + name + " token=" + std::to_string(token);
        auto r = c.set(config, value);
        if (r.error == tern::Error::no_node) r = c.create(config, value);
        if (!r.ok()) say(name + ": could not publish config: " + tern::error_name(r.error));
      },
      [&](std::uint64_t token) { say(name + ": lost leadership (token " + std::to_string(token) + ")"); });

  std::this_thread::sleep_for(std::chrono::seconds(run_seconds));
  say(name + ": stopping");
  return 0;
}
