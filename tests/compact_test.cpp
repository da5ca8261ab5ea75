// Snapshots by compaction (compact.h): the merge against a snapshot of the
// applied file byte for byte, damaged inputs, the leader's background
// compactor (the checkpoint no longer reads the whole file), and
// `duckblock compact` end to end.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cli_util.h"
#include "duckblock/compact.h"
#include "duckblock/error.h"
#include "duckblock/key.h"
#include "duckblock/page_reader.h"
#include "duckblock/replicator.h"
#include "store_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr int64_t kTime = 1700000000000;

void write_bytes(const std::string& path, const std::vector<uint8_t>& data) {
  write_file_atomic(path, data, false);
}

// The snapshot a leader makes of a file the old way (spool_snapshot): every
// page in order, the last one short if the file is, no length record.
std::vector<uint8_t> snapshot_of(const std::vector<uint8_t>& file, uint32_t ps, uint64_t seq, uint64_t prev,
                                 int level) {
  SegmentHeader h;
  h.page_size = ps;
  h.seq = seq;
  h.prev_checksum = prev;
  h.created_ms = kTime;
  if (level > 0) h.flags = kFlagCompressed;
  std::vector<Page> pages;
  for (uint64_t off = 0, id = 0; off < file.size(); off += ps, ++id) {
    pages.push_back({id, std::vector<uint8_t>(file.begin() + off, file.begin() + std::min<uint64_t>(off + ps, file.size()))});
  }
  return encode_segment(h, std::move(pages), nullptr, level);
}

CompactInput input_at(const std::string& path) {
  FileSource src(path);
  return CompactInput{path, verify_segment(src)};
}

bool has_temp_files(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find("compact") != std::string::npos) return true;
  }
  return false;
}

// Random chains of segments as the format allows them, stranger than a
// leader writes: short pages in the middle, length records that shrink into
// a page, extend past written pages or repeat the length, pages written past
// the end (holes), 4-byte ids, empty segments. The merge must give exactly
// the snapshot of the file that applying the chain (Replica) leaves.
// `incrementals` = 0: 1 to 12 of them, at random.
void check_random_chain(int round, int incrementals) {
  {
    SCOPED_TRACE("round " + std::to_string(round));
    test::TempDir dir;
    std::mt19937_64 rng(round);
    const uint32_t ps = round % 3 == 0 ? 4096 : 512;
    const int level = round % 2 ? 3 : 0;
    const uint8_t id_size = level == 0 && round % 4 == 0 ? 4 : 8;
    auto random_page = [&](size_t n) {
      std::vector<uint8_t> d(n);
      int kind = rng() % 3;
      for (auto& b : d) b = kind == 0 ? 0 : kind == 1 ? uint8_t(rng() % 4) : uint8_t(rng());
      return d;
    };
    // The base snapshot: a file of random length, at seq 0 or later.
    const uint64_t base_seq = rng() % 2 ? 0 : 7;
    const uint64_t chain_at_base = base_seq == 0 ? 0 : rng();
    std::vector<uint8_t> file = random_page(rng() % (40 * ps));
    std::vector<uint8_t> base_bytes = snapshot_of(file, ps, base_seq, chain_at_base, level);
    if (round % 5 == 0) {
      // As stores written before the rule did: the snapshot carries the length.
      Segment s = decode_segment(base_bytes);
      s.pages.push_back({kFileLengthPageId, encode_file_length(file.size())});
      base_bytes = encode_segment(s.header, s.pages, nullptr, level);
    }
    std::string base_path = dir / "base.hadbp";
    write_bytes(base_path, base_bytes);
    Replica replica(dir / "applied.db");
    replica.reset_from_snapshot(base_path, ChainPosition{base_seq, chain_at_base});

    const int n = incrementals > 0 ? incrementals : 1 + rng() % 12;
    std::vector<CompactInput> incs;
    uint64_t chain = chain_at_base;
    for (int i = 0; i < n; ++i) {
      uint64_t pages_now = (file.size() + ps - 1) / ps;
      std::map<uint64_t, std::vector<uint8_t>> pages;
      int count = rng() % 6 == 0 ? 0 : 1 + rng() % 10;
      for (int k = 0; k < count; ++k) {
        uint64_t id = rng() % (pages_now + 6);
        size_t len = rng() % 4 == 0 ? 1 + rng() % ps : ps;
        pages[id] = random_page(len);
      }
      SegmentHeader h;
      h.page_size = ps;
      h.page_id_size = id_size;
      h.seq = base_seq + 1 + i;
      h.prev_checksum = chain;
      h.created_ms = kTime;
      if (level > 0) h.flags = kFlagCompressed;
      std::vector<Page> list;
      for (auto& [id, d] : pages) list.push_back({id, d});
      if (rng() % 3 == 0) {
        uint64_t len = rng() % ((pages_now + 6) * ps + 1);
        if (rng() % 4 == 0) len = file.size();
        Page rec{kFileLengthPageId, encode_file_length(len)};
        if (id_size == 4) {
          list.clear();  // a 4-byte id cannot hold the record; shrink by an 8-byte segment
          h.page_id_size = 8;
          for (auto& [id, d] : pages) list.push_back({id, d});
        }
        list.push_back(rec);
      }
      uint64_t sum = 0;
      auto bytes = encode_segment(h, list, &sum, level);
      std::string path = dir / ("inc" + std::to_string(i) + ".hadbp");
      write_bytes(path, bytes);
      replica.apply(path);
      incs.push_back(input_at(path));
      chain = sum;
      file = read_file(dir / "applied.db");
    }
    const uint64_t seq = base_seq + n;
    CompactOptions o;
    o.compression = level;
    o.now_ms = [] { return kTime; };
    CompactResult r = compact_segments(input_at(base_path), incs, chain_at_base, dir / "out.hadbp", ".tmp-compact-", o);
    EXPECT_EQ(r.seq, seq);
    EXPECT_EQ(r.file_length, file.size());
    EXPECT_EQ(r.prev_checksum, chain);
    auto want = snapshot_of(file, ps, seq, chain, level);
    auto got = read_file(dir / "out.hadbp");
    ASSERT_EQ(test::digest_of(got), test::digest_of(want));
    // And it restores the file.
    Replica restored(dir / "restored.db");
    restored.reset_from_snapshot(dir / "out.hadbp");
    EXPECT_EQ(read_file(dir / "restored.db"), file);
    EXPECT_EQ(restored.position(), (ChainPosition{seq, chain}));
    EXPECT_FALSE(has_temp_files(dir.path()));
  }
}

TEST(CompactMerge, RandomChainsGiveTheSnapshotOfTheAppliedFile) {
  for (int round = 0; round < 48; ++round) check_random_chain(round, 0);
}

// A merge of many inputs (the default policy makes a snapshot every 100
// incrementals): compressed incrementals are decoded to plain copies first,
// so that the merge holds one zstd window, not one per input
// (docs/PERFORMANCE.md has the memory figures). Round 1 is compressed,
// round 0 plain.
TEST(CompactMerge, AChainOfManyIncrementalsGivesTheSnapshotOfTheAppliedFile) {
  for (int round = 0; round < 2; ++round) check_random_chain(round, 110);
}

// Verification happens while merging too: an input damaged after it was
// verified (or one the caller did not verify) discards the output, with
// the error's kind kept.
TEST(CompactMerge, AnInputDamagedDuringTheMergeDiscardsTheOutput) {
  test::TempDir dir;
  const uint32_t ps = 4096;
  std::vector<uint8_t> file(64 * ps, 7);
  write_bytes(dir / "base.hadbp", snapshot_of(file, ps, 0, 0, 3));
  SegmentHeader h;
  h.page_size = ps;
  h.seq = 1;
  h.prev_checksum = 0;
  h.flags = kFlagCompressed;
  write_bytes(dir / "inc.hadbp", encode_segment(h, {{3, std::vector<uint8_t>(ps, 1)}, {60, std::vector<uint8_t>(ps, 2)}}));
  CompactInput base = input_at(dir / "base.hadbp");
  CompactInput inc = input_at(dir / "inc.hadbp");
  // Flip a byte inside the base's compressed pages.
  {
    int fd = ::open((dir / "base.hadbp").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b;
    ASSERT_EQ(::pread(fd, &b, 1, 100), 1);
    b ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &b, 1, 100), 1);
    ::close(fd);
  }
  try {
    compact_segments(base, {inc}, 0, dir / "out.hadbp", ".tmp-compact-");
    FAIL() << "a damaged input was merged";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    EXPECT_NE(std::string(e.what()).find("snapshot seq 0"), std::string::npos) << e.what();
  }
  EXPECT_NE(::access((dir / "out.hadbp").c_str(), F_OK), 0);
  EXPECT_FALSE(has_temp_files(dir.path()));
}

TEST(CompactMerge, AnIncrementalThatDoesNotContinueTheBaseIsRefused) {
  test::TempDir dir;
  const uint32_t ps = 512;
  write_bytes(dir / "base.hadbp", snapshot_of(std::vector<uint8_t>(10 * ps, 1), ps, 4, 0x1111, 0));
  SegmentHeader h;
  h.page_size = ps;
  h.seq = 5;
  h.prev_checksum = 0x2222;  // another chain's
  write_bytes(dir / "inc.hadbp", encode_segment(h, {{1, std::vector<uint8_t>(ps, 9)}}));
  try {
    compact_segments(input_at(dir / "base.hadbp"), {input_at(dir / "inc.hadbp")}, 0x1111, dir / "out.hadbp",
                     ".tmp-compact-");
    FAIL() << "merged across a chain break";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kChainBroken) << e.what();
  }
  EXPECT_NE(::access((dir / "out.hadbp").c_str(), F_OK), 0);
}

// A length record past any file offset (2^64-1, checksums sound) is damage
// to every reader: verify called it sound, and the merge's page count
// wrapped to 0, so compact wrote an empty snapshot that restored as a
// 0-byte file with exit 0.
TEST(CompactMerge, ALengthRecordPastAnyFileOffsetIsCorruption) {
  test::TempDir dir;
  const uint32_t ps = 512;
  write_bytes(dir / "base.hadbp", snapshot_of(std::vector<uint8_t>(10 * ps, 1), ps, 4, 0x1111, 0));
  for (uint64_t length : {UINT64_MAX, uint64_t{INT64_MAX} + 1}) {
    SCOPED_TRACE(length);
    SegmentHeader h;
    h.page_size = ps;
    h.seq = 5;
    h.prev_checksum = 0x1111;
    write_bytes(dir / "inc.hadbp",
                encode_segment(h, {{1, std::vector<uint8_t>(ps, 9)}, {kFileLengthPageId, encode_file_length(length)}}));
    FileSource src(dir / "inc.hadbp");
    EXPECT_ERROR_KIND(verify_segment(src), ErrorKind::kCorruption);
    EXPECT_ERROR_KIND(compact_segments(input_at(dir / "base.hadbp"),
                                       {CompactInput{dir / "inc.hadbp", SegmentSummary{.header = h, .file_length = length}}}, 0x1111,
                                       dir / "out.hadbp", ".tmp-compact-"),
                      ErrorKind::kCorruption);
    EXPECT_NE(::access((dir / "out.hadbp").c_str(), F_OK), 0);
  }
}

// Counts the bytes a push reads from the file.
class CountingReader final : public PageReader {
 public:
  explicit CountingReader(const std::string& path) : inner_(path) {}
  size_t read_at(uint64_t offset, void* buf, size_t n) override {
    size_t got = inner_.read_at(offset, buf, n);
    bytes += got;
    return got;
  }
  uint64_t file_size() override { return inner_.file_size(); }
  std::optional<uint32_t> file_mode() override { return inner_.file_mode(); }
  uint64_t bytes = 0;

 private:
  FilePageReader inner_;
};

void write_at(const std::string& path, uint64_t off, const std::vector<uint8_t>& data) {
  int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), off_t(off)), ssize_t(data.size()));
  ::close(fd);
}

void truncate_to(const std::string& path, uint64_t len) { ASSERT_EQ(::truncate(path.c_str(), off_t(len)), 0); }

class Compaction : public ::testing::TestWithParam<test::StoreBackend> {
 protected:
  void SetUp() override { store = GetParam().make(); }
  ReplicatorOptions options(uint64_t every) {
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    o.snapshots.every_segments = every;
    o.snapshots.every_bytes = 0;
    o.now_ms = [] { return kTime; };
    o.retry_initial = std::chrono::milliseconds(10);
    o.retry_max = std::chrono::milliseconds(50);
    return o;
  }
  // A leader that ran and stopped: seq 0, then two pushes, the snapshot
  // due at 2 compacted and everything uploaded. Returns the file's path.
  std::string leader_with_a_snapshot_due_at_2() {
    const std::string path = dir / "db.duckdb";
    write_bytes(path, std::vector<uint8_t>(32 * 4096, 1));
    Replicator rep(store, options(2));
    FilePageReader reader(path);
    rep.add("db", reader);
    for (int i = 0; i < 2; ++i) {
      write_at(path, (3 + i) * 4096, std::vector<uint8_t>(4096, uint8_t(20 + i)));
      rep.push_checkpoint("db", reader);
    }
    rep.sync("db", std::chrono::seconds(60));
    EXPECT_EQ(rep.status("db").last_compacted_seq, 2u);
    return path;
  }
  std::vector<uint8_t> object(bool snapshot, uint64_t seq) {
    return get_bytes(*store, format_key("", {"db", snapshot ? kSnapshotGeneration : kIncrementalGeneration, seq}));
  }
  test::TempDir dir;
  std::shared_ptr<ObjectStore> store;
};

// The proof the brief of this change asks for: a snapshot the leader's
// compactor made is the very snapshot the old way (reading the file inside
// the checkpoint) made of the file at that seq, byte for byte (the clock is
// fixed), through growth, shrinks into a page and a short last page.
TEST_P(Compaction, LeaderSnapshotsAreTheBytesASnapshotOfTheFileWouldBe) {
  const std::string path = dir / "db.duckdb";
  std::mt19937_64 rng(42);
  std::vector<uint8_t> file(40 * 4096 + 100);
  for (auto& b : file) b = uint8_t(rng() % 8);
  write_bytes(path, file);
  std::map<uint64_t, std::vector<uint8_t>> at_snapshot;
  {
    ReplicatorOptions o = options(3);
    o.snapshots.coalesce = false;  // every due snapshot, however far behind the compactor is
    Replicator rep(store, o);
    FilePageReader reader(path);
    rep.add("db", reader);
    for (int i = 0; i < 10; ++i) {
      int op = i % 4;
      if (op == 0) {  // grow, ending mid-page
        size_t more = 3 * 4096 + 1 + rng() % 4000;
        for (size_t k = 0; k < more; ++k) file.push_back(uint8_t(rng()));
      } else if (op == 1) {  // shrink into a page
        file.resize(file.size() - 5 * 4096 - rng() % 4000);
      } else {  // rewrite a few pages
        for (int k = 0; k < 4; ++k) file[rng() % file.size()] ^= 0x5a;
      }
      write_bytes(path, file);
      FilePageReader r(path);
      PushResult p = rep.push_checkpoint("db", r);
      ASSERT_NE(p.seq, 0u);
      if (p.snapshot) at_snapshot[p.seq] = file;
    }
    rep.sync("db", std::chrono::seconds(60));
    ReplicationStatus st = rep.status("db");
    EXPECT_EQ(st.last_compacted_seq, 9u);
    EXPECT_FALSE(st.compaction_error) << *st.compaction_error;
  }
  ASSERT_EQ(at_snapshot.size(), 3u);  // due at seqs 3, 6, 9
  ChainListing chain = list_chain(*store, "", "db");
  ASSERT_EQ(chain.snapshots.size(), 4u);  // 0 (from the file, starting the chain), 3, 6, 9
  for (const auto& e : chain.snapshots) {
    if (e.seq == 0) continue;
    const uint64_t seq = e.seq;
    ASSERT_TRUE(at_snapshot.count(seq)) << seq;
    const auto& bytes = at_snapshot[seq];
    SCOPED_TRACE("seq " + std::to_string(seq));
    uint64_t chain = decode_segment(object(false, seq)).checksum;
    EXPECT_EQ(test::digest_of(object(true, seq)),
              test::digest_of(snapshot_of(bytes, 4096, seq, chain, kDefaultCompressionLevel)));
  }
}

// How many of this process's threads run at `nice` (Linux: field 19 of
// /proc/self/task/TID/stat, after the command name in parentheses).
int threads_at_nice(int nice) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19; ++i) rest >> field;
    if (field == std::to_string(nice)) ++n;
  }
  return n;
}

// Holds the compactor at its first step (the HEAD of the snapshot key it is
// about to build) until the test lets it go.
class CompactorGate final : public test::WrappedStore {
 public:
  using WrappedStore::WrappedStore;
  std::optional<ObjectInfo> head(const std::string& k) override {
    if (k.find("/0001/") != std::string::npos) {
      std::unique_lock l(mu_);
      ++waiting_;
      cv_.notify_all();
      cv_.wait(l, [&] { return open_; });
    }
    return inner_->head(k);
  }
  void wait_for_a_caller() {
    std::unique_lock l(mu_);
    ASSERT_TRUE(cv_.wait_for(l, std::chrono::seconds(30), [&] { return waiting_ > 0; }));
  }
  void open() {
    std::lock_guard l(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

// A compactor that falls behind (a whole-database merge per due snapshot,
// checkpoints faster than that) builds only the newest due snapshot, so its
// backlog never grows; every point stays restorable.
TEST_P(Compaction, ACompactorThatFallsBehindBuildsOnlyTheNewestDueSnapshot) {
  const std::string path = dir / "db.duckdb";
  std::mt19937_64 rng(7);
  std::vector<uint8_t> file(24 * 4096);
  for (auto& b : file) b = uint8_t(rng() % 8);
  write_bytes(path, file);
  auto gate = std::make_shared<CompactorGate>(store);
  std::map<uint64_t, std::vector<uint8_t>> at;
  ReplicatorOptions o = options(3);
  o.background_spool_bytes = 0;  // each push is in the spool when it returns
  {
    Replicator rep(gate, o);
    FilePageReader reader(path);
    rep.add("db", reader);
    for (uint64_t i = 1; i <= 11; ++i) {
      file[rng() % file.size()] ^= 0x5a;
      write_bytes(path, file);
      FilePageReader r(path);
      PushResult p = rep.push_checkpoint("db", r);
      ASSERT_EQ(p.seq, i);
      EXPECT_EQ(p.snapshot, i % 3 == 0) << i;
      at[i] = file;
      if (i == 3) gate->wait_for_a_caller();  // the compactor holds seq 3
    }
    // Due while it held 3: 6 and 9. It builds 9 only.
    EXPECT_EQ(rep.status("db").compacting_seq, 3u);
    EXPECT_EQ(threads_at_nice(10), 1) << "the compactor runs below the checkpoints' priority";
    gate->open();
    rep.sync("db", std::chrono::seconds(60));
    ReplicationStatus st = rep.status("db");
    EXPECT_EQ(st.last_compacted_seq, 9u);
    EXPECT_EQ(st.snapshots_coalesced, 1u);
    EXPECT_FALSE(st.compaction_error) << *st.compaction_error;
  }
  ChainListing chain = list_chain(*store, "", "db");
  std::vector<uint64_t> snapshots;
  for (const auto& e : chain.snapshots) snapshots.push_back(e.seq);
  EXPECT_EQ(snapshots, (std::vector<uint64_t>{0, 3, 9}));
  uint64_t chain_at_9 = decode_segment(object(false, 9)).checksum;
  EXPECT_EQ(test::digest_of(object(true, 9)),
            test::digest_of(snapshot_of(at[9], 4096, 9, chain_at_9, kDefaultCompressionLevel)));
  // The skipped point and those around it restore from 3 and the incrementals.
  for (uint64_t seq : {5, 6, 7, 11}) {
    SCOPED_TRACE("seq " + std::to_string(seq));
    RestoreTarget t;
    t.seq = seq;
    const std::string out = dir / ("restored-" + std::to_string(seq));
    RestoreResult r = restore(*store, "db", out, t);
    EXPECT_EQ(r.snapshot_seq, seq >= 9 ? 9u : 3u);
    EXPECT_EQ(r.digest, "verified");
    EXPECT_EQ(read_file(out), at[seq]);
  }
}

// The checkpoint at which a snapshot is due reads only the changed pages:
// before compaction it read the whole file (here 1 MiB) inside the push.
TEST_P(Compaction, ACheckpointDueForASnapshotReadsOnlyTheChangedPages) {
  const std::string path = dir / "db.duckdb";
  write_bytes(path, std::vector<uint8_t>(256 * 4096, 3));
  Replicator rep(store, options(2));
  CountingReader reader(path);
  rep.add("db", reader);
  write_at(path, 5 * 4096, std::vector<uint8_t>(4096, 8));
  std::vector<uint64_t> c1 = {5};
  EXPECT_FALSE(rep.push_checkpoint("db", reader, &c1).snapshot);
  write_at(path, 7 * 4096, std::vector<uint8_t>(4096, 9));
  std::vector<uint64_t> c2 = {7};
  reader.bytes = 0;
  PushResult due = rep.push_checkpoint("db", reader, &c2);
  EXPECT_TRUE(due.snapshot);
  EXPECT_EQ(due.seq, 2u);
  EXPECT_LE(reader.bytes, 4096u);
  rep.sync("db", std::chrono::seconds(60));
  EXPECT_EQ(rep.status("db").last_compacted_seq, 2u);
  ChainListing chain = list_chain(*store, "", "db");
  ASSERT_EQ(chain.snapshots.size(), 2u);
  EXPECT_EQ(chain.snapshots.back().seq, 2u);
  // Restoring the chain's head uses that snapshot alone, and is the file.
  RestoreResult r = restore(*store, "db", dir / "restored.db");
  EXPECT_EQ(r.snapshot_seq, 2u);
  EXPECT_EQ(r.segments_applied, 0u);
  EXPECT_EQ(read_file(dir / "restored.db"), read_file(path));
}

// kill -9 during a compaction leaves at most a temp file in the spool, which
// is never uploaded and is removed at the next add(); the snapshot that was
// due is compacted then.
TEST_P(Compaction, ASnapshotLostToACrashIsCompactedAtTheNextAdd) {
  const std::string path = leader_with_a_snapshot_due_at_2();
  // As if the process died before the compaction finished: the snapshot is
  // not in the store, a half-written temp file is in the spool.
  store->remove({format_key("", {"db", kSnapshotGeneration, 2})});
  const std::string snap_dir = dir / "spool/db/0001";
  std::filesystem::create_directories(snap_dir);
  write_bytes(snap_dir + "/.tmp-compact-host-1-0-out-2", std::vector<uint8_t>(100, 0xee));
  {
    Replicator rep(store, options(2));
    FilePageReader reader(path);
    rep.add("db", reader);
    EXPECT_NE(::access((snap_dir + "/.tmp-compact-host-1-0-out-2").c_str(), F_OK), 0);
    rep.sync("db", std::chrono::seconds(60));
    EXPECT_EQ(rep.status("db").last_compacted_seq, 2u);
  }
  uint64_t chain = decode_segment(object(false, 2)).checksum;
  EXPECT_EQ(test::digest_of(object(true, 2)),
            test::digest_of(snapshot_of(read_file(path), 4096, 2, chain, kDefaultCompressionLevel)));
}

TEST_P(Compaction, ASnapshotAlreadyInTheStoreIsNotBuiltAgainAtTheNextAdd) {
  // add() with a spool asks nothing of the store, so it queues the last due
  // snapshot again whenever the spool no longer holds it (it was uploaded
  // and removed). The compactor must not build it again: a whole-database
  // merge at every restart, for an object the store already has.
  const std::string path = leader_with_a_snapshot_due_at_2();
  const auto stored = object(true, 2);
  auto later = options(2);
  later.now_ms = [] { return kTime + 60'000; };
  Replicator rep(store, later);
  FilePageReader reader(path);
  rep.add("db", reader);
  write_at(path, 9 * 4096, std::vector<uint8_t>(4096, 33));
  rep.push_checkpoint("db", reader);
  rep.sync("db", std::chrono::seconds(60));
  auto st = rep.status("db");
  EXPECT_FALSE(st.fenced) << st.last_error.value_or("");
  EXPECT_FALSE(st.compaction_error) << *st.compaction_error;
  EXPECT_EQ(st.uploaded_seq, 3u);
  EXPECT_EQ(st.last_compacted_seq, 0u) << "the snapshot at 2 was built again";
  EXPECT_EQ(object(true, 2), stored);
}

// A chain without compaction (as another leader or an older version left
// it), then compacted from the store.
struct StoreChain {
  std::vector<std::vector<uint8_t>> files;  // the file after each seq
};
StoreChain build_chain(std::shared_ptr<ObjectStore> store, const std::string& dir, int incrementals,
                       bool snapshot_at_2 = false) {
  ReplicatorOptions o;
  o.spool_dir = dir + "/spool";
  o.snapshots.every_segments = 0;
  o.snapshots.every_bytes = 0;
  StoreChain c;
  const std::string path = dir + "/db.duckdb";
  std::mt19937_64 rng(7);
  std::vector<uint8_t> file(20 * 4096);
  for (auto& b : file) b = uint8_t(rng());
  write_bytes(path, file);
  c.files.push_back(file);
  Replicator rep(store, o);
  FilePageReader reader(path);
  rep.add("db", reader);
  for (int i = 0; i < incrementals; ++i) {
    if (i % 3 == 2) {
      file.resize(file.size() - 4096 - 17);
    } else {
      file[rng() % file.size()] ^= 1;
      file.resize(file.size() + 2000);
    }
    write_bytes(path, file);
    FilePageReader r(path);
    if (snapshot_at_2 && i == 1) {
      rep.snapshot_now("db", r);
    } else {
      rep.push_checkpoint("db", r);
    }
    c.files.push_back(file);
  }
  rep.sync("db", std::chrono::seconds(60));
  return c;
}

CompactSources store_sources(ObjectStore& store, const std::string& work) {
  CompactSources s;
  s.store = &store;
  s.db = "db";
  s.id = read_chain_identity(store, "", "db");
  s.work_dir = work;
  return s;
}

TEST_P(Compaction, ADamagedIncrementalInTheStoreRefusesAndLeavesNothing) {
  build_chain(store, dir.path(), 4);
  auto bytes = object(false, 3);
  bytes[bytes.size() / 2] ^= 0x10;
  MemorySource src(bytes);
  store->put(format_key("", {"db", kIncrementalGeneration, 3}), src);
  std::filesystem::create_directories(dir / "work");
  try {
    compact_snapshot(store_sources(*store, dir / "work"), 4, dir / "work/out.hadbp");
    FAIL() << "compacted over a damaged incremental";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir / "work"));
}

TEST_P(Compaction, ADamagedBaseSnapshotIsSkippedForAnOlderOne) {
  StoreChain c = build_chain(store, dir.path(), 5, /*snapshot_at_2=*/true);
  ASSERT_EQ(list_chain(*store, "", "db").snapshots.size(), 2u);
  auto bytes = object(true, 2);
  bytes[60] ^= 0x01;
  MemorySource src(bytes);
  store->put(format_key("", {"db", kSnapshotGeneration, 2}), src);
  std::filesystem::create_directories(dir / "work");
  CompactOptions o;
  o.now_ms = [] { return kTime; };
  CompactResult r = compact_snapshot(store_sources(*store, dir / "work"), 5, dir / "work/out.hadbp", o);
  EXPECT_EQ(r.base_seq, 0u);
  EXPECT_EQ(r.incrementals, 5u);
  ASSERT_EQ(r.skipped.size(), 1u);
  uint64_t chain = decode_segment(object(false, 5)).checksum;
  EXPECT_EQ(test::digest_of(read_file(dir / "work/out.hadbp")),
            test::digest_of(snapshot_of(c.files[5], 4096, 5, chain, kDefaultCompressionLevel)));
}

// `duckblock compact` against the store URL of each backend the CLI reaches
// by URL alone (the memory store is in-process; s3 is in cli_s3_test.cpp).
TEST(CompactCli, CompactsUploadsRefusesTwiceAndReplacesADamagedOneOnlyWithForce) {
  test::TempDir dir;
  std::string store_dir = dir / "store";
  std::shared_ptr<ObjectStore> store = make_local_store(store_dir);
  StoreChain c = build_chain(store, dir.path(), 4);
  auto run = [&](std::vector<std::string> args) {
    return test::cli_run(test::cli_args("compact", args, {"--store", "file://" + store_dir, "--db", "db"}), dir.path(),
                         {{"TMPDIR", dir.path()}});
  };
  auto r = run({"--json"});
  ASSERT_EQ(r.rc, 0) << test::describe(r);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("seq"), 4);
  EXPECT_EQ(j.at("base_seq"), 0);
  EXPECT_EQ(j.at("incrementals"), 4);
  uint64_t chain = decode_segment(get_bytes(*store, format_key("", {"db", kIncrementalGeneration, 4}))).checksum;
  auto made = get_bytes(*store, format_key("", {"db", kSnapshotGeneration, 4}));
  Segment seg = decode_segment(made);
  EXPECT_EQ(seg.header.prev_checksum, chain);
  auto expect = snapshot_of(c.files[4], 4096, 4, chain, kDefaultCompressionLevel);
  // Equal but for created_ms (header bytes 32..39).
  std::fill(made.begin() + 32, made.begin() + 40, 0);
  std::fill(expect.begin() + 32, expect.begin() + 40, 0);
  EXPECT_EQ(test::digest_of(made), test::digest_of(expect));
  EXPECT_FALSE(has_temp_files(dir.path()));

  auto again = run({});
  EXPECT_EQ(again.rc, 5) << test::describe(again);

  // An earlier seq, plain v1, in text.
  auto plain = run({"--seq", "2", "--compression", "none"});
  ASSERT_EQ(plain.rc, 0) << test::describe(plain);
  EXPECT_NE(plain.out.find("seq 2"), std::string::npos) << plain.out;
  EXPECT_EQ(decode_segment(get_bytes(*store, format_key("", {"db", kSnapshotGeneration, 2}))).header.flags, 0);

  // A damaged snapshot at the seq: refused, replaced with --force.
  auto bytes = get_bytes(*store, format_key("", {"db", kSnapshotGeneration, 4}));
  bytes[bytes.size() - 1] ^= 1;
  MemorySource src(bytes);
  store->put(format_key("", {"db", kSnapshotGeneration, 4}), src);
  auto damaged = run({});
  EXPECT_EQ(damaged.rc, 3) << test::describe(damaged);
  auto forced = run({"--force"});
  ASSERT_EQ(forced.rc, 0) << test::describe(forced);
  RestoreResult rr = restore(*store, "db", dir / "restored.db");
  EXPECT_EQ(rr.snapshot_seq, 4u);
  EXPECT_EQ(read_file(dir / "restored.db"), c.files[4]);

  auto missing = test::cli_run(test::cli_args("compact", {}, {"--store", "file://" + store_dir, "--db", "nope"}),
                               dir.path(), {{"TMPDIR", dir.path()}});
  EXPECT_EQ(missing.rc, 4) << test::describe(missing);
}

// kill -9 while the merge writes its output: nothing is in the store at
// the seq (or, had the kill come after the upload, a sound snapshot), and
// the next run removes the dead run's temp files and compacts.
TEST(CompactCli, AKilledRunLeavesNoSnapshotAndTheNextRunCleansUp) {
  test::TempDir dir;
  std::string store_dir = dir / "store";
  std::shared_ptr<ObjectStore> store = make_local_store(store_dir);
  {
    // A file large enough that the merge takes a while.
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    o.snapshots.every_segments = 0;
    o.snapshots.every_bytes = 0;
    std::mt19937_64 rng(3);
    std::vector<uint8_t> file(24 << 20);
    for (size_t i = 0; i < file.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(&file[i], &v, 8);
    }
    write_bytes(dir / "db.duckdb", file);
    Replicator rep(store, o);
    FilePageReader reader(dir / "db.duckdb");
    rep.add("db", reader);
    write_at(dir / "db.duckdb", 4096, std::vector<uint8_t>(4096, 1));
    rep.push_checkpoint("db", reader);
    rep.sync("db", std::chrono::minutes(2));
  }
  std::string tmp = dir / "tmp";
  std::filesystem::create_directories(tmp);
  std::vector<std::string> args =
      test::cli_args("compact", {}, {"--store", "file://" + store_dir, "--db", "db"});
  pid_t pid = test::cli_spawn(args, dir.path(), {{"TMPDIR", tmp}}, dir / "out", dir / "err");
  // Until the output's temp file exists (or the run ended first).
  for (;;) {
    bool started = false;
    for (const auto& e : std::filesystem::directory_iterator(tmp)) {
      if (e.path().filename().string().find("out-1") != std::string::npos) started = true;
    }
    siginfo_t info{};
    bool ended = ::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
    if (started || ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  test::cli_wait(pid);
  ChainListing chain = list_chain(*store, "", "db");
  for (const auto& e : chain.snapshots) {
    if (e.seq == 1) {
      EXPECT_NO_THROW(download_segment(*store, e, dir / "check.hadbp")) << "a partial snapshot in the store";
    }
  }
  auto again = test::cli_run(args, dir.path(), {{"TMPDIR", tmp}});
  EXPECT_TRUE(again.rc == 0 || again.rc == 5) << test::describe(again);
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
  RestoreResult r = restore(*store, "db", dir / "restored.db");
  EXPECT_EQ(r.snapshot_seq, 1u);
  EXPECT_EQ(read_file(dir / "restored.db"), read_file(dir / "db.duckdb"));
}

// A due snapshot the leader cannot compact (its only base is damaged): the
// incremental still ships (exit 0), and push says the snapshot is missing.
TEST(CompactCli, PushWarnsWhenADueSnapshotCouldNotBeCompacted) {
  test::TempDir dir;
  std::string store_dir = dir / "store";
  std::string db = dir / "app.duckdb";
  test::DbBytes bytes(5);
  bytes.write(db, 8);
  auto run = [&](const std::string& cmd, std::vector<std::string> args) {
    return test::cli_run(test::cli_args(cmd, args, {"--store", "file://" + store_dir, "--db", "app"}), dir.path());
  };
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  bytes.modify(db);
  auto first = run("push", {db, "--snapshot-every", "2", "--json"});
  ASSERT_EQ(first.rc, 0) << test::describe(first);
  EXPECT_TRUE(nlohmann::json::parse(first.out).at("compaction_error").is_null());
  std::shared_ptr<ObjectStore> store = make_local_store(store_dir);
  auto snap = get_bytes(*store, format_key("", {"app", kSnapshotGeneration, 0}));
  snap[snap.size() / 2] ^= 0x20;
  MemorySource src(snap);
  store->put(format_key("", {"app", kSnapshotGeneration, 0}), src);
  bytes.modify(db);
  auto due = run("push", {db, "--snapshot-every", "2", "--json"});
  ASSERT_EQ(due.rc, 0) << test::describe(due);
  auto j = nlohmann::json::parse(due.out);
  EXPECT_EQ(j.at("seq"), 2);
  EXPECT_FALSE(j.at("compaction_error").is_null()) << due.out;
  EXPECT_NE(due.err.find("the snapshot at seq 2 was not made"), std::string::npos) << due.err;
  EXPECT_EQ(list_chain(*store, "", "app").snapshots.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Compaction, ::testing::ValuesIn(test::all_store_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace duckblock
