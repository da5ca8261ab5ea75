// What the store-facing subcommands share: store and database selection
// (flags, then environment, then the config file), parsing of durations and
// times, terminal progress bars, and small formatting helpers.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "duckblock/error.h"
#include "duckblock/log.h"
#include "duckblock/store.h"

namespace duckblock::cli {

// Options every subcommand that talks to a store carries. Empty / unset
// means "not given on the command line"; resolve() fills the rest in.
struct StoreFlags {
  std::string store;
  std::string db;
  std::string endpoint, region, profile;
  bool path_style = false, virtual_host = false, no_verify_tls = false;
  bool json = false;
  bool quiet = false;
  bool verbose = false;  // the library's log at debug level
};

// Registers --store, --db (if `with_db`), the S3 options, --json (if
// `with_json`) and --quiet on `cmd`.
void add_store_flags(CLI::App* cmd, StoreFlags& flags, bool with_db, bool with_json);

// Fills unset flags from DUCKBLOCK_STORE / DUCKBLOCK_DB and the config file.
// Throws Error(kInvalidArgument) naming every way to give a missing value.
// `need_db`: the command cannot run without a database name.
void resolve(StoreFlags& flags, bool need_db);

// The config file (--config, DUCKBLOCK_CONFIG, or
// $XDG_CONFIG_HOME/duckblock/config.json, ~/.config/duckblock/config.json).
// Set by main from the global --config option before any command runs.
void set_config_path(const std::string& path);
// A string setting from the config file ("" if absent).
std::string config_string(const std::string& key);

// The compression level a writing command uses: its --compression flag,
// else $DUCKBLOCK_COMPRESSION, else the config file's "compression", else the
// default (format.h's spelling: none, zstd, zstd:N).
int resolve_compression(const std::string& flag);

// How a command will use the store. For file:// URLs a read-only command
// refuses a directory that does not exist (opening would create it, and a
// mistyped path would then look like an empty store).
enum class StoreUse { kRead, kWrite };
std::shared_ptr<ObjectStore> open_store_for(const StoreFlags& flags, StoreUse use);

// "1s", "500ms", "15m", "36h", "7d", "2w"; a bare number is seconds.
std::chrono::milliseconds parse_duration(const std::string& text);
// RFC 3339 / ISO 8601 ("2026-11-25T12:00:00Z", "...T12:00:00.250+02:00",
// "2026-11-25 12:00", "2026-11-25"; no zone = UTC) or milliseconds since the
// epoch (all digits). Returns milliseconds since the epoch.
int64_t parse_time(const std::string& text);
// "2026-11-25T12:00:00.250Z"
std::string format_time(int64_t ms);
// "12.3 MiB"
std::string human_bytes(uint64_t bytes);
int64_t now_ms();

// A progress bar on stderr with throughput and ETA, drawn only when stderr is
// a terminal (and not --quiet); otherwise every call is a no-op, so scripts
// and logs see no control characters.
class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes, bool quiet);
  ~Progress();
  void set_total(uint64_t total_bytes) { total_ = total_bytes; }
  void update(uint64_t done_bytes);
  void finish();  // clears the bar (and stops the ticker)
  bool active() const { return active_; }
  // Redraws from `done` (called on a helper thread) a few times a second,
  // for work that reports no progress of its own while it runs.
  void tick_from(std::function<uint64_t()> done);

 private:
  void draw(uint64_t done);
  std::string label_;
  std::atomic<uint64_t> total_{0};
  uint64_t done_ = 0;
  bool active_ = false, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
  std::thread ticker_;
  std::atomic<bool> stop_{false};
};

// Wraps a store and counts the bytes that flow through put and get, so a
// progress bar can show a transfer while it is under way.
class CountingStore final : public ObjectStore {
 public:
  explicit CountingStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}
  void put(const std::string& key, ByteSource& data) override;
  void put_if_absent(const std::string& key, ByteSource& data) override;
  void get(const std::string& key, ByteSink& out, std::optional<ByteRange> range = std::nullopt) override;
  std::optional<ObjectInfo> head(const std::string& key) override { return inner_->head(key); }
  std::vector<ObjectInfo> list(const std::string& prefix, const std::string& start_after = "") override {
    return inner_->list(prefix, start_after);
  }
  void remove(const std::vector<std::string>& keys) override { inner_->remove(keys); }
  std::string url() const override { return inner_->url(); }
  uint64_t remove_stale_temp_files() override { return inner_->remove_stale_temp_files(); }
  uint64_t bytes_up() const { return up_; }
  uint64_t bytes_down() const { return down_; }

 private:
  std::shared_ptr<ObjectStore> inner_;
  std::atomic<uint64_t> up_{0}, down_{0};
};

// Writes a one-line note on stderr unless quiet (stdout carries results).
void note(const StoreFlags& flags, const std::string& text);

// Refuses to read a file that a DuckDB process holds open for writing (it
// takes a POSIX write lock on the whole file): a block read during its
// checkpoint could be torn. Holds a read lock until destroyed so a DuckDB
// cannot start writing meanwhile (it would fail to lock the file).
class ReadLock {
 public:
  explicit ReadLock(const std::string& path);
  ~ReadLock();
  ReadLock(const ReadLock&) = delete;
  ReadLock& operator=(const ReadLock&) = delete;

 private:
  int fd_ = -1;
};

bool path_exists(const std::string& path);
std::string absolute_path(const std::string& path);

// The absolute path of a file the command writes (`flag` names the option
// in messages): refuses an empty path and a directory with
// Error(kInvalidArgument) saying what to give instead.
std::string output_file_path(const std::string& path, const std::string& flag);

// CLI11 check for an unsigned option: digits only, so "-1" is refused
// instead of wrapping to 2^64-1.
CLI::Validator whole_number();

}  // namespace duckblock::cli
