// Turns an s3:// URL, StoreOptions, the standard AWS environment variables
// and the shared credentials/config files into an S3Config. Error messages
// name where a setting was looked for and never include a secret.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>

#include "duckblock/error.h"
#include "s3_store.h"

namespace duckblock::s3 {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

using Ini = std::map<std::string, std::map<std::string, std::string>>;

// The AWS shared files are INI: "[section]" then "key = value" lines.
std::optional<Ini> read_ini(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  Ini ini;
  std::string line, section;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(line.substr(0, eq));
    for (char& c : key) c = char(std::tolower(static_cast<unsigned char>(c)));
    ini[section][key] = trim(line.substr(eq + 1));
  }
  return ini;
}

std::string home_file(const char* env_name, const char* rel) {
  if (auto p = env(env_name)) return *p;
  if (auto home = env("HOME")) return *home + "/.aws/" + rel;
  return std::string("~/.aws/") + rel;
}

bool valid_bucket(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return std::isalnum(static_cast<unsigned char>(b.front())) && std::isalnum(static_cast<unsigned char>(b.back()));
}

// The first control byte (CR, LF, NUL, DEL, ...) in `s`, if any. Such a byte
// in a value that becomes part of a request header would end the header
// there and let the rest be read as another header (header injection).
std::optional<unsigned char> control_byte(const std::string& s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return c;
  }
  return std::nullopt;
}

std::string describe_byte(unsigned char c) {
  char buf[48];
  const char* name = c == '\r' ? " (CR)" : c == '\n' ? " (LF)" : c == '\t' ? " (TAB)" : c == 0 ? " (NUL)" : "";
  std::snprintf(buf, sizeof buf, "byte 0x%02x%s", c, name);
  return buf;
}

// Refuses a credential with a control byte. The message names where the
// value came from, never the value.
void check_secret(const std::string& value, const std::string& what) {
  if (auto c = control_byte(value)) {
    throw Error(ErrorKind::kInvalidArgument,
                "S3 credentials: " + what + " contains a control character (" + describe_byte(*c) +
                    "), which would break the request's headers; the value is not shown. Set it again without "
                    "line breaks or other control characters");
  }
}

void check_setting(const std::string& value, const std::string& what) {
  if (auto c = control_byte(value)) {
    throw Error(ErrorKind::kInvalidArgument,
                "S3 " + what + " contains a control character (" + describe_byte(*c) + "): remove it");
  }
}

Credentials credentials_from_profile(const std::string& profile, bool explicit_profile) {
  std::string path = home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
  auto ini = read_ini(path);
  const std::map<std::string, std::string>* sec = nullptr;
  if (ini) {
    auto it = ini->find(profile);
    if (it != ini->end()) sec = &it->second;
  }
  if (!sec) {
    if (explicit_profile) {
      throw Error(ErrorKind::kAuth, "S3 credentials: profile '" + profile + "' not found in " + path +
                                        (ini ? "" : " (the file cannot be read)"));
    }
    throw Error(ErrorKind::kAuth,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a [" + profile +
                    "] profile with aws_access_key_id and aws_secret_access_key to " + path);
  }
  Credentials c;
  c.source = "profile '" + profile + "' in " + path;
  auto get = [&](const char* k) {
    auto it = sec->find(k);
    return it == sec->end() ? std::string() : it->second;
  };
  c.access_key_id = get("aws_access_key_id");
  c.secret_access_key = get("aws_secret_access_key");
  c.session_token = get("aws_session_token");
  check_secret(c.access_key_id, "aws_access_key_id in " + c.source);
  check_secret(c.secret_access_key, "aws_secret_access_key in " + c.source);
  check_secret(c.session_token, "aws_session_token in " + c.source);
  if (c.access_key_id.empty()) throw Error(ErrorKind::kAuth, "S3 credentials: " + c.source + " has no aws_access_key_id");
  if (c.secret_access_key.empty()) {
    throw Error(ErrorKind::kAuth, "S3 credentials: " + c.source + " has no aws_secret_access_key");
  }
  return c;
}

// The bucket and prefix of an s3:// URL into `c`, refused with
// kInvalidArgument where a server could read them otherwise.
void parse_s3_url(const std::string& url, S3Config& c) {
  std::string shown = url;  // control characters would forge lines in logs
  for (char& ch : shown) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  }
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::kInvalidArgument, "bad S3 URL '" + shown + "': " + why +
                                                  " (expected s3://bucket/prefix/)");
  };
  if (url.rfind("s3://", 0) != 0) throw bad("it does not start with s3://");
  std::string rest = url.substr(5);
  if (rest.find_first_of("?#") != std::string::npos) throw bad("query strings and fragments are not supported");
  size_t slash = rest.find('/');
  c.bucket = rest.substr(0, slash);
  c.prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (c.bucket.empty()) throw bad("no bucket name");
  if (!valid_bucket(c.bucket)) {
    throw bad("'" + c.bucket + "' is not a valid bucket name (3-63 characters: a-z 0-9 . -)");
  }
  if (!c.prefix.empty() && c.prefix.back() != '/') c.prefix += '/';
  if (!c.prefix.empty() && (c.prefix.front() == '/' || c.prefix.find("//") != std::string::npos)) {
    throw bad("empty path segment in the prefix");
  }
  // "." and ".." are resolved away by servers and proxies that normalise
  // paths: s3://bucket/../other/ would then write into bucket "other".
  for (size_t start = 0; start < c.prefix.size();) {
    size_t end = c.prefix.find('/', start);
    std::string seg = c.prefix.substr(start, end - start);
    if (seg == "." || seg == "..") throw bad("'" + seg + "' is not allowed as a path segment in the prefix");
    start = end + 1;
  }
  if (auto b = control_byte(c.prefix)) throw bad("the prefix contains a control character (" + describe_byte(*b) + ")");
  c.url = "s3://" + c.bucket + "/" + c.prefix;
}

// Credentials: those the program gives; then an explicitly chosen profile;
// then the environment; then the profile from the shared credentials file.
Credentials resolve_credentials(const StoreOptions& options, const std::string& profile_name, bool explicit_profile) {
  Credentials out;
  auto key = env("AWS_ACCESS_KEY_ID");
  auto secret = env("AWS_SECRET_ACCESS_KEY");
  if (options.credentials) {
    out.access_key_id = options.credentials->access_key_id;
    out.secret_access_key = options.credentials->secret_access_key;
    out.session_token = options.credentials->session_token;
    out.source = options.credentials->source;
  } else if (options.profile) {
    out = credentials_from_profile(profile_name, true);
  } else if (key || secret) {
    if (!key) throw Error(ErrorKind::kAuth, "S3 credentials: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
    if (!secret) throw Error(ErrorKind::kAuth, "S3 credentials: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    out.access_key_id = *key;
    out.secret_access_key = *secret;
    out.session_token = env("AWS_SESSION_TOKEN").value_or("");
    out.source = "the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)";
    check_secret(out.access_key_id, "AWS_ACCESS_KEY_ID");
    check_secret(out.secret_access_key, "AWS_SECRET_ACCESS_KEY");
    check_secret(out.session_token, "AWS_SESSION_TOKEN");
  } else {
    out = credentials_from_profile(profile_name, explicit_profile);
  }
  return out;
}

// Region: option, environment, then the profile in the config file.
std::string resolve_region(const StoreOptions& options, const std::string& profile_name) {
  std::string region;
  if (options.region) {
    region = *options.region;
  } else if (auto r = env("AWS_REGION")) {
    region = *r;
  } else if (auto r2 = env("AWS_DEFAULT_REGION")) {
    region = *r2;
  } else if (auto ini = read_ini(home_file("AWS_CONFIG_FILE", "config"))) {
    std::string section = profile_name == "default" ? "default" : "profile " + profile_name;
    auto it = ini->find(section);
    if (it != ini->end() && it->second.count("region")) region = it->second.at("region");
  }
  if (region.empty()) region = "us-east-1";
  check_setting(region, "region");
  // The region goes into the request's host name and signature.
  for (char ch : region) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') {
      throw Error(ErrorKind::kInvalidArgument,
                  "bad S3 region '" + region + "': use letters, digits and '-' (like eu-west-1)");
    }
  }
  return region;
}

// Endpoint: option, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS's; and
// what follows from it (path style, download streams).
void resolve_endpoint(const StoreOptions& options, S3Config& c) {
  std::optional<std::string> endpoint = options.endpoint;
  if (!endpoint) endpoint = env("AWS_ENDPOINT_URL_S3");
  if (!endpoint) endpoint = env("AWS_ENDPOINT_URL");
  bool custom = endpoint.has_value();
  c.endpoint = endpoint.value_or("https://s3." + c.region + ".amazonaws.com");
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
  check_setting(c.endpoint, "endpoint");
  bool http = c.endpoint.rfind("http://", 0) == 0, https = c.endpoint.rfind("https://", 0) == 0;
  std::string host_part = c.endpoint.substr(c.endpoint.find("://") == std::string::npos ? 0 : c.endpoint.find("://") + 3);
  // Only a host and a port: no user info ("user@host"), path or spaces.
  bool odd_char = host_part.find_first_not_of(
                      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") != std::string::npos;
  if ((!http && !https) || host_part.empty() || host_part.find('/') != std::string::npos || odd_char) {
    throw Error(ErrorKind::kInvalidArgument,
                "bad S3 endpoint '" + c.endpoint + "': expected http://host[:port] or https://host[:port]");
  }
  // S3-compatible servers (MinIO, local test servers) usually want path
  // style; AWS prefers virtual-host style.
  c.path_style = options.path_style.value_or(custom);
  // Parallel ranged GETs pay off when one connection cannot fill the link
  // (any remote S3). A server on this machine is bound by CPU instead, and
  // extra streams only compete with it for the same cores: on the 2-core
  // benchmark machine a single stream from s3rver ran at 1.16x curl, 2 to 4
  // streams at 0.4-0.8x. So loopback endpoints read with one stream.
  std::string host = host_part.substr(0, host_part.rfind(':') == std::string::npos ? host_part.size()
                                                                                   : host_part.rfind(':'));
  if (host == "127.0.0.1" || host == "localhost" || host == "[::1]") c.download_concurrency = 1;
}

// A whole number from 1 to `max` in environment variable `name`, if set;
// anything else is Error(kInvalidArgument) that says what it counts.
std::optional<int> count_from_env(const char* name, unsigned long max, const std::string& what) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  std::string s = v;
  if (s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos || std::stoul(s) == 0 ||
      std::stoul(s) > max) {
    throw Error(ErrorKind::kInvalidArgument, std::string(name) + " is '" + s + "': give " + what);
  }
  return static_cast<int>(std::stoul(s));
}

// Settings read from the environment only.
void read_tunables(S3Config& c) {
  // The AWS SDKs' retry budget setting: attempts per request, first included.
  if (auto n = count_from_env("AWS_MAX_ATTEMPTS", 999999999, "a whole number of attempts, 1 or more")) {
    c.max_attempts = *n;
  }
  // Parallel ranged GETs per download; overrides the loopback default of 1.
  if (auto n = count_from_env("DUCKBLOCK_S3_DOWNLOAD_STREAMS", 32, "the number of parallel ranged GETs, 1 to 32")) {
    c.download_concurrency = *n;
  }
  if (const char* mode = std::getenv("DUCKBLOCK_S3_CONDITIONAL_PUT")) {
    std::string m = mode;
    if (m == "trust") c.conditional_put = ConditionalPut::kTrust;
    else if (m == "head-check") c.conditional_put = ConditionalPut::kHeadCheck;
    else if (m == "auto" || m.empty()) c.conditional_put = ConditionalPut::kAuto;
    else throw Error(ErrorKind::kInvalidArgument, "DUCKBLOCK_S3_CONDITIONAL_PUT must be auto, trust or head-check");
  }
}

}  // namespace

S3Config s3_config_from_url(const std::string& url, const StoreOptions& options) {
  S3Config c;
  parse_s3_url(url, c);
  // Profile: the option, else AWS_PROFILE, else "default".
  std::optional<std::string> profile = options.profile;
  bool explicit_profile = profile.has_value();
  if (!profile) {
    profile = env("AWS_PROFILE");
    explicit_profile = profile.has_value();
  }
  const std::string profile_name = profile.value_or("default");
  c.credentials = resolve_credentials(options, profile_name, explicit_profile);
  c.region = resolve_region(options, profile_name);
  resolve_endpoint(options, c);
  c.verify_tls = options.verify_tls;
  read_tunables(c);
  return c;
}

}  // namespace duckblock::s3
