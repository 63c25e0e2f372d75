#pragma once
// Always-on invariant checks (fail-stop). A broken invariant means the process can no longer
// be trusted with replicated state, so it aborts rather than continuing (etcd, LogCabin PANIC).
// Expected failures are values (common/result.h), never assertions.
#include <cstdio>
#include <cstdlib>

namespace tern::detail {
[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "TERN_ASSERT failed: %s at %s:%d%s%s\n", expr, file, line, msg ? ": " : "",
               msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace tern::detail

#define TERN_ASSERT(cond)                                                           \
  do {                                                                              \
    if (!(cond)) [[unlikely]] ::tern::detail::assert_fail(#cond, __FILE__, __LINE__, nullptr); \
  } while (0)

#define TERN_ASSERT_MSG(cond, msg)                                                  \
  do {                                                                              \
    if (!(cond)) [[unlikely]] ::tern::detail::assert_fail(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
