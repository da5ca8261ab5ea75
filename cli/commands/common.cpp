#include "common.h"

#include "duckblock/format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

namespace duckblock::cli {

namespace {

std::string g_config_path;  // from --config; "" = the default locations
bool g_config_explicit = false;
std::optional<nlohmann::json> g_config;
bool g_config_loaded = false;

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

const std::set<std::string> kConfigKeys = {"store", "db",      "endpoint",   "region",
                                           "profile", "path_style", "verify_tls", "spool", "compression"};

const nlohmann::json* config() {
  if (g_config_loaded) return g_config ? &*g_config : nullptr;
  g_config_loaded = true;
  std::string path = g_config_path;
  bool explicit_path = g_config_explicit;
  if (path.empty()) {
    if (auto e = env("DUCKBLOCK_CONFIG")) {
      path = *e;
      explicit_path = true;
    } else if (auto x = env("XDG_CONFIG_HOME")) {
      path = *x + "/duckblock/config.json";
    } else if (auto h = env("HOME")) {
      path = *h + "/.config/duckblock/config.json";
    }
  }
  if (path.empty()) return nullptr;
  std::ifstream in(path);
  if (!in) {
    if (explicit_path) {
      throw Error(ErrorKind::kNotFound, "config file " + path + " cannot be read (check --config / DUCKBLOCK_CONFIG)");
    }
    return nullptr;  // the default location is optional
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kInvalidArgument, "config file " + path + " is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(ErrorKind::kInvalidArgument, "config file " + path + " must hold a JSON object");
  for (auto& [k, v] : j.items()) {
    if (!kConfigKeys.count(k)) {
      std::string allowed;
      for (const auto& a : kConfigKeys) allowed += (allowed.empty() ? "" : ", ") + a;
      throw Error(ErrorKind::kInvalidArgument,
                  "config file " + path + ": unknown key '" + k + "' (known keys: " + allowed + ")");
    }
    bool want_bool = k == "path_style" || k == "verify_tls";
    if (want_bool ? !v.is_boolean() : !v.is_string()) {
      throw Error(ErrorKind::kInvalidArgument, "config file " + path + ": '" + k + "' must be a " +
                                                   (want_bool ? "boolean" : "string"));
    }
  }
  g_config = std::move(j);
  return &*g_config;
}

std::optional<bool> config_bool(const std::string& key) {
  const auto* c = config();
  if (!c || !c->contains(key)) return std::nullopt;
  return c->at(key).get<bool>();
}

}  // namespace

void set_config_path(const std::string& path) {
  g_config_path = path;
  g_config_explicit = !path.empty();
  g_config_loaded = false;
  g_config.reset();
}

std::string config_string(const std::string& key) {
  const auto* c = config();
  if (!c || !c->contains(key)) return "";
  return c->at(key).get<std::string>();
}

void add_store_flags(CLI::App* cmd, StoreFlags& f, bool with_db, bool with_json) {
  cmd->add_option("--store", f.store,
                  "Store URL: file:///abs/dir or s3://bucket/prefix/ (default: $DUCKBLOCK_STORE, then the "
                  "config file's \"store\")");
  if (with_db) {
    cmd->add_option("--db", f.db, "Database name in the store (default: $DUCKBLOCK_DB, then the config file's \"db\")");
  }
  auto* s3 = "S3";
  cmd->add_option("--endpoint", f.endpoint,
                  "S3 endpoint, e.g. http://127.0.0.1:9000 (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS)")
      ->group(s3);
  cmd->add_option("--region", f.region, "S3 region (default: $AWS_REGION, the profile's, us-east-1)")->group(s3);
  cmd->add_option("--profile", f.profile, "Profile in ~/.aws/credentials to take the S3 keys from")->group(s3);
  auto* ps = cmd->add_flag("--path-style", f.path_style,
                           "Path-style S3 requests (default for a custom --endpoint)")->group(s3);
  cmd->add_flag("--virtual-host", f.virtual_host, "Virtual-host-style S3 requests (default for AWS)")
      ->group(s3)
      ->excludes(ps);
  cmd->add_flag("--no-verify-tls", f.no_verify_tls, "Do not check the S3 endpoint's TLS certificate")->group(s3);
  if (with_json) cmd->add_flag("--json", f.json, "Print JSON on stdout");
  cmd->add_flag("-q,--quiet", f.quiet, "No progress, notes or library warnings on stderr (errors still print)");
  cmd->add_flag("--verbose", f.verbose, "Also print the library's info and debug messages on stderr");
}

void resolve(StoreFlags& f, bool need_db) {
  // The library's log (duckblock/log.h): warnings by default.
  if (f.verbose) set_log_level(LogLevel::kDebug);
  if (f.quiet) set_log_level(LogLevel::kError);
  if (f.store.empty()) f.store = env("DUCKBLOCK_STORE").value_or("");
  if (f.store.empty()) f.store = config_string("store");
  if (f.store.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                "no store given: pass --store URL (file:///abs/dir or s3://bucket/prefix/), set DUCKBLOCK_STORE, "
                "or put \"store\" in the config file");
  }
  if (f.db.empty()) f.db = env("DUCKBLOCK_DB").value_or("");
  if (f.db.empty()) f.db = config_string("db");
  if (need_db && f.db.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                "no database given: pass --db NAME, set DUCKBLOCK_DB, or put \"db\" in the config file "
                "(`duckblock ls --store " + f.store + "` lists the databases in the store)");
  }
  if (f.endpoint.empty()) f.endpoint = config_string("endpoint");
  if (f.region.empty()) f.region = config_string("region");
  if (f.profile.empty()) f.profile = config_string("profile");
  if (!f.path_style && !f.virtual_host) {
    if (auto ps = config_bool("path_style")) (*ps ? f.path_style : f.virtual_host) = true;
  }
  if (!f.no_verify_tls) {
    if (auto v = config_bool("verify_tls")) f.no_verify_tls = !*v;
  }
}

std::shared_ptr<ObjectStore> open_store_for(const StoreFlags& f, StoreUse use) {
  StoreOptions o;
  if (!f.endpoint.empty()) o.endpoint = f.endpoint;
  if (!f.region.empty()) o.region = f.region;
  if (!f.profile.empty()) o.profile = f.profile;
  if (f.path_style) o.path_style = true;
  if (f.virtual_host) o.path_style = false;
  o.verify_tls = !f.no_verify_tls;
  if (f.store.rfind("file://", 0) == 0 && use == StoreUse::kRead) {
    std::string dir = f.store.substr(7);
    struct stat st {};
    if (!dir.empty() && dir.front() == '/' && (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
      throw Error(ErrorKind::kNotFound, "the store directory " + dir + " does not exist (check --store; it is "
                                        "created by the first snapshot or push)");
    }
  }
  return std::shared_ptr<ObjectStore>(open_store(f.store, o));
}

std::chrono::milliseconds parse_duration(const std::string& text) {
  auto bad = [&] {
    return Error(ErrorKind::kInvalidArgument,
                 "bad duration '" + text + "': use a number and a unit, like 500ms, 30s, 15m, 36h, 7d or 2w");
  };
  if (text.empty()) throw bad();
  int64_t total = 0;
  size_t i = 0;
  // Sums of parts ("1h30m") are allowed.
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > 12) throw bad();
    int64_t n = std::stoll(text.substr(start, i - start));  // < 10^12: no overflow below
    size_t u = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string unit = text.substr(u, i - u);
    int64_t mult;
    if (unit == "ms") mult = 1;
    else if (unit == "s" || (unit.empty() && start == 0 && i == text.size())) mult = 1000;
    else if (unit == "m" || unit == "min") mult = 60'000;
    else if (unit == "h") mult = 3'600'000;
    else if (unit == "d") mult = 86'400'000;
    else if (unit == "w") mult = 7 * 86'400'000LL;
    else throw bad();
    // A sum past ~292 million years would overflow: no window is that long.
    if (n > (INT64_MAX - total) / mult) throw bad();
    total += n * mult;
  }
  return std::chrono::milliseconds(total);
}

int64_t parse_time(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::kInvalidArgument,
                 "bad time '" + text + "' (" + why +
                     "): use RFC 3339 like 2026-11-25T14:30:00Z or 2026-11-25T15:30:00+01:00, or milliseconds "
                     "since the epoch");
  };
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    if (text.size() > 15) throw bad("too many digits");
    return std::stoll(text);
  }
  int Y = 0, M = 0, D = 0, h = 0, m = 0, s = 0;
  int64_t frac_ms = 0;
  size_t pos = 0;
  auto num = [&](int digits, int& out) {
    if (pos + digits > text.size()) throw bad("truncated");
    out = 0;
    for (int k = 0; k < digits; ++k) {
      char c = text[pos + k];
      if (!std::isdigit(static_cast<unsigned char>(c))) throw bad("expected a digit at position " + std::to_string(pos + k + 1));
      out = out * 10 + (c - '0');
    }
    pos += digits;
  };
  auto expect = [&](char c) {
    if (pos >= text.size() || text[pos] != c) throw bad(std::string("expected '") + c + "' at position " + std::to_string(pos + 1));
    ++pos;
  };
  num(4, Y); expect('-'); num(2, M); expect('-'); num(2, D);
  int64_t offset_min = 0;
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') throw bad("expected 'T' after the date");
    ++pos;
    num(2, h); expect(':'); num(2, m);
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      num(2, s);
      if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
        ++pos;
        int digits = 0;
        int64_t scale = 100;
        while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
          if (scale > 0) frac_ms += (text[pos] - '0') * scale;
          scale /= 10;
          ++pos;
          ++digits;
        }
        if (!digits) throw bad("no digits after the decimal point");
      }
    }
    if (pos < text.size()) {
      char z = text[pos];
      if (z == 'Z' || z == 'z') {
        ++pos;
      } else if (z == '+' || z == '-') {
        ++pos;
        int oh = 0, om = 0;
        num(2, oh);
        if (pos < text.size() && text[pos] == ':') ++pos;
        num(2, om);
        if (oh > 23 || om > 59) throw bad("the zone offset is out of range");
        offset_min = (oh * 60 + om) * (z == '-' ? -1 : 1);
      } else {
        throw bad("unexpected characters after the time");
      }
    }
    if (pos != text.size()) throw bad("unexpected characters at the end");
  }
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 60) throw bad("a field is out of range");
  // timegm() would quietly roll 2026-02-30 over to March 2nd.
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
  if (D > kDays[M - 1] + (M == 2 && leap ? 1 : 0)) {
    throw bad(std::to_string(Y) + "-" + (M < 10 ? "0" : "") + std::to_string(M) + " has no day " + std::to_string(D));
  }
  if (s == 60 && !(h == 23 && m == 59)) throw bad("a leap second is only 23:59:60");
  std::tm tm{};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  int64_t secs = ::timegm(&tm);
  return (secs - offset_min * 60) * 1000 + frac_ms;
}

std::string format_time(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, int(((ms % 1000) + 1000) % 1000));
  return buf;
}

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Progress::Progress(std::string label, uint64_t total_bytes, bool quiet)
    : label_(std::move(label)), total_(total_bytes) {
  active_ = !quiet && ::isatty(STDERR_FILENO);
  start_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::tick_from(std::function<uint64_t()> done) {
  if (!active_ || ticker_.joinable()) return;
  ticker_ = std::thread([this, done = std::move(done)] {
    while (!stop_) {
      update(done());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
}

void Progress::update(uint64_t done) {
  if (!active_) return;
  std::lock_guard l(mu_);
  draw(done);
}

void Progress::draw(uint64_t done) {
  if (stop_) return;
  done_ = std::max(done_, done);
  uint64_t total = total_;
  auto now = std::chrono::steady_clock::now();
  // Redraw at most ten times a second; the last update always draws.
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && done_ < total) return;
  last_draw_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double rate = secs > 0 ? double(done_) / secs : 0;
  double frac = total ? std::min(1.0, double(done_) / double(total)) : 0;
  constexpr int kWidth = 24;
  int filled = int(frac * kWidth);
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
  std::string eta = "--";
  if (rate > 0 && total > done_) {
    int64_t left = int64_t(double(total - done_) / rate);
    char b[32];
    if (left >= 3600) std::snprintf(b, sizeof b, "%lldh%02lldm", (long long)(left / 3600), (long long)(left % 3600 / 60));
    else if (left >= 60) std::snprintf(b, sizeof b, "%lldm%02llds", (long long)(left / 60), (long long)(left % 60));
    else std::snprintf(b, sizeof b, "%llds", (long long)left);
    eta = b;
  } else if (total && done_ >= total) {
    eta = "0s";
  }
  std::fprintf(stderr, "\r\033[K%s [%s] %3d%% %s/%s %s/s ETA %s", label_.c_str(), bar.c_str(), int(frac * 100),
               human_bytes(done_).c_str(), human_bytes(total).c_str(), human_bytes(uint64_t(rate)).c_str(),
               eta.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (!active_) return;
  stop_ = true;
  if (ticker_.joinable()) ticker_.join();
  std::lock_guard l(mu_);
  if (drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  drawn_ = false;
}

namespace {

class CountingSource final : public ByteSource {
 public:
  CountingSource(ByteSource& in, std::atomic<uint64_t>& n) : in_(in), n_(n) {}
  size_t read(void* buf, size_t n) override {
    size_t got = in_.read(buf, n);
    n_ += got;
    return got;
  }
  std::optional<uint64_t> remaining() const override { return in_.remaining(); }
  std::optional<uint32_t> file_mode() const override { return in_.file_mode(); }

 private:
  ByteSource& in_;
  std::atomic<uint64_t>& n_;
};

class CountingSink final : public ByteSink {
 public:
  CountingSink(ByteSink& out, std::atomic<uint64_t>& n) : out_(out), n_(n) {}
  void write(const void* buf, size_t n) override {
    out_.write(buf, n);
    n_ += n;
  }

 private:
  ByteSink& out_;
  std::atomic<uint64_t>& n_;
};

}  // namespace

// A retried transfer counts its bytes again: the bar may run ahead of the
// total, which draw() caps at 100%.
void CountingStore::put(const std::string& key, ByteSource& data) {
  CountingSource src(data, up_);
  inner_->put(key, src);
}

void CountingStore::put_if_absent(const std::string& key, ByteSource& data) {
  CountingSource src(data, up_);
  inner_->put_if_absent(key, src);
}

void CountingStore::get(const std::string& key, ByteSink& out, std::optional<ByteRange> range) {
  CountingSink sink(out, down_);
  inner_->get(key, sink, range);
}

void note(const StoreFlags& flags, const std::string& text) {
  if (!flags.quiet) std::cerr << text << "\n";
}

ReadLock::ReadLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw Error(ErrorKind::kNotFound, "the file " + path + " does not exist");
    throw_errno("cannot open " + path);
  }
  struct flock fl {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  if (::fcntl(fd_, F_SETLK, &fl) != 0) {
    int e = errno;
    ::close(fd_);
    fd_ = -1;
    if (e == EACCES || e == EAGAIN) {
      throw Error(ErrorKind::kInvalidArgument,
                  path + " is open for writing in another process (a running DuckDB?): reading it now could catch a "
                         "checkpoint half-written. Stop that process, or replicate from inside DuckDB with the "
                         "duckblock extension");
    }
    // Locks unsupported here (some network file systems): go on unlocked.
  }
}

ReadLock::~ReadLock() {
  if (fd_ >= 0) ::close(fd_);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string absolute_path(const std::string& path) {
  return std::filesystem::absolute(path).lexically_normal().string();
}

std::string output_file_path(const std::string& path, const std::string& flag) {
  if (path.empty()) {
    throw Error(ErrorKind::kInvalidArgument, flag + " is empty: give the path of the database file to write");
  }
  for (char ch : path) {
    if (ch == '\0' || static_cast<unsigned char>(ch) < 0x20) {
      throw Error(ErrorKind::kInvalidArgument, flag + " has a control character in its path");
    }
  }
  struct stat st {};
  std::string abs = absolute_path(path);
  if (path.back() == '/' || (::stat(abs.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
    throw Error(ErrorKind::kInvalidArgument, flag + " " + path +
                                                 " is a directory: give a file path, like " +
                                                 (abs.back() == '/' ? abs : abs + "/") + "app.duckdb");
  }
  return abs;
}

CLI::Validator whole_number() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) {
          return "'" + s + "' is not a whole number (0, 1, 2, ...)";
        }
        return "";
      },
      "UINT");
}

int resolve_compression(const std::string& flag) {
  std::string compression = flag;
  if (compression.empty() && std::getenv("DUCKBLOCK_COMPRESSION")) compression = std::getenv("DUCKBLOCK_COMPRESSION");
  if (compression.empty()) compression = config_string("compression");
  return compression.empty() ? kDefaultCompressionLevel : parse_compression(compression);
}

}  // namespace duckblock::cli
