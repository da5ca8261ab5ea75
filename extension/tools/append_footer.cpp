// Appends DuckDB's 512-byte extension metadata footer to a built extension
// (DuckDB 1.4: ParseExtensionMetaData in src/main/extension/extension_load.cpp
// reads the last 512 bytes as eight 32-byte NUL-padded fields, last first,
// then a 256-byte signature):
//   [0, 96)    unused (zeros)
//   [96, 128)  ABI type: "CPP" (the C++ API; versions must match exactly)
//   [128, 160) extension version
//   [160, 192) DuckDB version, e.g. "v1.4.4"
//   [192, 224) platform, e.g. "linux_amd64"
//   [224, 256) magic value "4"
//   [256, 512) signature: zeros (unsigned; the host must allow unsigned extensions)
// If the file already ends in a footer (a rerun without relinking), that
// footer is replaced rather than a second one appended.
//
// usage: append_footer FILE EXTENSION_VERSION DUCKDB_VERSION PLATFORM
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: append_footer FILE EXTENSION_VERSION DUCKDB_VERSION PLATFORM\n";
    return 2;
  }
  const std::string file = argv[1];
  std::vector<char> footer(512, 0);
  auto put = [&](size_t at, const std::string& v) {
    if (v.size() > 32) {
      std::cerr << "append_footer: '" << v << "' is longer than a 32-byte field\n";
      std::exit(2);
    }
    std::memcpy(footer.data() + at, v.data(), v.size());
  };
  put(96, "CPP");
  put(128, argv[2]);
  put(160, argv[3]);
  put(192, argv[4]);
  put(224, "4");

  std::error_code ec;
  auto size = std::filesystem::file_size(file, ec);
  if (ec) {
    std::cerr << "append_footer: " << file << ": " << ec.message() << "\n";
    return 1;
  }
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  if (!f) {
    std::cerr << "append_footer: cannot open " << file << "\n";
    return 1;
  }
  uint64_t at = size;
  if (size >= 512) {
    // An existing footer has "4" and 31 NULs at 224 of its last 512 bytes
    // and "CPP" at 96; an ELF file's own last bytes (section headers) do not.
    std::vector<char> tail(512);
    f.seekg(static_cast<std::streamoff>(size - 512));
    f.read(tail.data(), 512);
    bool has_footer = std::memcmp(tail.data() + 224, footer.data() + 224, 32) == 0 &&
                      std::memcmp(tail.data() + 96, footer.data() + 96, 32) == 0;
    if (has_footer) at = size - 512;
  }
  f.seekp(static_cast<std::streamoff>(at));
  f.write(footer.data(), static_cast<std::streamsize>(footer.size()));
  f.close();
  if (!f) {
    std::cerr << "append_footer: writing " << file << " failed\n";
    return 1;
  }
  return 0;
}
