// The leader's whole-file digests on their way to the store. The digest of
// the file after seq N waits in SPOOL/DB/0000/<N>.digest (a DigestRecord,
// file_digest.h) beside segment N, and the uploader publishes it as
// {prefix}{db}/digest/<N>.json once segment N is in the store. A push
// writes it (not synced: the checkpoint does not wait) before segment N can
// reach the uploader, and it is durable no later than segment N: the
// spooler syncs it before it writes the segment (sync_spooled_digest), and
// a push that spools its segment itself writes it durably. Otherwise a
// power loss could keep a stale record of an earlier, failed push of the
// same seq beside the new segment, and readers would see a false mismatch.
// A torn or missing one is simply not published (the point then has no
// digest, which readers report as "absent").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "duckblock/env.h"
#include "duckblock/file_digest.h"

namespace duckblock {

class ObjectStore;

std::string spooled_digest_path(const std::string& incr_dir, uint64_t seq);
// Writes the record (replacing one a failed or crashed push left for seq);
// `durable`: synced, file and directory, before it returns. Both write
// through `env`, the spool's file system.
void spool_digest(const std::string& incr_dir, uint32_t mode, const DigestRecord& record, bool durable, Env& env);
// Syncs the spooled record of `seq`, if there is one (its directory is
// synced with the segment's rename that follows).
void sync_spooled_digest(const std::string& incr_dir, uint64_t seq, Env& env);
void unspool_digest(const std::string& incr_dir, uint64_t seq);
// Removes digest files of seqs outside (uploaded, head]: published ones a
// crash left, and ones of pushes that never reached the spool.
void drop_stale_digests(const std::string& incr_dir, std::optional<uint64_t> uploaded, uint64_t head);
// Uploads the spooled digest of `seq` if there is a sound one; returns
// whether one was published (or was already in the store). Another object
// already at the key (a truncated upload) is replaced.
bool publish_spooled_digest(ObjectStore& store, const std::string& prefix, const std::string& db,
                            const std::string& incr_dir, uint64_t seq);

}  // namespace duckblock
