// `snapshot` and `push` both ship a local file through a Replicator and its
// spool, then wait for the upload; they differ only in whether a snapshot is
// forced at the head. This is their shared half.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common.h"

namespace duckblock::cli {

struct ShipFlags {
  StoreFlags store;
  std::string file;
  std::string spool;
  uint64_t snapshot_every = 100;
  std::string timeout = "5m";
  uint64_t retries = 5;
};

void add_ship_flags(CLI::App* cmd, ShipFlags& flags);
int run_ship(ShipFlags& flags, bool force_snapshot);

}  // namespace duckblock::cli
