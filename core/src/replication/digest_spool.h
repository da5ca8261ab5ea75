// The leader's whole-file digests on their way to the store. The digest of
// the file after seq N waits in SPOOL/DB/0000/<N>.digest (a DigestRecord,
// file_digest.h) beside segment N, and the uploader publishes it as
// {prefix}{db}/digest/<N>.json once segment N is in the store. It is
// written (not synced) before segment N can reach the uploader; a crash may
// lose or tear it, and a torn or missing one is simply not published (the
// point then has no digest, which readers report as "absent").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "duckblock/file_digest.h"

namespace duckblock {

class ObjectStore;

std::string spooled_digest_path(const std::string& incr_dir, uint64_t seq);
// Writes the record (replacing one a failed or crashed push left for seq).
void spool_digest(const std::string& incr_dir, uint32_t mode, const DigestRecord& record);
void unspool_digest(const std::string& incr_dir, uint64_t seq);
// Removes digest files of seqs outside (uploaded, head]: published ones a
// crash left, and ones of pushes that never reached the spool.
void drop_stale_digests(const std::string& incr_dir, std::optional<uint64_t> uploaded, uint64_t head);
// Uploads the spooled digest of `seq` if there is a sound one; returns
// whether one was published (or was already in the store). An object
// already at the key is left as it is.
bool publish_spooled_digest(ObjectStore& store, const std::string& prefix, const std::string& db,
                            const std::string& incr_dir, uint64_t seq);

}  // namespace duckblock
