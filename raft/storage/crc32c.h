#pragma once
// CRC32C (Castagnoli, RFC 3720), the checksum of every WAL record and snapshot. Uses the SSE4.2
// instruction when the CPU has it (checked at run time) and a table otherwise.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tern::storage {

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0);
inline std::uint32_t crc32c_of(std::string_view s, std::uint32_t crc = 0) { return crc32c(s.data(), s.size(), crc); }
std::uint32_t crc32c_portable(const void* data, std::size_t n, std::uint32_t crc = 0);
bool crc32c_hardware_available();

}  // namespace tern::storage
