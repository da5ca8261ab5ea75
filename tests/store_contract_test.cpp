// One contract, every backend (see store.h for the written contract).
#include <thread>

#include "duckblock/error.h"
#include "store_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

class StoreContract : public ::testing::TestWithParam<test::StoreBackend> {
 protected:
  void SetUp() override { store = GetParam().make(); }
  std::unique_ptr<ObjectStore> store;
};

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

TEST_P(StoreContract, PutThenGetReturnsTheBytes) {
  put_bytes(*store, "a/b/c.bin", bytes_of("hello"));
  EXPECT_EQ(get_bytes(*store, "a/b/c.bin"), bytes_of("hello"));
  put_bytes(*store, "a/b/c.bin", bytes_of("replaced"));
  EXPECT_EQ(get_bytes(*store, "a/b/c.bin"), bytes_of("replaced"));
}

TEST_P(StoreContract, EmptyAndLargeObjects) {
  put_bytes(*store, "empty", {});
  EXPECT_TRUE(get_bytes(*store, "empty").empty());
  EXPECT_EQ(store->head("empty")->size, 0u);
  std::vector<uint8_t> big(5 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = uint8_t(i * 31 + (i >> 13));
  put_bytes(*store, "big", big);
  EXPECT_EQ(get_bytes(*store, "big"), big);
}

TEST_P(StoreContract, GetOfMissingKeyIsNotFound) {
  try {
    get_bytes(*store, "nope/missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
  }
  EXPECT_FALSE(store->head("nope/missing"));
}

TEST_P(StoreContract, RangedGet) {
  put_bytes(*store, "r", bytes_of("0123456789"));
  EXPECT_EQ(get_bytes(*store, "r", ByteRange{2, 3}), bytes_of("234"));
  EXPECT_EQ(get_bytes(*store, "r", ByteRange{8, 100}), bytes_of("89"));
  EXPECT_EQ(get_bytes(*store, "r", ByteRange{0, 10}), bytes_of("0123456789"));
  EXPECT_TRUE(get_bytes(*store, "r", ByteRange{10, 5}).empty());
}

TEST_P(StoreContract, PutIfAbsentRefusesAnExistingKey) {
  auto a = bytes_of("first");
  MemorySource src(a);
  store->put_if_absent("k", src);
  auto b = bytes_of("second");
  MemorySource src2(b);
  try {
    store->put_if_absent("k", src2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kAlreadyExists);
  }
  EXPECT_EQ(get_bytes(*store, "k"), a);
}

TEST_P(StoreContract, ConcurrentPutIfAbsentHasExactlyOneWinner) {
  std::atomic<int> wins{0}, losses{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto data = bytes_of("writer" + std::to_string(t));
      MemorySource src(data);
      try {
        store->put_if_absent("race", src);
        wins++;
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::kAlreadyExists) losses++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(losses.load(), 7);
}

TEST_P(StoreContract, HeadGivesSizeAndTime) {
  put_bytes(*store, "h", bytes_of("12345"));
  auto info = store->head("h");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->key, "h");
  EXPECT_EQ(info->size, 5u);
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(double(info->modified_ms), double(now), 120000.0);
}

TEST_P(StoreContract, ListIsSortedFilteredAndStartsAfter) {
  for (const char* k : {"db/0000/03", "db/0000/01", "db/0001/01", "db/0000/02", "dbx/0000/01", "other"}) {
    put_bytes(*store, k, bytes_of(k));
  }
  auto keys = [](const std::vector<ObjectInfo>& v) {
    std::vector<std::string> out;
    for (auto& i : v) out.push_back(i.key);
    return out;
  };
  EXPECT_EQ(keys(store->list("db/0000/")), (std::vector<std::string>{"db/0000/01", "db/0000/02", "db/0000/03"}));
  EXPECT_EQ(keys(store->list("db/0000/", "db/0000/01")), (std::vector<std::string>{"db/0000/02", "db/0000/03"}));
  EXPECT_EQ(keys(store->list("db/")).size(), 4u);
  EXPECT_EQ(keys(store->list("db")).size(), 5u);
  EXPECT_TRUE(store->list("zzz/").empty());
  EXPECT_EQ(store->list("db/0001/")[0].size, 10u);
}

TEST_P(StoreContract, ListPaginatesPastAThousandKeys) {
  for (int i = 0; i < 1100; ++i) {
    char k[32];
    std::snprintf(k, sizeof k, "many/%05d", i);
    put_bytes(*store, k, bytes_of("x"));
  }
  auto all = store->list("many/");
  ASSERT_EQ(all.size(), 1100u);
  EXPECT_EQ(all.front().key, "many/00000");
  EXPECT_EQ(all.back().key, "many/01099");
  EXPECT_EQ(store->list("many/", "many/01049").size(), 50u);
}

TEST_P(StoreContract, RemoveManyIgnoresMissingKeys) {
  put_bytes(*store, "d/1", bytes_of("1"));
  put_bytes(*store, "d/2", bytes_of("2"));
  put_bytes(*store, "d/3", bytes_of("3"));
  store->remove({"d/1", "d/3", "d/does-not-exist"});
  auto left = store->list("d/");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].key, "d/2");
  store->remove({});
}

INSTANTIATE_TEST_SUITE_P(AllBackends, StoreContract, ::testing::ValuesIn(test::all_store_backends()),
                         [](const auto& info) { return info.param.name; });

TEST(LocalStore, RejectsKeysThatEscapeTheRoot) {
  test::TempDir dir;
  auto store = make_local_store(dir / "root");
  for (const char* bad : {"../x", "a/../../x", "/abs", "a//b", "", "a/"}) {
    EXPECT_ERROR_KIND(put_bytes(*store, bad, {}), ErrorKind::kInvalidArgument) << bad;
  }
}

TEST(LocalStore, ListNeverShowsTempFiles) {
  test::TempDir dir;
  auto store = make_local_store(dir / "root");
  put_bytes(*store, "a/x", {});
  write_file_atomic(dir / "root/a/.duckblock-tmp-123", std::vector<uint8_t>{1});
  EXPECT_EQ(store->list("a/").size(), 1u);
}

TEST(OpenStore, UnderstandsUrlsAndExplainsBadOnes) {
  test::TempDir dir;
  auto s = open_store("file://" + dir.path() + "/st");
  EXPECT_EQ(s->url(), "file://" + dir.path() + "/st");
  EXPECT_ERROR_KIND(open_store("file://relative/path"), ErrorKind::kInvalidArgument);
  try {
    open_store("ftp://host/x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("s3://"), std::string::npos);
  }
}

}  // namespace
}  // namespace duckblock
