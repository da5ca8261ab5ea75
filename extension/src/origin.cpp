// The origin record of a replicated name. See origin.h.
#include "origin.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/key.h"
#include "state.h"

namespace duckblock::extension {

namespace {

std::string encode(const Origin& o) { return nlohmann::json{{"host", o.host}, {"path", o.path}}.dump() + "\n"; }

// nullopt if the bytes are not an origin record (a torn or foreign file is
// treated as no record).
std::optional<Origin> decode(std::string_view bytes) {
  auto j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("host") || !j.contains("path") || !j["host"].is_string() ||
      !j["path"].is_string()) {
    return std::nullopt;
  }
  return Origin{j["host"].get<std::string>(), j["path"].get<std::string>()};
}

std::optional<Origin> read_local(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  auto bytes = read_file(path);
  return decode(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::optional<Origin> read_store(ObjectStore& store, const std::string& key) {
  auto d = get_bytes_if_exists(store, key);
  if (!d) return std::nullopt;
  auto o = decode(std::string_view(reinterpret_cast<const char*>(d->data()), d->size()));
  if (!o) throw Error(ErrorKind::kCorruption, store.url() + " " + key + " is not an origin record");
  return o;
}

[[noreturn]] void refuse(ObjectStore& store, const std::string& db, const Origin& holder, const Origin& me) {
  throw Error(ErrorKind::kAlreadyExists,
              "the store " + store.url() + " already replicates '" + db + "' from " + holder.describe() +
                  ", and this file is " + me.describe() + ": give this one another name (SET duckblock_name = "
                  "'...' before ATTACH), or, if it replaces that file, SET duckblock_take_over = true");
}

}  // namespace

std::string name_in_store(const std::string& canonical_path, const std::string& setting) {
  std::string name = setting.empty() ? std::filesystem::path(canonical_path).stem().string() : setting;
  if (name.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                "cannot name a database after '" + canonical_path + "' (SET duckblock_name = '...')");
  }
  validate_db_name(name);
  return name;
}

Origin this_origin(const std::string& canonical_path) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return Origin{host, canonical_path};
}

std::string origin_key(const std::string& prefix, const std::string& db) { return prefix + db + "/origin.json"; }

void claim_name(ObjectStore& store, const std::string& prefix, const std::string& db, const Origin& me,
                const std::string& spool_record, bool take_over) {
  // Claimed before by this file: nothing to ask the store. A spool shared
  // with another file (one duckblock_spool_dir for both) is a conflict too.
  if (auto local = read_local(spool_record); local && !take_over) {
    if (*local == me) return;
    refuse(store, db, *local, me);
  }
  const std::string key = origin_key(prefix, db);
  const std::string record = encode(me);
  auto holder = read_store(store, key);
  if (!holder) {
    try {
      MemorySource src(record);
      store.put_if_absent(key, src);
      holder = me;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kAlreadyExists) throw;
      holder = read_store(store, key);  // another file won the race
    }
  }
  if (holder && !(*holder == me)) {
    if (!take_over) refuse(store, db, *holder, me);
    MemorySource src(record);
    store.put(key, src);
  }
  std::filesystem::create_directories(std::filesystem::path(spool_record).parent_path());
  write_file_atomic(spool_record,
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(record.data()), record.size()));
}

void claim_file(const std::string& canonical_path, const Settings& settings) {
  const std::string db = name_in_store(canonical_path, settings.name);
  auto store = open_store_for(settings.store, settings);
  claim_name(*store, settings.prefix, db, this_origin(canonical_path),
             settings.spool_for(canonical_path) + "/" + db + ".origin.json", settings.take_over);
}

}  // namespace duckblock::extension
