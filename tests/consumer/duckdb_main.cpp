// The installed DuckDB layer and extension, used as the README says: a
// program links duckblock::duckdb and opens its database with
// open_replicated; the installed (stripped) extension loads into a plain
// DuckDB. A missing header, an unexported dependency, an unresolved symbol or
// an extension that no longer loads fails the install test.
//
// usage: consumer_duckdb EXTENSION_FILE WORK_DIR
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <duckblock/duckdb_capture.h>
#include <duckblock/replicator.h>
#include <duckblock/restore.h>
#include <duckblock/store.h>

#include "duckdb.hpp"

namespace {
int fail(const std::string& what) {
  std::fprintf(stderr, "consumer_duckdb: %s\n", what.c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return fail("usage: consumer_duckdb EXTENSION_FILE WORK_DIR");
  const std::string extension = argv[1], dir = argv[2];
  std::filesystem::create_directories(dir);
  std::shared_ptr<duckblock::ObjectStore> store = duckblock::open_store("file://" + dir + "/store");
  duckblock::ReplicatorOptions options;
  options.spool_dir = dir + "/spool";
  auto replicator = std::make_shared<duckblock::Replicator>(store, options);
  {
    auto db = duckblock::duckdb_integration::open_replicated(dir + "/app.duckdb", replicator, "app");
    duckdb::Connection con(db->db());
    auto r = con.Query("CREATE TABLE t AS SELECT range AS id FROM range(1000)");
    if (r->HasError()) return fail(r->GetError());
    r = con.Query("CHECKPOINT");
    if (r->HasError()) return fail(r->GetError());
  }
  replicator->sync("app");
  duckblock::restore(*store, "app", dir + "/copy.duckdb");

  duckdb::DBConfig config;
  config.SetOptionByName("allow_unsigned_extensions", duckdb::Value::BOOLEAN(true));
  duckdb::DuckDB plain(nullptr, &config);
  duckdb::Connection con(plain);
  auto r = con.Query("LOAD '" + extension + "'");
  if (r->HasError()) return fail("LOAD " + extension + ": " + r->GetError());
  r = con.Query("ATTACH '" + dir + "/copy.duckdb' AS copy (READ_ONLY)");
  if (r->HasError()) return fail(r->GetError());
  r = con.Query("SELECT count(*) FROM copy.t");
  if (r->HasError() || r->GetValue(0, 0).GetValue<int64_t>() != 1000) return fail("the restored copy differs");
  r = con.Query("SELECT count(*) FROM duckblock_status()");
  if (r->HasError()) return fail(r->GetError());
  std::printf("consumer_duckdb: ok, open_replicated -> restore, and %s loads\n", extension.c_str());
  return 0;
}
