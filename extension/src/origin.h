// Which file a database name in the store belongs to. Two different files
// both named `sales.duckdb` would otherwise continue one chain in turns (the
// second ATTACH diffs its file against the first's chain and ships the
// difference), each fencing the other. The first file to replicate a name
// records itself in an origin object beside the chain,
//   {prefix}{db}/origin.json   {"host": ..., "path": ...}
// (not a segment key, so listings and restores ignore it), and a copy in
// its spool; a different file claiming the name is refused at ATTACH with a
// message naming both. The spool's copy lets a file that has claimed its
// name attach again without asking the store.
#pragma once

#include <string>

#include "duckblock/store.h"

namespace duckblock::extension {

struct Origin {
  std::string host;  // gethostname()
  std::string path;  // the database file's canonical path
  bool operator==(const Origin&) const = default;
  std::string describe() const { return host + ":" + path; }
};

// The database's name in the store: `setting` (duckblock_name) if set, else
// the file's name without its extension. Throws kInvalidArgument for a name
// no key may carry.
std::string name_in_store(const std::string& canonical_path, const std::string& setting);

Origin this_origin(const std::string& canonical_path);
std::string origin_key(const std::string& prefix, const std::string& db);

// Claims `db` in `store` for `me`. `spool_record` is the spool's copy. With
// `take_over`, a name recorded for another file is re-recorded for this one
// (the file that replaces it). Throws Error(kAlreadyExists) naming both files
// when another file holds the name.
void claim_name(ObjectStore& store, const std::string& prefix, const std::string& db, const Origin& me,
                const std::string& spool_record, bool take_over);

struct Settings;
// claim_name for the database file at `canonical_path` as the settings name
// it (duckblock_name, duckblock_store, duckblock_prefix, the spool).
void claim_file(const std::string& canonical_path, const Settings& settings);

}  // namespace duckblock::extension
