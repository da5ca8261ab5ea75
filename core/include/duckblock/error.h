// Errors in duckblock are exceptions that carry a kind, so callers can branch
// on what went wrong (retry, stop following, report a fenced leader) while the
// message says what to do about it. Programmer errors are assertions, not
// Errors.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace duckblock {

enum class ErrorKind {
  kNotFound,         // the object, file or database does not exist
  kAlreadyExists,    // put-if-absent found the key taken
  kFenced,           // a sequence number was already written by another leader
  kCorruption,       // bytes do not decode or do not match their checksum
  kChainBroken,      // a segment does not continue the chain it is applied to
  kIO,               // the local file system failed (disk full, permission, ...)
  kInvalidArgument,  // bad input from the user: URL, name, option
  kAuth,             // missing or rejected credentials
  kRetryable,        // a transient failure that retries did not overcome
  kUnsupported,      // valid input this build cannot handle
  kRemote,           // the store answered with a non-retryable error
  kLocked,           // another writer holds the spool (a second push on it)
};

std::string_view to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Throws Error(kIO, "<what>: <strerror(errno)>"), keeping errno's meaning.
[[noreturn]] void throw_errno(const std::string& what);
[[noreturn]] void throw_errno(const std::string& what, int err);

// Invariants that hold unless the code is wrong. Checked in every build
// (they are cheap); a failure prints the condition and aborts, because
// continuing could ship or apply wrong bytes.
[[noreturn]] void assert_failed(const char* condition, const char* file, int line);
#define DUCKBLOCK_ASSERT(cond) ((cond) ? void(0) : ::duckblock::assert_failed(#cond, __FILE__, __LINE__))

}  // namespace duckblock
