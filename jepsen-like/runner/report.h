#pragma once
// report.html (issue 13): one self-contained page (inline SVG and CSS, no script) that a person
// reads after a run: the verdict and every check; latency over time per operation type and
// throughput over time, with the nemesis's fault windows shaded; latency percentiles; the faults
// injected and the network mechanism; links to the history, nemesis log, node logs and the
// checker's timeline of any anomaly (tern-check's HTML, also embedded).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tern::jepsen {

// A fault window of the nemesis log, in seconds since the run's start; a membership step is an
// instant (start == end). A window still open at the end of the log ends at `last`.
struct FaultWindow {
  std::string family, variant, nodes;
  double start = 0, end = -1;
};
std::vector<FaultWindow> read_fault_windows(const std::string& nemesis_log, double last);

// Reads DIR/history.jsonl and DIR/nemesis.log, writes DIR/report.html. `results` is what
// results.json holds. Returns false (and `error`) if the page could not be written.
bool write_report(const std::string& dir, const nlohmann::json& results, std::string* error);

}  // namespace tern::jepsen
