// Helpers shared by the DuckDB end-to-end tests, the crash worker and the
// benchmark: the workload, file hashing, and what a query sees.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/page_reader.h"
#include "duckblock/restore.h"
#include "duckblock/sha256.h"
#include "duckblock/wal.h"
#include "duckdb.hpp"

namespace duckblock::duckdb_test {

inline std::string sha256_file(const std::string& path) {
  Sha256 h;
  FileSource src(path);
  std::vector<uint8_t> buf(1 << 20);
  while (size_t n = src.read(buf.data(), buf.size())) h.update(buf.data(), n);
  auto d = h.finish();
  return to_hex(d);
}

// The same, read through a PageReader (DuckDB's own handle, inside a push).
inline std::string sha256_reader(PageReader& r) {
  Sha256 h;
  std::vector<uint8_t> buf(1 << 20);
  uint64_t size = r.file_size();
  for (uint64_t off = 0; off < size;) {
    size_t n = r.read_at(off, buf.data(), buf.size());
    if (n == 0) break;
    h.update(buf.data(), n);
    off += n;
  }
  auto d = h.finish();
  return to_hex(d);
}

inline void copy_file(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

inline void run(duckdb::Connection& con, const std::string& sql) {
  auto r = con.Query(sql);
  if (r->HasError()) throw std::runtime_error("SQL failed: " + sql + ": " + r->GetError());
}

// Everything a query can see of a database, as text: every table's name,
// row count and an order-independent hash of its rows. Two files that give
// the same fingerprint answer the same queries (up to hash collisions).
inline std::string fingerprint(duckdb::Connection& con) {
  auto tables = con.Query("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                          "ORDER BY table_name");
  if (tables->HasError()) throw std::runtime_error(tables->GetError());
  std::string out;
  for (size_t i = 0; i < tables->RowCount(); ++i) {
    std::string t = tables->GetValue(0, i).ToString();
    auto r = con.Query("SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0) FROM \"" + t + "\" AS x");
    if (r->HasError()) throw std::runtime_error(r->GetError());
    out += t + ":" + r->GetValue(0, 0).ToString() + ":" + r->GetValue(1, 0).ToString() + ";";
  }
  return out;
}

// Opens `path` read-only with a plain DuckDB (no capture) and fingerprints
// it. A stale .wal beside a replica is removed first: DuckDB would replay
// even a foreign one silently.
inline std::string fingerprint_file(const std::string& path) {
  std::filesystem::remove(path + ".wal");
  duckdb::DBConfig cfg;
  cfg.options.access_mode = duckdb::AccessMode::READ_ONLY;
  duckdb::DuckDB db(path, &cfg);
  duckdb::Connection con(db);
  return fingerprint(con);
}

// Restores the latest point of database "db" (its newest checkpoint, then
// that checkpoint's log as `out`.wal) to `out`, replacing what was there.
inline RestoreResult restore_latest(ObjectStore& store, const std::string& prefix, const std::string& out,
                                    LogCatchUp* log_out = nullptr) {
  for (auto s : {"", ".wal", ".duckblock", ".duckblock-log"}) std::filesystem::remove(out + s);
  RestoreOptions ro;
  ro.prefix = prefix;
  auto r = restore(store, "db", out, {}, ro);
  LogReplica log(out + ".wal", out + ".duckblock-log");
  auto l = catch_up_log(store, prefix, "db", r.position, log);
  if (log_out) *log_out = l;
  return r;
}

// The workload the end-to-end tests, the crash worker and the benchmark run:
// one CHECKPOINT after each step. `scale` multiplies the row counts.
struct Step {
  std::string name;
  std::vector<std::string> sql;
};

inline std::vector<Step> workload(double scale = 1) {
  auto n = [scale](long v) { return std::to_string(static_cast<long>(v * scale)); };
  return {
      {"bulk load", {"CREATE TABLE t AS SELECT range AS id, (random() * 1000000)::BIGINT AS v, "
                     "md5(range::VARCHAR) AS s FROM range(" + n(200000) + ")"}},
      {"update many", {"UPDATE t SET v = v + 1 WHERE id % 97 = 0"}},
      {"delete many", {"DELETE FROM t WHERE id % 13 = 0"}},
      {"large append", {"INSERT INTO t SELECT range + 10000000, (random() * 1000000)::BIGINT, "
                        "md5((range * 7)::VARCHAR) FROM range(" + n(300000) + ")"}},
      {"one-row table", {"CREATE TABLE one AS SELECT 42 AS answer"}},
      {"update one row", {"UPDATE t SET v = -1 WHERE id = 12345"}},
      {"drop one-row table", {"DROP TABLE one"}},
      // u takes the file's last blocks; dropping it frees them, and that
      // checkpoint or the next truncates the file.
      {"second table", {"CREATE TABLE u AS SELECT range AS k, random() AS r FROM range(" + n(150000) + ")"}},
      {"drop second table", {"DROP TABLE u"}},
      {"small insert", {"INSERT INTO t VALUES (-5, 5, 'five')"}},
      {"delete half", {"DELETE FROM t WHERE id % 2 = 0"}},
  };
}

}  // namespace duckblock::duckdb_test
