// Checks the leader makes before it trusts its spool or the store
// (internal to the core; replicator.cpp uses them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "duckblock/chain.h"
#include "duckblock/io.h"
#include "duckblock/sha256.h"
#include "duckblock/store.h"

namespace duckblock {

// What verification read of a spooled segment: its bytes' count and
// SHA-256, to which the upload is held (UploadSource).
struct VerifiedUpload {
  uint64_t size = 0;
  Sha256Digest digest{};
};

// Throws Error(kCorruption) unless the spooled segment at `path` decodes,
// its checksum verifies and its header holds `seq`: the uploader calls it
// right before sending, so a damaged spool file never reaches the store.
VerifiedUpload verify_spooled_segment(const std::string& path, uint64_t seq);

// A spooled segment as a store receives it, held to what verification
// read: it hashes what it passes on and, before it hands over the last
// byte, checks the count and the hash (Error(kCorruption) on a difference,
// naming the file). A store's put that sees its source throw makes nothing
// visible (store.h), so a spool file changed between its verification and
// its upload (a disk error, another process) never reaches the store.
class UploadSource final : public ByteSource {
 public:
  UploadSource(const std::string& path, const VerifiedUpload& verified);
  size_t read(void* buf, size_t n) override;
  std::optional<uint64_t> remaining() const override { return want_.size - sent_; }
  std::optional<uint32_t> file_mode() const override { return in_.file_mode(); }

 private:
  [[noreturn]] void changed(const std::string& how) const;
  std::string path_;
  FileSource in_;
  VerifiedUpload want_;
  Sha256 hash_;
  uint64_t sent_ = 0;
};

// What is already under a key our segment was to be put at.
enum class ExistingObject {
  kSame,         // our segment, byte for byte in checksum and header
  kForeign,      // a sound segment that is not ours: another leader's
  kDamagedOurs,  // damaged, and provably ours (a prefix of our bytes, or no segment at all)
  kDamaged,      // damaged, and not provably ours
};
struct ExistingVerdict {
  ExistingObject what = ExistingObject::kSame;
  std::string detail;  // why, for messages
};
ExistingVerdict judge_existing_object(ObjectStore& store, const std::string& key, const std::string& our_path);

// Before a leader appends: the store's chain must be the one its spool
// recorded (same lineage) and must still hold, at `uploaded_seq`, the object
// it uploaded there, whose chain checksum is `checksum_at_uploaded` (when
// known). Throws Error(kChainBroken) for a rebuilt or rewritten chain and
// Error(kCorruption) for a damaged head object.
void check_store_holds_our_head(ObjectStore& store, const std::string& prefix, const std::string& db,
                                const ChainListing& chain, const ChainIdentity& store_id,
                                const std::string& our_lineage, uint64_t uploaded_seq,
                                std::optional<uint64_t> checksum_at_uploaded, const std::string& spool_dir);

}  // namespace duckblock
