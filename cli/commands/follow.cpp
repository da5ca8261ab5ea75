#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/chain.h"
#include "duckblock/follower.h"
#include "duckblock/key.h"
#include "duckblock/metrics.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"

namespace duckblock::cli {

Runner add_follow(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "follow",
      "Keep a local file current with the store: restore it from a snapshot if it has no position yet,\n"
      "then apply each new incremental as it appears (verified first, crash-safe). Runs until SIGINT or\n"
      "SIGTERM, which stop it cleanly between applies. Prints each position it reaches on stdout.");
  struct Flags {
    StoreFlags store;
    std::string to;
    std::string interval = "1s";
    std::string metrics_addr;
    bool once = false, force = false, no_log = false;
  };
  auto f = std::make_shared<Flags>();
  add_store_flags(cmd, f->store, true, true);
  cmd->add_option("--to", f->to, "The local replica file")->required();
  cmd->add_option("--interval", f->interval, "Time between polls of the store (errors back off up to 30s)")
      ->capture_default_str();
  cmd->add_flag("--once", f->once, "Catch up to the store's head, print the position and exit");
  cmd->add_flag("--checkpoints-only", f->no_log,
                "Follow checkpoints only: do not keep PATH.wal current with the commits shipped since the "
                "last checkpoint");
  cmd->add_option("--metrics-addr", f->metrics_addr,
                  "Serve Prometheus metrics (applied seq, lag, polls, errors) at http://HOST:PORT/metrics "
                  "(e.g. 127.0.0.1:9464; port 0 picks a free one, printed on stderr)");
  cmd->add_flag("--force", f->force,
                "Replace an existing PATH that has no duckblock journal (PATH.duckblock), or one changed since "
                "the last apply or left from a chain the store no longer has, and remove a stale PATH.wal");
  cmd->footer(
      "Examples:\n"
      "  duckblock follow --store file:///backups/duckblock --db app --to /srv/replica/app.duckdb\n"
      "  duckblock follow --store s3://my-bucket/dbs/ --db app --to app.duckdb --interval 5s --json\n"
      "  duckblock follow --db app --to app.duckdb --once\n"
      "  duckblock follow --db app --to app.duckdb --metrics-addr 127.0.0.1:9464\n"
      "Output: one line per applied batch, \"seq N checksum HEX\" (--json: one JSON object per line).\n"
      "Exit status: 0 stopped by a signal (or --once caught up), 1 failed, 2 bad usage, 3 the chain\n"
      "does not continue the replica (it stops rather than guess): the store's database was rebuilt, or\n"
      "the replica was changed since the last apply (--force restores a fresh copy), 4 database not in\n"
      "the store, 5 PATH exists without a journal (use --force).");
  return [f]() {
    resolve(f->store, true);
    validate_db_name(f->store.db);
    auto interval = parse_duration(f->interval);
    if (interval.count() <= 0) throw Error(ErrorKind::kInvalidArgument, "--interval must be positive");
    std::optional<MetricsAddress> metrics_addr;
    if (!f->metrics_addr.empty()) metrics_addr = parse_metrics_address(f->metrics_addr, "--metrics-addr");
    std::string path = output_file_path(f->to, "--to");
    bool has_journal = path_exists(path + ".duckblock");
    if (path_exists(path) && !has_journal && !f->force) {
      throw Error(ErrorKind::kAlreadyExists,
                  path + " exists but is not a duckblock replica (no " + path +
                      ".duckblock journal): following would replace it with a snapshot. Pass --force to allow "
                      "that, or choose another --to");
    }
    const bool wal = stale_log_beside(path, LogBesideUse::kFollow);
    if (wal && !f->force) {
      throw Error(ErrorKind::kAlreadyExists, stale_log_refusal(path, LogBesideUse::kFollow, "--force"));
    }
    TargetLock target_lock(path);  // one restore or follow per target, held while following (exit 9)
    auto store = open_store_for(f->store, StoreUse::kRead);
    ChainListing chain = list_chain(*store, "", f->store.db);
    if (chain.empty()) {
      throw Error(ErrorKind::kNotFound, "the store " + store->url() + " has no database '" + f->store.db + "'");
    }
    if (wal) {
      remove_log_beside(path);
      note(f->store, "follow: removed stale " + path + ".wal (--force)");
    }
    if (f->force && has_journal) {
      // --force: a replica changed behind our back, or one of a chain the
      // store no longer has (rebuilt), is restored afresh instead of refused.
      try {
        Replica replica(path);
        check_replica_on_chain(*store, chain, read_chain_identity(*store, "", f->store.db), f->store.db, replica);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::kChainBroken && e.kind() != ErrorKind::kCorruption) throw;
        for (const auto& p : {path + ".duckblock", path + ".duckblock-pending"}) ::unlink(p.c_str());
        note(f->store, std::string("follow: restoring a fresh copy (--force): ") + e.what());
      }
    }

    std::mutex out_mu;
    auto print = [&](const ChainPosition& p, const std::optional<LogPosition>& log, const char* event) {
      std::lock_guard l(out_mu);
      if (f->store.json) {
        nlohmann::json j = {{"event", event}, {"db", f->store.db}, {"seq", p.seq},
                            {"checksum", checksum_hex(p.checksum)}, {"time", format_time(now_ms())}};
        if (!f->no_log) {
          j["log_index"] = log ? log->index : 0;
          j["log_length"] = log ? log->length : 0;
          j["log_created_ms"] = log ? log->created_ms : 0;
        }
        std::cout << j.dump() << std::endl;
      } else {
        std::cout << (std::string(event) == "applied" ? "" : std::string(event) + " ") << "seq " << p.seq
                  << " checksum " << checksum_hex(p.checksum);
        if (log) std::cout << " log " << log->index << " (" << log->length << " bytes)";
        std::cout << std::endl;
      }
    };
    FollowerOptions fo;
    fo.poll_interval = interval;
    fo.hooks.after_apply = [&](const ReplicaFiles&, const FollowerPoll& poll) {
      if (poll.applied()) print(poll.position, poll.log, "applied");
    };
    if (!f->no_log) {
      fo.log_path = path + ".wal";
    } else if (LogReplica::peek(path + ".duckblock-log")) {
      // A log an earlier follow kept belongs to the replica's current
      // checkpoint only; following checkpoints alone would leave it beside
      // newer ones, where DuckDB would replay it. It goes now.
      LogReplica(path + ".wal", path + ".duckblock-log").clear();
      note(f->store, "follow: removed " + path + ".wal (--checkpoints-only keeps no log)");
    }
    Follower follower(store, f->store.db, path, fo);
    // Listening before the first poll: a port in use fails before anything
    // is applied, and a scrape sees the catch-up.
    std::unique_ptr<MetricsServer> metrics;
    if (metrics_addr) {
      metrics = std::make_unique<MetricsServer>(*metrics_addr, [&follower, db = f->store.db]() {
        FollowerSample s;
        s.db = s.alias = db;
        // As of the last poll that ended: a scrape never waits for an apply.
        FollowerState st = follower.status();
        s.applied_seq = st.position.seq;
        s.head_seq = std::max(st.head_seq, s.applied_seq);
        s.last_current_ms = st.last_current_ms;
        if (st.log) {
          s.log_index = st.log->index;
          s.log_bytes = st.log->length;
        }
        s.polls = st.polls;
        s.errors = st.errors;
        s.error = st.last_error.has_value();
        return render_metrics({}, {s}, metrics_now_ms());
      });
      note(f->store, "follow: metrics on http://" + metrics->host() + ":" + std::to_string(metrics->port()) +
                         "/metrics");
    }
    // The first poll runs here so that a missing database, a corrupt object
    // or a broken chain ends the command with its own exit status.
    follower.poll_once();
    if (f->once) {
      print(follower.position(), follower.log_position(), "caught-up");
      return 0;
    }
    // From here signals are taken synchronously by this thread (sigtimedwait),
    // so they are blocked before the follower's thread starts and inherits the
    // mask. The first catch-up above stays interruptible the ordinary way: the
    // replica's journal makes an interrupted apply safe.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    follower.start();
    // Printed only now: a script that waits for it may signal at once.
    note(f->store, "follow: at seq " + std::to_string(follower.position().seq) + "; polling every " + f->interval +
                       " (Ctrl-C to stop)");
    std::optional<std::string> last_reported;
    for (;;) {
      timespec wait{0, 250'000'000};
      int sig = sigtimedwait(&set, nullptr, &wait);
      if (sig == SIGINT || sig == SIGTERM) {
        follower.stop();
        note(f->store, std::string("follow: stopped by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
        print(follower.position(), follower.log_position(), "stopped");
        return 0;
      }
      if (follower.broken()) {
        follower.stop();
        throw Error(ErrorKind::kChainBroken, follower.last_error().value_or("the chain is broken") +
                                                 " (the replica stays at seq " +
                                                 std::to_string(follower.position().seq) + ")");
      }
      auto err = follower.last_error();
      if (err && err != last_reported) {
        std::lock_guard l(out_mu);
        std::cerr << "follow: error, retrying: " << *err << "\n";
      }
      last_reported = err;
    }
  };
}

}  // namespace duckblock::cli
