// What restore and follow may write over: the checks that keep
// duckblock_restore and duckblock_follow from replacing a file unasked
// (docs/EXTENSION.md, "What restore and follow refuse").
#pragma once

#include <string>

#include "duckdb.hpp"
#include "duckblock/duckdb_capture.h"

namespace duckblock::extension {

class State;

enum class TargetUse { kRestore, kFollow };

// Throws duckblock::Error (kAlreadyExists) if `path` must not be written by
// a restore or a new follower in this DuckDB:
// - a database this DuckDB replicates (a leader), or has attached for
//   writing: never, whatever `force` says (replacing the file under an open
//   read-write database loses what it writes next);
// - the replica file of a follower here: never (duckblock_unfollow first);
// - a file attached READ_ONLY here, an existing file (for follow: one
//   without a .duckblock journal, i.e. not a replica to continue), or a
//   stale .wal beside it: only with force := true.
void check_target(duckdb::DatabaseInstance& db, State& state, const std::string& path, TargetUse use, bool force);

// The canonical absolute form of a local path, as leaders and followers
// record their files: the DuckDB layer's (duckdb_capture.h).
using duckdb_integration::canonical_path;

}  // namespace duckblock::extension
