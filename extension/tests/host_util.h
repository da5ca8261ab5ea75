// What the extension's host tests share: a DuckDB host that loads the built
// extension, and small query helpers.
#pragma once

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

#include "duckdb.hpp"

#ifndef DUCKBLOCK_EXTENSION_FILE
#error "DUCKBLOCK_EXTENSION_FILE must name the built duckblock.duckdb_extension"
#endif

namespace duckblock::ext_test {

inline duckdb::unique_ptr<duckdb::MaterializedQueryResult> q(duckdb::Connection& con, const std::string& sql) {
  auto r = con.Query(sql);
  if (r->HasError()) throw std::runtime_error("SQL failed: " + sql + "\n  " + r->GetError());
  return r;
}

inline std::string q_error(duckdb::Connection& con, const std::string& sql) {
  auto r = con.Query(sql);
  return r->HasError() ? r->GetError() : std::string();
}

// What a query can see of database `db`: every table's name, row count and
// an order-independent hash of its rows.
inline std::string fingerprint(duckdb::Connection& con, const std::string& db) {
  auto tables = q(con, "SELECT table_name FROM duckdb_tables() WHERE database_name = '" + db +
                           "' ORDER BY table_name");
  std::string out;
  for (size_t i = 0; i < tables->RowCount(); ++i) {
    std::string t = tables->GetValue(0, i).ToString();
    auto r = q(con, "SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0) FROM \"" + db + "\".\"" + t + "\" AS x");
    out += t + ":" + r->GetValue(0, 0).ToString() + ":" + r->GetValue(1, 0).ToString() + ";";
  }
  return out;
}

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A DuckDB instance as any host makes one: in memory, unsigned extensions
// allowed (the setting must be given before the database opens), and
// duckblock loaded from the build tree.
struct Host {
  std::unique_ptr<duckdb::DuckDB> db;
  std::unique_ptr<duckdb::Connection> con;
  Host() {
    duckdb::DBConfig config;
    config.SetOptionByName("allow_unsigned_extensions", duckdb::Value::BOOLEAN(true));
    db = std::make_unique<duckdb::DuckDB>(nullptr, &config);
    con = std::make_unique<duckdb::Connection>(*db);
    q(*con, std::string("LOAD '") + DUCKBLOCK_EXTENSION_FILE + "'");
  }
  ~Host() {
    con.reset();
    db.reset();
  }
};

// The port of the s3rver the ctest fixture started (DUCKBLOCK_TEST_S3RVER_FILE),
// or 0 outside that fixture.
inline int s3rver_port() {
  const char* server_file = std::getenv("DUCKBLOCK_TEST_S3RVER_FILE");
  if (!server_file || !*server_file) return 0;
  std::ifstream sf(server_file);
  int port = 0;
  sf >> port;
  return port;
}

// The s3rver's credentials in the environment, where the extension reads
// them (as in production); nothing else that could pick another identity.
inline void use_s3rver_credentials() {
  ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  ::unsetenv("AWS_SESSION_TOKEN");
  ::unsetenv("AWS_PROFILE");
}

}  // namespace duckblock::ext_test
