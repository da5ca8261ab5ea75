// Checks on the files restore and follow write. See guards.h.
#include "guards.h"

#include <filesystem>

#include "duckblock/error.h"
#include "duckblock/wal.h"
#include "duckdb/catalog/catalog.hpp"
#include "duckdb/main/attached_database.hpp"
#include "duckdb/main/database_manager.hpp"
#include "state.h"

namespace duckblock::extension {

void check_target(duckdb::DatabaseInstance& db, State& state, const std::string& path, TargetUse use, bool force) {
  const std::string canon = canonical_path(path);
  const char* verb = use == TargetUse::kRestore ? "restore" : "follow";
  auto refuse = [&](const std::string& why) {
    throw Error(ErrorKind::kAlreadyExists, std::string("will not ") + verb + " into " + canon + ": " + why);
  };

  for (auto& l : state.leaders()) {
    if (l->path == canon) {
      refuse("this DuckDB replicates it as '" + l->db + "' (a leader's file is never replaced, even with force; "
             "choose another path)");
    }
  }
  for (auto& f : state.followers()) {
    if (f->status().path == canon) {
      refuse("it is the replica of follower '" + f->status().alias + "' here (CALL duckblock_unfollow('" +
             f->status().alias + "') first)");
    }
  }
  for (auto& a : duckdb::DatabaseManager::Get(db).GetDatabases()) {
    if (a->IsSystem() || a->IsTemporary()) continue;
    std::string p = ReplicatingFileSystem::strip(a->GetCatalog().GetDBPath());
    if (p.empty() || p == ":memory:" || canonical_path(p) != canon) continue;
    if (!a->IsReadOnly()) {
      refuse("it is attached for writing here as '" + a->GetName() + "' (DETACH it first; force does not apply)");
    }
    if (!force) refuse("it is attached here as '" + a->GetName() + "' (DETACH it, or pass force := true)");
  }

  std::error_code ec;
  bool exists = std::filesystem::exists(canon, ec);
  if (use == TargetUse::kRestore && exists && !force) {
    refuse("the file exists (pass force := true to replace it, or choose another path)");
  }
  if (use == TargetUse::kFollow && exists && !std::filesystem::exists(canon + ".duckblock", ec) && !force) {
    refuse("the file exists and is not a duckblock replica (no " + canon +
           ".duckblock journal): following would replace it. Pass force := true to allow that, or choose another "
           "path");
  }
  const LogBesideUse log_use = use == TargetUse::kRestore ? LogBesideUse::kRestore : LogBesideUse::kFollow;
  if (!force && stale_log_beside(canon, log_use)) refuse(stale_log_refusal(canon, log_use, "force := true"));
}

}  // namespace duckblock::extension
