#include "duckblock/compact.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <queue>
#include <thread>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/temp_files.h"

namespace duckblock {

namespace {

// One input being merged: its reader and current page. Errors name the input.
struct Stream {
  std::string label;
  std::unique_ptr<FileSource> src;
  std::unique_ptr<SegmentReader> reader;
  PageView page;
  bool has = false;

  // Moves to the next data page (the length record, always last, is not one).
  void advance() {
    try {
      has = reader->next(page) && page.id != kFileLengthPageId;
    } catch (const Error& e) {
      throw Error(e.kind(), label + ": " + e.what());
    }
  }
  // Reads the rest, so the trailer is verified too.
  uint64_t drain() {
    try {
      while (reader->next(page)) {
      }
    } catch (const Error& e) {
      throw Error(e.kind(), label + ": " + e.what());
    }
    has = false;
    return reader->checksum();
  }
};

// Removes the files it holds when it goes out of scope.
struct TempFiles {
  std::vector<std::string> paths;
  ~TempFiles() {
    for (const auto& p : paths) ::unlink(p.c_str());
  }
};

// Writes the compressed segment `in` to `path` as plain hadbp v1: the same
// header but for the flags, the same pages, hence the same checksum (it is
// over the uncompressed records). A stream merged from the copy then holds a
// read buffer instead of a zstd window (2 MiB at the default level, up to
// 8 MiB): with one per input, 100 incrementals of a few MiB each held over
// 200 MiB during a merge. The copy is a temp file, not made durable.
void decode_to_plain(const CompactInput& in, const std::string& path, const std::string& label) {
  try {
    FileSource src(in.path);
    SegmentReader reader(src);
    SegmentHeader h = reader.header();
    h.flags = 0;
    FileSink sink(path, 0600);
    SegmentWriter w(sink, h, 0);
    PageView page;
    while (reader.next(page)) w.add_page(page.id, page.data);
    if (w.finish() != in.summary.checksum) {
      throw Error(ErrorKind::kCorruption,
                  "changed while it was being compacted (checksum differs from the verified one)");
    }
    sink.close();
  } catch (const Error& e) {
    throw Error(e.kind(), label + ": " + e.what());
  }
}

bool base_skippable(ErrorKind k) {
  return k == ErrorKind::kCorruption || k == ErrorKind::kChainBroken || k == ErrorKind::kNotFound;
}

}  // namespace

uint64_t compact_chain_at_base(const SegmentSummary& base, const ChainIdentity& id) {
  if (base.header.seq > 0) return base.header.prev_checksum;
  if (base.header.prev_checksum != 0) {
    throw Error(ErrorKind::kChainBroken, "the seq-0 snapshot names prev_checksum " +
                                             checksum_hex(base.header.prev_checksum) +
                                             " instead of 0: it is an incremental or another chain's snapshot");
  }
  if (id.convention == 1) return 0;
  if (base.checksum != id.base_checksum) {
    throw Error(ErrorKind::kChainBroken, "the seq-0 snapshot's checksum " + checksum_hex(base.checksum) +
                                             " is not the chain's base checksum " + checksum_hex(id.base_checksum) +
                                             " (from chain.json): another database's or chain's snapshot");
  }
  return base.checksum;
}

namespace {

// Each incremental continues the one before, the first one the base
// snapshot (its binding). Returns the chain checksum after the last.
uint64_t check_chain(const CompactInput& base, const std::vector<CompactInput>& incrementals, uint64_t chain_at_base) {
  const SegmentHeader& bh = base.summary.header;
  uint64_t chain = chain_at_base;
  for (size_t i = 0; i < incrementals.size(); ++i) {
    const SegmentHeader& h = incrementals[i].summary.header;
    const uint64_t want = bh.seq + 1 + i;
    if (h.seq != want) {
      throw Error(ErrorKind::kChainBroken, incrementals[i].path + " holds seq " + std::to_string(h.seq) +
                                               " where the chain needs seq " + std::to_string(want));
    }
    if (h.prev_checksum != chain) {
      throw Error(ErrorKind::kChainBroken, "incremental seq " + std::to_string(h.seq) + " names chain checksum " +
                                               checksum_hex(h.prev_checksum) + " but the chain's at seq " +
                                               std::to_string(want - 1) + " is " + checksum_hex(chain) +
                                               (i == 0 ? " (the snapshot at seq " + std::to_string(bh.seq) +
                                                             " does not belong to this chain)"
                                                       : ""));
    }
    if (h.page_size != bh.page_size) {
      throw Error(ErrorKind::kCorruption, "incremental seq " + std::to_string(h.seq) + " has page size " +
                                              std::to_string(h.page_size) + ", the snapshot " +
                                              std::to_string(bh.page_size));
    }
    chain = incrementals[i].summary.checksum;
  }
  return chain;
}

// The file's length after each step, as an applier sets it: pages extend the
// file, a length record sets it. Records are kept as (step, length): a page
// keeps only the bytes below every record after its last write.
struct Lengths {
  std::vector<std::pair<size_t, uint64_t>> records;
  uint64_t final_length = 0;
};
Lengths lengths_of(const CompactInput& base, const std::vector<CompactInput>& incrementals) {
  Lengths out;
  uint64_t length = base.summary.file_length.value_or(base.summary.data_end);
  if (base.summary.file_length) out.records.emplace_back(0, *base.summary.file_length);
  for (size_t i = 0; i < incrementals.size(); ++i) {
    const SegmentSummary& s = incrementals[i].summary;
    if (s.file_length) {
      length = *s.file_length;
      out.records.emplace_back(i + 1, *s.file_length);
    } else {
      length = std::max(length, s.data_end);
    }
  }
  out.final_length = length;
  return out;
}

void open_stream(Stream& s, const CompactInput& in, const std::string& what) {
  s.label = what + " (" + in.path + ")";
  s.src = std::make_unique<FileSource>(in.path);
  try {
    s.reader = std::make_unique<SegmentReader>(*s.src);
  } catch (const Error& e) {
    throw Error(e.kind(), s.label + ": " + e.what());
  }
  s.advance();
}

// Page `p` as an applier leaves it, into buf; returns its length. `writers`
// are the inputs that write it, in chain order. Writes overlay the bytes
// before them; a record after a write cuts the page (shrink) or extends it
// with zeros (growth); the file's final length bounds it. Records before the
// first write change nothing but the page's length, which the final length
// decides (the bytes are zeros either way).
size_t overlay_page(uint64_t p, uint32_t ps, const std::vector<size_t>& writers, const std::vector<Stream>& streams,
                    const Lengths& lengths, std::vector<uint8_t>& buf) {
  const uint64_t start = p * ps;
  size_t len = 0;
  auto set_length = [&](uint64_t file_len) {
    size_t n = file_len <= start ? 0 : static_cast<size_t>(std::min<uint64_t>(ps, file_len - start));
    if (n > len) std::memset(buf.data() + len, 0, n - len);
    len = n;
  };
  const auto& records = lengths.records;
  size_t r = 0;
  bool written = false;
  for (size_t i : writers) {
    for (; r < records.size() && records[r].first < i; ++r) {
      if (written) set_length(records[r].second);
    }
    const auto& d = streams[i].page.data;
    std::memcpy(buf.data(), d.data(), d.size());
    len = std::max(len, d.size());
    written = true;
  }
  for (; written && r < records.size(); ++r) set_length(records[r].second);
  set_length(lengths.final_length);
  return len;
}

// The k-way merge by page id of the opened streams into `w`: every page of
// the result, in order. Inputs are in chain order, so among equal ids the
// larger input index is newer.
void merge_into(std::vector<Stream>& streams, const Lengths& lengths, uint32_t ps, uint64_t page_count,
                uint64_t seq, SegmentWriter& w, const CompactOptions& options) {
  using Head = std::pair<uint64_t, size_t>;
  std::priority_queue<Head, std::vector<Head>, std::greater<Head>> heap;
  for (size_t i = 0; i < streams.size(); ++i) {
    if (streams[i].has) heap.emplace(streams[i].page.id, i);
  }
  std::vector<uint8_t> buf(ps);
  std::vector<size_t> writers;
  CompactProgress progress{0, page_count, ps};
  for (uint64_t p = 0; p < page_count; ++p) {
    if ((p & 4095) == 0) {
      if (options.cancelled && options.cancelled()) {
        throw Error(ErrorKind::kRetryable, "compaction of seq " + std::to_string(seq) + " was cancelled");
      }
      if (options.progress && p > 0) {
        progress.pages_done = p;
        options.progress(progress);
      }
    }
    writers.clear();
    while (!heap.empty() && heap.top().first == p) {
      writers.push_back(heap.top().second);
      heap.pop();
    }
    std::sort(writers.begin(), writers.end());
    size_t len = overlay_page(p, ps, writers, streams, lengths, buf);
    w.add_page(p, std::span<const uint8_t>(buf.data(), len));
    for (size_t i : writers) {
      streams[i].advance();
      if (!streams[i].has) continue;
      if (streams[i].page.id <= p) throw Error(ErrorKind::kCorruption, streams[i].label + ": page ids not ascending");
      heap.emplace(streams[i].page.id, i);
    }
  }
}

// One stream per input: the base snapshot, then the incrementals. Only the
// base streams compressed: each compressed incremental is decoded first,
// one at a time, into a plain copy beside the output, so the merge holds
// one zstd window however many incrementals it reads.
void open_inputs(std::vector<Stream>& streams, const CompactInput& base, const std::vector<CompactInput>& incrementals,
                 const std::string& dir, const std::string& temp_prefix, TempFiles& plain_copies) {
  const uint64_t base_seq = base.summary.header.seq;
  open_stream(streams[0], base, "snapshot seq " + std::to_string(base_seq));
  for (size_t i = 0; i < incrementals.size(); ++i) {
    std::string label = "incremental seq " + std::to_string(base_seq + 1 + i);
    CompactInput in = incrementals[i];
    if (in.summary.header.flags & kFlagCompressed) {
      in.path = dir + "/" + temp_file_name(temp_prefix, "plain-" + std::to_string(base_seq + 1 + i));
      plain_copies.paths.push_back(in.path);
      decode_to_plain(incrementals[i], in.path, label + " (" + incrementals[i].path + ")");
    }
    open_stream(streams[i + 1], in, label);
  }
}

}  // namespace

CompactResult compact_segments(const CompactInput& base, const std::vector<CompactInput>& incrementals,
                               uint64_t chain_at_base, const std::string& out_path, const std::string& temp_prefix,
                               const CompactOptions& options) {
  const SegmentHeader& bh = base.summary.header;
  if (incrementals.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                "nothing to compact: no incremental after the snapshot at seq " + std::to_string(bh.seq));
  }
  const uint32_t ps = bh.page_size;
  const uint64_t seq = bh.seq + incrementals.size();
  // The chain, before anything is written.
  const uint64_t chain = check_chain(base, incrementals, chain_at_base);
  const Lengths lengths = lengths_of(base, incrementals);
  if (lengths.final_length > uint64_t{INT64_MAX}) {  // decode_file_length refuses it; a summary could carry it
    throw Error(ErrorKind::kCorruption, "the chain's file length " + std::to_string(lengths.final_length) +
                                            " is beyond any possible file offset");
  }
  const uint64_t page_count = (lengths.final_length + ps - 1) / ps;
  if (page_count > UINT32_MAX) {
    throw Error(ErrorKind::kUnsupported, "a snapshot of " + std::to_string(lengths.final_length) +
                                             " bytes in pages of " + std::to_string(ps) +
                                             " has more pages than a segment holds");
  }

  std::vector<Stream> streams(1 + incrementals.size());
  const std::string dir = dirname_of(out_path);
  const std::string tmp = dir + "/" + temp_file_name(temp_prefix, "out-" + std::to_string(seq));
  TempFiles plain_copies;
  CompactResult result;
  result.seq = seq;
  result.base_seq = bh.seq;
  result.incrementals = incrementals.size();
  result.prev_checksum = chain;
  result.pages = page_count;
  result.file_length = lengths.final_length;
  try {
    open_inputs(streams, base, incrementals, dir, temp_prefix, plain_copies);
    FileSink sink(tmp, options.file_mode);
    SegmentHeader h;
    h.page_size = ps;
    h.seq = seq;
    h.prev_checksum = chain;
    h.page_count = static_cast<uint32_t>(page_count);
    h.created_ms = options.now_ms ? options.now_ms() : wall_clock_ms();
    if (options.compression > 0) h.flags = kFlagCompressed;
    SegmentWriter w(sink, h, options.compression);
    merge_into(streams, lengths, ps, page_count, seq, w, options);
    // Pages past the final length (dropped by a shrink) and the trailers:
    // every input is read to its end and verified before the output counts.
    for (size_t i = 0; i < streams.size(); ++i) {
      uint64_t sum = streams[i].drain();
      const CompactInput& in = i == 0 ? base : incrementals[i - 1];
      if (sum != in.summary.checksum) {
        throw Error(ErrorKind::kCorruption, streams[i].label + " changed while it was being compacted (checksum " +
                                                checksum_hex(sum) + ", verified as " +
                                                checksum_hex(in.summary.checksum) + ")");
      }
    }
    result.checksum = w.finish();
    result.encoded_bytes = w.bytes_written();
    sink.sync();
    sink.close();
    if (::rename(tmp.c_str(), out_path.c_str()) != 0) throw_errno("cannot rename " + tmp + " to " + out_path);
    fsync_dir(dir);
    if (options.progress) options.progress(CompactProgress{page_count, page_count, ps});
  } catch (const Error& e) {
    ::unlink(tmp.c_str());
    throw Error(e.kind(), "compacting the snapshot at seq " + std::to_string(seq) + ": " + e.what());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return result;
}

namespace {

const ChainEntry* find_entry(const std::vector<ChainEntry>& v, uint64_t s) {
  for (const auto& e : v) {
    if (e.seq == s) return &e;
  }
  return nullptr;
}

// Verified local copies of a compaction's inputs: the spool's (linked, so
// the uploader may delete the original meanwhile), else the store's. The
// copies go when it does.
class InputFetcher {
 public:
  static constexpr int kInputAttempts = 4;
  explicit InputFetcher(const CompactSources& src)
      : src_(src), store_(*src.store), chain_(list_chain(store_, src.prefix, src.db)) {}
  const ChainListing& chain() const { return chain_; }
  bool has_incremental(uint64_t s) const {
    return src_.spool_incrementals.count(s) || find_entry(chain_.incrementals, s);
  }

  CompactInput fetch(uint64_t s, bool snapshot) {
    const auto& spool = snapshot ? src_.spool_snapshots : src_.spool_incrementals;
    CompactInput in;
    in.path = src_.work_dir + "/" +
              temp_file_name(src_.temp_prefix, std::string(snapshot ? "snap" : "inc") + "-" + std::to_string(n_++));
    temps_.paths.push_back(in.path);
    if (auto it = spool.find(s); it != spool.end()) {
      if (::link(it->second.c_str(), in.path.c_str()) == 0) return verified_spool_copy(std::move(in), it->second, s);
      if (errno != ENOENT) throw_errno("cannot link " + it->second + " to " + in.path);
      // Uploaded and removed since it was listed: the store has it now.
      chain_ = list_chain(store_, src_.prefix, src_.db);
    }
    const ChainEntry* e = find_entry(snapshot ? chain_.snapshots : chain_.incrementals, s);
    if (!e) {
      throw Error(ErrorKind::kNotFound, std::string(snapshot ? "snapshot" : "incremental") + " seq " +
                                            std::to_string(s) + " of '" + src_.db +
                                            "' is neither spooled nor in the store");
    }
    // A compaction reads many objects; a transient failure of one is tried
    // again here rather than starting the whole compaction over (at 100
    // inputs, one failed GET in a hundred would otherwise rarely let it
    // finish). download_segment leaves nothing behind on failure.
    for (int attempt = 1;; ++attempt) {
      try {
        in.summary = download_segment(store_, *e, in.path);
        return in;
      } catch (const Error& err) {
        if (err.kind() != ErrorKind::kRetryable || attempt == kInputAttempts) throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
    }
  }

 private:
  static CompactInput verified_spool_copy(CompactInput in, const std::string& spooled, uint64_t s) {
    FileSource f(in.path);
    try {
      in.summary = verify_segment(f);
    } catch (const Error& e) {
      throw Error(e.kind(), "spooled segment " + spooled + ": " + e.what());
    }
    if (in.summary.header.seq != s) {
      throw Error(ErrorKind::kCorruption, "spooled segment " + spooled + " holds seq " +
                                              std::to_string(in.summary.header.seq));
    }
    return in;
  }

  const CompactSources& src_;
  ObjectStore& store_;
  ChainListing chain_;
  TempFiles temps_;
  int n_ = 0;
};

// Snapshots before `seq`, spooled or stored, newest first.
std::vector<uint64_t> bases_before(const CompactSources& src, const ChainListing& chain, uint64_t seq) {
  std::vector<uint64_t> bases;
  for (const auto& [s, path] : src.spool_snapshots) {
    if (s < seq) bases.push_back(s);
  }
  for (const auto& e : chain.snapshots) {
    if (e.seq < seq) bases.push_back(e.seq);
  }
  std::sort(bases.begin(), bases.end(), std::greater<>());
  bases.erase(std::unique(bases.begin(), bases.end()), bases.end());
  return bases;
}

}  // namespace

CompactResult compact_snapshot(const CompactSources& src, uint64_t seq, const std::string& out_path,
                               const CompactOptions& options) {
  DUCKBLOCK_ASSERT(src.store);
  InputFetcher inputs(src);
  if (!inputs.has_incremental(seq)) {
    throw Error(ErrorKind::kNotFound, "incremental seq " + std::to_string(seq) + " of '" + src.db +
                                          "' is not there: a snapshot is compacted at the seq of an incremental "
                                          "(it names that incremental's checksum)");
  }
  std::vector<uint64_t> bases = bases_before(src, inputs.chain(), seq);
  if (bases.empty()) {
    throw Error(ErrorKind::kNotFound, "no snapshot of '" + src.db + "' before seq " + std::to_string(seq) +
                                          " to compact from");
  }
  std::map<uint64_t, CompactInput> incs;  // fetched once, for every base tried
  std::vector<std::string> skipped;
  std::exception_ptr first;
  for (uint64_t b : bases) {
    CompactInput base;
    uint64_t chain_at = 0;
    try {
      base = inputs.fetch(b, true);
      chain_at = compact_chain_at_base(base.summary, src.id);
    } catch (const Error& e) {
      if (!base_skippable(e.kind())) throw;
      if (!first) first = std::current_exception();
      skipped.push_back("snapshot at seq " + std::to_string(b) + " not used: " + e.what());
      continue;
    }
    std::vector<CompactInput> list;
    for (uint64_t s = b + 1; s <= seq; ++s) {
      auto it = incs.find(s);
      if (it == incs.end()) {
        if (!inputs.has_incremental(s)) {
          throw Error(ErrorKind::kChainBroken, "incremental seq " + std::to_string(s) + " of '" + src.db +
                                                   "' is missing: the snapshot at seq " + std::to_string(seq) +
                                                   " cannot be compacted from the snapshot at seq " + std::to_string(b));
        }
        it = incs.emplace(s, inputs.fetch(s, false)).first;
      }
      list.push_back(it->second);
    }
    // The base's binding: the incremental after it names its chain checksum.
    if (list.front().summary.header.prev_checksum != chain_at) {
      Error e(ErrorKind::kChainBroken, "snapshot at seq " + std::to_string(b) + " names chain checksum " +
                                           checksum_hex(chain_at) + " but incremental seq " + std::to_string(b + 1) +
                                           " continues " + checksum_hex(list.front().summary.header.prev_checksum) +
                                           ": it does not belong to this chain");
      if (!first) first = std::make_exception_ptr(e);
      skipped.push_back(std::string("not used: ") + e.what());
      continue;
    }
    CompactResult r = compact_segments(base, list, chain_at, out_path, src.temp_prefix, options);
    r.skipped = std::move(skipped);
    return r;
  }
  std::rethrow_exception(first);
}

}  // namespace duckblock
