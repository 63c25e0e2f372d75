#include "service/net/peer_auth.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

#include "common/assert.h"
#include "common/le.h"

namespace tern::net {

namespace {

std::string_view view(const std::uint8_t* p, std::size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// One EVP_MAC (HMAC with SHA-256) fetched once per thread; the loop thread is the only user.
EVP_MAC* hmac_alg() {
  thread_local EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  TERN_ASSERT_MSG(mac != nullptr, "OpenSSL has no HMAC");
  return mac;
}

}  // namespace

std::string encode_hello(const Hello& h) {
  std::string out;
  le::put_u32(out, kHelloMagic);
  le::put_u32(out, kHandshakeVersion);
  le::put_u64(out, h.cluster_id);
  le::put_u64(out, h.from.value);
  le::put_u64(out, h.to.value);
  out.append(view(h.nonce.data(), h.nonce.size()));
  TERN_ASSERT(out.size() == kHelloBytes);
  return out;
}

Result<Hello, std::string> decode_hello(std::string_view b) {
  if (b.size() != kHelloBytes) return fail(std::string("bad hello size"));
  if (le::get_u32(b.data()) != kHelloMagic) return fail(std::string("not a tern peer hello"));
  if (le::get_u32(b.data() + 4) != kHandshakeVersion) return fail(std::string("unsupported handshake version"));
  Hello h;
  h.cluster_id = le::get_u64(b.data() + 8);
  h.from = raft::NodeId{le::get_u64(b.data() + 16)};
  h.to = raft::NodeId{le::get_u64(b.data() + 24)};
  std::memcpy(h.nonce.data(), b.data() + 32, kNonceBytes);
  return h;
}

Nonce random_nonce() {
  Nonce n{};
  TERN_ASSERT_MSG(RAND_bytes(n.data(), static_cast<int>(n.size())) == 1, "no randomness from OpenSSL");
  return n;
}

Mac hmac_sha256(std::string_view key, std::initializer_list<std::string_view> pieces) {
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(hmac_alg());
  TERN_ASSERT(ctx != nullptr);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  TERN_ASSERT(EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) == 1);
  for (auto p : pieces) TERN_ASSERT(EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(p.data()), p.size()) == 1);
  Mac out{};
  std::size_t len = 0;
  TERN_ASSERT(EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1 && len == out.size());
  EVP_MAC_CTX_free(ctx);
  return out;
}

bool equal_macs(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }

Mac handshake_mac(std::string_view secret, Role role, const Hello& hello, const Nonce& nonce_s) {
  const char* label = role == Role::acceptor ? "tern-peer-v1 acceptor" : role == Role::connector ? "tern-peer-v1 connector"
                                                                                                  : "tern-peer-v1 session";
  std::string transcript = encode_hello(hello);  // cluster, both ids, nonce_c
  transcript.append(view(nonce_s.data(), nonce_s.size()));
  return hmac_sha256(secret, {std::string_view(label), std::string_view("\0", 1), transcript});
}

std::array<std::uint8_t, kFrameTagBytes> frame_tag(const Mac& session, std::uint64_t seq, std::string_view frame) {
  std::string s;
  le::put_u64(s, seq);
  Mac m = hmac_sha256(view(session.data(), session.size()), {s, frame});
  std::array<std::uint8_t, kFrameTagBytes> out{};
  std::memcpy(out.data(), m.data(), out.size());
  return out;
}

}  // namespace tern::net
