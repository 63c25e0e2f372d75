#include "jepsen-like/checker/report.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace tern::check {

std::string describe_operation(const Operation& op) {
  std::string s = "line " + std::to_string(op.invoke_line) + ": process " + std::to_string(op.process) + " " + op.f;
  if (!op.key.empty()) s += " key=" + op.key;
  if (op.input != "null") s += " " + op.input;
  if (op.status == OpStatus::ok) {
    if (op.output != "null") s += " -> " + op.output;
    s += " (ok at line " + std::to_string(op.complete_line) + ")";
  } else {
    s += " (indeterminate)";
  }
  return s;
}

void print_summary(std::ostream& out, const History& history, const CheckResult& r) {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.3f", r.seconds);
  out << "verdict: " << verdict_name(r.verdict) << "\n"
      << "operations: " << r.operations << " (" << history.failed << " failed operations dropped)\n"
      << "keys: " << r.keys << "\n"
      << "time: " << secs << " s\n";
  if (!r.reason.empty()) out << "reason: " << r.reason << "\n";
  if (!r.violation) return;
  const Violation& v = *r.violation;
  out << "key: " << (v.key.empty() ? "(none)" : v.key) << "\n";
  out << "longest linearizable prefix: " << v.longest_prefix.size() << " operations";
  if (!v.longest_prefix.empty()) out << ", the last being " << describe_operation(history.ops[v.longest_prefix.back()]);
  out << "\nstate after it: " << v.state << "\n";
  out << "operations that cannot be placed after it:\n";
  for (auto id : v.unplaceable) out << "  " << describe_operation(history.ops[id]) << "\n";
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_html(const History& h, const CheckResult& r, const std::string& title) {
  std::set<std::size_t> bad;
  std::size_t window_lo = 0, window_hi = 0;
  if (r.violation) {
    bad.insert(r.violation->unplaceable.begin(), r.violation->unplaceable.end());
    window_lo = h.lines + 1;
    for (auto id : bad) {
      window_lo = std::min(window_lo, h.ops[id].invoke_line);
      window_hi = std::max(window_hi, h.ops[id].complete_line);
    }
  }
  std::map<std::int64_t, int> row;
  for (const auto& op : h.ops) row.emplace(op.process, 0);
  int i = 0;
  for (auto& [p, r2] : row) r2 = i++;
  const double width = 1200, row_h = 28, left = 90;
  const double scale = (width - left - 10) / static_cast<double>(std::max<std::size_t>(h.lines + 1, 1));
  auto x = [&](std::size_t line) { return left + scale * static_cast<double>(line); };
  std::ostringstream o;
  o << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" << html_escape(title) << "</title>"
    << "<style>body{font-family:sans-serif;margin:16px}rect.ok{fill:#7cb37c}rect.info{fill:#bbb}"
       "rect.bad{fill:#d9534f}rect.window{fill:#f8d7da;opacity:.6}text{font-size:12px}"
       ".legend span{display:inline-block;padding:2px 8px;margin-right:8px;border-radius:3px}</style></head><body>"
    << "<h1>" << html_escape(title) << "</h1><p><b>" << verdict_name(r.verdict) << "</b> — " << r.operations
    << " operations, " << r.keys << " keys";
  if (r.violation) o << "; key <code>" << html_escape(r.violation->key) << "</code>: " << bad.size() << " operations cannot be placed";
  o << "</p><p class=\"legend\"><span style=\"background:#7cb37c\">ok</span><span style=\"background:#bbb\">indeterminate</span>"
       "<span style=\"background:#d9534f\">cannot be placed</span><span style=\"background:#f8d7da\">failing window</span></p>";
  double height = row_h * static_cast<double>(row.size()) + 30;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height << "\">";
  if (r.violation)
    o << "<rect class=\"window\" x=\"" << x(window_lo) << "\" y=\"0\" width=\"" << std::max(2.0, x(window_hi) - x(window_lo))
      << "\" height=\"" << height << "\"/>";
  for (auto& [p, ri] : row)
    o << "<text x=\"4\" y=\"" << row_h * ri + 18 << "\">process " << p << "</text>";
  for (const auto& op : h.ops) {
    const char* cls = bad.count(op.id) ? "bad" : op.status == OpStatus::ok ? "ok" : "info";
    double y = row_h * row[op.process] + 4;
    o << "<rect class=\"" << cls << "\" x=\"" << x(op.invoke_line) << "\" y=\"" << y << "\" width=\""
      << std::max(2.0, x(op.complete_line) - x(op.invoke_line)) << "\" height=\"" << row_h - 8 << "\"><title>"
      << html_escape(describe_operation(op)) << "</title></rect>";
  }
  o << "</svg>";
  if (r.violation) {
    o << "<h2>Operations that cannot be placed</h2><ul>";
    for (auto id : r.violation->unplaceable) o << "<li>" << html_escape(describe_operation(h.ops[id])) << "</li>";
    o << "</ul><p>State after the longest linearizable prefix (" << r.violation->longest_prefix.size()
      << " operations): <code>" << html_escape(r.violation->state) << "</code></p>";
  }
  o << "</body></html>\n";
  return o.str();
}

}  // namespace tern::check
