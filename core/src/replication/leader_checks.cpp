#include "leader_checks.h"

#include <algorithm>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/key.h"

namespace duckblock {

namespace {

uint64_t be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

const ChainEntry* find_entry(const std::vector<ChainEntry>& v, uint64_t seq) {
  for (const auto& e : v) {
    if (e.seq == seq) return &e;
  }
  return nullptr;
}

// Passes a source's bytes on and hashes them.
class HashingSource final : public ByteSource {
 public:
  explicit HashingSource(ByteSource& in) : in_(in) {}
  size_t read(void* buf, size_t n) override {
    size_t got = in_.read(buf, n);
    hash_.update(buf, got);
    bytes_ += got;
    return got;
  }
  std::optional<uint64_t> remaining() const override { return in_.remaining(); }
  VerifiedUpload finish() { return {bytes_, hash_.finish()}; }

 private:
  ByteSource& in_;
  Sha256 hash_;
  uint64_t bytes_ = 0;
};

}  // namespace

VerifiedUpload verify_spooled_segment(const std::string& path, uint64_t seq) {
  SegmentSummary s;
  VerifiedUpload read;
  try {
    FileSource file(path);
    HashingSource src(file);
    s = verify_segment(src);
    read = src.finish();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kCorruption) throw;
    throw Error(ErrorKind::kCorruption, "spooled segment " + path + " is damaged (" + e.what() +
                                            "); it was not uploaded. Move the spool directory away and push "
                                            "again to rebuild the shipped state from the store");
  }
  if (s.header.seq != seq) {
    throw Error(ErrorKind::kCorruption, "spooled segment " + path + " holds seq " + std::to_string(s.header.seq) +
                                            ", not " + std::to_string(seq) + "; it was not uploaded");
  }
  return read;
}

UploadSource::UploadSource(const std::string& path, const VerifiedUpload& verified)
    : path_(path), in_(path), want_(verified) {}

void UploadSource::changed(const std::string& how) const {
  throw Error(ErrorKind::kCorruption, "spooled segment " + path_ + " changed after it was verified (" + how +
                                          "); the upload was abandoned and nothing of it was stored");
}

size_t UploadSource::read(void* buf, size_t n) {
  if (sent_ == want_.size) return 0;  // checked when the last byte went
  n = static_cast<size_t>(std::min<uint64_t>(n, want_.size - sent_));
  size_t got = in_.read(buf, n);
  if (got == 0) changed("it is shorter: " + std::to_string(sent_) + " bytes, " + std::to_string(want_.size) + " verified");
  hash_.update(buf, got);
  sent_ += got;
  if (sent_ == want_.size) {
    uint8_t extra;
    if (in_.read(&extra, 1) != 0) changed("it is longer than the " + std::to_string(want_.size) + " bytes verified");
    if (hash_.finish() != want_.digest) changed("its bytes hash differently");
  }
  return got;
}

ExistingVerdict judge_existing_object(ObjectStore& store, const std::string& key, const std::string& our_path) {
  VectorSink sink;
  store.get(key, sink);
  const std::vector<uint8_t>& theirs = sink.data();
  SegmentSummary ours;
  {
    FileSource src(our_path);
    ours = verify_segment(src);
  }
  try {
    MemorySource src{std::span<const uint8_t>(theirs)};
    SegmentSummary s = verify_segment(src);
    if (s.checksum == ours.checksum && s.header.seq == ours.header.seq &&
        s.header.prev_checksum == ours.header.prev_checksum) {
      return {ExistingObject::kSame, ""};
    }
    return {ExistingObject::kForeign, key + " holds a sound segment with checksum " + checksum_hex(s.checksum) +
                                          " after " + checksum_hex(s.header.prev_checksum) + "; ours has " +
                                          checksum_hex(ours.checksum) + " after " +
                                          checksum_hex(ours.header.prev_checksum)};
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kCorruption) throw;
    std::string why = std::string(e.what());
    // No segment at all (too short for a header, or a header that does not
    // parse): nothing anyone could apply, so putting ours there loses nothing.
    if (theirs.size() < kHeaderSize) {
      return {ExistingObject::kDamagedOurs, key + " holds " + std::to_string(theirs.size()) + " bytes, no segment"};
    }
    try {
      parse_header(std::span<const uint8_t, kHeaderSize>(theirs.data(), kHeaderSize));
    } catch (const Error&) {
      return {ExistingObject::kDamagedOurs, key + " does not hold a segment (" + why + ")"};
    }
    // A prefix of our own bytes: an upload of ours cut short (a server
    // killed mid-write).
    std::vector<uint8_t> mine = read_file(our_path);
    if (theirs.size() <= mine.size() && std::equal(theirs.begin(), theirs.end(), mine.begin())) {
      return {ExistingObject::kDamagedOurs, key + " holds the first " + std::to_string(theirs.size()) + " of our " +
                                                std::to_string(mine.size()) + " bytes (" + why + ")"};
    }
    return {ExistingObject::kDamaged, key + " is damaged (" + why + ") and is not a copy of ours"};
  }
}

void check_store_holds_our_head(ObjectStore& store, const std::string& prefix, const std::string& db,
                                const ChainListing& chain, const ChainIdentity& store_id,
                                const std::string& our_lineage, uint64_t uploaded_seq,
                                std::optional<uint64_t> checksum_at_uploaded, const std::string& spool_dir) {
  const std::string how = "if the store's chain is now the one to continue, move this leader's spool (" + spool_dir +
                          ") away and push again: it rebuilds the shipped state from the store";
  if (store_id.lineage != our_lineage) {
    throw_lineage_mismatch(db, store_id.lineage,
                           our_lineage.empty() ? std::string("none: this spool predates chain.json") : our_lineage, how);
  }
  if (!checksum_at_uploaded) return;
  const uint64_t want = *checksum_at_uploaded;
  auto rewritten = [&](const std::string& key, uint64_t theirs) {
    throw Error(ErrorKind::kChainBroken,
                "the store's " + key + " (seq " + std::to_string(uploaded_seq) + ") has chain checksum " +
                    checksum_hex(theirs) + ", but this leader uploaded " + checksum_hex(want) +
                    " there: the chain was rewritten or this spool's state is damaged; nothing was appended. " + how);
  };
  if (uploaded_seq > 0) {
    if (const ChainEntry* e = find_entry(chain.incrementals, uploaded_seq)) {
      VectorSink sink;
      store.get(e->key, sink);
      SegmentSummary s;
      try {
        MemorySource src{std::span<const uint8_t>(sink.data())};
        s = verify_segment(src);
      } catch (const Error& err) {
        if (err.kind() != ErrorKind::kCorruption) throw;
        throw Error(ErrorKind::kCorruption,
                    "the store's " + e->key + " (seq " + std::to_string(uploaded_seq) +
                        "), the last object this leader uploaded, is damaged (" + err.what() +
                        "): followers cannot pass it, so nothing was appended. `duckblock verify` lists the "
                        "damage; restore the object from a copy, or start the database over under a new name");
      }
      if (s.header.seq != uploaded_seq) rewritten(e->key, s.checksum);
      if (s.checksum != want) rewritten(e->key, s.checksum);
      return;
    }
  }
  // The head is a snapshot (seq 0, or an incremental pruned under it).
  if (const ChainEntry* e = find_entry(chain.snapshots, uploaded_seq)) {
    if (uploaded_seq == 0) {
      if (store_id.convention == 1) return;  // chain checksum 0 at seq 0: nothing to compare
      if (store_id.base_checksum != want) rewritten(chain_marker_key(prefix, db), store_id.base_checksum);
      if (e->size < kHeaderSize + kTrailerSize) {
        throw Error(ErrorKind::kCorruption, "the store's " + e->key + " is truncated (" + std::to_string(e->size) +
                                                " bytes); nothing was appended");
      }
      auto t = get_bytes(store, e->key, ByteRange{e->size - kTrailerSize, kTrailerSize});
      if (t.size() != kTrailerSize || be64(t.data()) != want) {
        throw Error(ErrorKind::kCorruption, "the store's " + e->key +
                                                " does not end with the checksum this leader uploaded (" +
                                                checksum_hex(want) + "): it is damaged or replaced; nothing was appended");
      }
      return;
    }
    auto h = get_bytes(store, e->key, ByteRange{0, kHeaderSize});
    uint64_t prev = 0;
    try {
      if (h.size() != kHeaderSize) throw Error(ErrorKind::kCorruption, "short header");
      prev = parse_header(std::span<const uint8_t, kHeaderSize>(h.data(), kHeaderSize)).prev_checksum;
    } catch (const Error& err) {
      throw Error(ErrorKind::kCorruption, "the store's " + e->key + " is damaged (" + err.what() +
                                              "); nothing was appended");
    }
    if (prev != want) rewritten(e->key, prev);
  }
}

}  // namespace duckblock
