#pragma once
// Opening a stream to a ternd client port (--client-addr), in plaintext or TLS (issue 17): the
// one helper that ternadm, the cluster test harness and the benchmarks share, so the rules below
// live in one place. TLS is kj-tls (OpenSSL): TLS 1.2 or later, the server's certificate must
// chain to one of the given CAs (the system trust store is not used) and name the server; a
// client certificate is presented when one is given (servers run with --client-tls-ca demand it).
#include <kj/async-io.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace kj {
class TlsContext;
}

namespace tern::client {

struct TlsOptions {
  std::string ca_file;    // PEM bundle of CAs that may sign the server's certificate; empty: plaintext
  std::string cert_file;  // PEM: this client's certificate (optional; with key_file)
  std::string key_file;   // PEM: its private key
  // The name the server's certificate must carry; empty: the host connected to. kj-tls checks
  // DNS names only, so an address needs a certificate that lists it as a DNS name too
  // (scripts/tern-certs.sh does), or a name here that the certificate has.
  std::string server_name;
  bool enabled() const { return !ca_file.empty(); }
};

// TERN_TLS_CA, TERN_TLS_CERT, TERN_TLS_KEY and TERN_TLS_SERVER_NAME, each empty when unset.
TlsOptions tls_options_from_env();

class Connector {
 public:
  // Loads the files once; an error text naming the file otherwise.
  static Result<std::shared_ptr<Connector>, std::string> make(const TlsOptions& options);
  ~Connector();

  // TCP to host:port, then (TLS) the handshake: resolves once the server's certificate checked
  // out. The caller bounds the wait (e.g. kj::Timer::timeoutAfter). With TLS 1.3 a server that
  // refuses this client's certificate says so only after the handshake: the first read fails.
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(kj::Network& network, const std::string& host, std::uint16_t port);
  bool tls() const { return tls_ != nullptr; }

 private:
  Connector() = default;
  TlsOptions options_;
  std::shared_ptr<kj::TlsContext> tls_;  // shared with pending handshakes
};

}  // namespace tern::client
