// Leader -> store -> follower with synthetic files, against every store
// backend. (DuckDB end-to-end tests live in duckdb/tests.)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "duckblock/error.h"
#include "duckblock/key.h"
#include "duckblock/replicator.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckblock/sha256.h"
#include "store_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr uint32_t kPage = 4096;

// A file that changes like a database does: pages rewritten, appended,
// truncated. Tracks which pages it wrote since the last checkpoint.
class MutatingFile {
 public:
  MutatingFile(std::string path, uint64_t seed) : path_(std::move(path)), rng_(seed) {
    data_.resize(64 * kPage);
    for (auto& b : data_) b = uint8_t(rng_());
    flush();
    dirty_.clear();
  }
  void step() {
    int op = int(rng_() % 10);
    if (op < 6) {  // rewrite some pages, some with the same bytes
      for (int i = 0; i < 5; ++i) {
        uint64_t page = rng_() % (data_.size() / kPage);
        dirty_.push_back(page);
        if (rng_() % 3) data_[page * kPage + rng_() % kPage] ^= uint8_t(1 + rng_() % 255);
      }
    } else if (op < 8) {  // append
      size_t old = data_.size();
      data_.resize(old + (1 + rng_() % 8) * kPage);
      for (size_t i = old; i < data_.size(); ++i) data_[i] = uint8_t(rng_());
      for (uint64_t p = old / kPage; p < data_.size() / kPage; ++p) dirty_.push_back(p);
    } else if (data_.size() > 16 * kPage) {  // shrink
      data_.resize(data_.size() - (1 + rng_() % 4) * kPage);
    }
    flush();
  }
  // In place, like a database: readers holding the file open see the change.
  void flush() {
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data_.data(), data_.size(), 0), ssize_t(data_.size()));
    ASSERT_EQ(::ftruncate(fd, off_t(data_.size())), 0);
    ::close(fd);
  }
  std::vector<uint64_t> take_dirty() { return std::exchange(dirty_, {}); }
  const std::vector<uint8_t>& data() const { return data_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::mt19937_64 rng_;
  std::vector<uint8_t> data_;
  std::vector<uint64_t> dirty_;
};

class Replication : public ::testing::TestWithParam<test::StoreBackend> {
 protected:
  void SetUp() override { store = std::shared_ptr<ObjectStore>(GetParam().make()); }
  ReplicatorOptions options(const std::string& spool) {
    ReplicatorOptions o;
    o.spool_dir = spool;
    o.snapshots.every_segments = 4;
    o.retry_initial = std::chrono::milliseconds(5);
    return o;
  }
  void expect_follower_identical_after_every_checkpoint(const std::string& db, uint64_t background);
  // Adds the leader's file as "db" and waits until its snapshot is stored.
  void add_and_sync(Replicator& rep, MutatingFile& leader) {
    FilePageReader reader(leader.path());
    rep.add("db", reader);
    rep.sync();
  }
  std::shared_ptr<ObjectStore> store;
  test::TempDir dir;
};

// Both ways of spooling: in the background (the default) and in the push.
TEST_P(Replication, FollowerIsByteIdenticalAfterEveryCheckpoint) {
  for (uint64_t background : {uint64_t{64} << 20, uint64_t{0}}) {
    SCOPED_TRACE("background_spool_bytes " + std::to_string(background));
    std::string db = "db" + std::to_string(background);
    expect_follower_identical_after_every_checkpoint(db, background);
  }
}

void Replication::expect_follower_identical_after_every_checkpoint(const std::string& db, uint64_t background) {
  MutatingFile leader(dir / (db + ".leader"), 1);
  auto opts = options(dir / "spool");
  opts.background_spool_bytes = background;
  Replicator rep(store, opts);
  {
    FilePageReader reader(leader.path());
    rep.add(db, reader);
  }
  rep.sync();
  Follower follower(store, db, dir / (db + ".follower"));
  uint64_t last_seq = 0;
  for (int i = 0; i < 24; ++i) {
    leader.step();
    auto dirty = leader.take_dirty();
    FilePageReader reader(leader.path());
    auto r = rep.push_checkpoint(db, reader, &dirty);
    if (r.seq) {
      EXPECT_EQ(r.seq, last_seq + 1);
      last_seq = r.seq;
    }
    if (i % 3 == 1) continue;  // sometimes two checkpoints in a row: they queue up
    rep.sync();
    follower.poll_once();
    ASSERT_EQ(test::digest_of(read_file(dir / (db + ".follower"))), test::digest_of(leader.data())) << "checkpoint " << i;
    EXPECT_EQ(follower.position().seq, last_seq);
  }
  auto st = rep.status(db);
  EXPECT_EQ(st.uploaded_seq, last_seq);
  EXPECT_EQ(st.pending_segments, 0u);
  EXPECT_GT(st.last_snapshot_seq, 0u);  // every 4 segments
  // A fresh restore reaches the same bytes from the newest snapshot.
  auto res = restore(*store, db, dir / (db + ".restored"));
  EXPECT_EQ(test::digest_of(read_file(dir / (db + ".restored"))), test::digest_of(leader.data()));
  EXPECT_EQ(res.position.seq, last_seq);
}

// A segment the spooler cannot write (here: its directory is replaced by a
// file) is reported by sync() and status(); the next checkpoint then
// compares the whole file, so the lost checkpoint's pages still ship.
TEST_P(Replication, AFailedBackgroundSpoolIsReportedAndTheNextPushCatchesUp) {
  MutatingFile leader(dir / "leader.db", 11);
  std::string incr = dir / "spool/db/0000";
  Replicator rep(store, options(dir / "spool"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  rep.sync();
  ::mkdir(incr.c_str(), 0755);  // there may be no incremental yet
  ASSERT_EQ(::rename(incr.c_str(), (incr + ".away").c_str()), 0);
  write_file_atomic(incr, std::vector<uint8_t>{'x'});
  leader.step();
  auto lost = leader.take_dirty();
  EXPECT_EQ(rep.push_checkpoint("db", reader, &lost).seq, 1u);
  try {
    rep.sync("db", std::chrono::seconds(30));
    ADD_FAILURE() << "sync() succeeded with a segment that could not be spooled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIO);
    EXPECT_NE(std::string(e.what()).find("spooling seq 1"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(rep.status("db").last_error.has_value());
  ASSERT_EQ(::unlink(incr.c_str()), 0);
  ASSERT_EQ(::rename((incr + ".away").c_str(), incr.c_str()), 0);
  // Only a page or two are new, but the whole file is compared.
  leader.step();
  auto dirty = leader.take_dirty();
  EXPECT_EQ(rep.push_checkpoint("db", reader, &dirty).seq, 1u);
  rep.sync();
  restore(*store, "db", dir / "r.db");
  EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(leader.data()));
}

TEST_P(Replication, UnchangedPagesAreNotShipped) {
  MutatingFile leader(dir / "leader.db", 2);
  Replicator rep(store, options(dir / "spool"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  std::vector<uint64_t> dirty = {1, 2, 3};  // written, but with the same bytes
  EXPECT_EQ(rep.push_checkpoint("db", reader, &dirty).seq, 0u);
}

// Compression is per segment: a chain may mix plain and compressed segments
// (a leader restarted with another setting), and followers and restores
// read both, because the checksum is the same either way.
TEST_P(Replication, SegmentsAreCompressedByDefaultPlainWhenAskedAndAChainMayMixThem) {
  MutatingFile leader(dir / "leader.db", 21);
  Follower follower(store, "db", dir / "follower.db");
  auto flags_of_new_objects = [&](std::set<std::string>& seen) {
    std::set<int> flags;
    for (const auto& o : store->list("")) {
      // Segments only (chain.json is the chain's marker, not a segment).
      if (o.key.size() < 6 || o.key.compare(o.key.size() - 6, 6, ".hadbp") != 0) continue;
      if (!seen.insert(o.key).second) continue;
      flags.insert(get_bytes(*store, o.key).at(6));
    }
    return flags;
  };
  std::set<std::string> seen;
  for (int level : {0, kDefaultCompressionLevel, 0}) {
    SCOPED_TRACE(level);
    auto opt = options(dir / "spool");
    opt.compression = level;
    Replicator rep(store, opt);
    FilePageReader reader(leader.path());
    rep.add("db", reader);
    for (int i = 0; i < 5; ++i) {
      leader.step();
      auto d = leader.take_dirty();
      rep.push_checkpoint("db", reader, &d);
    }
    rep.sync();
    EXPECT_EQ(flags_of_new_objects(seen), std::set<int>{level ? kFlagCompressed : 0});
    follower.poll_once();
    ASSERT_EQ(test::digest_of(read_file(dir / "follower.db")), test::digest_of(leader.data()));
  }
  auto res = restore(*store, "db", dir / "restored.db");
  EXPECT_EQ(test::digest_of(read_file(dir / "restored.db")), test::digest_of(leader.data()));
  auto bad = options(dir / "spool2");
  bad.compression = 20;
  EXPECT_ERROR_KIND(Replicator(store, bad), ErrorKind::kInvalidArgument);
}

TEST_P(Replication, SnapshotNowShipsTheDifferenceThenSnapshotsTheHead) {
  MutatingFile leader(dir / "leader.db", 12);
  auto opt = options(dir / "spool");
  opt.snapshots.every_segments = 0;  // only explicit snapshots
  opt.snapshots.every_bytes = 0;
  Replicator rep(store, opt);
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  // Nothing changed since the seq-0 snapshot: it is the snapshot at the head.
  auto same = rep.snapshot_now("db", reader);
  EXPECT_EQ(same.seq, 0u);
  EXPECT_FALSE(same.created);
  uint64_t seq = 0;
  for (int tries = 0; seq < 3; ++tries) {
    ASSERT_LT(tries, 1000) << "the file never changed";
    leader.step();
    auto d = leader.take_dirty();
    if (rep.push_checkpoint("db", reader, &d).seq) ++seq;
  }
  leader.step();  // not pushed: snapshot_now ships it first
  auto r = rep.snapshot_now("db", reader);
  EXPECT_EQ(r.incremental.seq, 4u);
  EXPECT_EQ(r.seq, 4u);
  EXPECT_TRUE(r.created);
  EXPECT_FALSE(rep.snapshot_now("db", reader).created);  // already there
  rep.sync();
  ChainListing chain = list_chain(*store, "", "db");
  ASSERT_EQ(chain.snapshots.size(), 2u);
  EXPECT_EQ(chain.snapshots.back().seq, 4u);
  // A restore to the head starts from the new snapshot and replays nothing.
  auto res = restore(*store, "db", dir / "restored.db");
  EXPECT_EQ(res.snapshot_seq, 4u);
  EXPECT_EQ(res.segments_applied, 0u);
  EXPECT_EQ(test::digest_of(read_file(dir / "restored.db")), test::digest_of(leader.data()));
  // Its position chains: the snapshot's prev_checksum is the chain checksum at 4.
  ASSERT_EQ(chain.incrementals.back().seq, 4u);
  auto bytes = get_bytes(*store, chain.incrementals.back().key);
  MemorySource src(bytes);
  EXPECT_EQ(res.position.checksum, verify_segment(src).checksum);
}

// Passes everything through to the backend, except that a get of a snapshot
// delivers half the object and then fails the way a dropped connection
// does (which a real store cannot be made to do on demand here).
class FailingSnapshotGets final : public test::WrappedStore {
 public:
  using WrappedStore::WrappedStore;
  void get(const std::string& k, ByteSink& out, std::optional<ByteRange> range) override {
    if (range || k.find("/0001/") == std::string::npos) return inner_->get(k, out, range);
    auto bytes = get_bytes(*inner_, k);
    out.write(bytes.data(), bytes.size() / 2);
    throw Error(ErrorKind::kRetryable, "connection reset while reading " + k);
  }
};

// Restore streams the snapshot from the store into the file: a download
// that fails part-way reports the store's error (not a corrupt segment), a
// damaged snapshot is refused naming the object, and neither leaves a file.
TEST_P(Replication, RestoreStreamsTheSnapshotAndLeavesNothingWhenItFails) {
  MutatingFile leader(dir / "leader.db", 31);
  Replicator rep(store, options(dir / "spool"));
  add_and_sync(rep, leader);
  auto no_trace = [&] {
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
      EXPECT_EQ(e.path().filename().string().find("out.db"), std::string::npos) << e.path();
      EXPECT_EQ(e.path().filename().string().find(".duckblock-dl-"), std::string::npos) << e.path();
    }
  };
  FailingSnapshotGets failing(store);
  try {
    restore(failing, "db", dir / "out.db");
    ADD_FAILURE() << "restored from a failed download";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRetryable) << e.what();
  }
  no_trace();
  ChainListing chain = list_chain(*store, "", "db");
  ASSERT_EQ(chain.snapshots.size(), 1u);
  auto bytes = get_bytes(*store, chain.snapshots[0].key);
  bytes[bytes.size() / 2] ^= 0x20;
  MemorySource damaged(bytes);
  store->put(chain.snapshots[0].key, damaged);
  try {
    restore(*store, "db", dir / "out.db");
    ADD_FAILURE() << "restored a damaged snapshot";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    EXPECT_NE(std::string(e.what()).find(chain.snapshots[0].key), std::string::npos) << e.what();
  }
  no_trace();
}

// The follow path reads a segment from the store once and hashes it once
// (docs/ARCHITECTURE.md): a snapshot as it streams into the temp file, an
// incremental on the download thread (the write pass takes the file as
// verified while it is unwritten since, and does not hash it again).
// Counted as bytes through SHA-256 over the segment's plain size.
// Plus, after each apply, one pass over the file for its whole-file digest
// (here as large as each segment).
TEST_P(Replication, FollowHashesEverySegmentOncePlusTheFilesDigest) {
  MutatingFile leader(dir / "leader.db", 41);
  auto opts = options(dir / "spool");
  opts.compression = 0;  // the object's size is then the bytes hashed per pass
  opts.snapshots.every_segments = 1000;
  // Idle between pushes (sync() returns once all is uploaded), so that
  // nothing of the leader's is hashed while the follower is counted.
  Replicator rep(store, opts);
  add_and_sync(rep, leader);
  Follower follower(store, "db", dir / "follower.db");
  auto passes = [&](bool snapshot, uint64_t seq) {
    ChainListing chain = list_chain(*store, "", "db");
    const auto& list = snapshot ? chain.snapshots : chain.incrementals;
    auto it = std::find_if(list.begin(), list.end(), [&](const ChainEntry& e) { return e.seq == seq; });
    EXPECT_NE(it, list.end());
    uint64_t size = it == list.end() ? 1 : it->size;
    uint64_t before = sha256_bytes_hashed();
    EXPECT_EQ(follower.poll_once().segments_applied, 1u);
    uint64_t hashed = sha256_bytes_hashed() - before;
    // Besides the passes: the replica's file proof (the commit region of the
    // file, three times a poll) and request signing, under a quarter of
    // this 256 KiB segment.
    EXPECT_LT(hashed % size, size / 4) << hashed << " bytes hashed for a segment of " << size;
    return hashed / size;
  };
  EXPECT_EQ(passes(true, 0), 1u + 1u);
  ASSERT_EQ(test::digest_of(read_file(dir / "follower.db")), test::digest_of(leader.data()));
  {
    // Every page changes: an incremental as large as the file.
    std::vector<uint64_t> all;
    for (uint64_t p = 0; p < leader.data().size() / kPage; ++p) all.push_back(p);
    auto data = leader.data();
    std::mt19937_64 rng(5);
    for (auto& b : data) b = uint8_t(rng());
    std::ofstream(leader.path(), std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
    FilePageReader reader(leader.path());
    auto r = rep.push_checkpoint("db", reader, &all);
    ASSERT_EQ(r.seq, 1u);
    rep.sync();
    EXPECT_EQ(passes(false, 1), 1u + 1u);
    ASSERT_EQ(test::digest_of(read_file(dir / "follower.db")), test::digest_of(data));
  }
}

TEST_P(Replication, RestoreToEverySeqAndToATime) {
  MutatingFile leader(dir / "leader.db", 3);
  int64_t clock = 1'000'000;
  auto opt = options(dir / "spool");
  opt.now_ms = [&] { return clock; };
  Replicator rep(store, opt);
  {
    FilePageReader reader(leader.path());
    rep.add("db", reader);
  }
  std::vector<std::vector<uint8_t>> states = {leader.data()};
  std::vector<int64_t> times = {clock};
  for (int tries = 0; states.size() < 12; ++tries) {
    ASSERT_LT(tries, 1000) << "the file never changed";
    leader.step();
    clock += 1000;
    auto dirty = leader.take_dirty();
    FilePageReader reader(leader.path());
    if (rep.push_checkpoint("db", reader, &dirty).seq) {
      states.push_back(leader.data());
      times.push_back(clock);
    }
  }
  rep.sync();
  for (uint64_t seq = 0; seq < states.size(); ++seq) {
    std::string out = dir / ("at" + std::to_string(seq));
    auto r = restore(*store, "db", out, RestoreTarget{seq, std::nullopt});
    EXPECT_EQ(r.position.seq, seq);
    EXPECT_EQ(test::digest_of(read_file(out)), test::digest_of(states[seq])) << "seq " << seq;
  }
  // Half a second after checkpoint 7: the state at 7.
  restore(*store, "db", dir / "t", RestoreTarget{std::nullopt, times[7] + 500});
  EXPECT_EQ(test::digest_of(read_file(dir / "t")), test::digest_of(states[7]));
  EXPECT_ERROR_KIND(restore(*store, "db", dir / "x", RestoreTarget{999, std::nullopt}), ErrorKind::kNotFound);
  EXPECT_ERROR_KIND(restore(*store, "nodb", dir / "x"), ErrorKind::kNotFound);
}

TEST_P(Replication, LeaderRestartResumesFromSpoolWithoutGapOrDuplicate) {
  MutatingFile leader(dir / "leader.db", 4);
  {
    Replicator rep(store, options(dir / "spool"));
    FilePageReader reader(leader.path());
    rep.add("db", reader);
    rep.sync();
    for (int i = 0; i < 3; ++i) {
      leader.step();
      auto d = leader.take_dirty();
      rep.push_checkpoint("db", reader, &d);
    }
    // Destroyed without sync: segments may still be in the spool.
  }
  leader.step();  // changed while no replicator ran
  leader.take_dirty();
  Replicator rep(store, options(dir / "spool"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);  // ships the difference
  rep.sync();
  auto chain = list_chain(*store, "", "db");
  for (size_t i = 0; i < chain.incrementals.size(); ++i) EXPECT_EQ(chain.incrementals[i].seq, i + 1);
  restore(*store, "db", dir / "r.db");
  EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(leader.data()));
}

// A crash leaves pages.idx older than the spool (it is saved every few
// pushes, without fsync). A page that changed A -> B in a lost-index push and
// back to A since must still ship: the index is replayed from the segments,
// not trusted at its old seq.
TEST_P(Replication, RestartWithAStaleIndexStillShipsAPageThatChangedBack) {
  std::vector<uint8_t> file(8 * kPage, 0x11);
  std::string path = dir / "aba.db";
  auto write = [&] { write_file_atomic(path, file); };
  write();
  std::string spool = dir / "spool";
  // One run of a leader: registers the file (shipping what differs), uploads.
  auto run_leader = [&] {
    Replicator rep(store, options(spool));
    FilePageReader reader(path);
    rep.add("db", reader);
    rep.sync();
    return rep.status("db").spooled_seq;
  };
  EXPECT_EQ(run_leader(), 0u);
  auto index_at_0 = read_file(spool + "/db/pages.idx");
  std::fill(file.begin() + 3 * kPage, file.begin() + 4 * kPage, 0x22);  // page 3: A -> B
  write();
  EXPECT_EQ(run_leader(), 1u);
  write_file_atomic(spool + "/db/pages.idx", index_at_0);  // as if the crash lost the newer index
  std::fill(file.begin() + 3 * kPage, file.begin() + 4 * kPage, 0x11);  // page 3: B -> A
  write();
  EXPECT_EQ(run_leader(), 2u);
  restore(*store, "db", dir / "r.db");
  EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(file));
}

// A damaged index is not trusted: the next push ships every page.
TEST_P(Replication, RestartWithADamagedIndexShipsEverything) {
  MutatingFile leader(dir / "leader.db", 9);
  std::string spool = dir / "spool";
  {
    Replicator rep(store, options(spool));
    FilePageReader reader(leader.path());
    rep.add("db", reader);
    rep.sync();
  }
  auto idx = read_file(spool + "/db/pages.idx");
  idx[idx.size() / 2] ^= 1;
  write_file_atomic(spool + "/db/pages.idx", idx);
  leader.step();
  Replicator rep(store, options(spool));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  rep.sync();
  restore(*store, "db", dir / "r.db");
  EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(leader.data()));
}

// Two writers on one spool (overlapping cron jobs, two leaders started by
// mistake) would interleave segments and state: the second add() of the
// same database fails at once, naming the spool and the holder; another
// database in the same spool directory is not affected.
TEST_P(Replication, ASecondWriterOnTheSameSpoolIsRefusedAtOnce) {
  MutatingFile leader(dir / "leader.db", 12);
  MutatingFile other(dir / "other.db", 13);
  std::string spool = dir / "spool";
  Replicator first(store, options(spool));
  FilePageReader reader(leader.path());
  first.add("db", reader);
  first.sync();
  auto state_before = read_file(spool + "/db/state.json");

  Replicator second(store, options(spool));
  FilePageReader reader2(leader.path());
  try {
    second.add("db", reader2);
    FAIL() << "a second writer was let in";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kLocked) << e.what();
    EXPECT_NE(std::string(e.what()).find(spool + "/db"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(spool + "/db/state.json"), state_before);
  try {
    second.add_continuing("db", reader2, ChainPosition{0, 0});
    FAIL() << "add_continuing took a spool in use";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kLocked) << e.what();  // the head is seq 0: only the lock refuses
  }
  FilePageReader other_reader(other.path());
  second.add("other", other_reader);  // its own database: its own lock
  second.sync();

  // Once the first lets go, the second may take over the database.
  first.remove("db");
  second.add("db", reader2);
  leader.step();
  auto d = leader.take_dirty();
  EXPECT_EQ(second.push_checkpoint("db", reader2, &d).seq, 1u);
  second.sync();
  restore(*store, "db", dir / "r.db");
  EXPECT_EQ(test::digest_of(read_file(dir / "r.db")), test::digest_of(leader.data()));
}

TEST_P(Replication, NewMachineContinuesAnExistingChain) {
  MutatingFile leader(dir / "leader.db", 5);
  {
    Replicator rep(store, options(dir / "spool1"));
    FilePageReader reader(leader.path());
    rep.add("db", reader);
    leader.step();
    auto d = leader.take_dirty();
    rep.push_checkpoint("db", reader, &d);
    rep.sync();
  }
  // Same file, empty spool: nothing differs, so nothing new ships.
  Replicator rep(store, options(dir / "spool2"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  rep.sync();
  EXPECT_EQ(list_chain(*store, "", "db").head_seq(), 1u);
}

TEST_P(Replication, PromotedFollowerContinuesAndTheOldLeaderIsFenced) {
  MutatingFile leader(dir / "leader.db", 6);
  Replicator old_leader(store, options(dir / "spool-old"));
  FilePageReader old_reader(leader.path());
  old_leader.add("db", old_reader);
  for (int i = 0; i < 3; ++i) {
    leader.step();
    auto d = leader.take_dirty();
    old_leader.push_checkpoint("db", old_reader, &d);
  }
  old_leader.sync();
  // Follower B catches up and is promoted.
  Follower b(store, "db", dir / "b.db");
  ChainPosition pos = b.catch_up_and_stop();
  ASSERT_EQ(test::digest_of(read_file(dir / "b.db")), test::digest_of(leader.data()));
  Replicator new_leader(store, options(dir / "spool-new"));
  FilePageReader b_reader(dir / "b.db");
  new_leader.add_continuing("db", b_reader, pos);
  // A second follower C follows across the handover.
  Follower c(store, "db", dir / "c.db");
  c.poll_once();
  MutatingFile b_file(dir / "b-writer.db", 99);  // unused: b writes via raw bytes below
  auto bytes = read_file(dir / "b.db");
  bytes[5 * kPage] ^= 0x55;
  write_file_atomic(dir / "b.db", bytes);
  std::vector<uint64_t> dirty = {5};
  FilePageReader b_reader2(dir / "b.db");
  EXPECT_EQ(new_leader.push_checkpoint("db", b_reader2, &dirty).seq, pos.seq + 1);
  new_leader.sync();
  c.poll_once();
  EXPECT_EQ(test::digest_of(read_file(dir / "c.db")), test::digest_of(bytes));
  // The deposed leader writes late: fenced, and the chain is not forked.
  leader.step();
  auto d = leader.take_dirty();
  d.push_back(0);
  auto late = read_file(leader.path());
  late[0] ^= 1;
  write_file_atomic(leader.path(), late);
  FilePageReader late_reader(leader.path());
  old_leader.push_checkpoint("db", late_reader, &d);
  try {
    old_leader.sync("db", std::chrono::seconds(20));
    FAIL() << "late write was not fenced";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFenced) << e.what();
  }
  EXPECT_TRUE(old_leader.status("db").fenced);
  c.poll_once();
  EXPECT_EQ(test::digest_of(read_file(dir / "c.db")), test::digest_of(bytes));
}

TEST_P(Replication, FollowerStopsAtABrokenChain) {
  MutatingFile leader(dir / "leader.db", 7);
  Replicator rep(store, options(dir / "spool"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  leader.step();
  auto d = leader.take_dirty();
  rep.push_checkpoint("db", reader, &d);
  rep.sync();
  Follower f(store, "db", dir / "f.db");
  f.poll_once();
  auto before = read_file(dir / "f.db");
  // A segment 2 that does not chain (wrong prev checksum) appears.
  SegmentHeader h;
  h.page_size = kPage;
  h.seq = f.position().seq + 1;
  h.prev_checksum = 0xbad;
  auto seg = encode_segment(h, {{0, std::vector<uint8_t>(kPage, 1)}});
  put_bytes(*store, format_key("", {"db", 0, h.seq}), seg);
  EXPECT_ERROR_KIND(f.poll_once(), ErrorKind::kChainBroken);
  EXPECT_TRUE(f.broken());
  ASSERT_TRUE(f.last_error());
  EXPECT_NE(f.last_error()->find("does not continue"), std::string::npos) << *f.last_error();
  EXPECT_EQ(test::digest_of(read_file(dir / "f.db")), test::digest_of(before));
}

TEST_P(Replication, FollowerLoopRunsAndStopsCleanly) {
  MutatingFile leader(dir / "leader.db", 8);
  Replicator rep(store, options(dir / "spool"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  rep.sync();
  FollowerOptions fo;
  fo.poll_interval = std::chrono::milliseconds(20);
  std::atomic<int> applied{0};
  fo.hooks.after_apply = [&](const ReplicaFiles&, const FollowerPoll& p) { applied += p.applied() > 0; };
  Follower f(store, "db", dir / "f.db", fo);
  f.start();
  leader.step();
  auto d = leader.take_dirty();
  rep.push_checkpoint("db", reader, &d);
  rep.sync();
  for (int i = 0; i < 500 && f.position().seq < rep.status("db").uploaded_seq; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  f.stop();
  EXPECT_EQ(f.position().seq, rep.status("db").uploaded_seq);
  EXPECT_TRUE(f.caught_up());
  EXPECT_GE(applied.load(), 1);
  EXPECT_EQ(test::digest_of(read_file(dir / "f.db")), test::digest_of(leader.data()));
}

// Two files taking turns (the extension's follower): a published file is
// never written; a poll that finds the store ahead brings the other file up
// (before_apply names it first) and publishes it (after_apply).
TEST_P(Replication, FollowerWithAnAlternateNeverWritesThePublishedFile) {
  MutatingFile leader(dir / "leader.db", 8);
  Replicator rep(store, options(dir / "spool"));
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  rep.sync();
  auto ship = [&] {
    leader.step();
    auto d = leader.take_dirty();
    uint64_t seq = rep.push_checkpoint("db", reader, &d).seq;
    rep.sync();
    return seq;
  };
  const std::string primary = dir / "f.db", alternate = dir / "f.db.alt";
  std::vector<std::string> events;
  FollowerOptions fo;
  fo.alternate.path = alternate;
  fo.hooks.before_apply = [&](const ReplicaFiles& files) { events.push_back("before " + files.path); };
  fo.hooks.after_apply = [&](const ReplicaFiles& files, const FollowerPoll& poll) {
    events.push_back("publish " + files.path + " " + std::to_string(poll.position.seq));
  };
  Follower f(store, "db", primary, fo);
  uint64_t first = f.poll_once().seq_after;
  EXPECT_EQ(first, rep.status("db").uploaded_seq);
  EXPECT_EQ(events, (std::vector<std::string>{"before " + primary, "publish " + primary + " " + std::to_string(first)}));
  EXPECT_EQ(f.status().published_path, primary);
  auto published = read_file(primary);

  // Nothing new: nothing is written or published.
  events.clear();
  EXPECT_EQ(f.poll_once().applied(), 0u);
  EXPECT_TRUE(events.empty());

  uint64_t seq = ship();
  FollowerPoll p = f.poll_once();
  EXPECT_EQ(events, (std::vector<std::string>{"before " + alternate, "publish " + alternate + " " + std::to_string(seq)}));
  EXPECT_EQ(p.seq_before, first);
  EXPECT_EQ(p.seq_after, seq);
  EXPECT_EQ(f.status().published_path, alternate);
  EXPECT_EQ(f.position().seq, seq);
  EXPECT_EQ(read_file(primary), published) << "the file readers read was written";
  EXPECT_EQ(test::digest_of(read_file(alternate)), test::digest_of(leader.data()));

  // before_apply gives the poll up (the extension: a query still reads the
  // other file): nothing moves, and the next poll tries again.
  FollowerOptions go;
  go.alternate.path = dir / "g.db.alt";
  bool refuse = true;
  go.hooks.before_apply = [&](const ReplicaFiles& files) {
    if (refuse && files.path == go.alternate.path) throw Error(ErrorKind::kRetryable, "still read");
  };
  Follower g(store, "db", dir / "g.db", go);
  g.poll_once();
  uint64_t next = ship();
  EXPECT_ERROR_KIND(g.poll_once(), ErrorKind::kRetryable);
  EXPECT_FALSE(g.broken());
  EXPECT_EQ(g.status().published_path, dir / "g.db");
  EXPECT_EQ(g.position().seq, seq);
  EXPECT_EQ(g.errors(), 1u);
  EXPECT_EQ(g.last_error(), std::optional<std::string>("still read"));
  refuse = false;
  EXPECT_EQ(g.poll_once().seq_after, next);
  EXPECT_EQ(g.status().published_path, go.alternate.path);
  EXPECT_FALSE(g.last_error());
}

TEST_P(Replication, PruneKeepsEveryPointInTheWindowRestorable) {
  MutatingFile leader(dir / "leader.db", 9);
  ReplicatorOptions o = options(dir / "spool");  // snapshot every 4
  o.snapshots.coalesce = false;                  // at 4, 8 and 12, however busy the compactor
  Replicator rep(store, o);
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  for (int n = 0, tries = 0; n < 14; ++tries) {
    ASSERT_LT(tries, 1000) << "the file never changed";
    leader.step();
    auto d = leader.take_dirty();
    if (rep.push_checkpoint("db", reader, &d).seq) ++n;
  }
  rep.sync();
  ChainListing chain = list_chain(*store, "", "db");
  // Pretend seq k was written at time 1000*k (store times are all "now").
  for (auto* list : {&chain.incrementals, &chain.snapshots}) {
    for (auto& e : *list) e.modified_ms = 1000 * int64_t(e.seq);
  }
  RetentionPolicy pol;
  pol.window = std::chrono::milliseconds(5500);  // now = 14000: keep points from seq 8.5 on
  pol.min_snapshots = 1;
  auto plan = plan_prune(chain, pol, 14000);
  EXPECT_EQ(plan.oldest_restorable_seq, 8u);
  execute_prune(*store, plan);
  for (uint64_t seq = 8; seq <= 14; ++seq) {
    std::string out = dir / ("p" + std::to_string(seq));
    EXPECT_NO_THROW(restore(*store, "db", out, RestoreTarget{seq, std::nullopt})) << seq;
  }
  EXPECT_ERROR_KIND(restore(*store, "db", dir / "old", RestoreTarget{3, std::nullopt}), ErrorKind::kNotFound);
}

// A prune between a follower's listing and its download of what it listed.
class PrunesAtFirstGetOf final : public test::WrappedStore {
 public:
  PrunesAtFirstGetOf(std::shared_ptr<ObjectStore> inner, std::string victim, std::vector<std::string> pruned)
      : WrappedStore(std::move(inner)), victim_(std::move(victim)), pruned_(std::move(pruned)) {}
  void get(const std::string& k, ByteSink& o, std::optional<ByteRange> r) override {
    if (k == victim_ && !pruned_.empty()) {
      inner_->remove(pruned_);
      pruned_.clear();
    }
    inner_->get(k, o, r);
  }

 private:
  std::string victim_;
  std::vector<std::string> pruned_;
};

// `follow` (its first poll, in the foreground) catching up across a prune
// died with "no such object" (exit 4). It lists the chain again and goes on
// from the newer snapshot.
TEST_P(Replication, AFollowerCatchingUpAcrossAPruneListsAgain) {
  MutatingFile leader(dir / "leader.db", 21);
  Replicator rep(store, options(dir / "spool"));  // snapshot every 4
  FilePageReader reader(leader.path());
  rep.add("db", reader);
  uint64_t at = 0;
  auto push_to = [&](uint64_t seq) {
    for (int tries = 0; at < seq; ++tries) {
      ASSERT_LT(tries, 1000) << "the file never changed";
      leader.step();
      auto d = leader.take_dirty();
      if (uint64_t s = rep.push_checkpoint("db", reader, &d).seq) at = s;
    }
    rep.sync();
  };
  push_to(1);
  {
    Replica replica(dir / "f.db");
    catch_up(*store, "", "db", replica);
    ASSERT_EQ(replica.position().seq, 1u);
  }
  push_to(6);
  ASSERT_EQ(rep.status("db").last_compacted_seq, 4u);
  auto key = [](const char* gen, uint64_t seq) {
    return format_key("", {"db", std::string(gen) == "0001" ? kSnapshotGeneration : kIncrementalGeneration, seq});
  };
  auto pruning = std::make_shared<PrunesAtFirstGetOf>(
      store, key("0000", 2), std::vector<std::string>{key("0001", 0), key("0000", 1), key("0000", 2), key("0000", 3)});
  Replica replica(dir / "f.db");
  catch_up(*pruning, "", "db", replica);
  EXPECT_EQ(replica.position().seq, 6u);
  EXPECT_EQ(read_file(dir / "f.db"), read_file(leader.path()));
}

// `push --spool` set to a local store's directory put the spool's segment
// directories on the store's: its cleanup of uploaded segments deleted the
// whole chain, and push exited 0. Refused before anything is written.
TEST(SpoolPlacement, ASpoolThatIsTheLocalStoresDirectoryIsRefused) {
  test::TempDir dir;
  const std::string root = dir / "store";
  std::filesystem::create_directories(root);
  std::filesystem::create_directory_symlink(root, dir / "link");
  auto store = std::shared_ptr<ObjectStore>(make_local_store(root));
  auto with = [&](const std::string& spool, const std::string& prefix) {
    ReplicatorOptions o;
    o.spool_dir = spool;
    o.prefix = prefix;
    Replicator rep(store, o);
  };
  for (const std::string& spool : {root, root + "/", std::string(dir / "link"), root + "/sub/.."}) {
    SCOPED_TRACE(spool);
    EXPECT_ERROR_KIND(with(spool, ""), ErrorKind::kInvalidArgument);
  }
  EXPECT_ERROR_KIND(with(root + "/p", "p/"), ErrorKind::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(root + "/p"));
  // Elsewhere inside the store's directory no path is shared: the default
  // spool when the store is the database's own directory.
  EXPECT_NO_THROW(with(root + "/.duckblock-spool", ""));
  EXPECT_NO_THROW(with(root, "p/"));
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Replication, ::testing::ValuesIn(test::all_store_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace duckblock
