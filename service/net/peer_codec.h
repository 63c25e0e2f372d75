#pragma once
// Conversion between raft::Message and the Cap'n Proto peer schema (service/proto/peer.capnp),
// as self-contained frames of bytes. Generated Cap'n Proto types stay inside service/net: callers
// see only raft types and bytes. Malformed or oversized input is an error value, never a crash.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "raft/messages.h"

namespace tern::net {

inline constexpr std::size_t max_peer_frame_bytes = 64 << 20;  // larger snapshots travel in chunks

struct PeerFrame {
  std::uint64_t cluster_id = 0;
  raft::Message message;
};

enum class CodecError : std::uint8_t { malformed, too_large, unaligned };
const char* codec_error_name(CodecError e);

// One frame: the Cap'n Proto flat-array encoding (segment table + segments), word-aligned.
std::string encode_peer_frame(std::uint64_t cluster_id, const raft::Message& m);
Result<PeerFrame, CodecError> decode_peer_frame(std::string_view bytes);

}  // namespace tern::net
