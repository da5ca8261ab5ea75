// The log sink. See duckblock/log.h.
#include "duckblock/log.h"

#include <atomic>
#include <cctype>
#include <cstdio>
#include <mutex>

namespace duckblock {

namespace {

std::mutex g_mu;
LogSink& sink() {
  static auto* s = new LogSink();  // never destroyed: background threads may log at exit
  return *s;
}
// -1: off; else the highest LogLevel passed on.
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarn)};

}  // namespace

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

std::optional<LogLevel> parse_log_level(std::string_view s) {
  auto eq = [&](std::string_view w) {
    if (s.size() != w.size()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(s[i])) != w[i]) return false;
    }
    return true;
  };
  for (auto l : {LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo, LogLevel::kDebug}) {
    if (eq(to_string(l))) return l;
  }
  if (eq("warning")) return LogLevel::kWarn;
  return std::nullopt;
}

void set_log_sink(LogSink s) {
  std::lock_guard l(g_mu);
  sink() = std::move(s);
}

void set_log_level(std::optional<LogLevel> level) { g_level = level ? static_cast<int>(*level) : -1; }

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(); }

void log(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  std::lock_guard l(g_mu);
  if (sink()) {
    sink()(level, message);
  } else {
    std::fprintf(stderr, "duckblock: %s\n", message.c_str());
  }
}

}  // namespace duckblock
