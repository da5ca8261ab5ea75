// Whole-file digests (file_digest.h): the leader publishes, for every seq,
// the digest of its file after that seq, kept from the page index; restore
// checks the file it built against it before publishing anything.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "duckblock/error.h"
#include "duckblock/file_digest.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/key.h"
#include "duckblock/page_index.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr uint32_t kPage = 4096;

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  std::mt19937_64 rng(seed);
  for (auto& b : out) b = uint8_t(rng());
  return out;
}

TEST(FileDigest, ChangingAPageIsRemovingItsOldElementAndAddingItsNewOne) {
  test::TempDir dir;
  auto data = random_bytes(10 * kPage + 100, 1);  // a short last page
  write_file_atomic(dir / "f", data);
  FileDigest whole = digest_of_file(dir / "f", kPage);
  auto old3 = page_hash(data.data() + 3 * kPage, kPage);
  std::fill(data.begin() + 3 * kPage, data.begin() + 4 * kPage, 0x33);
  write_file_atomic(dir / "f", data);
  FileDigest updated = whole;
  updated.remove_page(3, old3);
  updated.add_page(3, page_hash(data.data() + 3 * kPage, kPage));
  EXPECT_EQ(updated, digest_of_file(dir / "f", kPage));
  EXPECT_NE(updated, whole);
  // The same bytes at another page id are another element.
  FileDigest moved;
  moved.add_page(4, old3);
  FileDigest at3;
  at3.add_page(3, old3);
  EXPECT_NE(moved, at3);
  EXPECT_EQ(FileDigest::from_hex(updated.hex()), updated);
  EXPECT_FALSE(FileDigest::from_hex("00"));
}

// A file large enough to be summed on several threads (16 MiB or more per
// thread) gives the sum of its pages' elements taken one by one, short last
// page included.
TEST(FileDigest, ALargeFileSummedInRangesIsTheSumOfItsPages) {
  test::TempDir dir;
  auto data = random_bytes((40u << 20) + 1234, 2);
  write_file_atomic(dir / "f", data);
  FileDigest one_by_one;
  for (size_t off = 0, id = 0; off < data.size(); off += kPage, ++id) {
    one_by_one.add_page_bytes(id, data.data() + off, std::min<size_t>(kPage, data.size() - off));
  }
  EXPECT_EQ(digest_of_file(dir / "f", kPage), one_by_one);
}

TEST(FileDigest, ARecordRoundTripsAndAGarbledOneIsCorruption) {
  DigestRecord r{7, 12345, kPage, {}};
  r.digest.add_page(1, page_hash(reinterpret_cast<const uint8_t*>("x"), 1));
  DigestRecord back = decode_digest_record(encode_digest_record(r));
  EXPECT_EQ(back.seq, 7u);
  EXPECT_EQ(back.file_length, 12345u);
  EXPECT_EQ(back.digest, r.digest);
  EXPECT_ERROR_KIND(decode_digest_record("{\"format\":\"duckblock-file-digest\",\"version\":1}"), ErrorKind::kCorruption);
  EXPECT_ERROR_KIND(decode_digest_record("not json"), ErrorKind::kCorruption);
}

TEST(FileDigest, DigestKeysAreNotSegmentKeys) {
  EXPECT_EQ(digest_key("p/", "db", 26), "p/db/digest/000000000000001a.json");
  EXPECT_EQ(parse_digest_key("p/", "db", "p/db/digest/000000000000001a.json"), 26u);
  EXPECT_FALSE(parse_key("p/", "p/db/digest/000000000000001a.json"));
  EXPECT_FALSE(parse_digest_key("p/", "db", "p/db/0000/000000000000001a.hadbp"));
}

// Through pages.idx: blocks written back between saves (a small cache over
// many changed pages), then a crash (no save): the header's digest no
// longer describes the entries on disk, so it must not be used. Reopened
// and brought to the head as load_index does, the digest is the file's.
TEST(FileDigest, TheIndexDigestSurvivesACrashAfterBlocksWereWrittenBack) {
  test::TempDir dir;
  auto data = random_bytes(4096 * kPage, 2);
  write_file_atomic(dir / "f", data);
  constexpr size_t kCache = 64 << 10;  // 16 blocks of 127 entries
  {
    PageIndex idx = PageIndex::open(dir / "pages.idx", kPage, 0600, nullptr, kCache);
    FilePageReader reader(dir / "f");
    idx.update_all(reader);
    idx.save(true);
    EXPECT_EQ(idx.file_digest(), digest_of_file(dir / "f", kPage));
  }
  std::vector<uint64_t> changed;
  for (uint64_t p = 0; p < 4096; p += 3) {
    std::fill(data.begin() + p * kPage, data.begin() + (p + 1) * kPage, uint8_t(p));
    changed.push_back(p);
  }
  write_file_atomic(dir / "f", data);
  {
    PageIndex idx = PageIndex::open(dir / "pages.idx", kPage, 0600, nullptr, kCache);
    FilePageReader reader(dir / "f");
    idx.update(reader, changed, data.size());  // evictions write blocks back
    EXPECT_EQ(idx.file_digest(), digest_of_file(dir / "f", kPage));
  }  // dropped without save: a crash
  PageIndex idx = PageIndex::open(dir / "pages.idx", kPage, 0600, nullptr, kCache);
  FilePageReader reader(dir / "f");
  idx.update(reader, changed, data.size());  // the replay of the segments after the header
  EXPECT_EQ(idx.file_digest(), digest_of_file(dir / "f", kPage));
  EXPECT_GT(idx.digest_pages_scanned(), 0u);  // recomputed, not taken from the header
}

TEST(FileDigest, ACleanlySavedIndexIsNotScannedAgain) {
  test::TempDir dir;
  auto data = random_bytes(300 * kPage, 3);
  write_file_atomic(dir / "f", data);
  {
    PageIndex idx = PageIndex::open(dir / "pages.idx", kPage, 0600);
    FilePageReader reader(dir / "f");
    idx.update_all(reader);
    idx.save(true);
  }
  PageIndex idx = PageIndex::open(dir / "pages.idx", kPage, 0600);
  EXPECT_EQ(idx.file_digest(), digest_of_file(dir / "f", kPage));
  EXPECT_EQ(idx.digest_pages_scanned(), 0u);
}

class LeaderDigests : public ::testing::Test {
 protected:
  ReplicatorOptions options() { return test::quick_leader_options(dir / "spool"); }
  // Page `page` of the file gets `fill` (in place).
  void change_page(uint64_t page, uint8_t fill) {
    auto d = data;
    std::fill(d.begin() + page * kPage, d.begin() + (page + 1) * kPage, fill);
    write(d);
  }
  void write(const std::vector<uint8_t>& bytes) {
    data = bytes;
    std::filesystem::resize_file(path(), 0);  // same inode, as a database would
    int fd = ::open(path().c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), ssize_t(data.size()));
    ::close(fd);
  }
  // Pushes the file as it is and remembers its digest at the new seq.
  void push(Replicator& rep) {
    FilePageReader reader(path());
    uint64_t seq = rep.push_checkpoint("db", reader).seq;
    ASSERT_GT(seq, 0u);
    expected[seq] = {data.size(), digest_of_file(path(), kPage)};
  }
  void start(std::unique_ptr<Replicator>& rep) {
    rep = std::make_unique<Replicator>(store, options());
    FilePageReader reader(path());
    rep->add("db", reader);
    if (!expected.count(0)) expected[0] = {data.size(), digest_of_file(path(), kPage)};
  }
  void expect_published() {
    for (const auto& [seq, want] : expected) {
      auto rec = read_published_digest(*store, "", "db", seq);
      ASSERT_TRUE(rec) << "no digest at seq " << seq;
      EXPECT_EQ(rec->file_length, want.first) << "seq " << seq;
      EXPECT_TRUE(rec->digest == want.second) << "seq " << seq;
      EXPECT_EQ(rec->page_size, kPage);
    }
  }
  std::string path() { return dir / "file"; }

  test::TempDir dir;
  std::vector<uint8_t> data;
  std::map<uint64_t, std::pair<uint64_t, FileDigest>> expected;
  std::shared_ptr<ObjectStore> store = make_memory_store();
};

TEST_F(LeaderDigests, EverySeqCarriesTheDigestOfTheFileAfterItAcrossGrowthShrinkAndRestarts) {
  write_file_atomic(path(), random_bytes(300 * kPage, 4));
  data = read_file(path());
  std::unique_ptr<Replicator> rep;
  start(rep);
  change_page(10, 0x10);
  push(*rep);  // in place
  auto d = data;
  auto grown = random_bytes(60 * kPage + 77, 5);      // grows, short last page
  d.insert(d.end(), grown.begin(), grown.end());
  write(d);
  push(*rep);
  d.resize(200 * kPage + 1000);  // shrinks into a page
  write(d);
  push(*rep);
  rep->sync();
  expect_published();
  rep.reset();  // a clean stop saves the index with its digest
  std::fill(d.begin() + 5 * kPage, d.begin() + 6 * kPage, 0x55);
  write(d);
  start(rep);  // the whole-file compare at add() ships page 5
  std::fill(d.begin() + 7 * kPage, d.begin() + 7 * kPage + 10, 0x77);
  write(d);
  push(*rep);
  rep->sync();
  // The add() above pushed a seq we did not record: it is the one before.
  uint64_t last = expected.rbegin()->first;
  ASSERT_TRUE(read_published_digest(*store, "", "db", last - 1));
  expect_published();
  // Restored at each seq, the file is the one the digest describes.
  for (const auto& [seq, want] : expected) {
    RestoreResult r = restore(*store, "db", dir / "r.db", RestoreTarget{seq, {}});
    EXPECT_EQ(r.digest, "verified");
    EXPECT_EQ(digest_of_file(dir / "r.db", kPage), want.second);
    std::filesystem::remove(dir / "r.db");
    std::filesystem::remove(dir / "r.db.duckblock");
  }
}

// pages.idx damaged between runs (both header slots, or one block of
// entries): the digest is recomputed or the pages ship again, never wrong.
TEST_F(LeaderDigests, ADamagedIndexStillGivesTheFilesDigest) {
  write_file_atomic(path(), random_bytes(400 * kPage, 6));
  data = read_file(path());
  for (uint64_t damage_at : {40ull, 2 * 4096ull + 4096 + 100}) {
    std::unique_ptr<Replicator> rep;
    start(rep);
    rep->sync();
    rep.reset();
    int fd = ::open((dir / "spool/db/pages.idx").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    for (uint64_t off : {damage_at, damage_at == 40 ? 4096 + 40 : damage_at}) {
      uint8_t b = 0;
      ASSERT_EQ(::pread(fd, &b, 1, off_t(off)), 1);
      b ^= 0x40;
      ASSERT_EQ(::pwrite(fd, &b, 1, off_t(off)), 1);
      if (damage_at != 40) break;
    }
    ::close(fd);
    change_page(300, uint8_t(damage_at));
    start(rep);
    rep->sync();
    expected[expected.rbegin()->first + 1] = {data.size(), digest_of_file(path(), kPage)};
    expect_published();
  }
}

class RestoreDigest : public LeaderDigests {
 protected:
  void SetUp() override {
    write_file_atomic(path(), random_bytes(120 * kPage + 5, 7));
    data = read_file(path());
    std::unique_ptr<Replicator> rep;
    start(rep);
    change_page(2, 0x22);
    push(*rep);
    rep->sync();
  }
  void forge(uint64_t seq, const std::string& text) {
    MemorySource src(text);
    store->put(digest_key("", "db", seq), src);
  }
};

TEST_F(RestoreDigest, ADigestThatDisagreesIsRefusedAndNothingIsPublished) {
  DigestRecord other = *read_published_digest(*store, "", "db", 1);
  other.digest.add_page(0, page_hash(reinterpret_cast<const uint8_t*>("x"), 1));
  forge(1, encode_digest_record(other));
  EXPECT_ERROR_KIND(restore(*store, "db", dir / "r.db"), ErrorKind::kCorruption);
  EXPECT_FALSE(std::filesystem::exists(dir / "r.db"));
  EXPECT_FALSE(std::filesystem::exists(dir / "r.db.duckblock"));
  // A sound digest of another seq put in place of seq 1's.
  DigestRecord zero = *read_published_digest(*store, "", "db", 0);
  forge(1, encode_digest_record(zero));
  EXPECT_ERROR_KIND(restore(*store, "db", dir / "r.db"), ErrorKind::kCorruption);
  zero.seq = 1;  // and relabelled
  forge(1, encode_digest_record(zero));
  EXPECT_ERROR_KIND(restore(*store, "db", dir / "r.db"), ErrorKind::kCorruption);
  forge(1, "garbage");
  EXPECT_ERROR_KIND(restore(*store, "db", dir / "r.db"), ErrorKind::kCorruption);
  EXPECT_FALSE(std::filesystem::exists(dir / "r.db"));
  // Seq 0's digest is sound: restoring there works.
  EXPECT_EQ(restore(*store, "db", dir / "r.db", RestoreTarget{0, {}}).digest, "verified");
}

// A digest object whose page size was changed names the object as damaged,
// and its page size never sizes a read (4 GiB - 1 had the check allocate a
// 4 GiB page and blame the restored file).
TEST_F(RestoreDigest, AForgedPageSizeIsADamagedDigestObjectNotAWrongFile) {
  const std::string sound = encode_digest_record(*read_published_digest(*store, "", "db", 1));
  for (uint64_t page_size : {uint64_t{4294967295}, uint64_t{kMaxPageSize} + 1, uint64_t{512}}) {
    SCOPED_TRACE("page size " + std::to_string(page_size));
    auto j = nlohmann::json::parse(sound);
    j["page_size"] = page_size;
    forge(1, j.dump());
    try {
      restore(*store, "db", dir / "r.db");
      ADD_FAILURE() << "restored against a damaged digest";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
      EXPECT_NE(std::string(e.what()).find("the digest object " + digest_key("", "db", 1) + " is damaged"),
                std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(dir / "r.db"));
  }
}

// An incremental whose length record makes the file a terabyte (checksums
// sound) against a digest that says otherwise: refused on the length at
// once; the check used to read the whole (sparse) terabyte first.
TEST_F(RestoreDigest, AFileOfAnotherLengthIsRefusedWithoutReadingIt) {
  const Segment head = decode_segment(get_bytes(*store, format_key("", {"db", kIncrementalGeneration, 1})));
  SegmentHeader h;
  h.page_size = kPage;
  h.seq = 2;
  h.prev_checksum = head.checksum;
  h.created_ms = head.header.created_ms + 1;
  put_bytes(*store, format_key("", {"db", kIncrementalGeneration, 2}),
            encode_segment(h, {{kFileLengthPageId, encode_file_length(uint64_t{1} << 40)}}));
  DigestRecord rec = *read_published_digest(*store, "", "db", 1);
  rec.seq = 2;
  forge(2, encode_digest_record(rec));
  try {
    restore(*store, "db", dir / "r.db");
    ADD_FAILURE() << "restored a file of another length";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    EXPECT_NE(std::string(e.what()).find("is 1099511627776 bytes long"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "r.db"));
}

TEST_F(RestoreDigest, AStoreWithoutDigestsStillRestoresAndSaysSo) {
  std::vector<std::string> keys;
  for (const auto& info : store->list(digest_prefix("", "db"))) keys.push_back(info.key);
  ASSERT_EQ(keys.size(), 2u);
  store->remove(keys);
  RestoreResult r = restore(*store, "db", dir / "r.db");
  EXPECT_EQ(r.digest, "absent");
  EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(data));
}

TEST_F(RestoreDigest, PruneDeletesTheDigestsOfThePointsItMakesUnrestorable) {
  ChainListing chain = list_chain(*store, "", "db");
  PrunePlan plan;
  plan.oldest_restorable_seq = 1;  // as if a snapshot at 1 were kept
  plan.remove = chain.snapshots;   // seq 0
  execute_prune(*store, plan);
  EXPECT_FALSE(read_published_digest(*store, "", "db", 0));
  EXPECT_TRUE(read_published_digest(*store, "", "db", 1));
  // A listing of the chain ignores digest objects.
  chain = list_chain(*store, "", "db");
  EXPECT_EQ(chain.incrementals.size(), 1u);
  EXPECT_TRUE(chain.snapshots.empty());
}

// A follower: its replica is checked against the chain's digest after each
// apply, and a replica changed behind its back is refused before anything
// is applied, with the way out (--force).
class FollowDigest : public RestoreDigest {
 protected:
  std::string replica_path() { return dir / "replica.db"; }
  uint64_t follow() {
    Replica replica(replica_path());
    return catch_up(*store, "", "db", replica);
  }
  // The leader moves on by one seq (page 50 changes).
  void leader_moves_on(uint8_t fill) {
    std::unique_ptr<Replicator> rep;
    start(rep);
    change_page(50, fill);
    push(*rep);
    rep->sync();
  }
  // Flips one byte far past the header pages, then puts the file's
  // modification time back: size, mtime and the first 12 KiB are as before.
  void flip_keeping_mtime(uint64_t offset) {
    struct stat st {};
    ASSERT_EQ(::stat(replica_path().c_str(), &st), 0);
    int fd = ::open(replica_path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, off_t(offset)), 1);
    b ^= 1;
    ASSERT_EQ(::pwrite(fd, &b, 1, off_t(offset)), 1);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::futimens(fd, times), 0);
    ::close(fd);
  }
  ChainPosition position() { return Replica(replica_path()).position(); }
};

TEST_F(FollowDigest, AByteFlippedWithItsMtimePutBackIsRefusedBeforeApplying) {
  ASSERT_GT(follow(), 0u);
  flip_keeping_mtime(100 * kPage + 17);
  leader_moves_on(0x50);
  ChainPosition before = position();
  try {
    follow();
    ADD_FAILURE() << "a changed replica was followed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kChainBroken) << e.what();
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  EXPECT_EQ(position(), before);  // nothing applied
}

TEST_F(FollowDigest, APlainWriteIsRefusedWithoutReadingTheFile) {
  ASSERT_GT(follow(), 0u);
  auto bytes = read_file(replica_path());
  bytes[100 * kPage] ^= 1;
  int fd = ::open(replica_path().c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data() + 100 * kPage, 1, off_t(100 * kPage)), 1);
  ::close(fd);
  leader_moves_on(0x51);
  EXPECT_ERROR_KIND(follow(), ErrorKind::kChainBroken);
}

TEST_F(FollowDigest, ARenamedButUnchangedReplicaIsCheckedOnceAndFollowed) {
  ASSERT_GT(follow(), 0u);
  std::filesystem::rename(replica_path(), dir / "elsewhere");
  std::filesystem::rename(dir / "elsewhere", replica_path());  // ctime moved, bytes the same
  EXPECT_TRUE(Replica(replica_path()).stamp_changed());
  leader_moves_on(0x52);
  EXPECT_EQ(follow(), 1u);
  EXPECT_FALSE(Replica(replica_path()).stamp_changed());
  EXPECT_EQ(digest_of_file(replica_path(), kPage), digest_of_file(path(), kPage));
}

// The replica must be read whole (its stamp changed) and the store's digest
// of its position is damaged: the store is named, the replica is not
// called changed.
TEST_F(FollowDigest, ADamagedDigestIsNotTakenForAChangedReplica) {
  ASSERT_GT(follow(), 0u);
  std::filesystem::rename(replica_path(), dir / "elsewhere");
  std::filesystem::rename(dir / "elsewhere", replica_path());
  const uint64_t at = position().seq;
  auto j = nlohmann::json::parse(encode_digest_record(*read_published_digest(*store, "", "db", at)));
  j["page_size"] = 512;
  forge(at, j.dump());
  leader_moves_on(0x54);
  try {
    follow();
    ADD_FAILURE() << "followed past a damaged digest";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    EXPECT_NE(std::string(e.what()).find("is damaged"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("was changed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(position().seq, at);
}

// A file another process holds a write lock on (a running DuckDB opened it
// read-write): restore --force replaced it and the process went on writing
// into the unlinked old file, its rows lost; follow would write under it.
class TargetInUse : public FollowDigest {
 protected:
  // A child process holding an fcntl write lock on `path` until released.
  void hold(const std::string& path) {
    int ready[2], release[2];
    ASSERT_EQ(::pipe(ready), 0);
    ASSERT_EQ(::pipe(release), 0);
    child_ = ::fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      ::close(ready[0]);
      ::close(release[1]);  // else its own copy keeps the pipe from ending
      int fd = ::open(path.c_str(), O_RDWR);
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      char ok = fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0 ? 'y' : 'n';
      (void)!::write(ready[1], &ok, 1);
      char c;
      (void)!::read(release[0], &c, 1);  // until the parent closes its end
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    release_fd_ = release[1];
    char ok = 0;
    ASSERT_EQ(::read(ready[0], &ok, 1), 1);
    ::close(ready[0]);
    ASSERT_EQ(ok, 'y');
  }
  void let_go() {
    if (child_ <= 0) return;
    ::close(release_fd_);
    ::waitpid(child_, nullptr, 0);
    child_ = -1;
  }
  void TearDown() override { let_go(); }
  pid_t child_ = -1;
  int release_fd_ = -1;
};

TEST_F(TargetInUse, AFileOpenForWritingIsNeitherReplacedNorWrittenUnder) {
  write_file_atomic(dir / "busy.db", std::vector<uint8_t>(100, 7));
  hold(dir / "busy.db");
  try {
    restore(*store, "db", dir / "busy.db");
    ADD_FAILURE() << "replaced a file open for writing";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kLocked) << e.what();
    EXPECT_NE(std::string(e.what()).find("open for writing in another process (pid " + std::to_string(child_)),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_file(dir / "busy.db"), std::vector<uint8_t>(100, 7));
  let_go();
  EXPECT_EQ(restore(*store, "db", dir / "busy.db").digest, "verified");

  ASSERT_GT(follow(), 0u);
  leader_moves_on(0x55);
  const ChainPosition before = position();
  hold(replica_path());
  EXPECT_ERROR_KIND(follow(), ErrorKind::kLocked);
  EXPECT_EQ(position(), before);
  let_go();
  EXPECT_EQ(follow(), 1u);
}

TEST_F(FollowDigest, AReplicaThatDisagreesWithTheDigestAfterApplyingIsRefusedFromThenOn) {
  ASSERT_GT(follow(), 0u);
  leader_moves_on(0x53);
  uint64_t head = expected.rbegin()->first;
  DigestRecord forged = *read_published_digest(*store, "", "db", head);
  forged.digest.add_page(0, page_hash(reinterpret_cast<const uint8_t*>("x"), 1));
  forge(head, encode_digest_record(forged));
  EXPECT_ERROR_KIND(follow(), ErrorKind::kCorruption);
  EXPECT_ERROR_KIND(follow(), ErrorKind::kChainBroken);  // marked: not caught up over a wrong file
}

}  // namespace
}  // namespace duckblock
