#include "duckblock/error.h"
#include "duckblock/key.h"
#include "test_util.h"

namespace duckblock {
namespace {

TEST(Key, FormatsTheSharedLayout) {
  EXPECT_EQ(format_key("backups/", {"orders", 0, 1}), "backups/orders/0000/0000000000000001.hadbp");
  EXPECT_EQ(format_key("", {"db", 1, 0xabc}), "db/0001/0000000000000abc.hadbp");
  EXPECT_EQ(generation_prefix("p/", "db", 1), "p/db/0001/");
}

TEST(Key, ParsesWhatItFormats) {
  for (uint64_t seq : {0ull, 1ull, 255ull, ~0ull}) {
    SegmentKey k{"my.db", 1, seq};
    EXPECT_EQ(parse_key("x/", format_key("x/", k)), k);
  }
}

TEST(Key, RejectsNamesThatDoNotParse) {
  for (const char* bad : {"x/db/0000/0000000000000001.hadb", "x/db/000/0000000000000001.hadbp",
                          "x/db/0000/000000000000001.hadbp", "x/db/0000/000000000000000G.hadbp",
                          "x/db/0000/000000000000000A.hadbp", "x//0000/0000000000000001.hadbp",
                          "y/db/0000/0000000000000001.hadbp", "x/a/b/0000/0000000000000001.hadbp",
                          "x/../0000/0000000000000001.hadbp", "x/db/0000/0000000000000001.hadbp.tmp"}) {
    EXPECT_FALSE(parse_key("x/", bad)) << bad;
  }
}

TEST(Key, RejectsDatabaseNamesThatCouldEscapeThePrefix) {
  for (std::string bad : std::vector<std::string>{"", ".", "..", "a/b", "../x", "a\\b", std::string("a\0b", 3), "tab\there", "del\x7f"}) {
    EXPECT_ERROR_KIND(validate_db_name(bad), ErrorKind::kInvalidArgument) << bad;
    EXPECT_ERROR_KIND(format_key("p/", {bad, 0, 1}), ErrorKind::kInvalidArgument);
  }
  EXPECT_ERROR_KIND(validate_db_name(std::string(256, 'a')), ErrorKind::kInvalidArgument);
  EXPECT_NO_THROW(validate_db_name("orders-2024.duckdb"));
}

}  // namespace
}  // namespace duckblock
