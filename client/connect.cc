#include "client/connect.h"

#include <kj/compat/tls.h>
#include <kj/exception.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <vector>

namespace tern::client {
namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

Result<std::string, std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(std::string(what) + ": cannot read '" + path + "'");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// kj-tls (0.9.2) trusts only the first certificate of each TlsCertificate: a bundle (old and new
// CA during a rotation) becomes one TlsCertificate per PEM block.
std::vector<kj::TlsCertificate> split_certificates(const std::string& pem) {
  static const std::string kBegin = "-----BEGIN CERTIFICATE-----";
  std::vector<kj::TlsCertificate> out;
  for (auto at = pem.find(kBegin); at != std::string::npos;) {
    auto next = pem.find(kBegin, at + kBegin.size());
    out.emplace_back(kj::StringPtr(pem.substr(at, next == std::string::npos ? std::string::npos : next - at).c_str()));
    at = next;
  }
  return out;
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
  auto ca = read_file(options.ca_file, "--tls-ca");
  if (!ca) return fail(ca.error());
  std::string stage = "--tls-ca '" + options.ca_file + "'";
  try {
    auto cas = split_certificates(*ca);
    if (cas.empty()) return fail(stage + ": no certificate in it");
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;  // a tern cluster's CA is private
    o.trustedCertificates = kj::arrayPtr(cas.data(), cas.size());
    o.minVersion = kj::TlsVersion::TLS_1_2;
    std::optional<kj::TlsKeypair> pair;  // outlives the context's construction
    if (!options.cert_file.empty()) {
      auto cert = read_file(options.cert_file, "--tls-cert");
      if (!cert) return fail(cert.error());
      auto key = read_file(options.key_file, "--tls-key");
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
