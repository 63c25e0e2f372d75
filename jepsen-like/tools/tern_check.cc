// tern-check: checks a JSON-lines history for linearizability (docs/checker.md).
//   tern-check --model register|list|mutex [--timeout SECONDS] [--html FILE] history.jsonl
// Exit codes: 0 linearizable, 1 not linearizable, 2 unknown, 3 bad input.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"
#include "jepsen-like/checker/report.h"

int main(int argc, char** argv) {
  CLI::App app{"tern-check: linearizability checker for JSON-lines histories"};
  std::string model, path, html;
  double timeout = 0;
  unsigned threads = 0;
  app.add_option("--model", model, "register, list or mutex")->required()->check(CLI::IsMember({"register", "list", "mutex"}));
  app.add_option("--timeout", timeout, "bound on the whole check in seconds; reaching it gives 'unknown'");
  app.add_option("--html", html, "write a self-contained HTML timeline of the history");
  app.add_option("--threads", threads, "worker threads (default: all cores)");
  app.add_option("history", path, "history file (JSON lines)")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 3;
  }
  auto history = tern::check::read_history_file(path);
  if (!history) {
    std::cerr << "tern-check: " << path;
    if (history.error().line) std::cerr << ":" << history.error().line;
    std::cerr << ": " << history.error().message << "\n";
    return 3;
  }
  tern::check::CheckOptions options;
  options.timeout_seconds = timeout;
  options.threads = threads;
  auto result = tern::check::check_history(*history, model, options);
  if (result.bad_input) {
    std::cerr << "tern-check: " << path << ": " << result.reason << "\n";
    return 3;
  }
  tern::check::print_summary(std::cout, *history, result);
  if (!html.empty()) {
    std::ofstream out(html);
    out << tern::check::render_html(*history, result, "tern-check: " + path);
    if (!out) {
      std::cerr << "tern-check: cannot write " << html << "\n";
      return 3;
    }
  }
  switch (result.verdict) {
    case tern::check::Verdict::linearizable: return 0;
    case tern::check::Verdict::not_linearizable: return 1;
    default: return 2;
  }
}
