// Speed and memory of the segment pipeline on one large file, against the
// machine's own baselines measured in the same run (docs/PERFORMANCE.md):
//
//   snapshot  read the file, encode it as one snapshot segment (every page
//             plus the file-length record) and stream it into a local-directory
//             store with a durable put, once with 256 KiB and once with 4 KiB
//             pages;
//   encode    the same without the store (read + encode + hash only), to tell
//             the CPU's share from the disk's;
//   decode    verify_segment over a FileSource: read, parse, hash, check;
//   apply     apply_segment into a new file (verify pass, write pass, fsync),
//             then the result is compared with the original (not timed);
//   restore   restore() from the local-directory store into a new file (the
//             snapshot streamed from the store, verified and written in one
//             pass), compared with the original too.
//
// Baselines: `sha256sum FILE`, OpenSSL EVP SHA-256 in-process over the file
// with 256 KiB reads and over a 256 KiB buffer in memory, `cp FILE`, and
// `dd conv=fdatasync` (a durable copy, what a store put and an apply pay).
//
// Every phase runs in a forked child so its peak RSS (ru_maxrss from wait4)
// is its own. The parent stays small, since a child starts with its RSS.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/apply.h"
#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"

namespace fs = std::filesystem;
using namespace duckblock;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------
// Running a measurement in a child process.

struct Result {
  std::string name;
  bool ok = false;
  double seconds = 0;
  uint64_t bytes = 0;       // bytes of the source file processed
  long peak_rss_kib = 0;    // the child's ru_maxrss
  std::string note;
  double mbps() const { return seconds > 0 ? bytes / seconds / 1e6 : 0; }
};

struct ChildReport {
  double seconds;
  uint64_t bytes;
  char note[240];
};

// Runs `body` in a forked child. `body` returns the bytes it processed and
// may fill `note`; the time is measured inside the child around `body`.
Result run_child(const std::string& name, const std::function<uint64_t(std::string& note)>& body) {
  Result r;
  r.name = name;
  int fds[2];
  if (::pipe(fds) != 0) throw_errno("pipe");
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::close(fds[0]);
    ChildReport rep{};
    int rc = 0;
    try {
      std::string note;
      auto t0 = Clock::now();
      rep.bytes = body(note);
      rep.seconds = seconds_since(t0);
      std::snprintf(rep.note, sizeof rep.note, "%s", note.c_str());
    } catch (const std::exception& e) {
      std::snprintf(rep.note, sizeof rep.note, "FAILED: %s", e.what());
      rc = 1;
    }
    (void)!::write(fds[1], &rep, sizeof rep);
    ::_exit(rc);
  }
  ::close(fds[1]);
  ChildReport rep{};
  ssize_t got = ::read(fds[0], &rep, sizeof rep);
  ::close(fds[0]);
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  r.ok = got == sizeof rep && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  r.seconds = rep.seconds;
  r.bytes = rep.bytes;
  r.peak_rss_kib = ru.ru_maxrss;
  r.note = got == sizeof rep ? rep.note : "child died";
  return r;
}

// Runs an external command (stdout discarded), timing it from the parent.
Result run_command(const std::string& name, std::vector<std::string> argv, uint64_t bytes) {
  Result r;
  r.name = name;
  r.bytes = bytes;
  std::fflush(stdout);
  auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 1), ::dup2(devnull, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  r.seconds = seconds_since(t0);
  r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  r.peak_rss_kib = ru.ru_maxrss;
  std::string cmd;
  for (auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  r.note = r.ok ? cmd : "FAILED: " + cmd;
  return r;
}

// ---------------------------------------------------------------------------
// Page cache.

// Share of the file's pages in the page cache (mincore over a mapping).
double cached_fraction(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st {};
  ::fstat(fd, &st);
  if (st.st_size == 0) {
    ::close(fd);
    return 1;
  }
  size_t len = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return 0;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t pages = (len + page - 1) / page;
  std::vector<unsigned char> vec(pages);
  double frac = 0;
  if (::mincore(p, len, vec.data()) == 0) {
    size_t in = 0;
    for (unsigned char v : vec) in += v & 1;
    frac = static_cast<double>(in) / pages;
  }
  ::munmap(p, len);
  return frac;
}

// Drops the file's clean pages from the page cache (for --cold runs).
void evict(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

std::string cache_note(const std::string& path) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "input %.0f%% cached", 100 * cached_fraction(path));
  return buf;
}

// ---------------------------------------------------------------------------
// The snapshot: a file turned into a segment as a stream the store pulls.

// Encodes `path` as a snapshot segment (seq 0, pages 0..n-1 of `page_size`
// bytes, the last one short, then the file-length record) on the fly. Memory:
// one page and one page's encoding, whatever the file's size.
class SnapshotSource final : public ByteSource {
 public:
  SnapshotSource(const std::string& path, uint32_t page_size, int compression)
      : file_(path),
        size_(file_.size()),
        page_size_(page_size),
        pages_((size_ + page_size - 1) / page_size),
        page_(page_size),
        compression_(compression),
        writer_(sink_, make_header(), compression) {}

  size_t read(void* buf, size_t n) override {
    auto* out = static_cast<uint8_t*>(buf);
    size_t done = 0;
    while (done < n) {
      auto& pending = sink_.data();
      if (pos_ < pending.size()) {
        size_t k = std::min(n - done, pending.size() - pos_);
        std::memcpy(out + done, pending.data() + pos_, k);
        pos_ += k;
        done += k;
        continue;
      }
      pending.clear();
      pos_ = 0;
      if (!produce()) break;
    }
    return done;
  }

  uint64_t checksum() const { return checksum_; }

 private:
  SegmentHeader make_header() const {
    SegmentHeader h;
    h.page_id_size = 8;
    h.page_size = page_size_;
    h.page_count = static_cast<uint32_t>(pages_ + 1);
    if (compression_ > 0) h.flags = kFlagCompressed;
    h.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
    return h;
  }

  bool produce() {
    if (next_ < pages_) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(page_size_, size_ - next_ * page_size_));
      file_.read_exact(page_.data(), len, "snapshot source file");
      writer_.add_page(next_++, std::span<const uint8_t>(page_.data(), len));
      return true;
    }
    if (finished_) return false;
    writer_.add_page(kFileLengthPageId, encode_file_length(size_));
    checksum_ = writer_.finish();
    finished_ = true;
    return true;
  }

  FileSource file_;
  uint64_t size_;
  uint32_t page_size_;
  uint64_t pages_;
  std::vector<uint8_t> page_;
  int compression_;
  VectorSink sink_;
  SegmentWriter writer_;
  size_t pos_ = 0;
  uint64_t next_ = 0;
  bool finished_ = false;
  uint64_t checksum_ = 0;
};

// Deletes an earlier run's output and lets the file system finish with it
// (journal commit, discards) before the next timed run starts.
void remove_and_settle(const std::string& path) {
  fs::remove(path);
  ::sync();
}

// Compares two files in 1 MiB blocks.
bool same_contents(const std::string& a, const std::string& b) {
  FileSource fa(a), fb(b);
  if (fa.size() != fb.size()) return false;
  std::vector<uint8_t> ba(1 << 20), bb(1 << 20);
  for (;;) {
    size_t na = fa.read(ba.data(), ba.size());
    size_t nb = fb.read(bb.data(), bb.size());
    if (na != nb || std::memcmp(ba.data(), bb.data(), na) != 0) return false;
    if (na == 0) return true;
  }
}

// Writes `bytes` of pseudo-random data (incompressible, no repeats) to `path`.
void create_random_file(const std::string& path, uint64_t bytes) {
  FileSink sink(path + ".tmp");
  std::vector<uint64_t> block((1 << 20) / 8);
  uint64_t s = 0x243f6a8885a308d3ull ^ static_cast<uint64_t>(::getpid());
  for (uint64_t done = 0; done < bytes;) {
    for (auto& w : block) {  // xorshift64*
      s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
      w = s * 0x2545f4914f6cdd1dull;
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes - done, block.size() * 8));
    sink.write(block.data(), n);
    done += n;
  }
  sink.sync();
  sink.close();
  fs::rename(path + ".tmp", path);
}

// ---------------------------------------------------------------------------

struct Options {
  uint64_t size = 1ull << 30;
  std::string dir;
  std::string file;
  bool keep = false;
  bool cold = false;
  int repeat = 1;
  int compression = 0;
};

[[noreturn]] void usage(int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: segment_bench [--size-mib N] [--file PATH] [--dir DIR] [--repeat N] [--cold] [--keep]\n"
               "                     [--compression none|zstd[:N]]\n"
               "  --size-mib N  size of the test file (default 1024); created with random\n"
               "                content if FILE does not exist\n"
               "  --file PATH   the test file (default DIR/input.bin)\n"
               "  --dir DIR     work directory: store, restored files (default: a new\n"
               "                directory under $TMPDIR or /tmp, removed afterwards)\n"
               "  --repeat N    run each measurement N times and keep the fastest (default 1)\n"
               "  --cold        evict the files from the page cache before each phase\n"
               "  --keep        keep the work directory\n"
               "  --compression segment encoding: none (plain hadbp v1, the default here)\n"
               "                or zstd[:LEVEL]\n");
  std::exit(rc);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--size-mib") {
      o.size = std::stoull(value()) << 20;
    } else if (a == "--file") {
      o.file = value();
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--repeat") {
      o.repeat = std::max(1, std::stoi(value()));
    } else if (a == "--compression") {
      o.compression = parse_compression(value());
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--cold") {
      o.cold = true;
    } else if (a == "--help" || a == "-h") {
      usage(0);
    } else {
      std::fprintf(stderr, "segment_bench: unknown argument %s\n", a.c_str());
      usage(2);
    }
  }
  return o;
}

void print(const Result& r) {
  std::printf("  %-34s %8.3f s %9.1f MB/s %8.1f MiB   %s\n", r.name.c_str(), r.seconds, r.mbps(),
              r.peak_rss_kib / 1024.0, r.note.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_args(argc, argv);
  bool own_dir = opt.dir.empty();
  if (own_dir) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/duckblock-bench-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw_errno("mkdtemp");
    opt.dir = tmpl;
  }
  fs::create_directories(opt.dir);
  if (opt.file.empty()) opt.file = opt.dir + "/input.bin";
  const std::string store_dir = opt.dir + "/store";
  const std::string copy_path = opt.dir + "/copy.bin";
  const std::string restored = opt.dir + "/restored.bin";

  bool created = false;
  if (!fs::exists(opt.file)) {
    auto r = run_child("create test file", [&](std::string&) {
      create_random_file(opt.file, opt.size);
      return opt.size;
    });
    if (!r.ok) {
      std::fprintf(stderr, "cannot create %s: %s\n", opt.file.c_str(), r.note.c_str());
      return 1;
    }
    created = true;
  }
  const uint64_t size = fs::file_size(opt.file);
  std::vector<Result> results;
  bool all_ok = true;
  std::string note;
  // Runs a measurement opt.repeat times (prep() before each) and keeps the
  // fastest run; the peak RSS is the largest of all runs.
  auto measure = [&](const std::function<void()>& prep, const std::function<Result()>& run) {
    Result best;
    long rss = 0;
    for (int i = 0; i < opt.repeat; ++i) {
      if (prep) prep();
      Result r = run();
      rss = std::max(rss, r.peak_rss_kib);
      if (i == 0 || !r.ok || (best.ok && r.seconds < best.seconds)) best = r;
      if (!r.ok) break;
    }
    best.peak_rss_kib = rss;
    if (!best.ok) all_ok = false;
    print(best);
    results.push_back(best);
    return best;
  };
  // Evicts the files in --cold mode and notes how much of the first is cached.
  auto prepare = [&](std::vector<std::string> files, std::string label) {
    return [&opt, &note, files, label] {
      if (opt.cold) {
        for (auto& f : files) evict(f);
      }
      note = label + " " + cache_note(files.front()).substr(6);
    };
  };

  struct rusage self {};
  ::getrusage(RUSAGE_SELF, &self);
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::string load;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128] = {};
    if (std::fgets(buf, sizeof buf, f)) load = buf;
    std::fclose(f);
    if (!load.empty() && load.back() == '\n') load.pop_back();
  }
  std::printf("segment_bench: file %s, %.1f MiB%s\n", opt.file.c_str(), size / 1048576.0,
              created ? " (created, random content)" : "");
  std::printf("  %ld CPUs, load average %s; page cache %s; best of %d run(s) per phase\n", cpus,
              load.c_str(), opt.cold ? "cold (files evicted before each run)" : "warm", opt.repeat);
  std::printf("  work dir %s; parent RSS %.1f MiB (each child starts with it)\n", opt.dir.c_str(),
              self.ru_maxrss / 1024.0);
  std::printf("  segments: %s\n", opt.compression ? ("zstd level " + std::to_string(opt.compression)).c_str()
                                                  : "plain hadbp v1");
  std::printf("  MB = 10^6 bytes of the input file; peak RSS is each phase's own (ru_maxrss)\n\n");
  if (!opt.cold) {
    // Warm runs measure the code, not the disk: read the input once first.
    run_child("warm-up", [&](std::string&) {
      FileSource src(opt.file);
      NullSink sink;
      return copy_stream(src, sink);
    });
  }
  std::printf("  %-34s %10s %14s %12s   %s\n", "phase", "time", "speed", "peak RSS", "notes");

  // ---- baselines
  std::printf("baselines\n");
  Result sha_cli = measure(prepare({opt.file}, "input"), [&] {
    Result r = run_command("sha256sum FILE", {"sha256sum", opt.file}, size);
    r.note = note + "; " + r.note;
    return r;
  });
  Result sha_file = measure(prepare({opt.file}, "input"), [&] {
    return run_child("openssl sha256, file, 256K reads", [&](std::string& n) {
      n = note;
      FileSource src(opt.file);
      std::vector<uint8_t> buf(256 << 10);
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
      uint64_t total = 0;
      while (size_t k = src.read(buf.data(), buf.size())) {
        EVP_DigestUpdate(ctx, buf.data(), k);
        total += k;
      }
      unsigned char md[32];
      unsigned len = 0;
      EVP_DigestFinal_ex(ctx, md, &len);
      EVP_MD_CTX_free(ctx);
      return total;
    });
  });
  Result sha_mem = measure(nullptr, [&] {
    return run_child("openssl sha256, memory, 256K", [&](std::string& n) {
      n = "one 256 KiB buffer hashed repeatedly, no I/O";
      std::vector<uint8_t> buf(256 << 10, 0x5a);
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
      uint64_t total = 0;
      while (total < size) {
        size_t k = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - total));
        EVP_DigestUpdate(ctx, buf.data(), k);
        total += k;
      }
      unsigned char md[32];
      unsigned len = 0;
      EVP_DigestFinal_ex(ctx, md, &len);
      EVP_MD_CTX_free(ctx);
      return total;
    });
  });
  auto copy_prep = prepare({opt.file}, "input");
  Result cp = measure([&] { remove_and_settle(copy_path); copy_prep(); }, [&] {
    Result r = run_command("cp FILE COPY", {"cp", opt.file, copy_path}, size);
    r.note = note + "; " + r.note;
    return r;
  });
  Result dd = measure([&] { remove_and_settle(copy_path); copy_prep(); }, [&] {
    Result r = run_command("dd bs=1M conv=fdatasync",
                           {"dd", "if=" + opt.file, "of=" + copy_path, "bs=1M", "conv=fdatasync",
                            "status=none"},
                           size);
    r.note = note + "; " + r.note;
    return r;
  });
  fs::remove(copy_path);

  // ---- the pipeline, per page size
  struct Row {
    uint32_t page_size;
    Result encode, snapshot, decode, apply, restore;
  };
  std::vector<Row> rows;
  for (uint32_t ps : {256u << 10, 4u << 10}) {
    Row row;
    row.page_size = ps;
    std::string label = std::to_string(ps >> 10) + "K";
    std::printf("page size %s\n", label.c_str());
    std::string key = format_key("", SegmentKey{"bench" + label, kSnapshotGeneration, 0});
    std::string seg_path = store_dir + "/" + key;

    row.encode = measure(prepare({opt.file}, "input"), [&] {
      return run_child("encode (read+encode, no store)", [&](std::string& n) {
        SnapshotSource src(opt.file, ps, opt.compression);
        NullSink sink;
        copy_stream(src, sink);
        n = note + ", segment " + std::to_string(sink.written) + " bytes";
        return size;
      });
    });

    auto snapshot_prep = prepare({opt.file}, "input");
    row.snapshot = measure([&] { remove_and_settle(seg_path); snapshot_prep(); }, [&] {
      return run_child("snapshot (into local store)", [&](std::string& n) {
        auto store = make_local_store(store_dir);
        SnapshotSource src(opt.file, ps, opt.compression);
        store->put(key, src);
        n = note + ", checksum " + checksum_hex(src.checksum());
        return size;
      });
    });

    row.decode = measure(prepare({seg_path}, "segment"), [&] {
      return run_child("decode+verify (FileSource)", [&](std::string& n) {
        FileSource src(seg_path);
        SegmentSummary s = verify_segment(src);
        if (!s.file_length || *s.file_length != size) {
          throw std::runtime_error("file length record wrong");
        }
        n = note + ", checksum " + checksum_hex(s.checksum);
        return size;
      });
    });

    auto apply_prep = prepare({seg_path}, "segment");
    row.apply = measure([&] { remove_and_settle(restored); apply_prep(); }, [&] {
      return run_child("apply (into a new file)", [&](std::string& n) {
        ApplyOptions ao;
        ao.check_seq = false;
        apply_segment(restored, seg_path, ChainPosition{0, 0}, ao);
        n = note;
        return size;
      });
    });
    if (row.apply.ok) {
      bool same = same_contents(opt.file, restored);
      if (!same) all_ok = false;
      std::printf("  %-34s %s\n", "", same ? "(restored file identical to the input)"
                                           : "RESTORED FILE DIFFERS FROM THE INPUT");
    }
    fs::remove(restored);
    auto restore_prep = prepare({seg_path}, "segment");
    row.restore = measure([&] { remove_and_settle(restored); fs::remove(restored + ".duckblock"); restore_prep(); }, [&] {
      return run_child("restore (store -> new file)", [&](std::string& n) {
        auto store = make_local_store(store_dir);
        duckblock::restore(*store, "bench" + label, restored);
        n = note;
        return size;
      });
    });
    if (row.restore.ok) {
      bool same = same_contents(opt.file, restored);
      if (!same) all_ok = false;
      std::printf("  %-34s %s\n", "", same ? "(restored file identical to the input)"
                                           : "RESTORED FILE DIFFERS FROM THE INPUT");
    }
    fs::remove(restored);
    fs::remove(restored + ".duckblock");
    fs::remove(seg_path);
    rows.push_back(row);
  }

  // ---- ratios
  auto ratio = [](const Result& a, const Result& b) { return b.mbps() > 0 ? a.mbps() / b.mbps() : 0; };
  std::printf("\nratios (speed / baseline speed; targets: snapshot and decode >= 0.8x SHA-256)\n");
  std::printf("  %-6s %-28s %10s %10s %10s\n", "pages", "", "openssl", "openssl", "sha256sum");
  std::printf("  %-6s %-28s %10s %10s %10s\n", "", "", "file", "memory", "");
  for (const auto& row : rows) {
    std::string label = std::to_string(row.page_size >> 10) + "K";
    for (const auto* r : {&row.encode, &row.snapshot, &row.decode}) {
      std::printf("  %-6s %-28s %9.2fx %9.2fx %9.2fx\n", label.c_str(), r->name.c_str(),
                  ratio(*r, sha_file), ratio(*r, sha_mem), ratio(*r, sha_cli));
    }
    std::printf("  %-6s %-28s  apply/cp %.2fx, apply/dd-fdatasync %.2fx, snapshot/dd-fdatasync %.2fx\n",
                label.c_str(), "", ratio(row.apply, cp), ratio(row.apply, dd), ratio(row.snapshot, dd));
    std::printf("  %-6s %-28s  restore/dd-fdatasync %.2fx (target >= 0.8x)\n", label.c_str(), "",
                ratio(row.restore, dd));
  }
  long peak = 0;
  for (const auto& r : results) {
    if (r.name.find("sha256sum") == std::string::npos && r.name.rfind("cp", 0) != 0 &&
        r.name.rfind("dd", 0) != 0) {
      peak = std::max(peak, r.peak_rss_kib);
    }
  }
  std::printf("\npeak RSS of any duckblock phase: %.1f MiB (target <= 64 MiB)\n", peak / 1024.0);

  if (!opt.keep && own_dir) {
    fs::remove_all(opt.dir);
  } else if (!opt.keep && created) {
    fs::remove(opt.file);
    fs::remove_all(store_dir);
  }
  if (!all_ok) {
    std::fprintf(stderr, "segment_bench: a phase failed (see above)\n");
    return 1;
  }
  return 0;
}
