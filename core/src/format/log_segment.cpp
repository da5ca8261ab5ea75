// Log segments (docs/FORMAT.md, "Log segments"): the byte layout, the key
// layout, and listing them.
#include <cstdio>
#include <cstring>

#include "duckblock/error.h"
#include "duckblock/key.h"
#include "duckblock/sha256.h"
#include "duckblock/wal.h"

namespace duckblock {

namespace {

constexpr char kMagic[5] = {'H', 'A', 'D', 'B', 'W'};
constexpr uint8_t kVersion = 1;

void put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// The checksum covers every byte before the trailer: header (all fields,
// the time included) and data. First 8 bytes of SHA-256, big-endian, as in
// hadbp v1.
uint64_t checksum_of(const uint8_t* p, size_t n) {
  auto d = sha256({p, n});
  return get64(d.data());
}

std::string hex16(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool parse_hex16(const std::string& s, uint64_t* out) {
  if (s.size() != 16 || s.find_first_not_of("0123456789abcdef") != std::string::npos) return false;
  *out = std::stoull(s, nullptr, 16);
  return true;
}

}  // namespace

std::vector<uint8_t> encode_log_segment(const LogSegmentHeader& h, const uint8_t* data, uint64_t* checksum) {
  if (h.length > kMaxLogSegmentData) {
    throw Error(ErrorKind::kInvalidArgument, "log segment of " + std::to_string(h.length) + " bytes is too large");
  }
  if (h.index == 0) throw Error(ErrorKind::kInvalidArgument, "log segment index 0 (they start at 1)");
  std::vector<uint8_t> out(kLogHeaderSize + h.length + 8);
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, 5);
  p[5] = kVersion;
  p[6] = 0;  // flags
  p[7] = 0;  // reserved
  put64(p + 8, h.base_seq);
  put64(p + 16, h.base_checksum);
  put64(p + 24, h.index);
  put64(p + 32, h.prev_checksum);
  put64(p + 40, h.offset);
  put64(p + 48, h.length);
  put64(p + 56, static_cast<uint64_t>(h.created_ms));
  if (h.length) std::memcpy(p + kLogHeaderSize, data, h.length);
  uint64_t c = checksum_of(p, kLogHeaderSize + h.length);
  put64(p + kLogHeaderSize + h.length, c);
  if (checksum) *checksum = c;
  return out;
}

LogSegment decode_log_segment(const std::vector<uint8_t>& b) {
  auto bad = [](const std::string& why) { throw Error(ErrorKind::kCorruption, "log segment: " + why); };
  if (b.size() < kLogHeaderSize + 8) bad("truncated (" + std::to_string(b.size()) + " bytes)");
  if (std::memcmp(b.data(), kMagic, 5) != 0) bad("wrong magic (not a duckblock log segment)");
  if (b[5] != kVersion) bad("unsupported version " + std::to_string(b[5]));
  if (b[6] != 0 || b[7] != 0) bad("unknown flags");
  LogSegment s;
  auto& h = s.header;
  h.base_seq = get64(&b[8]);
  h.base_checksum = get64(&b[16]);
  h.index = get64(&b[24]);
  h.prev_checksum = get64(&b[32]);
  h.offset = get64(&b[40]);
  h.length = get64(&b[48]);
  h.created_ms = static_cast<int64_t>(get64(&b[56]));
  // Checked before anything is sized from it.
  if (h.length > kMaxLogSegmentData) bad("claims " + std::to_string(h.length) + " bytes");
  if (b.size() != kLogHeaderSize + h.length + 8) {
    bad("holds " + std::to_string(b.size()) + " bytes but its header claims " + std::to_string(h.length) +
        " bytes of data (truncated or trailing bytes)");
  }
  if (h.index == 0) bad("index 0");
  if (h.index == 1 && h.prev_checksum != h.base_checksum) bad("segment 1 does not name its base's checksum");
  if (h.offset > kMaxLogSegmentData * 1024) bad("offset " + std::to_string(h.offset) + " is implausible");
  s.checksum = get64(&b[kLogHeaderSize + h.length]);
  if (checksum_of(b.data(), kLogHeaderSize + h.length) != s.checksum) bad("checksum mismatch");
  s.data.assign(b.begin() + kLogHeaderSize, b.begin() + static_cast<std::ptrdiff_t>(kLogHeaderSize + h.length));
  return s;
}

std::string log_base_prefix(const std::string& prefix, const std::string& db, uint64_t base_seq) {
  validate_db_name(db);
  return prefix + db + "/wal/" + hex16(base_seq) + "/";
}

std::string log_key(const std::string& prefix, const std::string& db, uint64_t base_seq, uint64_t index) {
  return log_base_prefix(prefix, db, base_seq) + hex16(index) + ".hadbw";
}

std::vector<LogEntry> list_log(ObjectStore& store, const std::string& prefix, const std::string& db,
                               std::optional<uint64_t> base_seq) {
  validate_db_name(db);
  std::string root = prefix + db + "/wal/";
  std::string from = base_seq ? log_base_prefix(prefix, db, *base_seq) : root;
  std::vector<LogEntry> out;
  for (const auto& info : store.list(from)) {
    // {base:016x}/{index:016x}.hadbw after the root; anything else is not ours.
    std::string rest = info.key.substr(root.size());
    if (rest.size() != 16 + 1 + 16 + 6 || rest[16] != '/' || rest.compare(33, 6, ".hadbw") != 0) continue;
    LogEntry e;
    if (!parse_hex16(rest.substr(0, 16), &e.base_seq) || !parse_hex16(rest.substr(17, 16), &e.index)) continue;
    e.key = info.key;
    e.size = info.size;
    e.modified_ms = info.modified_ms;
    out.push_back(std::move(e));
  }
  return out;  // the store lists in key order, which is (base, index) order
}

LogSegment fetch_log_segment(ObjectStore& store, const LogEntry& entry) {
  if (entry.size > kLogHeaderSize + kMaxLogSegmentData + 8) {
    throw Error(ErrorKind::kCorruption, "object " + entry.key + " is too large for a log segment");
  }
  VectorSink sink;
  store.get(entry.key, sink);
  LogSegment s;
  try {
    s = decode_log_segment(sink.data());
  } catch (const Error& e) {
    throw Error(e.kind(), "object " + entry.key + ": " + e.what());
  }
  if (s.header.base_seq != entry.base_seq || s.header.index != entry.index) {
    throw Error(ErrorKind::kCorruption, "object " + entry.key + " holds log segment " +
                                            std::to_string(s.header.index) + " of base " +
                                            std::to_string(s.header.base_seq) + ", its key says otherwise");
  }
  return s;
}

}  // namespace duckblock
