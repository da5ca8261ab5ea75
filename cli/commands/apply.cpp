#include <sys/stat.h>

#include <iostream>
#include <optional>

#include "commands.h"
#include "common.h"
#include "duckblock/apply.h"
#include "duckblock/format.h"
#include "duckblock/io.h"

namespace duckblock::cli {

namespace {

// True if applying the segment leaves the file exactly its content: every
// page from 0 up to its file-length record. A snapshot is such a segment.
bool whole_file(const SegmentSummary& s) {
  if (!s.file_length || s.header.page_count == 0 || s.header.page_size == 0) return false;
  uint64_t pages = (*s.file_length + s.header.page_size - 1) / s.header.page_size;
  return s.header.page_count - 1 == pages;  // ids are strictly increasing, so these are 0..pages-1
}

SegmentSummary summary_of(const std::string& path) {
  FileSource src(path);
  return verify_segment(src);
}

}  // namespace

Runner add_apply(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "apply",
      "Apply segments to a file in order. Each segment is verified completely, and must\n"
      "continue the chain, before a byte of FILE is written.");
  auto file = std::make_shared<std::string>();
  auto segments = std::make_shared<std::vector<std::string>>();
  auto prev = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  cmd->add_option("FILE", *file, "File to apply to (created if missing)")->required();
  cmd->add_option("SEGMENT", *segments, "Segment files, applied in the order given")->required();
  cmd->add_option("--prev-checksum", *prev,
                  "Chain checksum FILE is at (16 hex digits). Default: 0 for a new file, or "
                  "the position recorded by an earlier apply");
  cmd->add_flag("--force", *force,
                "Apply to an existing FILE that no earlier apply or restore wrote (it has no FILE.duckblock)");
  cmd->footer(
      "Segments in store order work as they are: a snapshot, then the incrementals after it.\n"
      "Exit status: 0 applied, 2 bad usage, 3 corrupt or not chaining, 5 FILE exists and is not a replica\n"
      "(--force).");
  return [=]() {
    std::string path = output_file_path(*file, "FILE");
    std::optional<uint64_t> prev_checksum;
    if (!prev->empty()) {
      try {
        prev_checksum = parse_checksum_hex(*prev);
      } catch (const Error& e) {
        throw Error(ErrorKind::kInvalidArgument, "--prev-checksum: " + std::string(e.what()));
      }
    }
    ApplyOptions opt;
    opt.check_seq = false;  // loose mode: the checksum chain is what links segments
    std::string journal = path + ".duckblock";
    struct stat st {};
    bool has_journal = ::stat(journal.c_str(), &st) == 0;
    if (!has_journal && ::stat(path.c_str(), &st) == 0 && st.st_size > 0 && !*force) {
      throw Error(ErrorKind::kAlreadyExists,
                  *file + " exists and was not written by duckblock (no " + journal +
                      "): applying segments would overwrite it. Pass --force to apply to it anyway, or give a new FILE");
    }
    // A refused first segment must leave the journal as it was: a position
    // set from a wrong --prev-checksum would break the next apply.
    std::optional<std::vector<uint8_t>> journal_before;
    if (has_journal) journal_before = read_file(journal);
    Replica replica(path, opt);
    if (prev_checksum) replica.set_position({replica.position().seq, *prev_checksum}, replica.page_size());
    std::optional<SegmentSummary> last;
    size_t applied = 0;
    try {
      for (const auto& seg : *segments) {
        SegmentSummary s = summary_of(seg);
        // A snapshot at S carries the chain checksum at S in prev_checksum,
        // and the incremental S+1 continues from that, not from the
        // snapshot's own checksum. The file's bytes are the same either way,
        // so after a whole-file segment the position may be taken as the
        // snapshot's when the next segment says so.
        if (last && s.header.prev_checksum != replica.position().checksum && whole_file(*last) &&
            s.header.prev_checksum == last->header.prev_checksum && s.header.seq == last->header.seq + 1) {
          replica.set_position(snapshot_position(last->header), replica.page_size());
        }
        ApplyResult r = replica.apply(seg);
        ++applied;
        last = r.summary;
        std::cerr << "applied " << seg << ": seq " << r.summary.header.seq << ", " << r.pages_written << " pages, "
                  << r.bytes_written << " bytes\n";
      }
    } catch (const Error&) {
      // Only when nothing was written: no segment applied and none pending
      // (a pending one is finished from the journal on the next open).
      if (applied == 0 && ::stat(replica.pending_path().c_str(), &st) != 0) {
        if (journal_before) {
          write_file_atomic(journal, *journal_before);
        } else {
          ::unlink(journal.c_str());
        }
      }
      throw;
    }
    std::cout << checksum_hex(replica.position().checksum) << "\n";
    return kExitOk;
  };
}

}  // namespace duckblock::cli
