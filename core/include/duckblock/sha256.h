// SHA-256 through OpenSSL's EVP interface, which uses the CPU's SHA
// instructions where present (about 1.8 GB/s here, see docs/PERFORMANCE.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

struct evp_md_ctx_st;

namespace duckblock {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  Sha256Digest finish();  // the object may not be used afterwards

 private:
  evp_md_ctx_st* ctx_;
};

Sha256Digest sha256(std::span<const uint8_t> data);

// Bytes every Sha256 in the process has hashed so far. For tests that count
// the hash passes over a segment (docs/ARCHITECTURE.md).
uint64_t sha256_bytes_hashed();
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace duckblock
