#!/usr/bin/env bash
# The main job on the embedded default store (a local directory): ship a
# DuckDB file, keep a follower byte-identical, restore an earlier point.
# The leader file is tests/data/hadbp/sample.duckdb (a DuckDB 1.4.4 file);
# between pushes the demo rewrites two 4 KiB pages of it the way a
# checkpoint rewrites blocks, so it runs without a DuckDB build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# Its own build directory, so the test build's settings are left alone.
# It needs only the command line, not the DuckDB layer.
BUILD_DIR=$ROOT/build-demo bash scripts/build.sh -DDUCKBLOCK_TESTS=OFF -DDUCKBLOCK_BENCH=OFF \
  -DDUCKBLOCK_DUCKDB_ROOT="$ROOT/.cache/no-duckdb" >/dev/null
BIN=$ROOT/build-demo/cli/duckblock
DEMO=$ROOT/build-demo/demo
rm -rf "$DEMO"; mkdir -p "$DEMO"
STORE="file://$DEMO/store"
cp tests/data/hadbp/sample.duckdb "$DEMO/leader.duckdb"
cp tests/data/hadbp/sample.duckdb "$DEMO/original.duckdb"
step() { printf '\n== %s\n' "$*"; }
same() { if cmp -s "$1" "$2"; then echo "identical: $(basename "$1") = $(basename "$2") ($(sha256sum < "$1" | cut -c1-16)...)"; else echo "DIFFERENT: $1 $2"; exit 1; fi; }

step "1. snapshot the leader into $STORE (seq 0)"
$BIN snapshot "$DEMO/leader.duckdb" --store "$STORE" --db sample --spool "$DEMO/spool"

step "2. a follower restores from the store and is byte-identical"
$BIN follow --once --store "$STORE" --db sample --to "$DEMO/follower.duckdb"
same "$DEMO/leader.duckdb" "$DEMO/follower.duckdb"

step "3. the leader changes two pages; push ships only those"
dd if=/dev/urandom of="$DEMO/leader.duckdb" bs=4096 seek=20 count=1 conv=notrunc status=none
dd if=/dev/urandom of="$DEMO/leader.duckdb" bs=4096 seek=150 count=1 conv=notrunc status=none
$BIN push "$DEMO/leader.duckdb" --store "$STORE" --db sample --spool "$DEMO/spool"

step "4. the follower applies the new segment (verified first)"
$BIN follow --once --store "$STORE" --db sample --to "$DEMO/follower.duckdb"
same "$DEMO/leader.duckdb" "$DEMO/follower.duckdb"

step "5. what the store holds"
$BIN ls --store "$STORE" --db sample
$BIN verify --store "$STORE" --db sample

step "6. restore the earlier point (seq 0) elsewhere"
$BIN restore --store "$STORE" --db sample --seq 0 --to "$DEMO/restored-seq0.duckdb"
same "$DEMO/original.duckdb" "$DEMO/restored-seq0.duckdb"
echo
echo "demo complete: files are in $DEMO"
