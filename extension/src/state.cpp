// The extension's state: settings, leaders (the duckblock:// file system and
// its captures) and followers (read replicas). See state.h.
#include "state.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "duckblock/error.h"
#include "guards.h"
#include "origin.h"
#include "secrets.h"
#include "duckdb/main/database_manager.hpp"
#include "duckdb/main/attached_database.hpp"

namespace duckblock::extension {

namespace {

std::string get_string(const duckdb::DatabaseInstance& db, const char* key, const std::string& dflt = "") {
  duckdb::Value v;
  if (!db.TryGetCurrentSetting(key, v) || v.IsNull()) return dflt;
  return v.ToString();
}

uint64_t get_u64(const duckdb::DatabaseInstance& db, const char* key, uint64_t dflt) {
  duckdb::Value v;
  if (!db.TryGetCurrentSetting(key, v) || v.IsNull()) return dflt;
  return v.GetValue<uint64_t>();
}

std::optional<bool> get_bool(const duckdb::DatabaseInstance& db, const char* key) {
  duckdb::Value v;
  if (!db.TryGetCurrentSetting(key, v) || v.IsNull()) return std::nullopt;
  return v.GetValue<bool>();
}

std::string quote_ident(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string quote_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// The registry from database instance to state. Keyed by address: an entry
// is removed when its file system is destroyed, before the address can be
// reused by a new instance.
std::mutex g_registry_mu;
std::map<const duckdb::DatabaseInstance*, std::shared_ptr<State>>& registry() {
  static auto* r = new std::map<const duckdb::DatabaseInstance*, std::shared_ptr<State>>();
  return *r;  // never destroyed: DuckDB instances may outlive static destruction order
}

}  // namespace

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------
// Settings

Settings Settings::read(const duckdb::DatabaseInstance& db) {
  Settings s;
  s.store = get_string(db, "duckblock_store");
  s.prefix = get_string(db, "duckblock_prefix");
  s.spool_dir = get_string(db, "duckblock_spool_dir");
  s.name = get_string(db, "duckblock_name");
  s.take_over = get_bool(db, "duckblock_take_over").value_or(false);
  s.snapshot_every = get_u64(db, "duckblock_snapshot_every", s.snapshot_every);
  s.snapshot_bytes = get_u64(db, "duckblock_snapshot_bytes", s.snapshot_bytes);
  s.poll_interval_ms = get_u64(db, "duckblock_poll_interval_ms", s.poll_interval_ms);
  s.refresh_wait_ms = get_u64(db, "duckblock_refresh_wait_ms", s.refresh_wait_ms);
  s.sync_interval_ms = get_u64(db, "duckblock_sync_interval_ms", s.sync_interval_ms);
  s.sync_mode = get_string(db, "duckblock_sync_mode", s.sync_mode);
  if (auto e = get_string(db, "duckblock_s3_endpoint"); !e.empty()) s.store_options.endpoint = e;
  if (auto r = get_string(db, "duckblock_s3_region"); !r.empty()) s.store_options.region = r;
  if (auto p = get_string(db, "duckblock_s3_profile"); !p.empty()) s.store_options.profile = p;
  s.store_options.path_style = get_bool(db, "duckblock_s3_path_style");
  if (auto v = get_bool(db, "duckblock_s3_verify_tls")) s.store_options.verify_tls = *v;
  if (!s.prefix.empty() && s.prefix.back() != '/') s.prefix += '/';
  return s;
}

void register_settings(duckdb::DBConfig& config) {
  using duckdb::LogicalType;
  using duckdb::SetScope;
  using duckdb::Value;
  auto add = [&](const char* name, const char* desc, const LogicalType& type, const Value& dflt) {
    config.AddExtensionOption(name, desc, type, dflt, nullptr, SetScope::GLOBAL);
  };
  add("duckblock_store", "Store URL that ATTACH 'duckblock://...' replicates to (file:///dir, s3://bucket/prefix/)",
      LogicalType::VARCHAR, Value(""));
  add("duckblock_prefix", "Key prefix inside the store", LogicalType::VARCHAR, Value(""));
  add("duckblock_spool_dir", "Directory for segments waiting to upload ('' = <database file>.duckblock-spool)",
      LogicalType::VARCHAR, Value(""));
  add("duckblock_name",
      "The name in the store of the next database file ATTACHed through duckblock:// ('' = its file name without "
      "extension)",
      LogicalType::VARCHAR, Value(""));
  add("duckblock_take_over",
      "Let the next ATTACHed file replicate a name the store records for another file (it replaces that file)",
      LogicalType::BOOLEAN, Value::BOOLEAN(false));
  add("duckblock_snapshot_every", "A snapshot after this many incremental segments (0 = never by count)",
      LogicalType::UBIGINT, Value::UBIGINT(100));
  add("duckblock_snapshot_bytes", "A snapshot after this many incremental bytes (0 = never by size)",
      LogicalType::UBIGINT, Value::UBIGINT(256ull << 20));
  add("duckblock_poll_interval_ms", "How often a follower polls the store (0 = only CALL duckblock_refresh)",
      LogicalType::UBIGINT, Value::UBIGINT(1000));
  add("duckblock_refresh_wait_ms",
      "How long a refresh waits for queries still reading the old replica state before giving up",
      LogicalType::UBIGINT, Value::UBIGINT(10000));
  add("duckblock_sync_interval_ms",
      "Interval mode: committed transactions reach the store within this many ms (one object per interval)",
      LogicalType::UBIGINT, Value::UBIGINT(1000));
  add("duckblock_sync_mode",
      "'interval': COMMIT returns at once, the store has it within duckblock_sync_interval_ms; 'commit': COMMIT "
      "returns only once the store holds it",
      LogicalType::VARCHAR, Value("interval"));
  add("duckblock_s3_endpoint", "S3 endpoint override, http(s)://host:port ('' = AWS or AWS_ENDPOINT_URL)",
      LogicalType::VARCHAR, Value(""));
  add("duckblock_s3_region", "S3 region ('' = AWS_REGION or the profile's)", LogicalType::VARCHAR, Value(""));
  add("duckblock_s3_profile",
      "Credentials profile in the shared credentials file ('' = AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else "
      "AWS_PROFILE or default)",
      LogicalType::VARCHAR, Value(""));
  add("duckblock_s3_path_style", "Path-style S3 addressing (NULL = automatic)", LogicalType::BOOLEAN,
      Value(LogicalType::BOOLEAN));
  add("duckblock_s3_verify_tls", "Verify the S3 endpoint's TLS certificate", LogicalType::BOOLEAN,
      Value::BOOLEAN(true));
}

std::shared_ptr<ObjectStore> open_store_for(const std::string& url, const Settings& s) {
  if (url.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                "no store URL: SET duckblock_store = 'file:///dir' (or 's3://bucket/prefix/') first");
  }
  return std::shared_ptr<ObjectStore>(open_store(url, s.store_options));
}

// ---------------------------------------------------------------------------
// State

State::~State() { shutdown(); }

std::shared_ptr<State> State::find(duckdb::DatabaseInstance& db) {
  std::lock_guard l(g_registry_mu);
  auto it = registry().find(&db);
  if (it == registry().end()) throw duckdb::InvalidInputException("duckblock: the extension is not loaded here");
  return it->second;
}

void State::install(duckdb::DatabaseInstance& db, std::shared_ptr<State> state) {
  std::lock_guard l(g_registry_mu);
  registry()[&db] = std::move(state);
}

void State::uninstall(duckdb::DatabaseInstance* db) {
  std::shared_ptr<State> dropped;  // destroyed outside the lock
  std::lock_guard l(g_registry_mu);
  auto it = registry().find(db);
  if (it != registry().end()) {
    dropped = std::move(it->second);
    registry().erase(it);
  }
}

bool State::is_side_file(const std::string& path) const {
  auto ends = [&](const char* suffix) {
    std::string s(suffix);
    return path.size() > s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  // DuckDB's write-ahead log and temporary files beside the database.
  if (ends(".wal") || ends(".tmp") || ends(".wal.checkpoint")) return true;
  for (auto& [p, leader] : leaders_) {
    if (path.size() > p.size() && path.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

std::shared_ptr<Leader> State::open_leader(const std::string& path, const Settings& s) {
  std::lock_guard l(mu_);
  std::shared_ptr<Leader> previous;
  if (auto it = leaders_.find(path); it != leaders_.end()) previous = it->second;
  if (previous && previous->capture->started()) {
    throw Error(ErrorKind::kInvalidArgument, "'" + path + "' is already attached for replication in this process");
  }
  auto leader = std::make_shared<Leader>();
  leader->path = path;
  leader->db = name_in_store(path, s.name);
  leader->store_url = s.store;
  leader->prefix = s.prefix;
  leader->spool_dir = s.spool_for(path);
  leader->sync_mode = s.sync_mode;
  leader->sync_interval_ms = s.sync_interval_ms;
  // The replicator's log settings are fixed when it is made: a re-ATTACH
  // with another duckblock_sync_mode or interval gets a new one.
  if (previous && previous->store_url == leader->store_url && previous->prefix == leader->prefix &&
      previous->spool_dir == leader->spool_dir && previous->db == leader->db &&
      previous->sync_mode == leader->sync_mode && previous->sync_interval_ms == leader->sync_interval_ms) {
    // Attached again (after a DETACH) to the same store: keep its
    // replicator, which may still be uploading the spool. Two replicators
    // on one spool would upload the same segments twice.
    leader->replicator = previous->replicator;
  } else {
    if (previous) {
      // Attached again with other settings: the old replicator lets go of
      // the database first (its spool stays for the new one to resume).
      try {
        previous->replicator->remove(previous->db);
      } catch (const std::exception&) {
      }
    }
    auto store = open_store_for(s.store, s);
    ReplicatorOptions ro;
    ro.prefix = s.prefix;
    ro.spool_dir = leader->spool_dir;
    ro.snapshots.every_segments = s.snapshot_every;
    ro.snapshots.every_bytes = s.snapshot_bytes;
    // ATTACH with a spool never waits for the store (docs/EXTENSION.md,
    // "When the store cannot be reached").
    ro.spool_first = true;
    if (s.sync_mode == "commit") {
      ro.log_sync_mode = LogSyncMode::kCommit;
    } else if (s.sync_mode == "interval") {
      ro.log_sync_mode = LogSyncMode::kInterval;
    } else {
      throw Error(ErrorKind::kInvalidArgument,
                  "duckblock_sync_mode is '" + s.sync_mode + "': use 'interval' (the default) or 'commit'");
    }
    if (s.sync_interval_ms == 0) throw Error(ErrorKind::kInvalidArgument, "duckblock_sync_interval_ms must be > 0");
    ro.log_interval = std::chrono::milliseconds(s.sync_interval_ms);
    // One replicator per database file: its spool directory holds one
    // chain's state, and DETACH / ATTACH of one file must not touch another's.
    std::filesystem::create_directories(ro.spool_dir);
    leader->replicator = std::make_shared<Replicator>(std::move(store), ro);
  }
  leader->capture = std::make_shared<dbi::Capture>(path, leader->db, leader->replicator, dbi::CaptureOptions{});
  if (auto it = leaders_.find(path); it != leaders_.end()) retired_.push_back(std::move(it->second));
  leaders_[path] = leader;
  return leader;
}

std::shared_ptr<Leader> State::leader_by_path(const std::string& canonical_path) {
  std::lock_guard l(mu_);
  auto it = leaders_.find(canonical_path);
  return it == leaders_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Leader>> State::leaders() {
  std::lock_guard l(mu_);
  std::vector<std::shared_ptr<Leader>> out;
  for (auto& [p, leader] : leaders_) out.push_back(leader);
  return out;
}

std::shared_ptr<Leader> State::leader_by_name(const std::string& name) {
  std::lock_guard l(mu_);
  for (auto& [p, leader] : leaders_) {
    if (leader->db == name || leader->path == name) return leader;
  }
  return nullptr;
}

std::shared_ptr<Leader> State::leader_of(const dbi::Capture& capture) {
  std::lock_guard l(mu_);
  for (auto& [p, leader] : leaders_) {
    if (leader->capture.get() == &capture) return leader;
  }
  for (auto& leader : retired_) {
    if (leader->capture.get() == &capture) return leader;
  }
  return nullptr;
}

std::shared_ptr<Follower> State::add_follower(const std::string& alias, std::shared_ptr<Follower> f) {
  std::lock_guard l(mu_);
  if (followers_.count(alias)) {
    throw Error(ErrorKind::kInvalidArgument, "a follower named '" + alias + "' already exists (duckblock_unfollow it first)");
  }
  followers_[alias] = f;
  return f;
}

std::shared_ptr<Follower> State::follower(const std::string& alias) {
  std::lock_guard l(mu_);
  auto it = followers_.find(alias);
  return it == followers_.end() ? nullptr : it->second;
}

std::shared_ptr<Follower> State::remove_follower(const std::string& alias) {
  std::lock_guard l(mu_);
  auto it = followers_.find(alias);
  if (it == followers_.end()) return nullptr;
  auto f = std::move(it->second);
  followers_.erase(it);
  return f;
}

std::vector<std::shared_ptr<Follower>> State::followers() {
  std::lock_guard l(mu_);
  std::vector<std::shared_ptr<Follower>> out;
  for (auto& [a, f] : followers_) out.push_back(f);
  return out;
}

void State::shutdown() {
  {
    std::lock_guard l(metrics_mu);
    metrics.reset();
  }
  std::vector<std::shared_ptr<Follower>> fs;
  {
    std::lock_guard l(mu_);
    for (auto& [a, f] : followers_) fs.push_back(f);
    followers_.clear();
  }
  for (auto& f : fs) f->stop();
}

// ---------------------------------------------------------------------------
// Follower

Follower::Follower(std::string alias, std::string db, std::string store_url, std::string path, std::string prefix,
                   std::shared_ptr<ObjectStore> store, std::chrono::milliseconds refresh_wait,
                   std::chrono::milliseconds poll_interval, duckdb::weak_ptr<duckdb::DatabaseInstance> instance)
    : alias_(std::move(alias)),
      db_(std::move(db)),
      store_url_(std::move(store_url)),
      path_(canonical_path(path)),
      prefix_(std::move(prefix)),
      refresh_wait_(refresh_wait),
      poll_interval_(poll_interval),
      instance_(std::move(instance)) {
  FollowerOptions fo;
  fo.prefix = prefix_;
  fo.log_path = path_ + ".wal";
  fo.alternate = {path_ + ".duckblock-alt", path_ + ".duckblock-alt.wal"};
  // A refresh that fails (the store away, a query still reading) is retried
  // at the set interval: a SQL setting names it, so it does not grow.
  fo.poll_interval = fo.max_backoff = poll_interval_;
  fo.hooks.before_apply = [this](const ReplicaFiles& files) { wait_unread(files); };
  fo.hooks.after_apply = [this](const ReplicaFiles& files, const FollowerPoll&) { attach(files); };
  fo.hooks.still_published = [this] { return still_attached(); };
  fo.hooks.around_poll = [weak = instance_](const std::function<void()>& poll) {
    // Held only for one poll: if the program dropped its last handle
    // meanwhile, releasing it here destroys the instance on this thread,
    // whose shutdown stops (detaches) this very loop and may destroy this
    // follower; nothing of it is touched after.
    auto db = weak.lock();
    if (!db) return false;
    poll();  // a failure is in the status (last_error); the next poll tries again
    db.reset();
    return true;
  };
  core_ = std::make_unique<duckblock::Follower>(std::move(store), db_, path_, std::move(fo));
}

Follower::~Follower() { core_.reset(); }  // stops the loop (from the loop itself, detaches it)

FollowerStatus Follower::status() const {
  FollowerState c = core_->status();
  FollowerStatus s;
  s.alias = alias_;
  s.db = db_;
  s.path = c.published_path.empty() ? path_ : c.published_path;
  s.store_url = store_url_;
  s.applied_seq = c.position.seq;
  s.log_index = c.log ? c.log->index : 0;
  s.log_bytes = c.log ? c.log->length : 0;
  s.log_created_ms = c.log ? c.log->created_ms : 0;
  s.head_seq = c.head_seq;
  s.refreshes = c.applies;
  s.polls = c.polls;
  s.errors = c.errors;
  s.attached = !c.published_path.empty() && !closed_;
  s.last_current_ms = c.last_current_ms;
  s.last_error = c.last_error;
  return s;
}

duckdb::weak_ptr<duckdb::AttachedDatabase>& Follower::attachment(const std::string& path) {
  return attached_[path == path_ ? 0 : 1];
}

void Follower::wait_unread(const ReplicaFiles& files) {
  auto& attached = attachment(files.path);
  auto deadline = std::chrono::steady_clock::now() + refresh_wait_;
  while (!attached.expired()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(ErrorKind::kRetryable,
                  "a query has been reading the previous state of '" + alias_ + "' for over " +
                      std::to_string(refresh_wait_.count()) +
                      " ms; the alias stays on the current state until it ends (or raise duckblock_refresh_wait_ms)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

bool Follower::still_attached() {
  // Detached behind our back: attach afresh (the primary file, brought up
  // to date while nothing reads it).
  auto db = instance_.lock();
  return db && duckdb::DatabaseManager::Get(*db).GetDatabase(alias_) != nullptr;
}

void Follower::attach(const ReplicaFiles& files) {
  auto db = instance_.lock();
  if (!db) throw Error(ErrorKind::kIO, "the database that '" + alias_ + "' belongs to is closing");
  duckdb::Connection con(*db);
  // Atomic for readers: the alias names the old file until the new one is
  // attached; queries already running keep the old attachment alive.
  auto r = con.Query("ATTACH OR REPLACE " + quote_literal(files.path) + " AS " + quote_ident(alias_) + " (READ_ONLY)");
  if (r->HasError()) throw Error(ErrorKind::kIO, "attaching '" + files.path + "' as '" + alias_ + "': " + r->GetError());
  attachment(files.path) = duckdb::DatabaseManager::Get(*db).GetDatabase(alias_);
}

RefreshResult Follower::refresh() { return core_->poll_once(); }

void Follower::start() {
  if (poll_interval_.count() > 0) core_->start();
}

void Follower::stop() { core_->stop(); }

void Follower::close(duckdb::DatabaseInstance& db) {
  stop();
  duckdb::Connection con(db);
  auto r = con.Query("DETACH DATABASE IF EXISTS " + quote_ident(alias_));
  if (r->HasError()) throw Error(ErrorKind::kIO, "detaching '" + alias_ + "': " + r->GetError());
  closed_ = true;
}

// ---------------------------------------------------------------------------
// ReplicatingFileSystem

ReplicatingFileSystem::ReplicatingFileSystem(duckdb::DatabaseInstance& db, std::shared_ptr<State> state)
    : db_(db), state_(std::move(state)) {}

ReplicatingFileSystem::~ReplicatingFileSystem() {
  // DuckDB destroys its file systems after closing every attached database,
  // so no handle of ours is open; stop the follower threads and forget this
  // instance.
  state_->shutdown();
  State::uninstall(&db_);
}

std::string ReplicatingFileSystem::strip(const std::string& path) {
  std::string p(kPrefix);
  if (path.size() < p.size() || !std::equal(p.begin(), p.end(), path.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
      })) {
    return path;
  }
  return path.substr(p.size());
}

void ReplicatingFileSystem::wait_for_store(Leader& leader, const std::string& canon, const Settings& settings,
                                           const std::string& why) {
  // The probe claims the name and lists the chain: what the ATTACH could not.
  leader.wait->begin(
      [canon, settings, db = leader.db]() {
        claim_file(canon, settings);
        list_chain(*open_store_for(settings.store, settings), settings.prefix, db);
      },
      why);
}

bool ReplicatingFileSystem::CanHandleFile(const duckdb::string& fpath) { return strip(fpath) != fpath; }

duckdb::unique_ptr<duckdb::FileHandle> ReplicatingFileSystem::OpenFile(const duckdb::string& path,
                                                                       duckdb::FileOpenFlags flags,
                                                                       duckdb::optional_ptr<duckdb::FileOpener> opener) {
  std::string local = strip(path);
  if (local.empty()) throw duckdb::IOException("duckblock: '%s' names no file", path);
  std::string canon = canonical_path(local);
  std::shared_ptr<Leader> leader;
  // The database file itself, opened by DuckDB to attach it for writing.
  // DuckDB opens a database file for reading and writing under a write lock;
  // what COPY ... TO writes it opens write-only (that stays a plain file).
  if (flags.OpenForReading() && flags.OpenForWriting() && flags.Lock() == duckdb::FileLockType::WRITE_LOCK &&
      !state_->is_side_file(canon)) {
    try {
      auto settings = Settings::read(db_);
      settings.store_options = with_secret(db_, settings.store, settings.store_options);
      std::optional<std::string> unreachable;
      try {
        claim_file(canon, settings);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::kRetryable) throw;
        unreachable = e.what();  // offline: the database opens anyway (store_wait.h)
      }
      leader = state_->open_leader(canon, settings);
      if (unreachable) wait_for_store(*leader, canon, settings, *unreachable);
    } catch (const Error& e) {
      throw duckdb::IOException("duckblock: cannot replicate '%s': %s (%s)", local, e.what(),
                                std::string(to_string(e.kind())));
    } catch (const std::exception& e) {
      throw duckdb::IOException("duckblock: cannot replicate '%s': %s", local, e.what());
    }
  }
  auto inner = local_.OpenFile(local, flags, opener);
  if (!inner) return nullptr;
  if (!leader) {
    // A leader's write-ahead log: its commits ship as they happen.
    const std::string wal = ".wal";
    if (flags.OpenForWriting() && canon.size() > wal.size() &&
        canon.compare(canon.size() - wal.size(), wal.size(), wal) == 0) {
      if (auto owner = state_->leader_by_path(canon.substr(0, canon.size() - wal.size()))) {
        return wrap(path, std::move(inner), owner->capture, /*log=*/true);
      }
    }
    return wrap(path, std::move(inner), nullptr);
  }
  bool existing = static_cast<uint64_t>(local_.GetFileSize(*inner)) >= dbi::kHeadersEnd;
  // Wrapped before start(): wrapping tells the Capture of DuckDB's handle,
  // through which it reads the file.
  auto handle = wrap(path, std::move(inner), leader->capture);
  // An existing database is registered with its replicator now (its first
  // segment, or whatever differs from the chain, ships before DuckDB
  // changes anything); a new one at its first commit point (FileSync).
  if (existing && !leader->wait->waiting()) {
    try {
      leader->capture->start();
    } catch (const Error& e) {
      // No spool to start from and no store: open, and start once it answers.
      if (e.kind() != ErrorKind::kRetryable) {
        throw duckdb::IOException("duckblock: cannot replicate '%s' to %s: %s (%s)", local, leader->store_url, e.what(),
                                  std::string(to_string(e.kind())));
      }
      wait_for_store(*leader, canon, Settings::read(db_), e.what());
    } catch (const std::exception& e) {
      throw duckdb::IOException("duckblock: cannot replicate '%s' to %s: %s", local, leader->store_url, e.what());
    }
  }
  return handle;
}

void ReplicatingFileSystem::FileSync(duckdb::FileHandle& handle) {
  CaptureFileSystem::FileSync(handle);
  // A database created by this ATTACH becomes replicable at its first
  // commit point (DuckDB has just written and synced its headers): register
  // it then, which ships the whole new file as the chain's start.
  dbi::Capture* capture = capture_of(handle);
  if (capture && !capture->started() && capture->stats().commits > 0) {
    // Still waiting for the store (store_wait.h): a later commit point starts.
    if (auto l = state_->leader_of(*capture); l && l->wait->waiting()) return;
    try {
      capture->start();
    } catch (const std::exception& e) {
      // Every capture here is a Leader's, and the State keeps every Leader.
      auto leader = state_->leader_of(*capture);
      throw duckdb::IOException("duckblock: cannot replicate '%s' to %s: %s", capture->path(),
                                leader ? leader->store_url : std::string(), e.what());
    }
  }
}

bool ReplicatingFileSystem::DirectoryExists(const duckdb::string& d, duckdb::optional_ptr<duckdb::FileOpener> o) {
  return local_.DirectoryExists(strip(d), o);
}
void ReplicatingFileSystem::CreateDirectory(const duckdb::string& d, duckdb::optional_ptr<duckdb::FileOpener> o) {
  local_.CreateDirectory(strip(d), o);
}
void ReplicatingFileSystem::RemoveDirectory(const duckdb::string& d, duckdb::optional_ptr<duckdb::FileOpener> o) {
  local_.RemoveDirectory(strip(d), o);
}
void ReplicatingFileSystem::MoveFile(const duckdb::string& s, const duckdb::string& t,
                                     duckdb::optional_ptr<duckdb::FileOpener> o) {
  local_.MoveFile(strip(s), strip(t), o);
}
bool ReplicatingFileSystem::FileExists(const duckdb::string& f, duckdb::optional_ptr<duckdb::FileOpener> o) {
  return local_.FileExists(strip(f), o);
}
bool ReplicatingFileSystem::IsPipe(const duckdb::string& f, duckdb::optional_ptr<duckdb::FileOpener> o) {
  return local_.IsPipe(strip(f), o);
}
void ReplicatingFileSystem::RemoveFile(const duckdb::string& f, duckdb::optional_ptr<duckdb::FileOpener> o) {
  local_.RemoveFile(strip(f), o);
}
bool ReplicatingFileSystem::TryRemoveFile(const duckdb::string& f, duckdb::optional_ptr<duckdb::FileOpener> o) {
  return local_.TryRemoveFile(strip(f), o);
}
bool ReplicatingFileSystem::ListFiles(const duckdb::string& d,
                                      const std::function<void(const duckdb::string&, bool)>& cb,
                                      duckdb::FileOpener* o) {
  return local_.ListFiles(strip(d), cb, o);
}
duckdb::vector<duckdb::OpenFileInfo> ReplicatingFileSystem::Glob(const duckdb::string& path, duckdb::FileOpener* o) {
  return duckdb::FileSystem::Glob(path, o);
}

}  // namespace duckblock::extension
