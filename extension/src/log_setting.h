// duckblock_log_level: what the extension's copy of the library logs
// (duckblock/log.h), and where. A host's stderr is its own, so by default
// nothing is written there ('off'); 'error', 'warn', 'info' or 'debug'
// writes those messages to stderr. Errors that matter to the database are
// in duckblock_status() (last_error) whatever the level.
#pragma once

#include "duckdb.hpp"

namespace duckblock::extension {

void register_log_setting(duckdb::DBConfig& config);

}  // namespace duckblock::extension
