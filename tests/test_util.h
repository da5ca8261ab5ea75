#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/sha256.h"

namespace duckblock::test {

// A fresh directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "duckblock-test-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string data_path(const std::string& name) {
  return std::string(DUCKBLOCK_TEST_DATA) + "/" + name;
}

// Synthetic page content of the golden vectors' manifests:
// byte[i] = (fill + i % 251) & 0xff.
inline std::vector<uint8_t> fill_bytes(unsigned fill, size_t len) {
  std::vector<uint8_t> out(len);
  for (size_t i = 0; i < len; ++i) out[i] = static_cast<uint8_t>((fill + i % 251) & 0xff);
  return out;
}

}  // namespace duckblock::test

namespace duckblock::test {
// Compares two byte strings by digest, so a failure prints two short lines.
inline std::string digest_of(const std::vector<uint8_t>& v) {
  return to_hex(sha256(v)) + " (" + std::to_string(v.size()) + " bytes)";
}
}  // namespace duckblock::test

namespace duckblock::test {
// Fills page `page` (4 KiB) of `data` with `fill` and writes it in place
// into the file at `path`, as a database does: same inode, a reader holding
// the file open sees it.
inline void rewrite_page(const std::string& path, std::vector<uint8_t>& data, uint64_t page, uint8_t fill) {
  constexpr uint64_t kPage = 4096;
  std::fill(data.begin() + page * kPage, data.begin() + (page + 1) * kPage, fill);
  int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data() + page * kPage, kPage, off_t(page * kPage)), ssize_t(kPage));
  ::close(fd);
}
// Whether `f` throws a duckblock::Error of `kind`; the message says what
// it threw instead. Use EXPECT_ERROR_KIND.
template <class F>
::testing::AssertionResult throws_kind(F&& f, ErrorKind kind) {
  try {
    f();
  } catch (const Error& e) {
    if (e.kind() == kind) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "threw " << to_string(e.kind()) << " instead of " << to_string(kind)
                                         << ": " << e.what();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-duckblock exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "threw nothing, expected " << to_string(kind);
}

}  // namespace duckblock::test

// EXPECT_ERROR_KIND(statement, ErrorKind::kX) << "more context";
#define EXPECT_ERROR_KIND(stmt, kind) EXPECT_TRUE(::duckblock::test::throws_kind([&] { stmt; }, kind))

#include "duckblock/replicator.h"

namespace duckblock::test {
// A leader spooling into `spool_dir` that retries a failed upload after 5 ms.
inline ReplicatorOptions quick_leader_options(const std::string& spool_dir) {
  ReplicatorOptions o;
  o.spool_dir = spool_dir;
  o.retry_initial = std::chrono::milliseconds(5);
  return o;
}
}  // namespace duckblock::test
