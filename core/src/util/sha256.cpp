#include "duckblock/sha256.h"

#include <openssl/evp.h>

#include <atomic>
#include <cassert>

namespace duckblock {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

namespace {
// One relaxed add per update (a page or a buffer): nothing beside hashing
// 4 KiB or more.
std::atomic<uint64_t> g_bytes_hashed{0};
}  // namespace

void Sha256::update(const void* data, size_t n) {
  if (n && EVP_DigestUpdate(ctx_, data, n) != 1) std::abort();
  g_bytes_hashed.fetch_add(n, std::memory_order_relaxed);
}

uint64_t sha256_bytes_hashed() { return g_bytes_hashed.load(std::memory_order_relaxed); }

Sha256Digest Sha256::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != out.size()) std::abort();
  return out;
}

Sha256Digest sha256(std::span<const uint8_t> data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.finish();
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

}  // namespace duckblock
