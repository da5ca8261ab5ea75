#!/usr/bin/env bash
# Installs what duckblock needs to build and test, idempotently. Safe to run
# on a fresh machine (as root, or with sudo available) and on every run.
set -euo pipefail

PACKAGES=(cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
          libssl-dev libcurl4-openssl-dev libexpat1-dev nlohmann-json3-dev libcli11-dev
          libgtest-dev libgmock-dev libbenchmark-dev curl libzstd-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (for DuckDB's npm distribution and the S3 test server) may
# come from outside Debian on some machines; install Debian's only if absent.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
