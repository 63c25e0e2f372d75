#pragma once
// Output of the `tern` CLI (docs/cli.md, Output): the formats, JSON encoding of values and stats,
// and exit codes. Values are bytes; JSON carries them as "value" when they are valid UTF-8 and
// as "value_base64" (RFC 4648, padded) otherwise, so no value is silently re-encoded.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "tern/client.h"

namespace tern::cli {

using Json = nlohmann::ordered_json;

enum class Format { simple, table, json, ndjson, raw };

// Documented exit codes (docs/cli.md, Exit codes). lock/elect -- CMD exit with CMD's status.
enum Exit : int {
  exit_ok = 0,
  exit_error = 1,        // any other failure
  exit_usage = 2,        // bad arguments: unknown flag, missing argument, invalid path or value
  exit_not_found = 3,    // no such node (or lease, or leader)
  exit_conflict = 4,     // version or transaction check failed, node exists, not empty, stale token
  exit_unavailable = 5,  // no endpoint answered, timed out, outcome unknown, session expired
  exit_lock_lost = 6,    // lock or leadership lost while CMD ran (CMD was signalled)
  exit_not_acquired = 7, // lock --try found it taken, or lock --timeout passed
};

int exit_code(Error e);

bool valid_utf8(const std::string& s);
std::string base64_encode(const std::string& bytes);
bool base64_decode(const std::string& text, std::string& out);

// Adds "value" or "value_base64" to `j`.
void put_value(Json& j, const std::string& bytes, const char* key = "value");
Json stat_json(const Stat& s);
// For people: the value if it is printable UTF-8, else "<N bytes>".
std::string printable(const std::string& bytes);

// Prints rows in the format: table (columns, in order; missing cells empty), json (one array,
// or the object itself when `single`), ndjson (one object a line). simple and raw are the
// caller's; returns false for them.
bool emit_structured(Format f, const std::vector<Json>& rows, const std::vector<std::string>& columns, bool single);
void print_table(const std::vector<std::string>& columns, const std::vector<std::vector<std::string>>& cells);
std::string cell(const Json& v);

}  // namespace tern::cli
