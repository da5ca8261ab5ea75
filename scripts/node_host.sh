#!/usr/bin/env bash
# Installs the Node host for the extension's tests, idempotently:
# @duckdb/node-api at the 1.4.4 release line (it pulls the matching
# @duckdb/node-bindings and its linux-x64 libduckdb.so, DuckDB v1.4.4) into
# .cache/node-host (gitignored). The extension is built for exactly v1.4.4
# (DuckDB checks the version in its footer), so the version is pinned.
# Set DUCKBLOCK_NODE_HOST to use another place.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${DUCKBLOCK_NODE_HOST:-$ROOT/.cache/node-host}
PKG=@duckdb/node-api@1.4.4-r.4
STAMP="$DEST/.complete-node-api-1.4.4-r.4"

if [[ -f "$STAMP" && -d "$DEST/node_modules/@duckdb/node-api" ]]; then
  exit 0
fi
command -v npm >/dev/null || bash "$ROOT/scripts/setup.sh"
mkdir -p "$DEST"
# A private package.json, so that npm installs here and nowhere else (npm
# would otherwise walk up to the nearest package.json it finds).
[[ -f "$DEST/package.json" ]] || echo '{"name":"duckblock-node-host","private":true}' >"$DEST/package.json"
echo "node_host.sh: installing $PKG into $DEST" >&2
(cd "$DEST" && npm install --silent --loglevel=error --no-audit --no-fund "$PKG")
node -e "require('$DEST/node_modules/@duckdb/node-api')" >/dev/null
touch "$STAMP"
echo "node_host.sh: Node host ready in $DEST" >&2
