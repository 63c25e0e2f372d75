#pragma once
// The Admin capability (service/proto/admin.capnp) served over Cap'n Proto RPC: each call maps
// onto one Node operation and resolves when the node has an outcome.
#include <capnp/capability.h>

#include "service/node.h"

namespace tern::service {

// The bootstrap capability for the client port. The node must outlive the RPC system.
capnp::Capability::Client make_admin_capability(Node& node);
// The same, as a server object (to be combined with the client API's: client_api.h).
kj::Own<capnp::Capability::Server> make_admin_server(Node& node);

}  // namespace tern::service
