// Chain integrity in the core (chain.h, the leader's checks), against every
// store backend: the chain convention the reference applier expects, the
// binding of snapshots, and damage told apart from another leader.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "duckblock/chain.h"
#include "duckblock/error.h"
#include "duckblock/file_digest.h"
#include "duckblock/key.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "store_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr uint32_t kPage = 4096;

// In place, like a database: a reader holding the file open sees the change.
void write_in_place(const std::string& path, const std::vector<uint8_t>& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), ssize_t(data.size()));
  ASSERT_EQ(::ftruncate(fd, off_t(data.size())), 0);
  ::close(fd);
}

void write_pages(const std::string& path, std::vector<uint8_t>& data, size_t pages, uint8_t seed) {
  data.resize(pages * kPage);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(seed + i * 7 + i / kPage);
  write_in_place(path, data);
}

Segment segment_at(ObjectStore& store, const std::string& db, bool snapshot, uint64_t seq) {
  return decode_segment(get_bytes(store, format_key("", {db, snapshot ? kSnapshotGeneration : kIncrementalGeneration, seq})));
}

bool has_length_record(const Segment& s) {
  return !s.pages.empty() && s.pages.back().id == kFileLengthPageId;
}

using test::WrappedStore;

// Holds uploads back until released, so a test can act on the spool first.
class GatedStore final : public WrappedStore {
 public:
  using WrappedStore::WrappedStore;
  std::atomic<bool> open{true};
  void put(const std::string& k, ByteSource& d) override { gate(); inner_->put(k, d); }
  void put_if_absent(const std::string& k, ByteSource& d) override { gate(); inner_->put_if_absent(k, d); }

 private:
  void gate() {
    if (!open) throw Error(ErrorKind::kRetryable, "store closed by the test");
  }
};

// A server killed mid-upload: the first put of `victim` leaves only the
// first half of the object in the store, and the request fails.
class TearingStore final : public WrappedStore {
 public:
  TearingStore(std::shared_ptr<ObjectStore> inner, std::string victim)
      : WrappedStore(std::move(inner)), victim_(std::move(victim)) {}
  void put_if_absent(const std::string& k, ByteSource& d) override {
    if (k == victim_ && !torn_) {
      torn_ = true;
      VectorSink all;
      copy_stream(d, all);
      all.data().resize(all.data().size() / 2);
      put_bytes(*inner_, k, all.data());
      throw Error(ErrorKind::kRetryable, "connection reset by the test");
    }
    inner_->put_if_absent(k, d);
  }

 private:
  std::string victim_;
  std::atomic<bool> torn_{false};
};

// Another process (or a disk) changes a spooled file in place just as the
// uploader sends it: at the first put of `victim`, after the uploader has
// verified the file and opened it, one byte of `spooled` flips.
class SpoolChangingStore final : public WrappedStore {
 public:
  SpoolChangingStore(std::shared_ptr<ObjectStore> inner, std::string victim, std::string spooled)
      : WrappedStore(std::move(inner)), victim_(std::move(victim)), spooled_(std::move(spooled)) {}
  void put_if_absent(const std::string& k, ByteSource& d) override {
    if (k == victim_ && !changed_.exchange(true)) {
      auto bytes = read_file(spooled_);
      int fd = ::open(spooled_.c_str(), O_WRONLY);
      uint8_t b = bytes[bytes.size() / 2] ^ 0x01;
      if (fd < 0 || ::pwrite(fd, &b, 1, off_t(bytes.size() / 2)) != 1) throw Error(ErrorKind::kIO, "test: cannot flip");
      ::close(fd);
    }
    inner_->put_if_absent(k, d);
  }

 private:
  std::string victim_, spooled_;
  std::atomic<bool> changed_{false};
};

class ChainIntegrity : public ::testing::TestWithParam<test::StoreBackend> {
 protected:
  void SetUp() override { store = std::shared_ptr<ObjectStore>(GetParam().make()); }
  ReplicatorOptions options() {
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    o.background_spool_bytes = 0;
    o.retry_initial = std::chrono::milliseconds(5);
    o.retry_max = std::chrono::milliseconds(20);
    return o;
  }
  // A leader of `db` whose file starts as 8 pages, added (its seq-0
  // snapshot spooled) on `on`.
  struct Leader {
    std::string file;
    std::vector<uint8_t> data;
    std::unique_ptr<FilePageReader> reader;
    std::unique_ptr<Replicator> rep;
    uint64_t change(size_t pages, uint8_t seed) {
      write_pages(file, data, pages, seed);
      return rep->push_checkpoint(db, *reader).seq;
    }
    std::string db;
  };
  std::unique_ptr<Leader> start(std::shared_ptr<ObjectStore> on, const std::string& db, ReplicatorOptions o) {
    auto l = std::make_unique<Leader>();
    l->db = db;
    l->file = dir / (db + ".file");
    write_pages(l->file, l->data, 8, 1);
    l->reader = std::make_unique<FilePageReader>(l->file);
    l->rep = std::make_unique<Replicator>(on, o);
    l->rep->add(db, *l->reader);
    return l;
  }
  std::shared_ptr<ObjectStore> store;
  test::TempDir dir;
};

// What the reference applier does with a segment (the vectors' README):
// check that it names the chain's checksum so far, then write each page at
// page_id * page_size, never truncating. Returns the segment's checksum.
uint64_t apply_as_a_v1_applier(const std::string& file, const Segment& s, uint64_t prev) {
  EXPECT_EQ(s.header.prev_checksum, prev) << "seq " << s.header.seq << " does not chain for a v1 applier";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_GE(fd, 0);
  for (const Page& p : s.pages) {
    EXPECT_NE(p.id, kFileLengthPageId) << "a v1 applier cannot write seq " << s.header.seq;
    EXPECT_EQ(::pwrite(fd, p.data.data(), p.data.size(), off_t(p.id * s.header.page_size)), ssize_t(p.data.size()));
  }
  ::close(fd);
  return s.checksum;
}

// The reference applier's convention: incremental 1 names the seq-0
// snapshot's checksum; the length record only where a file shrinks. Plain
// segments (the setting for stores the reference reads), applied here the
// way the reference's applier does, reproduce the leader's file at every
// seq but the shrink's, which only our applier can express.
TEST_P(ChainIntegrity, ChainFollowsTheReferenceConventionAndTheMarkerBindsIt) {
  std::vector<std::vector<uint8_t>> states;  // the file after seq 0, 1, 2, 3
  {
    ReplicatorOptions o = options();
    o.compression = 0;
    auto l = start(store, "app", o);
    states.push_back(l->data);
    EXPECT_EQ(l->change(12, 2), 1u);  // grows
    states.push_back(l->data);
    EXPECT_EQ(l->change(6, 3), 2u);   // shrinks
    states.push_back(l->data);
    l->data.resize(l->data.size() + 100);  // grows by a short page
    write_in_place(l->file, l->data);
    EXPECT_EQ(l->rep->push_checkpoint("app", *l->reader).seq, 3u);
    l->rep->sync("app");
    states.push_back(l->data);
  }
  Segment snap = segment_at(*store, "app", true, 0);
  Segment inc1 = segment_at(*store, "app", false, 1);
  Segment inc2 = segment_at(*store, "app", false, 2);
  Segment inc3 = segment_at(*store, "app", false, 3);
  for (const Segment* s : {&snap, &inc1, &inc2, &inc3}) EXPECT_EQ(s->header.flags, 0) << "seq " << s->header.seq;
  EXPECT_EQ(snap.header.prev_checksum, 0u);
  EXPECT_EQ(inc1.header.prev_checksum, snap.checksum);
  EXPECT_FALSE(has_length_record(snap));
  EXPECT_FALSE(has_length_record(inc1));
  EXPECT_TRUE(has_length_record(inc2));
  EXPECT_FALSE(has_length_record(inc3));
  ChainIdentity id = read_chain_identity(*store, "", "app");
  EXPECT_EQ(id.convention, 2);
  EXPECT_EQ(id.lineage.size(), 32u);
  EXPECT_EQ(id.base_checksum, snap.checksum);

  std::string v1 = dir / "v1-applied";
  uint64_t at = apply_as_a_v1_applier(v1, snap, 0);
  EXPECT_EQ(read_file(v1), states[0]);
  at = apply_as_a_v1_applier(v1, inc1, at);
  EXPECT_EQ(read_file(v1), states[1]);
  // The shrink, applied by us (the reference stops here); then the v1
  // applier goes on from it.
  std::string ours = dir / "ours";
  RestoreTarget two;
  two.seq = 2;
  restore(*store, "app", ours, two);
  ASSERT_EQ(read_file(ours), states[2]);
  apply_as_a_v1_applier(ours, inc3, inc2.checksum);
  EXPECT_EQ(read_file(ours), states[3]);

  std::string out = dir / "restored";
  restore(*store, "app", out);
  EXPECT_EQ(read_file(out), states[3]);
  // Listings and restores ignore the marker as a segment.
  EXPECT_EQ(list_chain(*store, "", "app").head_seq(), 3u);
}

// The uploader re-verifies a spooled segment: a damaged one never reaches
// the store, and the failure is damage, not a retryable error.
TEST_P(ChainIntegrity, ADamagedSpooledSegmentIsNotUploaded) {
  auto gated = std::make_shared<GatedStore>(store);
  auto l = start(gated, "app", options());
  Replicator& rep = *l->rep;
  rep.sync("app");
  gated->open = false;
  ASSERT_EQ(l->change(9, 5), 1u);
  std::string spooled = dir / "spool/app/0000/0000000000000001.hadbp";
  auto bytes = read_file(spooled);
  bytes[bytes.size() / 2] ^= 0x01;
  write_file_atomic(spooled, bytes);
  // An upload attempt that opened the sound file before the rename fails
  // at the closed gate. Open it only once an attempt has seen the damage,
  // or two more attempts failed at the gate (the next one can only read
  // the damaged file).
  const uint64_t before = rep.status("app").upload_retries;
  auto settled = [&] {
    auto st = rep.status("app");
    bool damage_seen = st.last_error && st.last_error->find("closed by the test") == std::string::npos;
    return damage_seen || st.upload_retries >= before + 2;
  };
  for (int i = 0; i < 6000 && !settled(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(settled());
  gated->open = true;
  try {
    rep.sync("app", std::chrono::seconds(60));
    FAIL() << "sync succeeded with a damaged spooled segment";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
  }
  EXPECT_FALSE(store->head(format_key("", {"app", kIncrementalGeneration, 1})));
}

// What the uploader sends is what it verified: a spooled file changed in
// place between its verification and its upload is caught before its last
// byte is handed to the store, which then stores nothing under the key.
TEST_P(ChainIntegrity, ASpooledSegmentChangedDuringItsUploadIsNotStored) {
  const std::string key = format_key("", {"app", kIncrementalGeneration, 1});
  auto changing = std::make_shared<SpoolChangingStore>(store, key, dir / "spool/app/0000/0000000000000001.hadbp");
  auto l = start(changing, "app", options());
  ASSERT_EQ(l->change(9, 5), 1u);
  try {
    l->rep->sync("app", std::chrono::seconds(60));
    FAIL() << "sync succeeded although the spooled segment changed while it was sent";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
  }
  EXPECT_FALSE(store->head(key)) << "the changed bytes reached the store";
}

// An object at our seq that is another leader's sound segment fences us; a
// damaged one that is not a copy of ours is reported as damage.
TEST_P(ChainIntegrity, AnObjectAtOurSeqIsToldApartAsForeignOrDamaged) {
  for (bool foreign : {true, false}) {
    SCOPED_TRACE(foreign ? "foreign" : "damaged");
    std::string db = foreign ? "f" : "d";
    auto gated = std::make_shared<GatedStore>(store);
    ReplicatorOptions o = options();
    o.spool_dir = dir / ("spool-" + db);
    auto l = start(gated, db, o);
    Replicator& rep = *l->rep;
    rep.sync(db);
    gated->open = false;
    ASSERT_EQ(l->change(9, 5), 1u);
    auto ours = read_file(o.spool_dir + "/" + db + "/0000/0000000000000001.hadbp");
    std::vector<uint8_t> other;
    if (foreign) {
      Segment s = decode_segment(ours);
      s.pages.front().data[0] ^= 0xff;
      other = encode_segment(s.header, s.pages);
    } else {
      other = ours;
      other[other.size() / 2] ^= 0x01;  // same length, not a prefix: not provably ours
    }
    put_bytes(*store, format_key("", {db, kIncrementalGeneration, 1}), other);
    gated->open = true;
    try {
      rep.sync(db, std::chrono::seconds(60));
      FAIL() << "sync succeeded over a taken seq";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), foreign ? ErrorKind::kFenced : ErrorKind::kCorruption) << e.what();
    }
    EXPECT_EQ(get_bytes(*store, format_key("", {db, kIncrementalGeneration, 1})), other);
  }
}

// A truncated object at our own seq (a server killed mid-upload) is damage
// that is provably ours: it is replaced, not taken for another leader.
TEST_P(ChainIntegrity, ATruncatedUploadOfOursIsRepairedNotFenced) {
  std::string key = format_key("", {"app", kIncrementalGeneration, 1});
  auto tearing = std::make_shared<TearingStore>(store, key);
  auto l = start(tearing, "app", options());
  ASSERT_EQ(l->change(10, 4), 1u);
  l->rep->sync("app", std::chrono::seconds(60));
  EXPECT_FALSE(l->rep->status("app").fenced);
  std::string out = dir / "restored";
  restore(*store, "app", out);
  EXPECT_EQ(test::digest_of(read_file(out)), test::digest_of(l->data));
}

// A state.json whose chain checksum is not the one of the segment spooled at
// its seq is damage: the leader refuses to start rather than chain the next
// segment from a checksum no follower has.
TEST_P(ChainIntegrity, AStateJsonWithAWrongChecksumIsDetected) {
  auto gated = std::make_shared<GatedStore>(store);
  {
    auto l = start(gated, "app", options());
    l->rep->sync("app");
    gated->open = false;
    ASSERT_EQ(l->change(9, 5), 1u);  // spooled, not uploaded
  }
  std::string state_path = dir / "spool/app/state.json";
  auto bytes = read_file(state_path);
  auto state = nlohmann::json::parse(bytes.begin(), bytes.end());
  // As the uploader saves it once seq 1 is spooled (uploaded_seq still 0),
  // but with a checksum that is not seq 1's.
  ASSERT_EQ(state.at("uploaded_seq"), 0);
  state["seq"] = 1;
  state["checksum"] = "0123456789abcdef";
  std::string text = state.dump();
  write_file_atomic(state_path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  gated->open = true;
  Replicator rep(gated, options());
  FilePageReader reader(dir / "app.file");
  try {
    rep.add("app", reader);
    FAIL() << "a damaged state.json was trusted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
  }
  EXPECT_FALSE(store->head(format_key("", {"app", kIncrementalGeneration, 1})));
}

// A state.json ahead of the spool's segments (seq 5, the store at 0, no
// segment spooled): the upload of seq 1 can never happen. add() refuses it
// at once; it used to spool seq 6 and wait, then blame the store.
TEST_P(ChainIntegrity, AStateJsonAheadOfItsSegmentsIsRefusedAtOnce) {
  {
    auto l = start(store, "app", options());
    l->rep->sync("app");
  }
  std::string state_path = dir / "spool/app/state.json";
  auto bytes = read_file(state_path);
  auto state = nlohmann::json::parse(bytes.begin(), bytes.end());
  ASSERT_EQ(state.at("seq"), 0);
  state["seq"] = 5;
  state["uploaded_seq"] = 0;
  std::string text = state.dump();
  write_file_atomic(state_path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  Replicator rep(store, options());
  FilePageReader reader(dir / "app.file");
  try {
    rep.add("app", reader);
    FAIL() << "a state.json ahead of its segments was trusted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    EXPECT_NE(std::string(e.what()).find("5 of the segments between are not in the spool"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(list_chain(*store, "", "app").head_seq(), 0u);
}

// A replica's journal records lineage and a proof of the file; a change
// behind its back is refused before anything is applied.
TEST_P(ChainIntegrity, ReplicaRefusesAFileChangedBehindItsBack) {
  auto l = start(store, "app", options());
  l->rep->sync("app");
  std::string replica_path = dir / "replica";
  {
    Replica replica(replica_path);
    catch_up(*store, "", "app", replica);
    EXPECT_EQ(replica.lineage(), read_chain_identity(*store, "", "app").lineage);
  }
  l->change(8, 9);
  l->rep->sync("app");
  {
    int fd = ::open(replica_path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "x", 1, 100), 1);
    ::close(fd);
  }
  auto before = read_file(replica_path);
  Replica replica(replica_path);
  try {
    catch_up(*store, "", "app", replica);
    FAIL() << "applied onto a changed replica";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kChainBroken) << e.what();
  }
  EXPECT_EQ(read_file(replica_path), before);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, ChainIntegrity, ::testing::ValuesIn(test::all_store_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace duckblock

namespace duckblock {
namespace {

// A store written before chain.json (convention 1): incremental 1 names
// prev_checksum 0 and every snapshot carries the length record. It still
// restores, follows and is extended in its own convention.
// chain.json and the digests are records of a few KiB. One of a megabyte (a
// sound record padded, as a planted object could be; 800 MiB took 1.9 GB of
// memory) is damage, refused before more than 64 KiB are held.
TEST_P(ChainIntegrity, ARecordObjectOfMegabytesIsDamageNotRead) {
  auto l = start(store, "app", options());
  ASSERT_EQ(l->change(1, 3), 1u);
  l->rep->sync("app", std::chrono::seconds(30));
  l.reset();
  for (const std::string& key : {chain_marker_key("", "app"), digest_key("", "app", 1)}) {
    SCOPED_TRACE(key);
    const std::vector<uint8_t> sound = get_bytes(*store, key);
    std::vector<uint8_t> padded(1 << 20, ' ');
    padded.insert(padded.end(), sound.begin(), sound.end());
    put_bytes(*store, key, padded);
    if (key == chain_marker_key("", "app")) {
      EXPECT_ERROR_KIND(read_chain_identity(*store, "", "app"), ErrorKind::kCorruption);
    } else {
      EXPECT_ERROR_KIND(read_published_digest(*store, "", "app", 1), ErrorKind::kCorruption);
    }
    EXPECT_ERROR_KIND(restore(*store, "app", dir / "r.db"), ErrorKind::kCorruption);
    EXPECT_FALSE(std::filesystem::exists(dir / "r.db"));
    put_bytes(*store, key, sound);
  }
  EXPECT_EQ(restore(*store, "app", dir / "r.db").digest, "verified");
}

TEST(ChainConventionOne, AStoreWrittenBeforeChainJsonStillReadsAndExtends) {
  test::TempDir dir;
  std::shared_ptr<ObjectStore> store = make_memory_store();
  auto page = [](uint8_t fill, size_t n = kPage) { return std::vector<uint8_t>(n, fill); };
  auto put = [&](bool snapshot, uint64_t seq, uint64_t prev, std::vector<Page> pages) {
    SegmentHeader h;
    h.page_size = kPage;
    h.seq = seq;
    h.prev_checksum = prev;
    uint64_t checksum = 0;
    auto bytes = encode_segment(h, std::move(pages), &checksum);
    put_bytes(*store, format_key("", {"old", snapshot ? kSnapshotGeneration : kIncrementalGeneration, seq}), bytes);
    return checksum;
  };
  auto length = [](uint64_t n) { return Page{kFileLengthPageId, encode_file_length(n)}; };
  // The file: 3 pages of 1, then page 1 becomes 2, then the file grows by page 3.
  put(true, 0, 0, {{0, page(1)}, {1, page(1)}, {2, page(1)}, length(3 * kPage)});
  uint64_t c1 = put(false, 1, 0, {{1, page(2)}});
  uint64_t c2 = put(false, 2, c1, {{3, page(3)}, length(4 * kPage)});
  put(true, 2, c2, {{0, page(1)}, {1, page(2)}, {2, page(1)}, {3, page(3)}, length(4 * kPage)});
  std::vector<uint8_t> at2;
  for (uint8_t f : {1, 2, 1, 3}) {
    auto p = page(f);
    at2.insert(at2.end(), p.begin(), p.end());
  }
  EXPECT_EQ(read_chain_identity(*store, "", "old").convention, 1);
  for (uint64_t seq : {0, 1, 2}) {
    std::string out = dir / ("r" + std::to_string(seq));
    RestoreTarget t;
    t.seq = seq;
    RestoreResult r = restore(*store, "old", out, t);
    EXPECT_EQ(r.position.seq, seq);
    EXPECT_TRUE(r.skipped_snapshots.empty());
    if (seq == 2) {
      EXPECT_EQ(read_file(out), at2);
    }
  }
  // A follower from seq 0 applies incremental 1 (prev 0) and 2.
  std::string replica_path = dir / "replica";
  {
    RestoreTarget t;
    t.seq = 0;
    restore(*store, "old", replica_path, t);
    Replica replica(replica_path);
    EXPECT_EQ(catch_up(*store, "", "old", replica), 2u);
    EXPECT_EQ(replica.position(), (ChainPosition{2, c2}));
    EXPECT_EQ(read_file(replica_path), at2);
  }
  // A leader without a spool continues it in convention 1: no chain.json.
  std::string file = dir / "leader";
  at2[5] = 9;
  write_file_atomic(file, at2);
  {
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    Replicator rep(store, o);
    FilePageReader reader(file);
    rep.add("old", reader);
    rep.sync("old");
  }
  EXPECT_FALSE(store->head(chain_marker_key("", "old")));
  Segment inc3 = decode_segment(get_bytes(*store, format_key("", {"old", kIncrementalGeneration, 3})));
  EXPECT_EQ(inc3.header.prev_checksum, c2);
  Replica replica(replica_path);
  EXPECT_EQ(catch_up(*store, "", "old", replica), 1u);
  EXPECT_EQ(read_file(replica_path), at2);
}

}  // namespace
}  // namespace duckblock
