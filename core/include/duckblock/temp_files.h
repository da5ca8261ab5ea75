// Temporary files beside a restore or follow target, in a verify temp
// directory and in a local store. A run killed with -9 cannot remove its
// own, so each run removes the ones no live run holds.
//
// A temp name carries who made it: "<prefix><host>-<pid>-<rest>", host being
// a hash of the host name. A file is stale when it was made on this host by
// a process that no longer exists, or (made elsewhere, where the pid says
// nothing: a shared or network directory; or under an older naming) when it
// has not been modified for `max_age`. A live run's file is never stale: its
// process exists, and on another host it is being written or used within
// minutes.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace duckblock {

// "<prefix><host>-<pid>-<n>-<what>", unique within the process.
std::string temp_file_name(const std::string& prefix, const std::string& what);

// Removes the stale files in `dir` whose names start with `prefix` (not
// recursive). Returns how many. Errors are ignored: cleaning is best effort.
size_t remove_stale_temp_files(const std::string& dir, const std::string& prefix,
                               std::chrono::seconds max_age = std::chrono::hours(24));

// The same, at most once per (dir, prefix) in this process: for code that
// writes temp files over and over in one directory.
void remove_stale_temp_files_once(const std::string& dir, const std::string& prefix);

}  // namespace duckblock
