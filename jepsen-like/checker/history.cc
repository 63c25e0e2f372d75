#include "jepsen-like/checker/history.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tern::check {

namespace {
ParseError error(std::size_t line, std::string msg) { return ParseError{line, std::move(msg)}; }
}  // namespace

Result<History, ParseError> parse_history(std::string_view text) {
  History h;
  struct Open {
    std::size_t op_index;
  };
  std::map<std::int64_t, Open> open;  // process -> its invoked, unanswered operation
  std::vector<bool> dropped;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return fail(error(line_no, "not a JSON object"));
    if (!j.contains("process") || !j["process"].is_number_integer())
      return fail(error(line_no, "\"process\" must be an integer"));
    if (!j.contains("type") || !j["type"].is_string()) return fail(error(line_no, "\"type\" must be a string"));
    if (!j.contains("f") || !j["f"].is_string()) return fail(error(line_no, "\"f\" must be a string"));
    if (j.contains("key") && !j["key"].is_string() && !j["key"].is_number_integer())
      return fail(error(line_no, "\"key\" must be a string or an integer"));
    if (j.contains("time") && !j["time"].is_number_integer()) return fail(error(line_no, "\"time\" must be an integer"));
    std::int64_t process = j["process"].get<std::int64_t>();
    std::string type = j["type"].get<std::string>();
    std::string f = j["f"].get<std::string>();
    std::string key;
    if (j.contains("key")) key = j["key"].is_string() ? j["key"].get<std::string>() : j["key"].dump();
    std::string value = j.contains("value") ? j["value"].dump() : "null";
    std::optional<std::int64_t> time;
    if (j.contains("time")) time = j["time"].get<std::int64_t>();
    if (type == "invoke") {
      if (open.count(process)) return fail(error(line_no, "process " + std::to_string(process) + " invoked an operation while another is open"));
      Operation op;
      op.id = h.ops.size();
      op.process = process;
      op.f = std::move(f);
      op.key = std::move(key);
      op.input = std::move(value);
      op.output = "null";
      op.status = OpStatus::info;
      op.invoke_line = line_no;
      op.invoke_time = time;
      open[process] = Open{h.ops.size()};
      h.ops.push_back(std::move(op));
      dropped.push_back(false);
    } else if (type == "ok" || type == "fail" || type == "info") {
      auto it = open.find(process);
      if (it == open.end()) return fail(error(line_no, "\"" + type + "\" without an open invocation of process " + std::to_string(process)));
      Operation& op = h.ops[it->second.op_index];
      if (op.f != f) return fail(error(line_no, "completion f \"" + f + "\" does not match invocation f \"" + op.f + "\""));
      open.erase(it);
      op.complete_line = line_no;
      op.complete_time = time;
      if (type == "ok") {
        op.status = OpStatus::ok;
        op.output = std::move(value);
      } else if (type == "fail") {
        dropped[op.id] = true;
        ++h.failed;
      }  // info: stays indeterminate; its completion line is ignored below
    } else {
      return fail(error(line_no, "unknown type \"" + type + "\""));
    }
  }
  h.lines = line_no;
  // Indeterminate operations may take effect at any later point: their "completion" is after
  // the end of the history.
  std::vector<Operation> kept;
  kept.reserve(h.ops.size());
  for (auto& op : h.ops) {
    if (dropped[op.id]) continue;
    if (op.status == OpStatus::info) op.complete_line = line_no + 1;
    op.id = kept.size();
    kept.push_back(std::move(op));
  }
  h.ops = std::move(kept);
  return h;
}

Result<History, ParseError> read_history_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ParseError{0, "cannot open " + path});
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_history(ss.str());
}

}  // namespace tern::check
