// Golden vectors from the reference implementation (tests/data/hadbp, see its
// README): decode every field, re-encode byte for byte, apply the chains, and
// reject each corrupted file with an error that names the defect.
#include <fstream>
#include <nlohmann/json.hpp>

#include "duckblock/apply.h"
#include "duckblock/error.h"
#include "duckblock/format.h"
#include "test_util.h"

namespace duckblock {
namespace {

using nlohmann::json;

json manifest() {
  std::ifstream in(test::data_path("hadbp/manifest.json"));
  return json::parse(in);
}

std::vector<uint8_t> page_bytes(const json& page) {
  size_t len = page["len"].get<size_t>();
  if (page.contains("fill")) return test::fill_bytes(page["fill"].get<unsigned>(), len);
  auto src = read_file(test::data_path("hadbp/" + page["source"].get<std::string>()));
  size_t off = page["offset"].get<size_t>();
  return {src.begin() + off, src.begin() + off + len};
}

std::string file_sha(const std::string& path) {
  auto bytes = read_file(path);
  return to_hex(sha256(bytes));
}

TEST(FormatVectors, ValidFilesDecodeToTheManifest) {
  auto m = manifest();
  ASSERT_GE(m["valid"].size(), 10u);
  for (const auto& v : m["valid"]) {
    SCOPED_TRACE(v["file"].get<std::string>());
    auto bytes = read_file(test::data_path("hadbp/" + v["file"].get<std::string>()));
    EXPECT_EQ(bytes.size(), v["encoded_size"].get<size_t>());
    EXPECT_EQ(to_hex(sha256(bytes)), v["sha256"]);
    Segment s = decode_segment(bytes);
    EXPECT_EQ(s.header.seq, v["seq"].get<uint64_t>());
    EXPECT_EQ(checksum_hex(s.header.prev_checksum), v["prev_checksum"]);
    EXPECT_EQ(s.header.page_id_size, v["page_id_size"].get<int>());
    EXPECT_EQ(s.header.page_size, v["page_size"].get<uint32_t>());
    EXPECT_EQ(s.header.created_ms, v["created_ms"].get<int64_t>());
    EXPECT_EQ(s.header.flags, v["flags"].get<int>());
    EXPECT_EQ(s.header.page_count, v["page_count"].get<uint32_t>());
    EXPECT_EQ(checksum_hex(s.checksum), v["checksum"]);
    ASSERT_EQ(s.pages.size(), v["pages"].size());
    for (size_t i = 0; i < s.pages.size(); ++i) {
      EXPECT_EQ(s.pages[i].id, v["pages"][i]["id"].get<uint64_t>());
      EXPECT_EQ(s.pages[i].data, page_bytes(v["pages"][i]));
    }
  }
}

TEST(FormatVectors, EncodingTheInputsReproducesEachFileByteForByte) {
  auto m = manifest();
  for (const auto& v : m["valid"]) {
    SCOPED_TRACE(v["file"].get<std::string>());
    SegmentHeader h;
    h.seq = v["seq"].get<uint64_t>();
    h.prev_checksum = parse_checksum_hex(v["prev_checksum"]);
    h.page_id_size = v["page_id_size"].get<uint8_t>();
    h.page_size = v["page_size"].get<uint32_t>();
    h.created_ms = v["created_ms"].get<int64_t>();
    h.flags = v["flags"].get<uint8_t>();
    // Hand the pages over in the manifest's input order: the encoder sorts.
    std::vector<Page> pages;
    for (uint64_t id : v["pages_in_input_order"]) {
      for (const auto& p : v["pages"]) {
        if (p["id"].get<uint64_t>() == id) pages.push_back(Page{id, page_bytes(p)});
      }
    }
    uint64_t sum = 0;
    auto bytes = encode_segment(h, pages, &sum);
    EXPECT_EQ(to_hex(sha256(bytes)), v["sha256"]);
    EXPECT_EQ(checksum_hex(sum), v["checksum"]);
  }
}

TEST(FormatVectors, ChainsApplyToTheStatedResult) {
  auto m = manifest();
  ASSERT_FALSE(m["chains"].empty());
  for (const auto& c : m["chains"]) {
    test::TempDir dir;
    std::string target = dir / "out.bin";
    ChainPosition at{0, parse_checksum_hex(c["start_prev_checksum"])};
    ApplyOptions opt;
    opt.check_seq = false;
    for (const auto& f : c["files"]) {
      at = apply_segment(target, test::data_path("hadbp/" + f.get<std::string>()), at, opt).position;
    }
    EXPECT_EQ(checksum_hex(at.checksum), c["final_checksum"]);
    EXPECT_EQ(read_file(target).size(), c["result_size"].get<size_t>());
    EXPECT_EQ(file_sha(target), c["result_sha256"]);
  }
}

// What each invalid vector's error message must mention.
const std::map<std::string, std::string> kExpectedError = {
    {"bad_magic", "magic"},
    {"bad_version", "unsupported version: 2"},
    {"bad_id_size", "page_id_size: 5"},
    {"truncated_header", "truncated header"},
    {"truncated_page", "size mismatch"},
    {"trailing_bytes", "trailing bytes"},
    {"flipped_data_bit", "checksum mismatch"},
    {"flipped_checksum", "checksum mismatch"},
    {"page_too_large", "exceeds page size 4096"},
    {"huge_page_count", "4294967295 pages"},
    {"empty_file", "empty segment"},
};

TEST(FormatVectors, InvalidFilesAreRejectedWithAClearError) {
  auto m = manifest();
  ASSERT_EQ(m["invalid"].size(), kExpectedError.size());
  for (const auto& v : m["invalid"]) {
    std::string name = v["corruption"];
    SCOPED_TRACE(name);
    auto bytes = read_file(test::data_path("hadbp/" + v["file"].get<std::string>()));
    try {
      decode_segment(bytes);
      ADD_FAILURE() << "decoded without error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorruption);
      EXPECT_NE(std::string(e.what()).find(kExpectedError.at(name)), std::string::npos) << e.what();
    }
    // The streaming reader over a file gives the same verdict.
    FileSource src(test::data_path("hadbp/" + v["file"].get<std::string>()));
    EXPECT_ERROR_KIND(verify_segment(src), ErrorKind::kCorruption);
  }
}

TEST(FormatVectors, ApplyRefusesInvalidSegmentsWithoutWritingAByte) {
  auto m = manifest();
  for (const auto& v : m["invalid"]) {
    test::TempDir dir;
    std::string target = dir / "target.bin";
    std::vector<uint8_t> original(100000, 0x5a);
    write_file_atomic(target, original);
    ApplyOptions opt;
    opt.check_seq = false;
    EXPECT_THROW(apply_segment(target, test::data_path("hadbp/" + v["file"].get<std::string>()), {0, 0}, opt),
                 Error);
    EXPECT_EQ(read_file(target), original) << v["file"];
  }
}

}  // namespace
}  // namespace duckblock
