#pragma once
// Human-readable output of a check: the text summary and the self-contained HTML timeline.
#include <ostream>
#include <string>

#include "jepsen-like/checker/history.h"
#include "jepsen-like/checker/linearizability.h"

namespace tern::check {

void print_summary(std::ostream& out, const History& history, const CheckResult& result);
std::string describe_operation(const Operation& op);
// The text with < > & " as HTML entities (element text and double-quoted attribute values);
// tern-jepsen's report.html uses it too.
std::string html_escape(const std::string& s);
// One row per process, one bar per operation from invocation to completion (indeterminate ones
// run to the end); the operations that cannot be placed, and the window they span, in red.
std::string render_html(const History& history, const CheckResult& result, const std::string& title);

}  // namespace tern::check
