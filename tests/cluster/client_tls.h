#pragma once
// The harness's client TLS material (mutual TLS on the client ports by default) for the client
// library's options, so library tests connect the way applications do.
#include "tern/client.h"
#include "tests/cluster/harness.h"

namespace tern::testing {

inline void apply_client_tls(const Cluster& c, ClientOptions& o) {
  const auto& t = c.client_tls();
  o.tls_ca_file = t.ca_file;
  o.tls_cert_file = t.cert_file;
  o.tls_key_file = t.key_file;
  o.tls_server_name = t.server_name;
}

}  // namespace tern::testing
