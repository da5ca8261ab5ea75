// Uses the installed library's public headers and a few of its parts (the
// format, a store, SHA-256), so a missing header, an unexported dependency or
// an unresolved symbol fails the install test.
#include <cstdio>
#include <vector>

#include <duckblock/error.h>
#include <duckblock/format.h>
#include <duckblock/key.h>
#include <duckblock/store.h>

int main() {
  using namespace duckblock;
  SegmentHeader h;
  h.page_size = 4096;
  h.seq = 1;
  std::vector<Page> pages{{3, std::vector<uint8_t>(4096, 0xab)}, {1, std::vector<uint8_t>(100, 1)}};
  uint64_t checksum = 0;
  std::vector<uint8_t> bytes = encode_segment(h, pages, &checksum);

  auto store = make_memory_store();
  std::string key = format_key("", SegmentKey{"db", kIncrementalGeneration, 1});
  put_bytes(*store, key, bytes);
  Segment s = decode_segment(get_bytes(*store, key));
  if (s.checksum != checksum || s.pages.size() != 2 || s.pages[0].id != 1) {
    std::fprintf(stderr, "consumer: round trip through the installed library failed\n");
    return 1;
  }
  try {
    std::vector<uint8_t> broken(bytes);
    broken[50] ^= 1;
    decode_segment(broken);
    std::fprintf(stderr, "consumer: a corrupt segment was accepted\n");
    return 1;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kCorruption) return 1;
  }
  std::printf("consumer: ok, %s %s\n", key.c_str(), checksum_hex(checksum).c_str());
  return 0;
}
