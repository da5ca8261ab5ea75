// A digest of a whole file that a leader keeps up to date page by page, so
// every point of a chain can say what the file looks like after it without
// anyone rereading the file.
//
// Construction (LtHash16, a homomorphic multiset hash after Bellare and
// Micciancio, as in Lewi et al., "Securing update propagation with
// homomorphic hashing"): the digest is the lane-wise sum mod 2^16 of 1024
// uint16 lanes over one element per page. A page's element is 2048 bytes of
// AES-128-CTR keystream (zero IV) keyed by the first 16 bytes of
// SHA-256("duckblock-lthash-v1" || page id, u64 little endian || SHA-256 of
// the page's bytes). Changing a page subtracts its old element and adds its
// new one. The page hash is the SHA-256 the page index already keeps, so the
// leader hashes nothing more. The file's last page enters as its actual
// (short) bytes, and the file length is carried beside the digest (in the
// published record), so (length, digest) describes the file exactly.
// Finding two files with one digest needs a lattice attack on a 16 Kbit
// state; an accidental collision has probability 2^-16384 per pair.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "duckblock/sha256.h"

namespace duckblock {

class ObjectStore;

inline constexpr size_t kLtHashLanes = 1024;
inline constexpr size_t kLtHashBytes = kLtHashLanes * 2;

class FileDigest {
 public:
  // Adds or removes the element of page `page_id` whose bytes hash to
  // `page_hash` (the SHA-256 of the page's bytes).
  void add_page(uint64_t page_id, const Sha256Digest& page_hash);
  void remove_page(uint64_t page_id, const Sha256Digest& page_hash);
  // Hashes the page's bytes, then add_page.
  void add_page_bytes(uint64_t page_id, const uint8_t* data, size_t len);

  void add(const FileDigest& other);
  void subtract(const FileDigest& other);

  // 2048 bytes, lanes little endian; hex of the same.
  std::array<uint8_t, kLtHashBytes> bytes() const;
  static FileDigest from_bytes(std::span<const uint8_t> bytes);  // kLtHashBytes of them
  std::string hex() const;
  static std::optional<FileDigest> from_hex(const std::string& hex);

  bool operator==(const FileDigest&) const = default;

 private:
  std::array<uint16_t, kLtHashLanes> lanes_{};
};

// The SHA-256 of a page's bytes (as the page index stores it).
Sha256Digest page_hash(const uint8_t* data, size_t len);

// The digest of the file at `path` as it is now, pages of `page_size`
// (reads the whole file: for checks and tests, never on the leader's path).
FileDigest digest_of_file(const std::string& path, uint32_t page_size);

// What the store says about the file after seq: the object
// {prefix}{db}/digest/{seq:016x}.json (key.h's digest_key).
struct DigestRecord {
  static constexpr int kVersion = 1;
  uint64_t seq = 0;
  uint64_t file_length = 0;
  uint32_t page_size = 0;
  FileDigest digest;
};
std::string encode_digest_record(const DigestRecord& r);
// Throws Error(kCorruption) if `text` is not a record of this version.
DigestRecord decode_digest_record(const std::string& text);

// The published record of `seq`, nullopt if the store has none (a chain
// written before digests, or a point whose digest was not published).
// Throws Error(kCorruption) if it is there but garbled or names another seq.
std::optional<DigestRecord> read_published_digest(ObjectStore& store, const std::string& prefix, const std::string& db,
                                                  uint64_t seq);

// Throws Error(kCorruption) naming `what` if the file at `path` is not the
// one `want` describes. The length is compared first: a file of another
// length (a forged length record makes one of terabytes) is refused
// without reading it.
void check_file_digest(const DigestRecord& want, const std::string& path, const std::string& what);

}  // namespace duckblock
