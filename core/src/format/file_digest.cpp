#include "duckblock/file_digest.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/key.h"
#include "duckblock/page_index.h"
#include "duckblock/store.h"

namespace duckblock {

namespace {

constexpr char kDomain[] = "duckblock-lthash-v1";

// One cipher context per thread, re-keyed per element (no allocation on
// the per-page path).
struct CipherCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
};

// The element of (page_id, page_hash) as 1024 lanes. The key derivation is
// a SHA-256 of 59 bytes; it goes straight to OpenSSL so the process's count
// of bytes hashed (sha256_bytes_hashed) keeps counting passes over data.
void element(uint64_t page_id, const Sha256Digest& page_hash, uint16_t* lanes) {
  uint8_t input[sizeof kDomain - 1 + 8 + 32];
  std::memcpy(input, kDomain, sizeof kDomain - 1);
  for (int i = 0; i < 8; ++i) input[sizeof kDomain - 1 + i] = static_cast<uint8_t>(page_id >> (8 * i));
  std::memcpy(input + sizeof kDomain - 1 + 8, page_hash.data(), 32);
  uint8_t key[SHA256_DIGEST_LENGTH];
  SHA256(input, sizeof input, key);
  static thread_local CipherCtx c;
  static const uint8_t kZeros[kLtHashBytes] = {};
  const uint8_t iv[16] = {};
  uint8_t stream[kLtHashBytes];
  int n = 0;
  if (!c.ctx || EVP_EncryptInit_ex(c.ctx, EVP_aes_128_ctr(), nullptr, key, iv) != 1 ||
      EVP_EncryptUpdate(c.ctx, stream, &n, kZeros, static_cast<int>(kLtHashBytes)) != 1 ||
      n != static_cast<int>(kLtHashBytes)) {
    throw Error(ErrorKind::kIO, "AES-128-CTR failed computing a file digest");
  }
  for (size_t i = 0; i < kLtHashLanes; ++i) lanes[i] = static_cast<uint16_t>(stream[2 * i] | (stream[2 * i + 1] << 8));
}

}  // namespace

Sha256Digest page_hash(const uint8_t* data, size_t len) {
  Sha256 h;
  h.update(data, len);
  return h.finish();
}

void FileDigest::add_page(uint64_t page_id, const Sha256Digest& hash) {
  uint16_t e[kLtHashLanes];
  element(page_id, hash, e);
  for (size_t i = 0; i < kLtHashLanes; ++i) lanes_[i] = static_cast<uint16_t>(lanes_[i] + e[i]);
}

void FileDigest::remove_page(uint64_t page_id, const Sha256Digest& hash) {
  uint16_t e[kLtHashLanes];
  element(page_id, hash, e);
  for (size_t i = 0; i < kLtHashLanes; ++i) lanes_[i] = static_cast<uint16_t>(lanes_[i] - e[i]);
}

void FileDigest::add_page_bytes(uint64_t page_id, const uint8_t* data, size_t len) {
  add_page(page_id, page_hash(data, len));
}

void FileDigest::add(const FileDigest& o) {
  for (size_t i = 0; i < kLtHashLanes; ++i) lanes_[i] = static_cast<uint16_t>(lanes_[i] + o.lanes_[i]);
}

void FileDigest::subtract(const FileDigest& o) {
  for (size_t i = 0; i < kLtHashLanes; ++i) lanes_[i] = static_cast<uint16_t>(lanes_[i] - o.lanes_[i]);
}

std::array<uint8_t, kLtHashBytes> FileDigest::bytes() const {
  std::array<uint8_t, kLtHashBytes> out{};
  for (size_t i = 0; i < kLtHashLanes; ++i) {
    out[2 * i] = static_cast<uint8_t>(lanes_[i]);
    out[2 * i + 1] = static_cast<uint8_t>(lanes_[i] >> 8);
  }
  return out;
}

FileDigest FileDigest::from_bytes(std::span<const uint8_t> b) {
  if (b.size() != kLtHashBytes) throw Error(ErrorKind::kCorruption, "a file digest is 2048 bytes");
  FileDigest d;
  for (size_t i = 0; i < kLtHashLanes; ++i) d.lanes_[i] = static_cast<uint16_t>(b[2 * i] | (b[2 * i + 1] << 8));
  return d;
}

std::string FileDigest::hex() const {
  auto b = bytes();
  return to_hex(b);
}

std::optional<FileDigest> FileDigest::from_hex(const std::string& hex) {
  if (hex.size() != 2 * kLtHashBytes) return std::nullopt;
  std::array<uint8_t, kLtHashBytes> b{};
  for (size_t i = 0; i < kLtHashBytes; ++i) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      char c = hex[2 * i + k];
      int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (x < 0) return std::nullopt;
      v = v * 16 + x;
    }
    b[i] = static_cast<uint8_t>(v);
  }
  return from_bytes(b);
}

// The digest is a sum over pages, so contiguous ranges of them are summed on
// up to four threads and the sums added: restore and follow check it after
// the last write, when nothing else is running, and one thread hashing a
// GiB (SHA-256 per page, then its element) took about a second here.
FileDigest digest_of_file(const std::string& path, uint32_t page_size) {
  FilePageReader reader(path);
  const uint64_t length = reader.file_size();
  const uint64_t pages = (length + page_size - 1) / page_size;
  constexpr uint64_t kMinBytesPerThread = 16u << 20;
  const uint64_t threads = std::clamp<uint64_t>(
      std::min<uint64_t>(std::thread::hardware_concurrency(), length / kMinBytesPerThread), 1, 4);
  std::vector<FileDigest> sums(threads);
  std::vector<std::exception_ptr> errors(threads);
  auto sum_range = [&](uint64_t t) {
    try {
      FilePageReader own(path);
      read_page_range(own, page_size, length, pages * t / threads, pages * (t + 1) / threads,
                      [&](uint64_t id, const uint8_t* p, size_t n) { sums[t].add_page_bytes(id, p, n); });
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> helpers;
  for (uint64_t t = 1; t < threads; ++t) helpers.emplace_back(sum_range, t);
  sum_range(0);
  for (auto& h : helpers) h.join();
  FileDigest d;
  for (uint64_t t = 0; t < threads; ++t) {
    if (errors[t]) std::rethrow_exception(errors[t]);
    d.add(sums[t]);
  }
  return d;
}

std::string encode_digest_record(const DigestRecord& r) {
  nlohmann::json j{{"format", "duckblock-file-digest"},
                   {"version", DigestRecord::kVersion},
                   {"seq", r.seq},
                   {"file_length", r.file_length},
                   {"page_size", r.page_size},
                   {"construction", "lthash16-aes128ctr-sha256"},
                   {"lthash", r.digest.hex()}};
  return j.dump() + "\n";
}

DigestRecord decode_digest_record(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    if (j.at("format") != "duckblock-file-digest" || j.at("version") != DigestRecord::kVersion) {
      throw Error(ErrorKind::kCorruption, "not a file digest record of version 1");
    }
    DigestRecord r;
    r.seq = j.at("seq").get<uint64_t>();
    r.file_length = j.at("file_length").get<uint64_t>();
    r.page_size = j.at("page_size").get<uint32_t>();
    auto d = FileDigest::from_hex(j.at("lthash").get<std::string>());
    // The page size sizes the reads of a check: bounded as a segment's is.
    if (!d || r.page_size == 0 || r.page_size > kMaxPageSize) {
      throw Error(ErrorKind::kCorruption, "its lthash or page size is malformed");
    }
    r.digest = *d;
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::kCorruption, std::string("a file digest record does not parse: ") + e.what());
  }
}

std::optional<DigestRecord> read_published_digest(ObjectStore& store, const std::string& prefix, const std::string& db,
                                                  uint64_t seq) {
  const std::string key = digest_key(prefix, db, seq);
  constexpr size_t kMaxRecordBytes = 64 << 10;  // it takes about 4300
  auto bytes = get_record_if_exists(store, key, kMaxRecordBytes);
  if (!bytes) return std::nullopt;
  DigestRecord r;
  try {
    r = decode_digest_record(std::string(bytes->begin(), bytes->end()));
  } catch (const Error& e) {
    throw Error(ErrorKind::kCorruption, "the digest object " + key + " is damaged: " + e.what());
  }
  if (r.seq != seq) {
    throw Error(ErrorKind::kCorruption,
                "the digest object " + key + " names seq " + std::to_string(r.seq) + ", not " + std::to_string(seq));
  }
  return r;
}

void check_file_digest(const DigestRecord& want, const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_errno("cannot stat " + path);
  const auto file_length = static_cast<uint64_t>(st.st_size);
  if (file_length != want.file_length) {
    throw Error(ErrorKind::kCorruption, what + " is " + std::to_string(file_length) + " bytes long, but the chain's digest at seq " +
                                            std::to_string(want.seq) + " says " + std::to_string(want.file_length));
  }
  if (!(digest_of_file(path, want.page_size) == want.digest)) {
    throw Error(ErrorKind::kCorruption, what + " does not match the chain's whole-file digest at seq " +
                                            std::to_string(want.seq) +
                                            ": its bytes are not the ones the leader had after that seq");
  }
}

}  // namespace duckblock
