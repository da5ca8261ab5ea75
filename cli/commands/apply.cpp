#include <iostream>

#include "commands.h"
#include "duckblock/apply.h"
#include "duckblock/format.h"

namespace duckblock::cli {

Runner add_apply(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "apply",
      "Apply segments to a file in order. Each segment is verified completely, and must\n"
      "continue the chain, before a byte of FILE is written.");
  auto file = std::make_shared<std::string>();
  auto segments = std::make_shared<std::vector<std::string>>();
  auto prev = std::make_shared<std::string>();
  cmd->add_option("FILE", *file, "File to apply to (created if missing)")->required();
  cmd->add_option("SEGMENT", *segments, "Segment files, applied in the order given")->required();
  cmd->add_option("--prev-checksum", *prev,
                  "Chain checksum FILE is at (16 hex digits). Default: 0 for a new file, or "
                  "the position recorded by an earlier apply");
  cmd->footer("Prints the final chain checksum. Exit status: 0 applied, 3 corrupt or not chaining.");
  return [=]() {
    ApplyOptions opt;
    opt.check_seq = false;  // loose mode: the checksum chain is what links segments
    Replica replica(*file, opt);
    if (!prev->empty()) replica.set_position({replica.position().seq, parse_checksum_hex(*prev)}, replica.page_size());
    for (const auto& seg : *segments) {
      ApplyResult r = replica.apply(seg);
      std::cerr << "applied " << seg << ": seq " << r.summary.header.seq << ", "
                << r.pages_written << " pages, " << r.bytes_written << " bytes\n";
    }
    std::cout << checksum_hex(replica.position().checksum) << "\n";
    return kExitOk;
  };
}

}  // namespace duckblock::cli
