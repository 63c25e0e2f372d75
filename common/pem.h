#pragma once
// PEM files for kj-tls, shared by the server (service/net/tls.cc) and the client library
// (client/connect.cc), which may not include service/. Header-only like the rest of common/;
// only code that links kj-tls (CapnProto::kj-tls) may include it.
#include <kj/compat/tls.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/result.h"

namespace tern {

// The whole file if it can be read and holds a PEM block; else an error naming `what` (the flag).
inline Result<std::string, std::string> read_pem_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(std::string(what) + ": cannot read '" + path + "'");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (s.find("-----BEGIN ") == std::string::npos) return fail(std::string(what) + ": '" + path + "' holds no PEM block");
  return s;
}

// Every certificate of a PEM bundle, one TlsCertificate each: kj-tls (0.9.2) trusts only the
// first certificate of each TlsCertificate it is given, so a bundle of two CAs (the old and the
// new one, during a CA rotation) must be split. Throws kj::Exception on malformed PEM.
inline std::vector<kj::TlsCertificate> split_pem_certificates(const std::string& pem) {
  static const std::string kBegin = "-----BEGIN CERTIFICATE-----";
  std::vector<kj::TlsCertificate> out;
  for (auto at = pem.find(kBegin); at != std::string::npos;) {
    auto next = pem.find(kBegin, at + kBegin.size());
    out.emplace_back(kj::StringPtr(pem.substr(at, next == std::string::npos ? std::string::npos : next - at).c_str()));
    at = next;
  }
  return out;
}

}  // namespace tern
