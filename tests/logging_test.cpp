// The library's log sink (duckblock/log.h): levels filter before the sink,
// the sink receives what passes, "off" drops everything.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "duckblock/log.h"

namespace duckblock {
namespace {

struct Captured {
  std::vector<std::pair<LogLevel, std::string>> got;
  Captured() {
    set_log_sink([this](LogLevel l, const std::string& m) { got.emplace_back(l, m); });
  }
  ~Captured() {
    set_log_sink(nullptr);
    set_log_level(LogLevel::kWarn);
  }
};

TEST(Log, LevelsFilterBeforeTheSink) {
  Captured c;
  set_log_level(LogLevel::kWarn);  // the default
  log(LogLevel::kError, "e");
  log(LogLevel::kWarn, "w");
  log(LogLevel::kInfo, "i");
  log(LogLevel::kDebug, "d");
  ASSERT_EQ(c.got.size(), 2u);
  EXPECT_EQ(c.got[0], std::make_pair(LogLevel::kError, std::string("e")));
  EXPECT_EQ(c.got[1], std::make_pair(LogLevel::kWarn, std::string("w")));
  set_log_level(LogLevel::kDebug);
  EXPECT_TRUE(log_enabled(LogLevel::kDebug));
  log(LogLevel::kDebug, "d");
  EXPECT_EQ(c.got.size(), 3u);
  set_log_level(std::nullopt);  // off
  EXPECT_FALSE(log_enabled(LogLevel::kError));
  log(LogLevel::kError, "e");
  EXPECT_EQ(c.got.size(), 3u);
}

TEST(Log, ParsesLevelNames) {
  EXPECT_EQ(parse_log_level("WARN"), LogLevel::kWarn);
  EXPECT_EQ(parse_log_level("warning"), LogLevel::kWarn);
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_EQ(parse_log_level("loud"), std::nullopt);
  EXPECT_EQ(to_string(LogLevel::kInfo), "info");
}

}  // namespace
}  // namespace duckblock
