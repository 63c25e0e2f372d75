#pragma once
// What every benchmark needs in the same form (bench/README.md): percentiles and medians of
// samples, the machine's load average (printed beside each table: these machines are shared),
// the device's own write+fdatasync rate measured in the same run, and the TERN_BENCH_LEVELS list.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace tern::bench {

// The q-quantile (0..1) of the samples, nearest rank below; 0 for none.
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}
inline double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

// The ternd a benchmark starts: $TERND_BIN, else the one built beside it (BUILD/bench/X/ -> BUILD/service/).
inline std::string default_ternd(const char* argv0) {
  if (const char* b = std::getenv("TERND_BIN")) return b;
  std::string self = argv0;
  auto slash = self.rfind('/');
  std::string dir = slash == std::string::npos ? "." : self.substr(0, slash);
  return dir + "/../../service/ternd";
}

// "1-min 5-min 15-min" from /proc/loadavg.
inline std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// The device limit: one 128-byte pwrite + fdatasync at a time in a preallocated file in `dir`,
// for `seconds`. Latencies in microseconds; ops_per_s 0 if the file could not be made.
struct RawSync {
  double ops_per_s = 0;
  std::vector<double> latencies_us;
};
inline RawSync raw_fdatasync(const std::string& dir, double seconds) {
  using Clock = std::chrono::steady_clock;
  constexpr off_t kFile = 64 << 20;
  RawSync r;
  std::string path = dir + "/raw-fdatasync.dat";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return r;
  if (::posix_fallocate(fd, 0, kFile) != 0 || ::fdatasync(fd) != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return r;
  }
  char rec[128] = {1};
  auto start = Clock::now();
  auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  off_t off = 0;
  while (Clock::now() < end) {
    auto t0 = Clock::now();
    if (::pwrite(fd, rec, sizeof rec, off) != static_cast<ssize_t>(sizeof rec) || ::fdatasync(fd) != 0) break;
    r.latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    off = (off + 128) % kFile;
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  r.ops_per_s = static_cast<double>(r.latencies_us.size()) / secs;
  return r;
}

// TERN_BENCH_LEVELS="1,16,128" (outstanding calls per cell), or `defaults`.
inline std::vector<int> levels_from_env(std::vector<int> defaults) {
  const char* l = std::getenv("TERN_BENCH_LEVELS");
  if (l == nullptr) return defaults;
  std::vector<int> levels;
  for (const char* p = l; *p != '\0';) {
    if (int n = std::atoi(p); n > 0) levels.push_back(n);
    while (*p != '\0' && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return levels.empty() ? defaults : levels;
}

}  // namespace tern::bench
