// The page index on disk (page_index.h, paged_hashes.h): bounded cache,
// entries of queued pushes kept off the file until durable, and damage that
// ships pages again rather than skipping them.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/key.h"
#include "duckblock/page_index.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "paged_hashes.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr uint32_t kPage = 4096;

class PageIndexOnDisk : public ::testing::Test {
 protected:
  void make_file(uint64_t pages) {
    data.resize(pages * kPage);
    std::mt19937_64 rng(11);
    for (auto& b : data) b = uint8_t(rng());
    write_file_atomic(path(), data);
  }
  void write_page(uint64_t page, uint8_t fill) { test::rewrite_page(path(), data, page, fill); }
  std::string path() { return dir / "file"; }
  std::string index_path() { return dir / "pages.idx"; }

  test::TempDir dir;
  std::vector<uint8_t> data;
};

TEST_F(PageIndexOnDisk, TheCacheStaysWithinItsBoundOverAFileLargerThanIt) {
  make_file(12288);  // 97 blocks of entries, 388 KiB of them
  constexpr size_t kCache = 64 << 10;  // 16 blocks
  bool found = true;
  PageIndex idx = PageIndex::open(index_path(), kPage, 0644, &found, kCache);
  EXPECT_FALSE(found);
  FilePageReader reader(path());
  idx.update_all(reader);
  EXPECT_EQ(idx.cache_limit_bytes(), kCache);
  EXPECT_LE(idx.cached_bytes(), kCache);
  idx.set_position(3, 0xabc);
  idx.save(true);
  EXPECT_TRUE(idx.diff(reader, nullptr).changed.empty());
  EXPECT_LE(idx.cached_bytes(), kCache);
  write_page(5, 1);
  write_page(5000, 2);
  write_page(12287, 3);
  EXPECT_EQ(idx.diff(reader, nullptr).changed, (std::vector<uint64_t>{5, 5000, 12287}));
  EXPECT_LE(idx.cached_bytes(), kCache);
  // Reopened: the entries written back by evictions and the save are there.
  PageIndex again = PageIndex::open(index_path(), kPage, 0644, &found, kCache);
  EXPECT_TRUE(found);
  EXPECT_EQ(again.seq(), 3u);
  EXPECT_EQ(again.chain_checksum(), 0xabcu);
  EXPECT_EQ(again.file_length(), data.size());
  EXPECT_EQ(again.diff(reader, nullptr).changed, (std::vector<uint64_t>{5, 5000, 12287}));
}

// A sealed header that claims a file of 2^44 bytes (2^32 pages) over the
// entries of 300: the next update to the real length shrank page by page
// past the stored entries (80 s at 2^32 bytes; about 90 hours here). Now
// it stops at their end, and the digest is not trusted.
TEST_F(PageIndexOnDisk, AHeaderClaimingBillionsOfPagesCostsNothing) {
  make_file(300);
  {
    PageIndex idx = PageIndex::open(index_path(), kPage, 0644);
    FilePageReader reader(path());
    idx.update_all(reader);
    idx.save(true);
  }
  {
    PagedHashes raw(index_path(), 0644, 4);
    auto h = raw.read_header();
    ASSERT_TRUE(h);
    h->file_length = uint64_t{1} << 44;
    raw.write_header(*h, true);
  }
  bool found = false;
  PageIndex idx = PageIndex::open(index_path(), kPage, 0644, &found);
  ASSERT_TRUE(found);
  EXPECT_FALSE(idx.file_digest()) << "a digest over pages that cannot have entries";
  FilePageReader reader(path());
  idx.update(reader, {}, data.size());
  EXPECT_EQ(idx.file_length(), data.size());
  EXPECT_TRUE(idx.diff(reader, nullptr).changed.empty());
}

// A queued push's entries are seen by diffs at once but reach the file only
// once settled: a crash before its segment is durable leaves the old entry.
TEST_F(PageIndexOnDisk, APendingEntryReachesTheFileOnlyOnceSettled) {
  make_file(2048);
  FilePageReader reader(path());
  {
    PageIndex idx = PageIndex::open(index_path(), kPage, 0644, nullptr, 64 << 10);
    idx.update_all(reader);
    idx.save(true);
  }
  write_page(7, 0x77);
  auto d7 = sha256(std::span<const uint8_t>(data.data() + 7 * kPage, kPage));
  {
    PageIndex idx = PageIndex::open(index_path(), kPage, 0644, nullptr, 64 << 10);
    idx.set_pending(7, d7, 9);
    EXPECT_TRUE(idx.diff(reader, nullptr).changed.empty());
    // Churn through every block, so page 7's block is evicted and written
    // back (with other entries changed) while the entry is pending.
    for (uint64_t id = 8; id < 2048; id += 50) idx.set(id, data.data() + id * kPage, kPage);
    idx.settle(8);  // seq 9 is not durable yet
  }  // a crash: no save
  PageIndex idx = PageIndex::open(index_path(), kPage, 0644, nullptr, 64 << 10);
  EXPECT_EQ(idx.diff(reader, nullptr).changed, std::vector<uint64_t>{7});
  idx.set_pending(7, d7, 9);
  idx.settle(9);
  idx.save(true);
  EXPECT_TRUE(PageIndex::open(index_path(), kPage, 0644).diff(reader, nullptr).changed.empty());
}

// A pages.idx of the earlier format (all entries in memory, one digest over
// the file) is converted when opened; a damaged one is no index.
TEST_F(PageIndexOnDisk, AnIndexOfTheEarlierFormatIsConvertedOnceAndADamagedOneIgnored) {
  make_file(300);
  std::vector<uint8_t> v2 = {'D', 'B', 'P', 'I', 'D', 'X', '0', '2'};
  auto put = [&](const void* p, size_t n) { v2.insert(v2.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
  uint32_t ps = kPage;
  uint64_t length = data.size(), seq = 4, checksum = 0x1234;
  put(&ps, 4);
  put(&length, 8);
  put(&seq, 8);
  put(&checksum, 8);
  for (uint64_t i = 0; i < 300; ++i) {
    auto d = sha256(std::span<const uint8_t>(data.data() + i * kPage, kPage));
    put(d.data(), 32);
  }
  auto digest = sha256(v2);
  put(digest.data(), 32);
  write_file_atomic(index_path(), v2);
  FilePageReader reader(path());
  bool found = false;
  {
    PageIndex idx = PageIndex::open(index_path(), kPage, 0644, &found);
    EXPECT_TRUE(found);
    EXPECT_EQ(idx.seq(), 4u);
    EXPECT_EQ(idx.chain_checksum(), 0x1234u);
    EXPECT_EQ(idx.file_length(), data.size());
    EXPECT_TRUE(idx.diff(reader, nullptr).changed.empty());
  }
  EXPECT_TRUE(PageIndex::open(index_path(), kPage, 0644, &found).diff(reader, nullptr).changed.empty());
  EXPECT_TRUE(found);  // converted in place: the file is of the new format now
  v2[100] ^= 1;
  write_file_atomic(index_path(), v2);
  PageIndex idx = PageIndex::open(index_path(), kPage, 0644, &found);
  EXPECT_FALSE(found);
  EXPECT_EQ(idx.diff(reader, nullptr).changed.size(), 300u);
}

// Through a leader: pages.idx damaged between runs. A damaged header (both
// slots) is no index: the next add() ships every page. A damaged block of
// entries ships exactly the pages it covers.
class DamagedIndex : public PageIndexOnDisk {
 protected:
  ReplicatorOptions options() { return test::quick_leader_options(dir / "spool"); }
  // Pages in the segment at `seq`.
  uint64_t pages_at(uint64_t seq) {
    auto bytes = get_bytes(*store, format_key("", {"db", kIncrementalGeneration, seq}));
    MemorySource src(bytes);
    return verify_segment(src).header.page_count;
  }
  void run_leader() {
    Replicator rep(store, options());
    FilePageReader reader(path());
    rep.add("db", reader);
    rep.sync();
  }
  void flip(uint64_t offset) {
    int fd = ::open((dir / "spool/db/pages.idx").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, off_t(offset)), 1);
    b ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &b, 1, off_t(offset)), 1);
    ::close(fd);
  }
  void expect_store_holds_the_file() {
    restore(*store, "db", dir / "r.db");
    EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(data));
  }
  std::shared_ptr<ObjectStore> store = make_memory_store();
};

TEST_F(DamagedIndex, ADamagedHeaderShipsEveryPage) {
  make_file(300);
  run_leader();
  flip(40);         // header slot 0
  flip(4096 + 40);  // header slot 1
  run_leader();
  EXPECT_EQ(pages_at(1), 300u);
  expect_store_holds_the_file();
}

TEST_F(DamagedIndex, ADamagedBlockShipsThePagesItCovers) {
  make_file(300);
  run_leader();
  flip(2 * 4096 + 4096 + 100);  // entries of pages 127..253
  write_page(10, 0x10);         // and one real change elsewhere
  run_leader();
  EXPECT_EQ(pages_at(1), 128u);
  expect_store_holds_the_file();
}

}  // namespace
}  // namespace duckblock
