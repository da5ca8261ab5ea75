// The duckblock_log_level setting. See log_setting.h.
#include "log_setting.h"

#include <mutex>

#include "duckblock/log.h"

namespace duckblock::extension {

namespace {

void apply(const std::string& value) {
  if (duckdb::StringUtil::Lower(value) == "off") {
    set_log_level(std::nullopt);
    return;
  }
  auto level = parse_log_level(value);
  if (!level) {
    throw duckdb::InvalidInputException("duckblock_log_level: '%s' is not one of off, error, warn, info, debug", value);
  }
  set_log_level(*level);
}

void on_set(duckdb::ClientContext&, duckdb::SetScope, duckdb::Value& value) { apply(value.ToString()); }

}  // namespace

void register_log_setting(duckdb::DBConfig& config) {
  // The library's own default (warnings to stderr) suits a command line,
  // not a host: the first LOAD in a process turns it off.
  static std::once_flag once;
  std::call_once(once, [] { set_log_level(std::nullopt); });
  config.AddExtensionOption("duckblock_log_level",
                            "What duckblock writes to stderr: off, error, warn, info or debug (default off)",
                            duckdb::LogicalType::VARCHAR, duckdb::Value("off"), on_set, duckdb::SetScope::GLOBAL);
}

}  // namespace duckblock::extension
