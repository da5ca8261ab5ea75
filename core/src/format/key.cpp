#include "duckblock/key.h"

#include <cstdio>

#include "duckblock/error.h"

namespace duckblock {

void validate_db_name(const std::string& db) {
  auto bad = [&](const std::string& why) {
    throw Error(ErrorKind::kInvalidArgument, "invalid database name '" + db + "': " + why);
  };
  if (db.empty()) bad("it is empty");
  if (db.size() > 255) bad("longer than 255 bytes");
  if (db == "." || db == "..") bad("'.' and '..' are not allowed");
  for (unsigned char c : db) {
    if (c == '/' || c == '\\') bad("it may not contain '/' or '\\'");
    if (c < 0x20 || c == 0x7f) bad("it may not contain control characters");
  }
}

std::string generation_prefix(const std::string& prefix, const std::string& db,
                              uint16_t generation) {
  validate_db_name(db);
  char gen[8];
  std::snprintf(gen, sizeof gen, "%04x", generation);
  return prefix + db + "/" + gen + "/";
}

std::string format_key(const std::string& prefix, const SegmentKey& key) {
  char seq[20];
  std::snprintf(seq, sizeof seq, "%016llx", static_cast<unsigned long long>(key.seq));
  return generation_prefix(prefix, key.db, key.generation) + seq + ".hadbp";
}

namespace {
bool lower_hex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}
}  // namespace

std::string digest_prefix(const std::string& prefix, const std::string& db) {
  validate_db_name(db);
  return prefix + db + "/digest/";
}

std::string digest_key(const std::string& prefix, const std::string& db, uint64_t seq) {
  char name[24];
  std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(seq));
  return digest_prefix(prefix, db) + name + ".json";
}

std::optional<uint64_t> parse_digest_key(const std::string& prefix, const std::string& db, const std::string& key) {
  const std::string dir = digest_prefix(prefix, db);
  if (key.size() != dir.size() + 16 + 5 || key.compare(0, dir.size(), dir) != 0) return std::nullopt;
  std::string seq = key.substr(dir.size(), 16);
  if (!lower_hex(seq) || key.substr(dir.size() + 16) != ".json") return std::nullopt;
  return std::stoull(seq, nullptr, 16);
}

std::optional<SegmentKey> parse_key(const std::string& prefix, const std::string& key) {
  if (key.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  std::string rest = key.substr(prefix.size());
  // db "/" gen(4) "/" seq(16) ".hadbp"
  constexpr size_t kTail = 1 + 4 + 1 + 16 + 6;
  if (rest.size() <= kTail) return std::nullopt;
  std::string db = rest.substr(0, rest.size() - kTail);
  std::string tail = rest.substr(rest.size() - kTail);
  if (tail[0] != '/' || tail[5] != '/' || tail.substr(22) != ".hadbp") return std::nullopt;
  std::string gen = tail.substr(1, 4), seq = tail.substr(6, 16);
  if (!lower_hex(gen) || !lower_hex(seq)) return std::nullopt;
  try {
    validate_db_name(db);
  } catch (const Error&) {
    return std::nullopt;
  }
  return SegmentKey{db, static_cast<uint16_t>(std::stoul(gen, nullptr, 16)),
                    std::stoull(seq, nullptr, 16)};
}

}  // namespace duckblock
