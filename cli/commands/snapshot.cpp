#include "ship.h"

namespace duckblock::cli {

Runner add_snapshot(CLI::App& app) {
  return add_ship_command(
      app, "snapshot",
      "Ship FILE as a snapshot. A database new to the store starts its chain with the snapshot at seq 0;\n"
      "for an existing chain, what changed ships first as an incremental, then the whole file as the\n"
      "snapshot at the new head (so a restore to it downloads one object).",
      "Examples:\n"
      "  duckblock snapshot /data/app.duckdb --store file:///backups/duckblock --db app\n"
      "  DUCKBLOCK_STORE=s3://my-bucket/dbs/ duckblock snapshot app.duckdb --db app --json\n"
      "Run it while no DuckDB has FILE open for writing (it refuses otherwise).\n"
      "Exit status: 0 shipped, 1 failed, 2 bad usage, 3 nothing appended (as for push), 4 FILE missing,\n"
      "7 store unreachable, 8 fenced.",
      /*force_snapshot=*/true);
}

}  // namespace duckblock::cli
