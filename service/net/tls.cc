#include "service/net/tls.h"

#include "common/pem.h"

#include <kj/compat/tls.h>
#include <kj/exception.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <optional>

namespace tern::net {

namespace {

// OpenSSL would accept a key that does not belong to the certificate and fail every handshake
// later; refuse to start instead. nullopt when they match.
std::optional<std::string> check_key_matches(const std::string& cert_pem, const std::string& key_pem) {
  BIO* cb = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  X509* cert = cb != nullptr ? PEM_read_bio_X509(cb, nullptr, nullptr, nullptr) : nullptr;
  EVP_PKEY* key = kb != nullptr ? PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr) : nullptr;
  std::optional<std::string> err;
  if (cert == nullptr) err = "the certificate does not parse";
  else if (key == nullptr) err = "the key does not parse (encrypted keys are not supported)";
  else if (X509_check_private_key(cert, key) != 1) err = "the key does not belong to the certificate";
  EVP_PKEY_free(key);
  X509_free(cert);
  BIO_free(kb);
  BIO_free(cb);
  ERR_clear_error();
  return err;
}

}  // namespace

Result<std::shared_ptr<kj::TlsContext>, std::string> make_server_tls(const ServerTlsFiles& files) {
  auto cert = read_pem_file(files.cert_file, "--client-tls-cert");
  if (!cert) return fail(cert.error());
  auto key = read_pem_file(files.key_file, "--client-tls-key");
  if (!key) return fail(key.error());
  std::string ca;
  if (!files.ca_file.empty()) {
    auto r = read_pem_file(files.ca_file, "--client-tls-ca");
    if (!r) return fail(r.error());
    ca = std::move(*r);
  }
  if (auto err = check_key_matches(*cert, *key)) return fail("--client-tls-cert '" + files.cert_file + "' and --client-tls-key '" + files.key_file + "': " + *err);
  // kj-tls reports OpenSSL errors as exceptions; here they become the operator's error text.
  std::string stage = "--client-tls-key '" + files.key_file + "'";
  try {
    kj::TlsPrivateKey private_key(kj::StringPtr(key->c_str()));
    stage = "--client-tls-cert '" + files.cert_file + "'";
    kj::TlsKeypair pair{kj::mv(private_key), kj::TlsCertificate(kj::StringPtr(cert->c_str()))};
    stage = "--client-tls-ca '" + files.ca_file + "'";
    std::vector<kj::TlsCertificate> cas = split_pem_certificates(ca);
    if (!files.ca_file.empty() && cas.empty()) return fail(stage + ": no certificate in it");
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;  // clients are ours: only the given CAs count
    o.verifyClients = !cas.empty();
    o.trustedCertificates = kj::arrayPtr(cas.data(), cas.size());
    o.minVersion = kj::TlsVersion::TLS_1_2;
    o.defaultKeypair = pair;
    stage = "TLS context";
    // The context takes its own references to the key, the certificates and the CAs.
    return std::make_shared<kj::TlsContext>(kj::mv(o));
  } catch (const kj::Exception& e) {
    return fail(stage + ": " + std::string(e.getDescription().cStr()));
  }
}

}  // namespace tern::net
