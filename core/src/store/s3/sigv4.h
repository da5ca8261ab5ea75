// AWS Signature Version 4 for S3 requests, as a pure function: the caller
// passes the time, so the same inputs always give the same signature and the
// signer can be checked against AWS's published worked examples.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace duckblock::s3 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
  std::string source;         // where they came from, for error messages (never the values)
};

using KeyValues = std::vector<std::pair<std::string, std::string>>;

struct SigningInput {
  std::string method;         // GET, PUT, ...
  std::string canonical_uri;  // the path exactly as sent: already URI-encoded, starting with '/'
  KeyValues query;            // raw (not encoded) names and values; order does not matter
  KeyValues headers;          // every header to sign; must include host and x-amz-date
  std::string payload_hash;   // hex SHA-256 of the body, or UNSIGNED-PAYLOAD
};

struct SigningResult {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-date"
  std::string signature;       // hex
  std::string authorization;   // the Authorization header's value
};

// amz_date is the request time as "YYYYMMDDTHHMMSSZ" (the x-amz-date value).
SigningResult sign_v4(const SigningInput& in, const Credentials& creds, std::string_view region,
                      std::string_view service, std::string_view amz_date);

// "YYYYMMDDTHHMMSSZ" in UTC.
std::string amz_date(std::chrono::system_clock::time_point t);

// RFC 3986 percent-encoding as SigV4 wants it: everything but A-Z a-z 0-9
// - . _ ~ is encoded; '/' is kept when encode_slash is false (object paths).
std::string uri_encode(std::string_view s, bool encode_slash);

// The canonical query string: names and values encoded, sorted by name then value.
std::string canonical_query(const KeyValues& query);

std::string sha256_hex(std::span<const uint8_t> data);
inline std::string sha256_hex(std::string_view s) {
  return sha256_hex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}
std::string hex(std::span<const uint8_t> data);
std::string base64(std::span<const uint8_t> data);
std::vector<uint8_t> md5(std::span<const uint8_t> data);

constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kUnsignedPayload = "UNSIGNED-PAYLOAD";

}  // namespace duckblock::s3
