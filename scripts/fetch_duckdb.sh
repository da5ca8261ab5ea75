#!/usr/bin/env bash
# Fetches DuckDB 1.4.4 for the DuckDB integration (duckdb/), idempotently.
#
# DuckDB ships no Debian package; its npm distribution has what a C++ build
# needs (docs: DESIGN notes, "DuckDB facts"):
#   duckdb@1.4.4                            the full C++ source tree, with the
#                                           headers in src/duckdb/src/include
#   @duckdb/node-bindings-linux-x64@1.4.4-r.4
#                                           the release libduckdb.so (v1.4.4),
#                                           which exports the C++ API
# `npm pack` downloads each tarball without installing anything. They are
# cached and extracted under .cache/duckdb/ (gitignored):
#   .cache/duckdb/include/   headers (a symlink into the source tree)
#   .cache/duckdb/lib/       libduckdb.so
#   .cache/duckdb/src/       the whole source, for reference
# A finished fetch leaves .cache/duckdb/.complete-<versions>; with it present
# nothing is downloaded again. Set DUCKBLOCK_DUCKDB_ROOT to use another place.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${DUCKBLOCK_DUCKDB_ROOT:-$ROOT/.cache/duckdb}
SRC_PKG=duckdb@1.4.4
LIB_PKG=@duckdb/node-bindings-linux-x64@1.4.4-r.4
STAMP="$DEST/.complete-1.4.4-r.4"

if [[ -f "$STAMP" && -f "$DEST/lib/libduckdb.so" && -f "$DEST/include/duckdb.hpp" ]]; then
  exit 0
fi
if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
  # The release library we use is the linux-x64 build; elsewhere the
  # integration is skipped (CMake finds no DuckDB) rather than failing.
  echo "fetch_duckdb.sh: only linux x86_64 is supported; skipping" >&2
  exit 0
fi
command -v npm >/dev/null || bash "$ROOT/scripts/setup.sh"

mkdir -p "$DEST"
# Download into a scratch directory and move into place only when both
# packages are complete, so an interrupted fetch is simply redone.
TMP=$(mktemp -d "$DEST/.fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "fetch_duckdb.sh: downloading $SRC_PKG and $LIB_PKG into $DEST" >&2
(cd "$TMP" && npm pack --silent --loglevel=error "$SRC_PKG" "$LIB_PKG" >/dev/null)
mkdir -p "$TMP/src" "$TMP/lib"
tar -xzf "$TMP"/duckdb-1.4.4.tgz -C "$TMP/src"
tar -xzf "$TMP"/duckdb-node-bindings-linux-x64-1.4.4-r.4.tgz -C "$TMP/lib"
[[ -f "$TMP/src/package/src/duckdb/src/include/duckdb.hpp" ]] ||
  { echo "fetch_duckdb.sh: $SRC_PKG has no src/duckdb/src/include/duckdb.hpp" >&2; exit 1; }
LIBSO=$(find "$TMP/lib" -name 'libduckdb.so*' -type f | head -n1)
[[ -n "$LIBSO" ]] || { echo "fetch_duckdb.sh: $LIB_PKG has no libduckdb.so" >&2; exit 1; }

rm -rf "$DEST/src" "$DEST/lib" "$DEST/include"
mv "$TMP/src/package" "$DEST/src"
mkdir -p "$DEST/lib"
mv "$LIBSO" "$DEST/lib/libduckdb.so"
ln -sfn src/src/duckdb/src/include "$DEST/include"
touch "$STAMP"
echo "fetch_duckdb.sh: DuckDB 1.4.4 ready in $DEST" >&2
