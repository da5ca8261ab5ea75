// The library's one log sink. The library never writes to stderr itself:
// what it has to say (a fallback it took, a push that failed) goes through
// log(), to the sink the program installs. The default sink writes warnings
// and errors to stderr, as a command-line tool wants; a host that owns its
// stderr (the DuckDB extension) installs its own (docs/EXTENSION.md,
// duckblock_log_level).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace duckblock {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

std::string_view to_string(LogLevel level);
// "error", "warn", "info", "debug" (case-insensitive); nullopt otherwise.
std::optional<LogLevel> parse_log_level(std::string_view s);

using LogSink = std::function<void(LogLevel, const std::string&)>;

// Replaces the sink (process-wide); nullptr restores the default.
void set_log_sink(LogSink sink);
// Messages above `level` are dropped before they reach the sink; nullopt
// drops every message. Default: kWarn.
void set_log_level(std::optional<LogLevel> level);
bool log_enabled(LogLevel level);
void log(LogLevel level, const std::string& message);

}  // namespace duckblock
