#include "jepsen-like/runner/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "jepsen-like/checker/report.h"

namespace tern::jepsen {

namespace fs = std::filesystem;

namespace {

// Short for the many uses below; the one escaping of both HTML pages is the checker's.
std::string esc(const std::string& s) { return check::html_escape(s); }

std::string fmt(double v, int digits = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// One completed operation: invoked at `t0`, completed at `t1` (seconds since the run's start).
struct Done {
  std::string f, type;
  double t0 = 0, t1 = 0;
};

using Window = FaultWindow;

const char* kPalette[] = {"#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};

std::string family_color(const std::string& family) {
  static const std::map<std::string, std::string> colors{{"kill", "#d62728"},      {"pause", "#ff7f0e"},
                                                         {"partition", "#1f77b4"}, {"clock", "#9467bd"},
                                                         {"disk", "#8c564b"},      {"membership", "#2ca02c"}};
  auto it = colors.find(family);
  return it != colors.end() ? it->second : "#999999";
}

std::vector<Done> read_history(const std::string& path, double* last) {
  std::ifstream in(path);
  std::map<std::int64_t, std::pair<std::string, double>> open;  // process -> (f, invoke time)
  std::vector<Done> out;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("time")) continue;
    double t = j["time"].get<double>() / 1e9;
    *last = std::max(*last, t);
    auto p = j.value("process", std::int64_t{0});
    auto type = j.value("type", std::string());
    if (type == "invoke") {
      open[p] = {j.value("f", std::string()), t};
    } else if (auto it = open.find(p); it != open.end()) {
      out.push_back({it->second.first, type, it->second.second, t});
      open.erase(it);
    }
  }
  return out;
}


struct Axes {
  double width = 1100, height = 300, left = 60, right = 20, top = 20, bottom = 36;
  double t_max = 1;
  double x(double t) const { return left + (width - left - right) * t / t_max; }
  double plot_h() const { return height - top - bottom; }
};

void shade(std::ostringstream& o, const Axes& a, const std::vector<Window>& windows) {
  for (auto& w : windows) {
    double x0 = a.x(w.start), x1 = std::max(a.x(w.end), x0 + 1.5);
    o << "<rect x=\"" << fmt(x0) << "\" y=\"" << a.top << "\" width=\"" << fmt(x1 - x0) << "\" height=\"" << a.plot_h()
      << "\" fill=\"" << family_color(w.family) << "\" opacity=\"0.15\"><title>" << esc(w.family + ": " + w.variant + " " + w.nodes)
      << " (" << fmt(w.start, 2) << "-" << fmt(w.end, 2) << " s)</title></rect>";
  }
}

void time_axis(std::ostringstream& o, const Axes& a) {
  double step = a.t_max <= 20 ? 1 : a.t_max <= 120 ? 10 : a.t_max <= 1200 ? 60 : 600;
  for (double t = 0; t <= a.t_max + 1e-9; t += step) {
    o << "<line x1=\"" << fmt(a.x(t)) << "\" y1=\"" << a.height - a.bottom << "\" x2=\"" << fmt(a.x(t)) << "\" y2=\""
      << a.height - a.bottom + 4 << "\" stroke=\"#333\"/><text x=\"" << fmt(a.x(t)) << "\" y=\"" << a.height - a.bottom + 16
      << "\" text-anchor=\"middle\">" << fmt(t, 0) << "</text>";
  }
  o << "<line x1=\"" << a.left << "\" y1=\"" << a.height - a.bottom << "\" x2=\"" << a.width - a.right << "\" y2=\""
    << a.height - a.bottom << "\" stroke=\"#333\"/><text x=\"" << (a.left + a.width) / 2 << "\" y=\"" << a.height - 4
    << "\" text-anchor=\"middle\">time since the start (s)</text>";
}

std::string latency_chart(const std::vector<Done>& ops, const std::vector<Window>& windows, double t_max,
                          const std::map<std::string, std::string>& color) {
  Axes a;
  a.height = 360;
  a.t_max = t_max;
  // Log scale from 0.1 ms to the largest latency (at least 1 s).
  double max_ms = 1000;
  for (auto& d : ops) max_ms = std::max(max_ms, (d.t1 - d.t0) * 1000);
  double lo = std::log10(0.1), hi = std::log10(max_ms * 1.2);
  auto y = [&](double v_ms) {
    double l = std::log10(std::max(v_ms, 0.1));
    return a.top + a.plot_h() * (1 - (l - lo) / (hi - lo));
  };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << a.width << "\" height=\"" << a.height << "\">";
  shade(o, a, windows);
  for (double v = 0.1; v <= max_ms * 1.2; v *= 10) {
    o << "<line x1=\"" << a.left << "\" y1=\"" << fmt(y(v)) << "\" x2=\"" << a.width - a.right << "\" y2=\"" << fmt(y(v))
      << "\" stroke=\"#ddd\"/><text x=\"" << a.left - 4 << "\" y=\"" << fmt(y(v) + 4) << "\" text-anchor=\"end\">"
      << (v < 1 ? fmt(v, 1) : fmt(v, 0)) << "</text>";
  }
  o << "<text x=\"12\" y=\"" << a.top + a.plot_h() / 2 << "\" transform=\"rotate(-90 12 " << a.top + a.plot_h() / 2
    << ")\" text-anchor=\"middle\">latency (ms, log)</text>";
  // At most ~40,000 points: beyond, every k-th operation (the page stays a few MB).
  std::size_t stride = std::max<std::size_t>(1, ops.size() / 40000 + 1);
  for (std::size_t i = 0; i < ops.size(); i += stride) {
    auto& d = ops[i];
    double cx = a.x(d.t0), cy = y((d.t1 - d.t0) * 1000);
    const auto& c = color.at(d.f);
    if (d.type == "ok")
      o << "<circle cx=\"" << fmt(cx) << "\" cy=\"" << fmt(cy) << "\" r=\"1.6\" fill=\"" << c << "\" opacity=\"0.55\"/>";
    else if (d.type == "fail")
      o << "<circle cx=\"" << fmt(cx) << "\" cy=\"" << fmt(cy) << "\" r=\"2.2\" fill=\"none\" stroke=\"" << c << "\"/>";
    else
      o << "<rect x=\"" << fmt(cx - 2.5) << "\" y=\"" << fmt(cy - 2.5) << "\" width=\"5\" height=\"5\" fill=\"" << c
        << "\" stroke=\"#000\"/>";
  }
  time_axis(o, a);
  o << "</svg>";
  if (stride > 1) o << "<p class=\"note\">Every " << stride << "th operation drawn (" << ops.size() << " in all).</p>";
  return o.str();
}

std::string throughput_chart(const std::vector<Done>& ops, const std::vector<Window>& windows, double t_max) {
  Axes a;
  a.height = 260;
  a.t_max = t_max;
  double bin = t_max <= 60 ? 0.5 : t_max <= 600 ? 2 : 10;
  auto bins = static_cast<std::size_t>(std::ceil(t_max / bin)) + 1;
  std::map<std::string, std::vector<double>> series{{"ok", std::vector<double>(bins)},
                                                    {"fail", std::vector<double>(bins)},
                                                    {"info", std::vector<double>(bins)}};
  for (auto& d : ops) {
    auto i = static_cast<std::size_t>(d.t1 / bin);
    if (series.count(d.type) && i < bins) series[d.type][i] += 1 / bin;
  }
  double max_rate = 1;
  for (auto& [k, v] : series)
    for (double r : v) max_rate = std::max(max_rate, r);
  auto y = [&](double r) { return a.top + a.plot_h() * (1 - r / (max_rate * 1.1)); };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << a.width << "\" height=\"" << a.height << "\">";
  shade(o, a, windows);
  double step = std::pow(10, std::floor(std::log10(max_rate)));
  for (double r = 0; r <= max_rate * 1.1; r += step)
    o << "<line x1=\"" << a.left << "\" y1=\"" << fmt(y(r)) << "\" x2=\"" << a.width - a.right << "\" y2=\"" << fmt(y(r))
      << "\" stroke=\"#ddd\"/><text x=\"" << a.left - 4 << "\" y=\"" << fmt(y(r) + 4) << "\" text-anchor=\"end\">" << fmt(r, 0)
      << "</text>";
  o << "<text x=\"12\" y=\"" << a.top + a.plot_h() / 2 << "\" transform=\"rotate(-90 12 " << a.top + a.plot_h() / 2
    << ")\" text-anchor=\"middle\">completions / s</text>";
  const std::map<std::string, std::string> colors{{"ok", "#2ca02c"}, {"fail", "#d62728"}, {"info", "#ff7f0e"}};
  for (auto& [type, v] : series) {
    o << "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"" << colors.at(type) << "\" points=\"";
    for (std::size_t i = 0; i < bins; ++i) o << fmt(a.x((static_cast<double>(i) + 0.5) * bin)) << "," << fmt(y(v[i])) << " ";
    o << "\"/>";
  }
  time_axis(o, a);
  o << "</svg>";
  return o.str();
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

}  // namespace

std::vector<FaultWindow> read_fault_windows(const std::string& path, double last) {
  std::ifstream in(path);
  std::map<int, Window> by_id;
  std::vector<Window> instant;  // membership steps: a thin mark each
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    double t = j.value("time_ms", 0.0) / 1000.0;
    auto phase = j.value("phase", std::string());
    std::string nodes;
    if (j.contains("nodes"))
      for (auto& n : j["nodes"]) nodes += (nodes.empty() ? "n" : ",n") + std::to_string(n.get<std::uint64_t>());
    if (phase == "start") {
      auto& w = by_id[j.value("window", 0)];
      w.family = j.value("fault", std::string());
      w.variant = j.value("action", std::string()) + " " + j.value("target", std::string());
      w.nodes = nodes;
      w.start = t;
    } else if (phase == "end") {
      by_id[j.value("window", 0)].end = t;
    } else if (j.value("fault", std::string()) == "membership") {
      instant.push_back({"membership", j.value("action", std::string()), nodes, t, t});
    }
  }
  std::vector<Window> out;
  for (auto& [id, w] : by_id) {
    if (w.end < 0) w.end = last;
    out.push_back(w);
  }
  out.insert(out.end(), instant.begin(), instant.end());
  return out;
}

bool write_report(const std::string& dir, const nlohmann::json& results, std::string* error) {
  double last = results.value("duration_s", 1.0);
  auto ops = read_history(dir + "/history.jsonl", &last);
  auto windows = read_fault_windows(dir + "/nemesis.log", last);
  std::map<std::string, std::string> color;
  for (auto& d : ops)
    if (!color.count(d.f)) color[d.f] = kPalette[color.size() % (sizeof kPalette / sizeof kPalette[0])];

  std::string verdict = results.value("verdict", std::string("?"));
  const char* banner = verdict == "valid" ? "#dff0d8" : verdict == "invalid" ? "#f2dede" : "#fcf8e3";
  std::ostringstream o;
  o << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tern-jepsen: " << esc(results.value("workload", std::string()))
    << " / " << esc(results.value("nemesis", std::string())) << ": " << esc(verdict) << "</title><style>"
    << "body{font-family:sans-serif;margin:16px;max-width:1140px}table{border-collapse:collapse;margin:8px 0}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}"
       ".valid{background:#dff0d8}.invalid{background:#f2dede}.unknown,.skipped{background:#fcf8e3}"
       "text{font-size:11px;font-family:sans-serif}.legend span{display:inline-block;padding:1px 8px;margin:2px 6px 2px 0;"
       "border-radius:3px;font-size:12px}.note{color:#555;font-size:12px}code{font-size:12px}"
       "iframe{width:100%;height:420px;border:1px solid #ccc}details{font-size:12px}"
    << "</style></head><body>";
  o << "<div style=\"background:" << banner << ";padding:10px 14px;border-radius:4px\"><h1 style=\"margin:0\">" << esc(verdict)
    << "</h1><div>workload <b>" << esc(results.value("workload", std::string())) << "</b>, nemesis <b>"
    << esc(results.value("nemesis", std::string())) << "</b>, seed " << results.value("seed", 0ull) << "</div></div>";

  // Parameters.
  o << "<h2>Run</h2><table>";
  auto row = [&](const std::string& k, const std::string& v) { o << "<tr><th>" << esc(k) << "</th><td>" << v << "</td></tr>"; };
  for (const char* k : {"nodes", "endpoints", "time_s", "rate", "clients", "seed", "duration_s", "planted_bug"})
    if (results.contains(k)) row(k, esc(results[k].is_string() ? results[k].get<std::string>() : results[k].dump()));
  std::string net = results.value("network", std::string("none"));
  if (results.contains("network_note")) net += " <span class=\"note\">(" + esc(results["network_note"].get<std::string>()) + ")</span>";
  row("network faults through", net);
  if (results.contains("operations")) {
    auto& ops_j = results["operations"];
    row("operations", std::to_string(ops_j.value("ok", 0)) + " ok, " + std::to_string(ops_j.value("fail", 0)) + " fail, " +
                          std::to_string(ops_j.value("info", 0)) + " info (indeterminate)");
  }
  o << "</table>";

  // Checks.
  o << "<h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>detail</th></tr>";
  if (results.contains("checks"))
    for (auto& [name, c] : results["checks"].items()) {
      auto v = c.value("verdict", std::string());
      auto detail = c.value("detail", std::string());
      o << "<tr><td>" << esc(name) << "</td><td class=\"" << esc(v) << "\">" << esc(v) << "</td><td>";
      if (detail.size() > 300)
        o << "<details><summary>" << esc(detail.substr(0, 200)) << "…</summary>" << esc(detail) << "</details>";
      else
        o << esc(detail);
      o << "</td></tr>";
    }
  o << "</table>";

  // Anomalies: tern-check's timelines, linked and embedded.
  std::vector<std::string> anomalies;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    auto n = e.path().filename().string();
    if (n.size() > 13 && n.compare(n.size() - 13, 13, "-anomaly.html") == 0) anomalies.push_back(n);
  }
  std::sort(anomalies.begin(), anomalies.end());
  if (!anomalies.empty()) {
    o << "<h2>Anomalies</h2>";
    for (auto& a : anomalies)
      o << "<p><a href=\"" << esc(a) << "\">" << esc(a) << "</a> (tern-check's timeline: the operations that cannot be "
        << "placed in red)</p><iframe src=\"" << esc(a) << "\"></iframe>";
  }

  // Charts.
  double t_max = std::max(last, 1.0);
  std::map<std::string, bool> families;
  for (auto& w : windows) families[w.family] = true;
  o << "<h2>Latency over time</h2><p class=\"legend\">";
  for (auto& [f, c] : color) o << "<span style=\"background:" << c << ";color:#fff\">" << esc(f) << "</span>";
  o << " &nbsp; ● ok &nbsp; ○ fail &nbsp; ■ info (indeterminate; drawn at its invocation) &nbsp;|&nbsp; faults: ";
  for (auto& [f, b] : families)
    o << "<span style=\"background:" << family_color(f) << ";opacity:.5\">" << esc(f) << "</span>";
  o << "</p>" << latency_chart(ops, windows, t_max, color);
  o << "<h2>Throughput over time</h2><p class=\"legend\"><span style=\"background:#2ca02c;color:#fff\">ok</span>"
       "<span style=\"background:#d62728;color:#fff\">fail</span><span style=\"background:#ff7f0e;color:#fff\">info</span></p>"
    << throughput_chart(ops, windows, t_max);

  // Latency percentiles per operation type and outcome.
  std::map<std::pair<std::string, std::string>, std::vector<double>> lat;
  for (auto& d : ops) lat[{d.f, d.type}].push_back((d.t1 - d.t0) * 1000);
  o << "<h2>Latency (ms)</h2><table><tr><th>operation</th><th>outcome</th><th>count</th><th>p50</th><th>p90</th>"
       "<th>p99</th><th>max</th></tr>";
  for (auto& [k, v] : lat) {
    auto n = v.size();
    o << "<tr><td>" << esc(k.first) << "</td><td>" << esc(k.second) << "</td><td>" << n << "</td><td>"
      << fmt(percentile(v, 0.5), 2) << "</td><td>" << fmt(percentile(v, 0.9), 2) << "</td><td>" << fmt(percentile(v, 0.99), 2)
      << "</td><td>" << fmt(v.back(), 2) << "</td></tr>";
  }
  o << "</table>";

  // Faults.
  o << "<h2>Faults</h2><table><tr><th>family</th><th>injected</th></tr>";
  if (results.contains("faults"))
    for (auto& [k, v] : results["faults"].items()) o << "<tr><td>" << esc(k) << "</td><td>" << v.dump() << "</td></tr>";
  o << "</table>";
  if (results.contains("fault_variants") && !results["fault_variants"].empty()) {
    o << "<table><tr><th>variant</th><th>injected</th></tr>";
    for (auto& [k, v] : results["fault_variants"].items()) o << "<tr><td>" << esc(k) << "</td><td>" << v.dump() << "</td></tr>";
    o << "</table>";
  }
  if (results.contains("nemesis_notes") && !results["nemesis_notes"].empty()) {
    o << "<p>Nemesis notes:</p><ul>";
    for (auto& n : results["nemesis_notes"]) o << "<li>" << esc(n.get<std::string>()) << "</li>";
    o << "</ul>";
  }
  o << "<details><summary>Fault windows (" << windows.size() << ")</summary><table><tr><th>family</th><th>what</th>"
       "<th>nodes</th><th>from (s)</th><th>to (s)</th></tr>";
  for (auto& w : windows)
    o << "<tr><td>" << esc(w.family) << "</td><td>" << esc(w.variant) << "</td><td>" << esc(w.nodes) << "</td><td>"
      << fmt(w.start, 2) << "</td><td>" << fmt(w.end, 2) << "</td></tr>";
  o << "</table></details>";

  // Files.
  o << "<h2>Files</h2><ul>";
  for (const char* f : {"history.jsonl", "nemesis.log", "results.json"})
    o << "<li><a href=\"" << f << "\">" << f << "</a></li>";
  if (fs::exists(dir + "/logs", ec)) {
    std::vector<std::string> logs;
    for (auto& e : fs::directory_iterator(dir + "/logs", ec)) logs.push_back(e.path().filename().string());
    std::sort(logs.begin(), logs.end());
    for (auto& l : logs) o << "<li><a href=\"logs/" << esc(l) << "\">logs/" << esc(l) << "</a></li>";
  }
  o << "</ul><p class=\"note\">How to read this page: docs/jepsen.md (\"The report\").</p></body></html>\n";

  std::ofstream out(dir + "/report.html");
  out << o.str();
  if (!out) {
    *error = "cannot write " + dir + "/report.html";
    return false;
  }
  return true;
}

}  // namespace tern::jepsen
