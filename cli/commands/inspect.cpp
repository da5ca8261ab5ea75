#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/format.h"

namespace duckblock::cli {

Runner add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Decode and verify a segment file; print its header and pages");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto max_pages = std::make_shared<size_t>(50);
  cmd->add_option("SEGMENT", *path, "Segment file (.hadbp)")->required();
  cmd->add_flag("--json", *json, "Print JSON (every page listed)");
  cmd->add_option("--max-pages", *max_pages, "Pages to list in text output (0: all)")
      ->check(whole_number())
      ->capture_default_str();
  cmd->footer("Exit status: 0 valid, 3 corrupt, 4 not found.");
  return [=]() {
    FileSource src(*path);
    SegmentReader reader(src);
    const auto& h = reader.header();
    nlohmann::json pages = nlohmann::json::array();
    std::optional<uint64_t> file_length;
    uint64_t data_bytes = 0, count = 0;
    std::string text_pages;
    PageView p;
    while (reader.next(p)) {
      // A file-length record of any other size than 8 is corrupt: apply
      // refuses it, so inspect must not call the segment valid.
      bool is_len = p.id == kFileLengthPageId;
      if (is_len) file_length = decode_file_length(p.data);
      data_bytes += p.data.size();
      if (*json) {
        pages.push_back({{"id", p.id}, {"len", p.data.size()}, {"file_length_record", is_len}});
      } else if (*max_pages == 0 || count < *max_pages) {
        text_pages += "  page " + std::to_string(p.id) + "  " + std::to_string(p.data.size()) +
                      " bytes" + (is_len ? "  (file length " + std::to_string(*file_length) + ")" : "") + "\n";
      }
      ++count;
    }
    if (*json) {
      nlohmann::json j = {{"version", 1},
                          {"flags", h.flags},
                          {"page_id_size", h.page_id_size},
                          {"page_size", h.page_size},
                          {"seq", h.seq},
                          {"prev_checksum", checksum_hex(h.prev_checksum)},
                          {"page_count", h.page_count},
                          {"created_ms", h.created_ms},
                          {"checksum", checksum_hex(reader.checksum())},
                          {"encoded_size", reader.bytes_read()},
                          {"data_bytes", data_bytes},
                          {"valid", true},
                          {"pages", pages}};
      if (file_length) j["file_length"] = *file_length;
      std::cout << j.dump(2) << "\n";
      return kExitOk;
    }
    std::cout << "segment       " << *path << " (valid)\n"
              << "seq           " << h.seq << "\n"
              << "prev_checksum " << checksum_hex(h.prev_checksum) << "\n"
              << "checksum      " << checksum_hex(reader.checksum()) << "\n"
              << "page_size     " << h.page_size << "\n"
              << "page_id_size  " << int(h.page_id_size) << "\n"
              << "flags         " << int(h.flags) << "\n"
              << "created_ms    " << h.created_ms << "\n"
              << "page_count    " << h.page_count << "\n"
              << "encoded_size  " << reader.bytes_read() << "\n"
              << "data_bytes    " << data_bytes << "\n";
    if (file_length) std::cout << "file_length   " << *file_length << "\n";
    std::cout << "pages:\n" << text_pages;
    if (*max_pages && count > *max_pages) {
      std::cout << "  ... " << (count - *max_pages) << " more (use --max-pages 0 or --json)\n";
    }
    return kExitOk;
  };
}

}  // namespace duckblock::cli
