#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"

namespace duckblock::cli {

namespace {

nlohmann::json entry_json(const ChainEntry& e) {
  return {{"seq", e.seq}, {"kind", e.snapshot ? "snapshot" : "incremental"}, {"key", e.key}, {"size", e.size},
          {"modified_ms", e.modified_ms}, {"modified", format_time(e.modified_ms)}};
}

nlohmann::json log_json(const LogEntry& e) {
  return {{"base_seq", e.base_seq}, {"index", e.index}, {"key", e.key}, {"size", e.size},
          {"modified_ms", e.modified_ms}, {"modified", format_time(e.modified_ms)}};
}

}  // namespace

Runner add_ls(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "ls",
      "List the databases in a store, or with --db one database's snapshots, incrementals and log\n"
      "segments (the commits between two checkpoints, per base checkpoint seq and index), with size\n"
      "and the time the store received each.");
  auto f = std::make_shared<StoreFlags>();
  auto databases = std::make_shared<bool>(false);
  add_store_flags(cmd, *f, true, true);
  cmd->add_flag("--databases", *databases,
                "List the databases even when DUCKBLOCK_DB or the config file names a default one");
  cmd->footer(
      "Examples:\n"
      "  duckblock ls --store file:///backups/duckblock\n"
      "  duckblock ls --store s3://my-bucket/dbs/ --db app\n"
      "  duckblock ls --db app --json | jq '.incrementals | length'\n"
      "Exit status: 0 listed, 1 failed, 2 bad usage, 4 store directory or database not found.");
  return [f, databases]() {
    resolve(*f, false);
    if (*databases) f->db.clear();
    auto store = open_store_for(*f, StoreUse::kRead);
    if (f->db.empty()) {
      struct Summary {
        uint64_t snapshots = 0, incrementals = 0, bytes = 0, head = 0;
        int64_t modified_ms = 0;
      };
      std::map<std::string, Summary> dbs;
      for (const auto& info : store->list("")) {
        auto key = parse_key("", info.key);
        if (!key || (key->generation != kIncrementalGeneration && key->generation != kSnapshotGeneration)) continue;
        auto& s = dbs[key->db];
        (key->generation == kSnapshotGeneration ? s.snapshots : s.incrementals)++;
        s.bytes += info.size;
        s.head = std::max(s.head, key->seq);
        s.modified_ms = std::max(s.modified_ms, info.modified_ms);
      }
      if (f->json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& [name, s] : dbs) {
          out.push_back({{"db", name}, {"head_seq", s.head}, {"snapshots", s.snapshots},
                         {"incrementals", s.incrementals}, {"bytes", s.bytes}, {"modified_ms", s.modified_ms},
                         {"modified", format_time(s.modified_ms)}});
        }
        std::cout << nlohmann::json{{"store", store->url()}, {"databases", out}}.dump(2) << "\n";
        return 0;
      }
      if (dbs.empty()) {
        std::cout << "no databases in " << store->url() << "\n";
        return 0;
      }
      std::printf("%-24s %10s %9s %12s %12s  %s\n", "DATABASE", "HEAD SEQ", "SNAPSHOTS", "INCREMENTALS", "SIZE",
                  "LAST WRITE");
      for (const auto& [name, s] : dbs) {
        std::printf("%-24s %10llu %9llu %12llu %12s  %s\n", name.c_str(), (unsigned long long)s.head,
                    (unsigned long long)s.snapshots, (unsigned long long)s.incrementals, human_bytes(s.bytes).c_str(),
                    format_time(s.modified_ms).c_str());
      }
      return 0;
    }
    validate_db_name(f->db);
    ChainListing chain = list_chain(*store, "", f->db);
    if (chain.empty()) {
      throw Error(ErrorKind::kNotFound, "the store " + store->url() + " has no database '" + f->db +
                                            "' (`duckblock ls --store " + f->store + "` lists the databases)");
    }
    // Incremental S before the snapshot at S: the snapshot is the state after it.
    std::vector<ChainEntry> all = chain.incrementals;
    all.insert(all.end(), chain.snapshots.begin(), chain.snapshots.end());
    std::stable_sort(all.begin(), all.end(), [](const ChainEntry& a, const ChainEntry& b) {
      return a.seq != b.seq ? a.seq < b.seq : (!a.snapshot && b.snapshot);
    });
    std::vector<LogEntry> log = list_log(*store, "", f->db);
    uint64_t bytes = 0, log_bytes = 0;
    for (const auto& e : all) bytes += e.size;
    for (const auto& e : log) log_bytes += e.size;
    std::map<uint64_t, std::vector<const LogEntry*>> by_base;
    for (const auto& e : log) by_base[e.base_seq].push_back(&e);
    if (f->json) {
      nlohmann::json snaps = nlohmann::json::array(), incs = nlohmann::json::array(), logs = nlohmann::json::array();
      for (const auto& e : chain.snapshots) snaps.push_back(entry_json(e));
      for (const auto& e : chain.incrementals) incs.push_back(entry_json(e));
      for (const auto& [base, entries] : by_base) {
        nlohmann::json segs = nlohmann::json::array();
        uint64_t size = 0;
        for (const auto* e : entries) {
          segs.push_back(log_json(*e));
          size += e->size;
        }
        logs.push_back({{"base_seq", base}, {"segments", segs}, {"bytes", size}});
      }
      nlohmann::json j = {{"store", store->url()}, {"db", f->db},         {"head_seq", chain.head_seq()},
                          {"bytes", bytes},        {"snapshots", snaps}, {"incrementals", incs},
                          {"log", logs},           {"log_bytes", log_bytes}};
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::printf("%-12s %10s %12s  %-24s  %s\n", "KIND", "SEQ", "SIZE", "STORED", "KEY");
    for (const auto& e : all) {
      std::printf("%-12s %10llu %12s  %-24s  %s\n", e.snapshot ? "snapshot" : "incremental",
                  (unsigned long long)e.seq, human_bytes(e.size).c_str(), format_time(e.modified_ms).c_str(),
                  e.key.c_str());
    }
    if (!log.empty()) {
      // The log of base B: the commits after checkpoint B, in shipping order.
      std::printf("\n%-12s %10s %8s %12s  %-24s  %s\n", "LOG", "BASE SEQ", "INDEX", "SIZE", "STORED", "KEY");
      for (const auto& e : log) {
        std::printf("%-12s %10llu %8llu %12s  %-24s  %s\n", "log", (unsigned long long)e.base_seq,
                    (unsigned long long)e.index, human_bytes(e.size).c_str(), format_time(e.modified_ms).c_str(),
                    e.key.c_str());
      }
    }
    std::printf("%zu snapshot%s, %zu incremental%s, %s, head seq %llu", chain.snapshots.size(),
                chain.snapshots.size() == 1 ? "" : "s", chain.incrementals.size(),
                chain.incrementals.size() == 1 ? "" : "s", human_bytes(bytes).c_str(),
                (unsigned long long)chain.head_seq());
    if (!log.empty()) {
      std::printf("; %zu log segment%s over %zu base%s, %s", log.size(), log.size() == 1 ? "" : "s",
                  by_base.size(), by_base.size() == 1 ? "" : "s", human_bytes(log_bytes).c_str());
    }
    std::printf("\n");
    return 0;
  };
}

}  // namespace duckblock::cli
