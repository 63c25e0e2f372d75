#pragma once
// The cluster harness moved to jepsen-like/cluster/ (shared with tern-jepsen, issue 13); this
// header keeps the tests' and benchmarks' includes working.
#include "jepsen-like/cluster/harness.h"
