#pragma once
// TLS on the client port (issue 17, docs/security.md): the server's kj::TlsContext built from PEM
// files. kj-tls (OpenSSL underneath) wraps any kj::AsyncIoStream, so RpcListener runs it on top of
// the bridge's AsioStream; handshakes then count against the listener's slots and timeouts.
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace kj {
class TlsContext;
class TlsCertificate;
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

// Every certificate of a PEM bundle, one TlsCertificate each: kj-tls (0.9.2) trusts only the
// first certificate of each TlsCertificate it is given, so a bundle of two CAs (the old and the
// new one, during a CA rotation) must be split. Throws kj::Exception on malformed PEM.
std::vector<kj::TlsCertificate> split_pem_certificates(const std::string& pem);

// The whole file if it can be read and holds a PEM block; else an error naming `what` (the flag).
Result<std::string, std::string> read_pem_file(const std::string& path, const char* what);

}  // namespace tern::net
