// ReplicatorOptions::spool_first: with a spool, add() asks the store
// nothing, and the checks of the spool against the store's chain run on the
// uploader before anything is uploaded; their outcome shows in status() and
// sync().
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "duckblock/error.h"
#include "duckblock/page_reader.h"
#include "duckblock/replicator.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "cli_util.h"
#include "http_get.h"
#include "test_util.h"

namespace duckblock {
namespace {

ReplicatorOptions options(const std::string& spool, bool spool_first) {
  ReplicatorOptions o;
  o.spool_dir = spool;
  o.spool_first = spool_first;
  o.retry_initial = std::chrono::milliseconds(5);
  return o;
}

// A file `app.db` in `dir`, replicated to a local store with a spool
// (dir/spool) that is in step with it.
std::string spooled_file(const test::TempDir& dir, uint64_t seed) {
  test::DbBytes bytes{seed};
  std::string file = dir / "app.db";
  bytes.write(file, 8);
  std::shared_ptr<ObjectStore> local = open_store("file://" + dir / "store");
  Replicator rep(local, options(dir / "spool", false));
  FilePageReader reader(file);
  rep.add("app", reader);
  rep.sync();
  return file;
}

// Another leader (a promoted follower) has extended the chain past this
// spool. Without spool_first add() refuses at once; with it, add() returns
// and the uploader finds the same thing before uploading anything.
TEST(SpoolFirst, ANewerChainFencesOnTheUploaderNotInAdd) {
  test::TempDir dir;
  std::string file = spooled_file(dir, 3);
  std::shared_ptr<ObjectStore> store = open_store("file://" + dir / "store");
  Follower b(store, "app", dir / "b.db");
  ChainPosition pos = b.catch_up_and_stop();
  {
    Replicator other(store, options(dir / "spool-b", false));
    FilePageReader b_reader(dir / "b.db");
    other.add_continuing("app", b_reader, pos);
    auto changed = read_file(dir / "b.db");
    changed[4096] ^= 0x55;
    write_file_atomic(dir / "b.db", changed);
    FilePageReader b_reader2(dir / "b.db");
    std::vector<uint64_t> dirty = {1};
    ASSERT_EQ(other.push_checkpoint("app", b_reader2, &dirty).seq, pos.seq + 1);
    other.sync();
  }
  auto before = list_chain(*store, "", "app").head_seq();
  {
    Replicator rep(store, options(dir / "spool", false));
    FilePageReader reader(file);
    try {
      rep.add("app", reader);
      ADD_FAILURE() << "add() accepted a spool behind the store's chain";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kFenced) << e.what();
    }
  }
  Replicator rep(store, options(dir / "spool", true));
  FilePageReader reader(file);
  rep.add("app", reader);
  try {
    rep.sync("app", std::chrono::seconds(60));
    ADD_FAILURE() << "sync() passed with a spool behind the store's chain";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFenced) << e.what();
  }
  EXPECT_TRUE(rep.status("app").fenced);
  EXPECT_EQ(list_chain(*store, "", "app").head_seq(), before);  // nothing of ours went up
}

// The store unreachable (an S3 endpoint on a closed port, one attempt per
// request): add() returns, and the status says why nothing uploads.
TEST(SpoolFirst, AnUnreachableStoreShowsInTheStatus) {
  test::TempDir dir;
  std::string file = spooled_file(dir, 5);
  uint16_t port = 0;
  ::close(test::listen_on_free_port(port));  // nothing listens there now
  StoreOptions so;
  so.endpoint = "http://127.0.0.1:" + std::to_string(port);
  so.region = "us-east-1";
  so.path_style = true;
  so.credentials = StoreOptions::Credentials{"AKIDTEST", "secret", "", "the test"};
  ::setenv("AWS_MAX_ATTEMPTS", "1", 1);
  std::shared_ptr<ObjectStore> s3 = open_store("s3://bucket/p/", so);
  ::unsetenv("AWS_MAX_ATTEMPTS");
  Replicator rep(s3, options(dir / "spool", true));
  FilePageReader reader(file);
  rep.add("app", reader);
  // Bounded only to fail a hang.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  for (;;) {
    auto err = rep.status("app").last_error;
    if (err && err->find("the store could not be reached") != std::string::npos) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the status never said the store is unreachable";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(rep.status("app").fenced);
  try {
    rep.sync("app", std::chrono::milliseconds(50));
    ADD_FAILURE() << "sync() passed with the store unreachable";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRetryable) << e.what();
  }
}

}  // namespace
}  // namespace duckblock
