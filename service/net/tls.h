#pragma once
// TLS on the client port (issue 17, docs/security.md): the server's kj::TlsContext built from PEM
// files. kj-tls (OpenSSL underneath) wraps any kj::AsyncIoStream, so RpcListener runs it on top of
// the bridge's AsioStream; handshakes then count against the listener's slots and timeouts.
#include <memory>
#include <string>

#include "common/result.h"

namespace kj {
class TlsContext;
}  // namespace kj

namespace tern::net {

struct ServerTlsFiles {
  std::string cert_file;  // PEM: the server certificate, then any intermediates
  std::string key_file;   // PEM: its private key (unencrypted)
  // PEM bundle of the CAs whose client certificates are accepted. Empty: no client certificate
  // is asked for (TLS protects the stream and authenticates the server only).
  std::string ca_file;
};

// The server context: TLS 1.2 or later, the key pair from the files, and with a CA file every
// client must present a certificate that chains to one of its CAs (mutual TLS). A text naming
// the file on any error (unreadable, not PEM, key not matching the certificate).
Result<std::shared_ptr<kj::TlsContext>, std::string> make_server_tls(const ServerTlsFiles& files);

// read_pem_file and split_pem_certificates: common/pem.h (shared with the client library).

}  // namespace tern::net
