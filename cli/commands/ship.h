// `snapshot` and `push` both ship a local file through a Replicator and its
// spool, then wait for the upload; they differ only in their help and in
// whether a snapshot is forced at the head. This is all they share: the
// flags, the run, and registering the subcommand.
#pragma once

#include <string>

#include "commands.h"

namespace duckblock::cli {

// Registers the subcommand `name` with the flags both commands take, its
// `description` and `footer`, and returns its runner.
Runner add_ship_command(CLI::App& app, const std::string& name, const std::string& description,
                        const std::string& footer, bool force_snapshot);

}  // namespace duckblock::cli
