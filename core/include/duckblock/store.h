// The object store: the one interface every backend (memory, local
// directory, S3) implements. Keys are '/'-separated strings relative to the
// store's root (the URL's path or bucket prefix). Every backend passes the
// same contract test suite (tests/store_contract_test.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/io.h"

namespace duckblock {

class Env;

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  int64_t modified_ms = 0;  // last modification, milliseconds since the epoch
  // Permission bits, where the store keeps them (a local directory): a
  // restore from it gives the restored file the same.
  std::optional<uint32_t> mode;
  bool operator==(const ObjectInfo&) const = default;
};

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;  // bytes from offset; a range past the end is cut short
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // Stores everything `data` yields under `key`, replacing any object there.
  // Atomic: a reader sees the old object or the whole new one, never a part.
  // Durable when it returns. If `data` throws, nothing new is visible. Any
  // other failure leaves the old object or the whole new one: one that came
  // after the write took effect (a lost response, a failed directory fsync)
  // may leave the new one, as with any remote store.
  virtual void put(const std::string& key, ByteSource& data) = 0;

  // As put, but only if no object exists under `key`; otherwise throws
  // Error(kAlreadyExists) and leaves the existing object untouched. Atomic
  // against concurrent put_if_absent of the same key: exactly one wins.
  virtual void put_if_absent(const std::string& key, ByteSource& data) = 0;

  // Writes the object's bytes (or the given range of them) to `out`.
  // Throws Error(kNotFound) if there is no object. A range starting at or
  // past the end yields nothing.
  virtual void get(const std::string& key, ByteSink& out,
                   std::optional<ByteRange> range = std::nullopt) = 0;

  // Size and time of the object, or nullopt if there is none.
  virtual std::optional<ObjectInfo> head(const std::string& key) = 0;

  // Every object whose key starts with `prefix` and sorts strictly after
  // `start_after` (bytewise), in ascending key order. Backends paginate
  // internally; the result is complete.
  virtual std::vector<ObjectInfo> list(const std::string& prefix,
                                       const std::string& start_after = "") = 0;

  // Deletes the objects; keys that do not exist are not an error.
  virtual void remove(const std::vector<std::string>& keys) = 0;

  // The URL this store was opened with, without any secret.
  virtual std::string url() const = 0;

  // Removes temp files that killed writers left in the store (a local
  // directory's half-written objects; see temp_files.h) and returns how
  // many. Stores without such files (S3 discards unfinished uploads) do
  // nothing.
  virtual uint64_t remove_stale_temp_files() { return 0; }
};

// Options shared by URL-opened stores (backends read what applies to them).
struct StoreOptions {
  // s3: endpoint override (http://host:port), region, path-style, TLS checks.
  std::optional<std::string> endpoint;
  std::optional<std::string> region;
  std::optional<bool> path_style;
  bool verify_tls = true;
  std::optional<std::string> profile;  // shared credentials file profile
  // s3: credentials given by the program (e.g. a DuckDB secret), used before
  // the environment and any profile. `source` names them in messages.
  struct Credentials {
    std::string access_key_id, secret_access_key, session_token, source;
  };
  std::optional<Credentials> credentials;
};

// Opens "file:///abs/dir", "memory://name" or "s3://bucket/prefix/".
// Throws Error(kInvalidArgument) for a URL it cannot parse or a scheme it
// does not know.
std::unique_ptr<ObjectStore> open_store(const std::string& url,
                                        const StoreOptions& options = {});

// Backends (each in core/src/store/<name>/).
std::unique_ptr<ObjectStore> make_memory_store(const std::string& name = "");
// `env`: the file system its writes go through (default Env::posix(); tests
// pass a FaultyEnv, see env.h).
std::unique_ptr<ObjectStore> make_local_store(const std::string& directory, Env* env = nullptr);

// Helpers over any store.
std::vector<uint8_t> get_bytes(ObjectStore& store, const std::string& key,
                               std::optional<ByteRange> range = std::nullopt);
// The same, nullopt if the store has no object at `key`.
std::optional<std::vector<uint8_t>> get_bytes_if_exists(ObjectStore& store, const std::string& key);
// A record object (chain.json, a digest): nullopt if absent; Error
// (kCorruption) once more than `max_bytes` arrive, so a damaged or planted
// object of gigabytes costs neither the memory nor the download.
std::optional<std::vector<uint8_t>> get_record_if_exists(ObjectStore& store, const std::string& key,
                                                         size_t max_bytes);
void put_bytes(ObjectStore& store, const std::string& key, std::span<const uint8_t> data);

}  // namespace duckblock
