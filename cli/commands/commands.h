// Each subcommand registers itself on the app and returns the function that
// runs it. Exit codes are documented in README.md ("Exit codes").
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace duckblock::cli {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;        // operation failed (I/O, store, ...)
inline constexpr int kExitUsage = 2;        // bad flags or arguments
inline constexpr int kExitCorrupt = 3;      // corrupt segment or broken chain
inline constexpr int kExitNotFound = 4;     // file, object or database missing
inline constexpr int kExitExists = 5;       // would replace an existing local file (see --force)
inline constexpr int kExitAuth = 6;         // credentials missing or rejected
inline constexpr int kExitUnreachable = 7;  // the store did not answer (retries exhausted)
inline constexpr int kExitFenced = 8;       // another leader has written the chain
inline constexpr int kExitLocked = 9;       // another push or snapshot holds the spool

using Runner = std::function<int()>;

Runner add_inspect(CLI::App& app);
Runner add_apply(CLI::App& app);
Runner add_snapshot(CLI::App& app);
Runner add_push(CLI::App& app);
Runner add_restore(CLI::App& app);
Runner add_follow(CLI::App& app);
Runner add_ls(CLI::App& app);
Runner add_verify(CLI::App& app);
Runner add_prune(CLI::App& app);
Runner add_compact(CLI::App& app);

}  // namespace duckblock::cli
