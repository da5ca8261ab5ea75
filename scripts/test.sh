#!/usr/bin/env bash
# Sets up a fresh machine, builds, and runs every test. This is what CI runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure -j2 --timeout 600)
