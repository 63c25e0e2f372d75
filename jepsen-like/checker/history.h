#pragma once
// Histories of operations against a (possibly faulty) system, in the JSON-lines format that
// every tern fault test writes (docs/checker.md):
//
//   {"process": <int>, "type": "invoke"|"ok"|"fail"|"info", "f": <string>,
//    "key": <string, optional>, "value": <JSON>, "time": <int ns, optional>}
//
// Line order is time order. An invoke is answered by the next ok/fail/info of the same process;
// a process has one operation open at a time. `fail` = the operation did not take effect (it is
// dropped with its invocation); `info`, or no answer at all = unknown: it may take effect at any
// point after its invocation, or never.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace tern::check {

enum class OpStatus : std::uint8_t { ok, info };

// One completed (or indeterminate) operation. Values are kept as canonical JSON text
// (nlohmann dump), which models intern or parse as they need.
struct Operation {
  std::size_t id = 0;            // position among the operations of the history
  std::int64_t process = 0;
  std::string f;
  std::string key;               // empty when the history has no keys
  std::string input;             // the invoke's value, canonical JSON
  std::string output;            // the ok's value, canonical JSON ("null" for info)
  OpStatus status = OpStatus::ok;
  std::size_t invoke_line = 0;   // 1-based line numbers: the order of events
  std::size_t complete_line = 0; // for info operations: one past the last line
  std::optional<std::int64_t> invoke_time, complete_time;
};

struct History {
  std::vector<Operation> ops;    // in invocation order; failed operations are dropped
  std::size_t lines = 0;
  std::size_t failed = 0;        // dropped `fail` operations
};

struct ParseError {
  std::size_t line = 0;
  std::string message;
};

Result<History, ParseError> parse_history(std::string_view text);
Result<History, ParseError> read_history_file(const std::string& path);

}  // namespace tern::check
