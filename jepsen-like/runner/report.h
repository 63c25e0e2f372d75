#pragma once
// report.html (issue 13): one self-contained page (inline SVG and CSS, no script) that a person
// reads after a run: the verdict and every check; latency over time per operation type and
// throughput over time, with the nemesis's fault windows shaded; latency percentiles; the faults
// injected and the network mechanism; links to the history, nemesis log, node logs and the
// checker's timeline of any anomaly (tern-check's HTML, also embedded).
#include <string>

#include <nlohmann/json.hpp>

namespace tern::jepsen {

// Reads DIR/history.jsonl and DIR/nemesis.log, writes DIR/report.html. `results` is what
// results.json holds. Returns false (and `error`) if the page could not be written.
bool write_report(const std::string& dir, const nlohmann::json& results, std::string* error);

}  // namespace tern::jepsen
