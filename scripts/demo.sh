#!/usr/bin/env bash
# The main job, on the embedded default store (a local directory): see README.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
DB=build/bin-demo
rm -rf "$DB"; mkdir -p "$DB"
BIN=build/cli/duckblock
V=tests/data/hadbp
echo "== inspect a snapshot segment of a DuckDB file"
$BIN inspect "$V/sample_duckdb_snapshot_4k.hadbp" --max-pages 5
echo
echo "== apply it to an empty file and compare with the original"
$BIN apply "$DB/restored.duckdb" "$V/sample_duckdb_snapshot_4k.hadbp"
sha256sum "$V/sample.duckdb" "$DB/restored.duckdb"
cmp "$V/sample.duckdb" "$DB/restored.duckdb" && echo "identical"
