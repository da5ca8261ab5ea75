// A clean close's proof (clean_close.h): after one, add() reads only the
// proof's pages; a change behind the leader's back, a damaged record, or an
// open after which the leader crashed all lead to the whole-file comparison.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "duckblock/clean_close.h"
#include "duckblock/error.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr uint32_t kPage = 4096;
constexpr uint64_t kPages = 256;

// Counts the bytes add() reads from the file.
class CountingReader final : public PageReader {
 public:
  explicit CountingReader(const std::string& path) : inner_(path) {}
  size_t read_at(uint64_t offset, void* buf, size_t n) override {
    size_t got = inner_.read_at(offset, buf, n);
    bytes_ += got;
    return got;
  }
  uint64_t file_size() override { return inner_.file_size(); }
  std::optional<uint32_t> file_mode() override { return inner_.file_mode(); }
  std::optional<FileStamp> stamp() override { return inner_.stamp(); }
  uint64_t bytes() const { return bytes_; }

 private:
  FilePageReader inner_;
  std::atomic<uint64_t> bytes_{0};
};

class CleanCloseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store = std::shared_ptr<ObjectStore>(make_local_store(dir / "store"));
    data.resize(kPages * kPage);
    std::mt19937_64 rng(7);
    for (auto& b : data) b = uint8_t(rng());
    write_all();
  }
  ReplicatorOptions options() {
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    o.retry_initial = std::chrono::milliseconds(5);
    return o;
  }
  void write_page(uint64_t page, uint8_t fill) { test::rewrite_page(path(), data, page, fill); }
  void write_all() {
    int fd = ::open(path().c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), ssize_t(data.size()));
    ::close(fd);
  }
  std::string path() { return dir / "db.file"; }
  std::string record() { return dir / "spool/db/clean.json"; }
  // A leader's session: add, one checkpoint, a clean close (if asked), then
  // it stops. Returns the spooled seq.
  uint64_t session(bool clean, uint64_t page, uint8_t fill) {
    Replicator rep(store, options());
    FilePageReader reader(path());
    rep.add("db", reader);
    write_page(page, fill);
    std::vector<uint64_t> dirty{page};
    rep.push_checkpoint("db", reader, &dirty);
    rep.sync();
    if (clean) EXPECT_TRUE(rep.record_clean_close("db", reader));
    return rep.status("db").spooled_seq;
  }
  // A leader's add() that must read the whole file; it ships whatever
  // differs, so the store then holds the file. Returns the spooled seq.
  uint64_t add_comparing_the_whole_file() {
    Replicator rep(store, options());
    CountingReader reader(path());
    rep.add("db", reader);
    EXPECT_TRUE(rep.status("db").full_compare_at_add);
    EXPECT_GE(reader.bytes(), data.size());
    rep.sync();
    expect_store_holds_the_file();
    return rep.status("db").spooled_seq;
  }
  void expect_store_holds_the_file() {
    restore(*store, "db", dir / "r.db");
    EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(data));
    std::filesystem::remove(dir / "r.db");
  }

  test::TempDir dir;
  std::shared_ptr<ObjectStore> store;
  std::vector<uint8_t> data;
};

TEST_F(CleanCloseTest, ReAddAfterACleanCloseReadsOnlyTheProofPages) {
  uint64_t seq = session(true, 10, 0x5a);
  ASSERT_TRUE(std::filesystem::exists(record()));
  Replicator rep(store, options());
  CountingReader reader(path());
  rep.add("db", reader);
  EXPECT_LE(reader.bytes(), kProofPages * kPage);
  EXPECT_FALSE(rep.status("db").full_compare_at_add);
  rep.sync();
  EXPECT_EQ(rep.status("db").spooled_seq, seq);  // nothing shipped
  EXPECT_FALSE(std::filesystem::exists(record())) << "add() consumes the record";
  // The index the fast add trusted is right: the next change ships alone.
  write_page(200, 0x77);
  std::vector<uint64_t> dirty{200};
  auto r = rep.push_checkpoint("db", reader, &dirty);
  EXPECT_EQ(r.seq, seq + 1);
  EXPECT_EQ(r.pages, 1u);
  rep.sync();
  expect_store_holds_the_file();
}

TEST_F(CleanCloseTest, WithoutACleanCloseAddComparesTheWholeFile) {
  session(false, 10, 0x5a);
  EXPECT_FALSE(std::filesystem::exists(record()));
  Replicator rep(store, options());
  CountingReader reader(path());
  rep.add("db", reader);
  EXPECT_GE(reader.bytes(), data.size());
  EXPECT_TRUE(rep.status("db").full_compare_at_add);
}

// Same size, same mtime (restored with utimensat), a page past the proof's
// first pages: only st_ctime shows the write, and it is enough.
TEST_F(CleanCloseTest, AChangeBehindTheLeadersBackWithItsMtimeRestoredShips) {
  uint64_t seq = session(true, 10, 0x5a);
  struct stat before {};
  ASSERT_EQ(::stat(path().c_str(), &before), 0);
  write_page(150, 0xc3);
  timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, path().c_str(), times, 0), 0);
  struct stat after {};
  ASSERT_EQ(::stat(path().c_str(), &after), 0);
  ASSERT_EQ(after.st_size, before.st_size);
  ASSERT_EQ(stamp_of(after).mtime_ns, stamp_of(before).mtime_ns);
  EXPECT_EQ(add_comparing_the_whole_file(), seq + 1);  // the change shipped
}

// The record is gone once add() has read it, so a crash after that open
// (the file may have changed since) finds none and compares everything.
TEST_F(CleanCloseTest, AnOpenConsumesTheRecordSoACrashAfterItComparesTheWholeFile) {
  session(true, 10, 0x5a);
  {
    Replicator rep(store, options());
    FilePageReader reader(path());
    rep.add("db", reader);
    EXPECT_FALSE(rep.status("db").full_compare_at_add);
    EXPECT_FALSE(std::filesystem::exists(record()));
    write_page(3, 0x01);  // written, then the leader dies before its push
  }
  add_comparing_the_whole_file();
}

TEST_F(CleanCloseTest, APushAfterTheCleanCloseDropsTheRecord) {
  Replicator rep(store, options());
  FilePageReader reader(path());
  rep.add("db", reader);
  ASSERT_TRUE(rep.record_clean_close("db", reader));
  ASSERT_TRUE(std::filesystem::exists(record()));
  write_page(20, 0x42);
  std::vector<uint64_t> dirty{20};
  rep.push_checkpoint("db", reader, &dirty);
  EXPECT_FALSE(std::filesystem::exists(record()));
}

TEST_F(CleanCloseTest, ADamagedRecordIsIgnoredAndTheWholeFileCompared) {
  session(true, 10, 0x5a);
  auto bytes = read_file(record());
  bytes.resize(bytes.size() / 2);
  write_file_atomic(record(), bytes);
  Replicator rep(store, options());
  CountingReader reader(path());
  rep.add("db", reader);
  EXPECT_TRUE(rep.status("db").full_compare_at_add);
  EXPECT_FALSE(std::filesystem::exists(record()));
}

// A record of another head (the spool moved on: a push after the close by a
// leader that never dropped it) does not vouch for the file.
TEST_F(CleanCloseTest, ARecordOfAnotherHeadIsNotTrusted) {
  session(true, 10, 0x5a);
  auto saved = read_file(record());
  session(false, 11, 0x6b);  // its add consumed the record; a push followed
  // The old record, with the file's stamp now: only its head is wrong.
  auto j = nlohmann::json::parse(saved.begin(), saved.end());
  struct stat st {};
  ASSERT_EQ(::stat(path().c_str(), &st), 0);
  FileStamp now = stamp_of(st);
  j["dev"] = now.dev;
  j["ino"] = now.ino;
  j["size"] = now.size;
  j["mtime_ns"] = now.mtime_ns;
  j["ctime_ns"] = now.ctime_ns;
  std::string text = j.dump();
  write_file_atomic(record(), std::vector<uint8_t>(text.begin(), text.end()));
  Replicator rep(store, options());
  CountingReader reader(path());
  rep.add("db", reader);
  EXPECT_TRUE(rep.status("db").full_compare_at_add);
}

// A reader that cannot stamp its file (no fstat) proves nothing.
TEST_F(CleanCloseTest, AReaderWithoutAStampRecordsNothing) {
  class NoStamp final : public PageReader {
   public:
    explicit NoStamp(const std::string& p) : inner_(p) {}
    size_t read_at(uint64_t o, void* b, size_t n) override { return inner_.read_at(o, b, n); }
    uint64_t file_size() override { return inner_.file_size(); }

   private:
    FilePageReader inner_;
  };
  Replicator rep(store, options());
  NoStamp reader(path());
  rep.add("db", reader);
  EXPECT_FALSE(rep.record_clean_close("db", reader));
  EXPECT_FALSE(std::filesystem::exists(record()));
}

}  // namespace
}  // namespace duckblock
