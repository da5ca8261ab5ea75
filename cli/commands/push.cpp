#include "ship.h"

namespace duckblock::cli {

Runner add_push(CLI::App& app) {
  return add_ship_command(
      app, "push",
      "Ship what changed in FILE since the last shipped state, as the next incremental, and wait\n"
      "until the store has it. The shipped state lives in the spool; without one it is rebuilt from\n"
      "the store (a full restore into the spool, once). A database new to the store gets its seq-0\n"
      "snapshot instead.",
      "Examples:\n"
      "  duckblock push /data/app.duckdb --store file:///backups/duckblock --db app\n"
      "  duckblock push app.duckdb --store s3://my-bucket/dbs/ --db app --spool /var/lib/duckblock/spool\n"
      "Run it while no DuckDB has FILE open for writing (it refuses otherwise); a live database\n"
      "replicates each checkpoint through the duckblock extension instead.\n"
      "Exit status: 0 shipped (or nothing changed), 1 failed, 2 bad usage, 3 nothing appended: the\n"
      "store's database was rebuilt (another chain), the object last uploaded is damaged or not ours,\n"
      "or the spool's state is damaged, 4 FILE missing, 7 store unreachable (the spool keeps the\n"
      "segments: run push again), 8 fenced (another leader wrote the next seq).",
      /*force_snapshot=*/false);
}

}  // namespace duckblock::cli
