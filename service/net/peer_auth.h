#pragma once
// Peer authentication (docs/protocol.md "Peer handshake"): a per-cluster secret proven in a
// challenge-response handshake with nonces from both sides, bound to the cluster id and both
// node ids, then a truncated HMAC on every frame under a per-connection session key. Only a
// holder of the secret can open a peer connection or inject a frame into one. (Mutual TLS with
// per-node certificates would also keep members from impersonating each other and encrypt the
// traffic: not done, docs/security.md.)
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/result.h"
#include "raft/types.h"

namespace tern::net {

inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMacBytes = 32;
inline constexpr std::size_t kFrameTagBytes = 16;  // per-frame HMAC, truncated (NIST SP 800-107)
inline constexpr std::size_t kMinSecretBytes = 32;

using Nonce = std::array<std::uint8_t, kNonceBytes>;
using Mac = std::array<std::uint8_t, kMacBytes>;

// Handshake messages, fixed sizes (little-endian integers).
//   hello     (connector -> acceptor): magic "TRNH" u32 | version u32 | cluster u64 | from u64 |
//             to u64 | nonce_c[32]                                               = 64 bytes
//   challenge (acceptor -> connector): magic "TRNC" u32 | nonce_s[32] | mac_a[32] = 68 bytes
//   response  (connector -> acceptor): magic "TRNR" u32 | mac_c[32]               = 36 bytes
inline constexpr std::uint32_t kHelloMagic = 0x484e5254;      // "TRNH"
inline constexpr std::uint32_t kChallengeMagic = 0x434e5254;  // "TRNC"
inline constexpr std::uint32_t kResponseMagic = 0x524e5254;   // "TRNR"
inline constexpr std::uint32_t kHandshakeVersion = 1;
inline constexpr std::size_t kHelloBytes = 64;
inline constexpr std::size_t kChallengeBytes = 68;
inline constexpr std::size_t kResponseBytes = 36;

struct Hello {
  std::uint64_t cluster_id = 0;
  raft::NodeId from, to;
  Nonce nonce{};
};

std::string encode_hello(const Hello& h);
// nullopt-like failure: wrong size, magic or version.
Result<Hello, std::string> decode_hello(std::string_view bytes);

Nonce random_nonce();

// HMAC-SHA256 over the concatenation of `pieces`.
Mac hmac_sha256(std::string_view key, std::initializer_list<std::string_view> pieces);
bool equal_macs(const std::uint8_t* a, const std::uint8_t* b, std::size_t n);  // constant time

// The handshake's proofs and the session key, all bound to the whole transcript.
enum class Role : std::uint8_t { acceptor, connector, session };
Mac handshake_mac(std::string_view secret, Role role, const Hello& hello, const Nonce& nonce_s);

// Per-frame tag: HMAC(session, seq | frame bytes), truncated.
std::array<std::uint8_t, kFrameTagBytes> frame_tag(const Mac& session, std::uint64_t seq, std::string_view frame);

}  // namespace tern::net
