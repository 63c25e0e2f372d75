#include "client/connect.h"

#include "common/pem.h"

#include <kj/compat/tls.h>
#include <kj/exception.h>

#include <cstdlib>
#include <optional>

namespace tern::client {
namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

TlsOptions tls_options_from_env() {
  return TlsOptions{env_or_empty("TERN_TLS_CA"), env_or_empty("TERN_TLS_CERT"), env_or_empty("TERN_TLS_KEY"),
                    env_or_empty("TERN_TLS_SERVER_NAME")};
}

Connector::~Connector() = default;

Result<std::shared_ptr<Connector>, std::string> Connector::make(const TlsOptions& options) {
  std::shared_ptr<Connector> c(new Connector());
  c->options_ = options;
  if (!options.enabled()) {
    if (!options.cert_file.empty() || !options.key_file.empty())
      return fail(std::string("a client certificate needs the CA file (--tls-ca) that signed the server's"));
    return c;
  }
  if (options.cert_file.empty() != options.key_file.empty())
    return fail(std::string("--tls-cert and --tls-key go together"));
  auto ca = read_pem_file(options.ca_file, "--tls-ca");
  if (!ca) return fail(ca.error());
  std::string stage = "--tls-ca '" + options.ca_file + "'";
  try {
    auto cas = split_pem_certificates(*ca);
    if (cas.empty()) return fail(stage + ": no certificate in it");
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;  // a tern cluster's CA is private
    o.trustedCertificates = kj::arrayPtr(cas.data(), cas.size());
    o.minVersion = kj::TlsVersion::TLS_1_2;
    std::optional<kj::TlsKeypair> pair;  // outlives the context's construction
    if (!options.cert_file.empty()) {
      auto cert = read_pem_file(options.cert_file, "--tls-cert");
      if (!cert) return fail(cert.error());
      auto key = read_pem_file(options.key_file, "--tls-key");
      if (!key) return fail(key.error());
      stage = "--tls-key '" + options.key_file + "'";
      kj::TlsPrivateKey k(kj::StringPtr(key->c_str()));
      stage = "--tls-cert '" + options.cert_file + "'";
      pair = kj::TlsKeypair{kj::mv(k), kj::TlsCertificate(kj::StringPtr(cert->c_str()))};
      o.defaultKeypair = *pair;
    }
    stage = "TLS context (a key that does not match its certificate?)";
    c->tls_ = std::make_shared<kj::TlsContext>(kj::mv(o));
    return c;
  } catch (const kj::Exception& e) {
    return fail(stage + ": " + std::string(e.getDescription().cStr()));
  }
}

kj::Promise<kj::Own<kj::AsyncIoStream>> Connector::connect(kj::Network& network, const std::string& host,
                                                            std::uint16_t port) {
  auto opened = network.parseAddress(host, port).then([](kj::Own<kj::NetworkAddress> addr) {
    return addr->connect().attach(kj::mv(addr));
  });
  if (!tls_) return opened;
  std::string name = options_.server_name.empty() ? host : options_.server_name;
  // wrapClient copies the name into OpenSSL before it returns.
  return opened.then([tls = tls_, name](kj::Own<kj::AsyncIoStream> s) { return tls->wrapClient(kj::mv(s), name); });
}

}  // namespace tern::client
