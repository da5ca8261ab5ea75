// S3 throughput: PUT and GET of one large object (256 MiB by default) through
// the duckblock S3 store, beside curl doing the same against the same server
// in the same run, with the ratio and our peak memory. scripts/bench_s3.sh
// starts a local s3rver and runs this.
//
//   s3_bench --endpoint http://127.0.0.1:PORT --bucket B [--mib 256] [--rounds 2] [--dir /tmp]
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. curl signs
// with --aws-sigv4 and sends UNSIGNED-PAYLOAD; we sign every part's SHA-256
// (the slower, safer choice), so the comparison does not flatter us.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/sha256.h"
#include "duckblock/store.h"
#include "s3_store.h"

using namespace duckblock;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peak_rss_mib(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Runs a command; returns the wall time, or aborts if it fails.
double timed(const std::string& cmd) {
  double t0 = now_s();
  int rc = std::system(cmd.c_str());
  double t = now_s() - t0;
  if (rc != 0) {
    std::fprintf(stderr, "failed (%d): %s\n", rc, cmd.c_str());
    std::exit(1);
  }
  return t;
}

class HashSink final : public ByteSink {
 public:
  void write(const void* buf, size_t n) override { h.update(buf, n); }
  Sha256 h;
};

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint, bucket, dir = "/tmp";
  uint64_t mib = 256;
  int rounds = 2;
  size_t part_mib = 0, chunk_mib = 0;
  int up_conc = 0, down_conc = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--endpoint") endpoint = argv[i + 1];
    else if (a == "--bucket") bucket = argv[i + 1];
    else if (a == "--mib") mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--part-mib") part_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--chunk-mib") chunk_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--upload-concurrency") up_conc = std::atoi(argv[i + 1]);
    else if (a == "--download-concurrency") down_conc = std::atoi(argv[i + 1]);
  }
  const char* key_id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (endpoint.empty() || bucket.empty() || !key_id || !secret) {
    std::fprintf(stderr, "usage: s3_bench --endpoint URL --bucket B [--mib N] [--rounds N] [--dir D]\n"
                         "(with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set)\n");
    return 2;
  }
  uint64_t size = mib << 20;
  std::string file = dir + "/s3_bench_" + std::to_string(::getpid()) + ".bin";
  {
    // Incompressible data, written in 1 MiB pieces so that making it does
    // not count toward our peak memory.
    FileSink out(file);
    std::mt19937_64 rng(1);
    std::vector<uint64_t> buf((1u << 20) / 8);
    for (uint64_t done = 0; done < size; done += 1u << 20) {
      for (auto& x : buf) x = rng();
      out.write(buf.data(), std::min<uint64_t>(1u << 20, size - done));
    }
    out.close();
  }
  std::string want_hash;
  {
    FileSource src(file);
    HashSink hs;
    copy_stream(src, hs);
    want_hash = to_hex(hs.h.finish());
  }

  StoreOptions opts;
  opts.endpoint = endpoint;
  opts.path_style = true;
  // Opened as a user would, with the defaults unless a tuning flag says otherwise.
  auto cfg = s3::s3_config_from_url("s3://" + bucket + "/bench/", opts);
  if (part_mib) cfg.part_size = part_mib << 20;
  if (chunk_mib) cfg.download_chunk = chunk_mib << 20;
  if (up_conc) cfg.upload_concurrency = up_conc;
  if (down_conc) cfg.download_concurrency = down_conc;
  auto store = s3::make_s3_store(cfg);
  std::string curl = "curl -s -f --aws-sigv4 aws:amz:us-east-1:s3 --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" "
                     "-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' ";
  std::string curl_url = endpoint + "/" + bucket + "/bench/curl.bin";

  double complete_s = 0;
  double best_put = 1e9, best_get = 1e9, best_cput = 1e9, best_cget = 1e9;
  for (int r = 0; r < rounds; ++r) {
    FileSource src(file);
    double t0 = now_s();
    uint64_t complete_before = s3::s3_stats(*store).multipart_complete_ms;
    store->put("ours.bin", src);
    double t = now_s() - t0;
    if (t < best_put) {
      best_put = t;
      complete_s = double(s3::s3_stats(*store).multipart_complete_ms - complete_before) / 1000.0;
    }

    best_cput = std::min(best_cput, timed(curl + "-T '" + file + "' '" + curl_url + "' -o /dev/null"));

    NullSink sink;
    t0 = now_s();
    store->get("ours.bin", sink);
    best_get = std::min(best_get, now_s() - t0);
    if (sink.written != size) {
      std::fprintf(stderr, "GET returned %llu bytes, expected %llu\n", (unsigned long long)sink.written,
                   (unsigned long long)size);
      return 1;
    }
    best_cget = std::min(best_cget, timed(curl + "'" + curl_url + "' -o /dev/null"));
  }
  // Untimed: what we read back is what we wrote.
  HashSink check;
  store->get("ours.bin", check);
  std::string got_hash = to_hex(check.h.finish());
  store->remove({"ours.bin", "curl.bin"});
  std::remove(file.c_str());

  double mb = double(size) / 1e6;
  std::printf("object: %llu MiB, best of %d rounds, local s3rver at %s\n", (unsigned long long)mib, rounds,
              endpoint.c_str());
  std::printf("%-5s %12s %12s %8s\n", "", "duckblock", "curl", "ratio");
  std::printf("%-5s %9.1f MB/s %7.1f MB/s %7.2fx\n", "PUT", mb / best_put, mb / best_cput, best_cput / best_put);
  std::printf("%-5s %9.1f MB/s %7.1f MB/s %7.2fx\n", "GET", mb / best_get, mb / best_cget, best_cget / best_get);
  std::printf("our PUT is a multipart upload; %.2f s of its %.2f s went to CompleteMultipartUpload, where the\n"
              "server copies the parts into the object (parts alone: %.1f MB/s, %.2fx curl's single PUT)\n",
              complete_s, best_put, mb / (best_put - complete_s), best_cput / (best_put - complete_s));
  std::printf("parts %zu MiB x %d in flight, ranges %zu MiB x %d in flight\n", cfg.part_size >> 20,
              cfg.upload_concurrency, cfg.download_chunk >> 20, cfg.download_concurrency);
  std::printf("peak RSS of the duckblock process: %.1f MiB (object %llu MiB)\n", peak_rss_mib(RUSAGE_SELF),
              (unsigned long long)mib);
  std::printf("read back: %s\n", got_hash == want_hash ? "identical" : "DIFFERENT");
  return got_hash == want_hash ? 0 : 1;
}
