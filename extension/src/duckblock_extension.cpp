// The duckblock DuckDB extension: its entry point, settings and SQL
// functions. The SQL surface (docs/EXTENSION.md):
//
//   SET duckblock_store = 'file:///backups';            -- or s3://bucket/prefix/
//   ATTACH 'duckblock:///data/sales.duckdb' AS sales;   -- every checkpoint ships
//   SELECT * FROM duckblock_status();
//   CALL duckblock_sync();                               -- wait for uploads
//   CALL duckblock_follow('sales', 'file:///backups', '/replica/sales.duckdb');
//   CALL duckblock_refresh('sales');
//   CALL duckblock_unfollow('sales');
//   CALL duckblock_restore('sales', 'file:///backups', '/tmp/x.duckdb', seq := 42);
#include <filesystem>
#include <functional>

#include "duckblock/wal.h"
#include "duckblock/error.h"
#include "duckdb.hpp"
#include "duckdb/common/types/timestamp.hpp"
#include "duckdb/function/table_function.hpp"
#include "duckdb/catalog/catalog.hpp"
#include "duckdb/main/attached_database.hpp"
#include "duckdb/main/database_manager.hpp"
#include "duckdb/main/extension/extension_loader.hpp"
#include "guards.h"
#include "log_setting.h"
#include "metrics_setting.h"
#include "secrets.h"
#include "state.h"

#ifndef DUCKBLOCK_EXTENSION_VERSION
#define DUCKBLOCK_EXTENSION_VERSION "dev"
#endif

namespace duckblock::extension {

namespace {

using duckdb::ClientContext;
using duckdb::DataChunk;
using duckdb::LogicalType;
using duckdb::Value;

// DuckDB reports our errors with its own exception types: bad input as
// InvalidInputException, everything else as IOException.
[[noreturn]] void rethrow_as_duckdb(const std::string& what) {
  try {
    throw;
  } catch (const duckblock::Error& e) {
    if (e.kind() == ErrorKind::kInvalidArgument) {
      throw duckdb::InvalidInputException("duckblock: %s: %s", what, e.what());
    }
    throw duckdb::IOException("duckblock: %s: %s (%s)", what, e.what(), std::string(to_string(e.kind())));
  } catch (const duckdb::Exception&) {
    throw;
  } catch (const std::exception& e) {
    throw duckdb::IOException("duckblock: %s: %s", what, e.what());
  }
}

// The arguments a call was bound with.
struct Args {
  std::vector<Value> pos;
  duckdb::named_parameter_map_t named;

  std::string str(size_t i, const char* what) const {
    if (i >= pos.size() || pos[i].IsNull()) throw duckdb::InvalidInputException("duckblock: %s must not be NULL", what);
    return pos[i].ToString();
  }
  std::optional<Value> opt(const char* name) const {
    auto it = named.find(name);
    if (it == named.end() || it->second.IsNull()) return std::nullopt;
    return it->second;
  }
};

using Rows = std::vector<std::vector<Value>>;
struct Column {
  const char* name;
  LogicalType type;
};

struct BindData final : public duckdb::TableFunctionData {
  Args args;
};

struct RunState final : public duckdb::GlobalTableFunctionState {
  bool done = false;
  Rows rows;
  size_t next = 0;
};

// Each SQL function is a struct F with
//   static std::vector<Column> columns();
//   static Rows run(ClientContext&, const Args&);
// run() executes once per call, when the query runs (not when it binds).
template <class F>
duckdb::unique_ptr<duckdb::FunctionData> bind(ClientContext&, duckdb::TableFunctionBindInput& input,
                                              duckdb::vector<LogicalType>& types, duckdb::vector<duckdb::string>& names) {
  for (auto& c : F::columns()) {
    names.emplace_back(c.name);
    types.push_back(c.type);
  }
  auto data = duckdb::make_uniq<BindData>();
  for (auto& v : input.inputs) data->args.pos.push_back(v);
  data->args.named = input.named_parameters;
  return data;
}

duckdb::unique_ptr<duckdb::GlobalTableFunctionState> init_run(ClientContext&, duckdb::TableFunctionInitInput&) {
  return duckdb::make_uniq<RunState>();
}

template <class F>
void execute(ClientContext& context, duckdb::TableFunctionInput& input, DataChunk& output) {
  auto& st = input.global_state->Cast<RunState>();
  if (!st.done) {
    st.done = true;
    st.rows = F::run(context, input.bind_data->Cast<BindData>().args);
  }
  duckdb::idx_t n = 0;
  while (st.next < st.rows.size() && n < STANDARD_VECTOR_SIZE) {
    auto& row = st.rows[st.next++];
    for (duckdb::idx_t c = 0; c < row.size(); ++c) output.SetValue(c, n, row[c]);
    ++n;
  }
  output.SetCardinality(n);
}

template <class F>
duckdb::TableFunction make(const char* name, duckdb::vector<LogicalType> args,
                           std::vector<std::pair<const char*, LogicalType>> named = {}) {
  duckdb::TableFunction f(name, std::move(args), execute<F>, bind<F>, init_run);
  for (auto& [n, t] : named) f.named_parameters[n] = t;
  return f;
}

Value opt_str(const std::optional<std::string>& s) { return s ? Value(*s) : Value(LogicalType::VARCHAR); }

// A leader named by its name in the store, its file's path, or the name
// DuckDB attached it under (ATTACH 'duckblock://...' AS name).
bool leader_matches(ClientContext& context, const Leader& l, const std::string& name) {
  if (l.db == name || l.path == name) return true;
  auto attached = duckdb::DatabaseManager::Get(*context.db).GetDatabase(name);
  if (!attached || attached->IsSystem()) return false;
  return canonical_path(ReplicatingFileSystem::strip(attached->GetCatalog().GetDBPath())) == l.path;
}

// --- duckblock_status() -----------------------------------------------------

struct StatusFn {
  static std::vector<Column> columns() {
    return {{"role", LogicalType::VARCHAR},          {"name", LogicalType::VARCHAR},
            {"db", LogicalType::VARCHAR},            {"path", LogicalType::VARCHAR},
            {"store", LogicalType::VARCHAR},         {"attached", LogicalType::BOOLEAN},
            {"shipped_seq", LogicalType::UBIGINT},   {"spooled_seq", LogicalType::UBIGINT},
            {"applied_seq", LogicalType::UBIGINT},   {"head_seq", LogicalType::UBIGINT},
            {"bytes_shipped", LogicalType::UBIGINT}, {"pending_segments", LogicalType::UBIGINT},
            {"last_snapshot_seq", LogicalType::UBIGINT}, {"fenced", LogicalType::BOOLEAN},
            {"last_error", LogicalType::VARCHAR},    {"lag_ms", LogicalType::BIGINT},
            {"log_seq", LogicalType::UBIGINT},       {"log_index", LogicalType::UBIGINT},
            {"log_bytes", LogicalType::UBIGINT},     {"log_pending_bytes", LogicalType::UBIGINT},
            {"commit_lag_ms", LogicalType::BIGINT},  {"compacting_seq", LogicalType::UBIGINT},
            {"last_compacted_seq", LogicalType::UBIGINT}, {"compaction_error", LogicalType::VARCHAR},
            {"snapshots_coalesced", LogicalType::UBIGINT}};
  }
  static Rows leader_rows(ClientContext& context, State& state, const std::optional<std::string>& only) {
    Rows rows;
    int64_t now = now_ms();
    for (auto& l : state.leaders()) {
      if (only && !leader_matches(context, *l, *only)) continue;
      auto dbs = l->replicator->databases();
      bool registered = std::find(dbs.begin(), dbs.end(), l->db) != dbs.end();
      ReplicationStatus rs;
      if (registered) rs = l->replicator->status(l->db);
      auto cs = l->capture->stats();
      std::optional<std::string> err = cs.last_error ? cs.last_error : rs.last_error;
      if (!registered && !err) err = l->wait->error();  // offline at ATTACH (store_wait.h)
      uint64_t pending = rs.pending_segments;
      // Lag: how long the store has not advanced while something waits to
      // be uploaded (0 when everything spooled is in the store).
      int64_t lag = replication_lag_ms(rs, now).value_or(-1);
      rows.push_back({Value("leader"), Value(l->db), Value(l->db), Value(l->path), Value(l->store_url),
                      Value::BOOLEAN(l->capture->started()), Value::UBIGINT(rs.uploaded_seq),
                      Value::UBIGINT(rs.spooled_seq), Value(LogicalType::UBIGINT), Value(LogicalType::UBIGINT),
                      Value::UBIGINT(rs.bytes_shipped), Value::UBIGINT(pending),
                      Value::UBIGINT(rs.last_snapshot_seq), Value::BOOLEAN(rs.fenced), opt_str(err),
                      Value::BIGINT(lag), Value::UBIGINT(rs.log_base_seq), Value::UBIGINT(rs.log_index),
                      Value::UBIGINT(rs.log_length), Value::UBIGINT(rs.log_pending_bytes),
                      Value::BIGINT(rs.log_lag_ms), Value::UBIGINT(rs.compacting_seq),
                      Value::UBIGINT(rs.last_compacted_seq), opt_str(rs.compaction_error),
                      Value::UBIGINT(rs.snapshots_coalesced)});
    }
    return rows;
  }
  static Rows run(ClientContext& context, const Args&) {
    auto state = State::find(*context.db);
    Rows rows = leader_rows(context, *state, std::nullopt);
    int64_t now = now_ms();
    for (auto& f : state->followers()) {
      auto s = f->status();
      // Lag: how long since the replica was last known to be at the head.
      int64_t lag = s.last_current_ms ? now - s.last_current_ms : -1;
      uint64_t behind = s.head_seq > s.applied_seq ? s.head_seq - s.applied_seq : 0;
      rows.push_back({Value("follower"), Value(s.alias), Value(s.db), Value(s.path), Value(s.store_url),
                      Value::BOOLEAN(s.attached), Value(LogicalType::UBIGINT), Value(LogicalType::UBIGINT),
                      Value::UBIGINT(s.applied_seq), Value::UBIGINT(s.head_seq), Value(LogicalType::UBIGINT),
                      Value::UBIGINT(behind), Value(LogicalType::UBIGINT), Value(LogicalType::BOOLEAN),
                      opt_str(s.last_error), Value::BIGINT(lag), Value::UBIGINT(s.applied_seq),
                      Value::UBIGINT(s.log_index), Value::UBIGINT(s.log_bytes), Value(LogicalType::UBIGINT),
                      Value::BIGINT(s.log_created_ms ? now - s.log_created_ms : -1), Value(LogicalType::UBIGINT),
                      Value(LogicalType::UBIGINT), Value(LogicalType::VARCHAR), Value(LogicalType::UBIGINT)});
    }
    return rows;
  }
};

// --- duckblock_sync([db], timeout_ms := N) ------------------------------------

struct SyncFn {
  static std::vector<Column> columns() { return StatusFn::columns(); }
  static Rows run(ClientContext& context, const Args& a) {
    auto state = State::find(*context.db);
    std::optional<std::string> only;
    if (!a.pos.empty() && !a.pos[0].IsNull()) only = a.pos[0].ToString();
    auto timeout = std::chrono::milliseconds(300000);
    if (auto t = a.opt("timeout_ms")) timeout = std::chrono::milliseconds(t->GetValue<int64_t>());
    bool found = false;
    for (auto& l : state->leaders()) {
      if (only && !leader_matches(context, *l, *only)) continue;
      found = true;
      auto dbs = l->replicator->databases();
      if (std::find(dbs.begin(), dbs.end(), l->db) == dbs.end()) continue;
      try {
        l->replicator->sync(l->db, timeout);
      } catch (...) {
        rethrow_as_duckdb("sync of '" + l->db + "'");
      }
    }
    if (only && !found) {
      throw duckdb::InvalidInputException("duckblock: no replicated database '%s' (see duckblock_status())", *only);
    }
    return StatusFn::leader_rows(context, *state, only);
  }
};

// --- duckblock_follow(db, store_url, path, alias :=, prefix :=, poll_interval_ms :=) ---

struct FollowFn {
  static std::vector<Column> columns() {
    return {{"alias", LogicalType::VARCHAR}, {"db", LogicalType::VARCHAR}, {"path", LogicalType::VARCHAR},
            {"seq", LogicalType::UBIGINT}};
  }
  static Rows run(ClientContext& context, const Args& a) {
    auto state = State::find(*context.db);
    auto db = a.str(0, "the database name");
    auto url = a.str(1, "the store URL");
    auto path = a.str(2, "the replica path");
    auto alias = a.opt("alias") ? a.opt("alias")->ToString() : db;
    auto settings = Settings::read(*context.db);
    settings.store_options = with_secret(*context.db, url, settings.store_options);
    std::string prefix = a.opt("prefix") ? a.opt("prefix")->ToString() : settings.prefix;
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    uint64_t interval = a.opt("poll_interval_ms") ? a.opt("poll_interval_ms")->GetValue<uint64_t>()
                                                  : settings.poll_interval_ms;
    // The alias must be free: a refresh detaches whatever is attached under
    // it, which must never be a database the user attached.
    if (duckdb::DatabaseManager::Get(*context.db).GetDatabase(alias)) {
      throw duckdb::InvalidInputException(
          "duckblock: a database named '%s' is already attached; pick another name with alias := '...'", alias);
    }
    bool force = a.opt("force") && a.opt("force")->GetValue<bool>();
    std::shared_ptr<Follower> f;
    try {
      check_target(*context.db, *state, path, TargetUse::kFollow, force);
      auto store = open_store_for(url, settings);
      f = std::make_shared<Follower>(alias, db, url, path, prefix, store,
                                     std::chrono::milliseconds(settings.refresh_wait_ms),
                                     std::chrono::milliseconds(interval), context.db);
      state->add_follower(alias, f);
    } catch (...) {
      rethrow_as_duckdb("follow '" + db + "'");
    }
    RefreshResult r;
    try {
      r = f->refresh();
    } catch (...) {
      state->remove_follower(alias);
      f->stop();
      rethrow_as_duckdb("follow '" + db + "' from " + url);
    }
    f->start();
    return {{Value(alias), Value(db), Value(f->status().path), Value::UBIGINT(r.seq_after)}};
  }
};

// --- duckblock_refresh([alias]) -----------------------------------------------

struct RefreshFn {
  static std::vector<Column> columns() {
    return {{"alias", LogicalType::VARCHAR},
            {"seq_before", LogicalType::UBIGINT},
            {"seq_after", LogicalType::UBIGINT},
            {"segments_applied", LogicalType::UBIGINT}};
  }
  static Rows run(ClientContext& context, const Args& a) {
    auto state = State::find(*context.db);
    std::vector<std::shared_ptr<Follower>> fs;
    if (!a.pos.empty() && !a.pos[0].IsNull()) {
      auto alias = a.pos[0].ToString();
      auto f = state->follower(alias);
      if (!f) throw duckdb::InvalidInputException("duckblock: no follower '%s' (start one with duckblock_follow)", alias);
      fs.push_back(f);
    } else {
      fs = state->followers();
    }
    Rows rows;
    for (auto& f : fs) {
      try {
        auto r = f->refresh();
        rows.push_back({Value(f->status().alias), Value::UBIGINT(r.seq_before), Value::UBIGINT(r.seq_after),
                        Value::UBIGINT(r.segments_applied)});
      } catch (...) {
        rethrow_as_duckdb("refresh of '" + f->status().alias + "'");
      }
    }
    return rows;
  }
};

// --- duckblock_unfollow(alias) ------------------------------------------------

struct UnfollowFn {
  static std::vector<Column> columns() {
    return {{"alias", LogicalType::VARCHAR}, {"seq", LogicalType::UBIGINT}};
  }
  static Rows run(ClientContext& context, const Args& a) {
    auto state = State::find(*context.db);
    auto alias = a.str(0, "the follower's alias");
    auto f = state->remove_follower(alias);
    if (!f) throw duckdb::InvalidInputException("duckblock: no follower '%s'", alias);
    try {
      f->close(*context.db);
    } catch (...) {
      rethrow_as_duckdb("unfollow '" + alias + "'");
    }
    return {{Value(alias), Value::UBIGINT(f->status().applied_seq)}};
  }
};

// --- duckblock_restore(db, store_url, path, seq :=, as_of :=, time_ms :=, prefix :=, force :=) ---

struct RestoreFn {
  static std::vector<Column> columns() {
    return {{"db", LogicalType::VARCHAR},
            {"path", LogicalType::VARCHAR},
            {"seq", LogicalType::UBIGINT},
            {"snapshot_seq", LogicalType::UBIGINT},
            {"segments_applied", LogicalType::UBIGINT},
            {"bytes_downloaded", LogicalType::UBIGINT},
            {"created", LogicalType::TIMESTAMP}};
  }
  static Rows run(ClientContext& context, const Args& a) {
    auto db = a.str(0, "the database name");
    auto url = a.str(1, "the store URL");
    auto path = a.str(2, "the output path");
    auto settings = Settings::read(*context.db);
    settings.store_options = with_secret(*context.db, url, settings.store_options);
    bool force = a.opt("force") && a.opt("force")->GetValue<bool>();
    RestoreTarget target;
    if (auto s = a.opt("seq")) target.seq = s->GetValue<uint64_t>();
    if (auto t = a.opt("as_of")) {
      target.time_ms = duckdb::Timestamp::GetEpochMs(t->GetValue<duckdb::timestamp_t>());
    }
    if (auto t = a.opt("time_ms")) target.time_ms = t->GetValue<int64_t>();
    if (target.seq && target.time_ms) {
      throw duckdb::InvalidInputException("duckblock: give seq or a time (as_of, time_ms), not both");
    }
    RestoreOptions ro;
    ro.prefix = a.opt("prefix") ? a.opt("prefix")->ToString() : settings.prefix;
    if (!ro.prefix.empty() && ro.prefix.back() != '/') ro.prefix += '/';
    try {
      check_target(*context.db, *State::find(*context.db), path, TargetUse::kRestore, force);
      auto store = open_store_for(url, settings);
      // A .wal beside the restored file belongs to some other state of it:
      // DuckDB would replay it over the restored checkpoint (check_target
      // refused it unless force := true).
      if (stale_log_beside(path, LogBesideUse::kRestore)) remove_log_beside(path);
      auto r = restore(*store, db, path, target, ro);
      // Then the commits after that checkpoint (not for seq := N, which
      // names the checkpoint itself): DuckDB replays them from PATH.wal.
      if (!target.seq) {
        LogReplica log(path + ".wal", path + ".duckblock-log");
        catch_up_log(*store, ro.prefix, db, r.position, log, target.time_ms);
      }
      return {{Value(db), Value(path), Value::UBIGINT(r.position.seq), Value::UBIGINT(r.snapshot_seq),
               Value::UBIGINT(r.segments_applied), Value::UBIGINT(r.bytes_downloaded),
               Value::TIMESTAMP(duckdb::Timestamp::FromEpochMs(r.created_ms))}};
    } catch (...) {
      rethrow_as_duckdb("restore of '" + db + "' from " + url);
    }
  }
};

}  // namespace

void load(duckdb::ExtensionLoader& loader) {
  auto& db = loader.GetDatabaseInstance();
  register_settings(duckdb::DBConfig::GetConfig(db));
  register_secret_type(loader);
  register_log_setting(duckdb::DBConfig::GetConfig(db));
  register_metrics_setting(duckdb::DBConfig::GetConfig(db));
  auto state = std::make_shared<State>();
  State::install(db, state);
  // The file system for duckblock:// paths, owned by DuckDB's virtual file
  // system from here on (and destroyed with the database instance).
  db.GetFileSystem().RegisterSubSystem(duckdb::make_uniq<ReplicatingFileSystem>(db, state));

  loader.SetDescription("Block-level replication of DuckDB files to object storage (duckblock " +
                        std::string(DUCKBLOCK_EXTENSION_VERSION) + ")");
  loader.RegisterFunction(make<StatusFn>("duckblock_status", {}));
  duckdb::TableFunctionSet sync("duckblock_sync");
  sync.AddFunction(make<SyncFn>("duckblock_sync", {}, {{"timeout_ms", LogicalType::BIGINT}}));
  sync.AddFunction(make<SyncFn>("duckblock_sync", {LogicalType::VARCHAR}, {{"timeout_ms", LogicalType::BIGINT}}));
  loader.RegisterFunction(sync);
  loader.RegisterFunction(make<FollowFn>(
      "duckblock_follow", {LogicalType::VARCHAR, LogicalType::VARCHAR, LogicalType::VARCHAR},
      {{"alias", LogicalType::VARCHAR},
       {"prefix", LogicalType::VARCHAR},
       {"poll_interval_ms", LogicalType::UBIGINT},
       {"force", LogicalType::BOOLEAN}}));
  duckdb::TableFunctionSet refresh("duckblock_refresh");
  refresh.AddFunction(make<RefreshFn>("duckblock_refresh", {}));
  refresh.AddFunction(make<RefreshFn>("duckblock_refresh", {LogicalType::VARCHAR}));
  loader.RegisterFunction(refresh);
  loader.RegisterFunction(make<UnfollowFn>("duckblock_unfollow", {LogicalType::VARCHAR}));
  loader.RegisterFunction(make<RestoreFn>(
      "duckblock_restore", {LogicalType::VARCHAR, LogicalType::VARCHAR, LogicalType::VARCHAR},
      {{"seq", LogicalType::UBIGINT},
       {"as_of", LogicalType::TIMESTAMP},
       {"time_ms", LogicalType::BIGINT},
       {"prefix", LogicalType::VARCHAR},
       {"force", LogicalType::BOOLEAN}}));
}

}  // namespace duckblock::extension

extern "C" {
// DuckDB finds the entry point by the file's name: duckblock.duckdb_extension
// -> duckblock_duckdb_cpp_init.
DUCKDB_CPP_EXTENSION_ENTRY(duckblock, loader) { duckblock::extension::load(loader); }
}
