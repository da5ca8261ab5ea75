#include "duckblock/error.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace duckblock {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNotFound: return "not-found";
    case ErrorKind::kAlreadyExists: return "already-exists";
    case ErrorKind::kFenced: return "fenced";
    case ErrorKind::kCorruption: return "corruption";
    case ErrorKind::kChainBroken: return "chain-broken";
    case ErrorKind::kIO: return "io";
    case ErrorKind::kInvalidArgument: return "invalid-argument";
    case ErrorKind::kAuth: return "auth";
    case ErrorKind::kRetryable: return "retryable";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kRemote: return "remote";
    case ErrorKind::kLocked: return "locked";
  }
  return "unknown";
}

void throw_errno(const std::string& what, int err) {
  ErrorKind kind = err == ENOENT ? ErrorKind::kNotFound : ErrorKind::kIO;
  std::string hint;
  if (err == ENOSPC || err == EDQUOT) hint = " (the disk is full: free space and retry)";
  if (err == EACCES || err == EPERM) hint = " (check the file's permissions)";
  throw Error(kind, what + ": " + std::strerror(err) + hint);
}

void throw_errno(const std::string& what) { throw_errno(what, errno); }

}  // namespace duckblock

namespace duckblock {

void assert_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "duckblock: internal invariant failed: %s (%s:%d)\n", condition, file, line);
  std::abort();
}

}  // namespace duckblock
