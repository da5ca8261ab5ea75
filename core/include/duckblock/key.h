// The key layout shared with other consumers of the format:
//   {prefix}{db}/{generation:04x}/{seq:016x}.hadbp
// generation 0 holds incrementals, generation 1 snapshots.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace duckblock {

inline constexpr uint16_t kIncrementalGeneration = 0;
inline constexpr uint16_t kSnapshotGeneration = 1;

struct SegmentKey {
  std::string db;
  uint16_t generation = 0;
  uint64_t seq = 0;
  bool operator==(const SegmentKey&) const = default;
};

// Throws Error(kInvalidArgument) for names that are empty, longer than 255
// bytes, "." or "..", or contain '/', '\\' or control characters: a name must
// never lead a key outside its prefix.
void validate_db_name(const std::string& db);

std::string format_key(const std::string& prefix, const SegmentKey& key);
// The prefix under which every key of `db` in `generation` lies.
std::string generation_prefix(const std::string& prefix, const std::string& db,
                              uint16_t generation);
// The whole-file digest of the file after `seq` (file_digest.h), a side
// object hadbp v1 readers ignore: {prefix}{db}/digest/{seq:016x}.json
std::string digest_key(const std::string& prefix, const std::string& db, uint64_t seq);
// The prefix under which every digest key of `db` lies.
std::string digest_prefix(const std::string& prefix, const std::string& db);
// The seq of a digest key of `db`, nullopt if `key` is not one.
std::optional<uint64_t> parse_digest_key(const std::string& prefix, const std::string& db, const std::string& key);
// nullopt if `key` is not exactly prefix + a valid segment key.
std::optional<SegmentKey> parse_key(const std::string& prefix, const std::string& key);

}  // namespace duckblock
