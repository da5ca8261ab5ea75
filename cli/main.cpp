#include <iostream>
#include <map>

#include "commands/commands.h"
#include "commands/common.h"
#include "duckblock/error.h"

using namespace duckblock;

namespace {

// What to do next, for errors whose message cannot know the command line.
std::string hint(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kAuth:
      return "pass --profile NAME to use a profile in ~/.aws/credentials, or check that the keys are current";
    case ErrorKind::kRetryable:
      return "check that the store is reachable (--endpoint, network, DNS) and run the command again";
    case ErrorKind::kRemote:
      return "the store refused the request: check the bucket name, --region and the credentials' permissions";
    default: return "";
  }
}

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kCorruption:
    case ErrorKind::kChainBroken: return cli::kExitCorrupt;
    case ErrorKind::kNotFound: return cli::kExitNotFound;
    case ErrorKind::kInvalidArgument: return cli::kExitUsage;
    case ErrorKind::kAlreadyExists: return cli::kExitExists;
    case ErrorKind::kAuth: return cli::kExitAuth;
    case ErrorKind::kRetryable: return cli::kExitUnreachable;
    case ErrorKind::kFenced: return cli::kExitFenced;
    case ErrorKind::kLocked: return cli::kExitLocked;
    default: return cli::kExitError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "duckblock: block-level replication of DuckDB databases to object storage.\n"
      "Stores are URLs: file:///abs/dir or s3://bucket/prefix/ (see README.md)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "duckblock 0.1.0");
  // Options of the app (--config) are accepted after the subcommand too.
  app.fallthrough();
  std::string config_path;
  app.add_option("--config", config_path,
                 "JSON config file with defaults for store, db, endpoint, region, profile, path_style, "
                 "verify_tls, spool (default: $DUCKBLOCK_CONFIG, else ~/.config/duckblock/config.json if present)");
  app.footer(
      "Environment: DUCKBLOCK_STORE, DUCKBLOCK_DB, DUCKBLOCK_SPOOL, DUCKBLOCK_CONFIG; for S3 the usual\n"
      "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_REGION,\n"
      "AWS_ENDPOINT_URL(_S3). Flags win over the environment, which wins over the config file.\n"
      "Examples:\n"
      "  duckblock snapshot app.duckdb --store file:///backups/duckblock --db app\n"
      "  duckblock push app.duckdb --store file:///backups/duckblock --db app\n"
      "  duckblock restore --store file:///backups/duckblock --db app --to /tmp/app.duckdb --seq 3\n"
      "Exit status: 0 ok, 1 failed, 2 bad usage, 3 corrupt or broken chain, 4 not found,\n"
      "5 would replace a local file (--force), 6 credentials, 7 store unreachable, 8 fenced,\n"
      "9 the spool is in use by another push or snapshot.");
  std::map<CLI::App*, cli::Runner> runners;
  auto reg = [&](cli::Runner (*add)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    cli::Runner r = add(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  reg(cli::add_snapshot);
  reg(cli::add_push);
  reg(cli::add_restore);
  reg(cli::add_follow);
  reg(cli::add_ls);
  reg(cli::add_verify);
  reg(cli::add_prune);
  reg(cli::add_compact);
  reg(cli::add_inspect);
  reg(cli::add_apply);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : cli::kExitUsage;
  }
  cli::set_config_path(config_path);
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const Error& e) {
      std::cerr << "duckblock " << sub->get_name() << ": error (" << to_string(e.kind()) << "): " << e.what() << "\n";
      if (auto h = hint(e.kind()); !h.empty()) std::cerr << "  hint: " << h << "\n";
      return exit_code(e.kind());
    } catch (const std::exception& e) {
      std::cerr << "duckblock " << sub->get_name() << ": error: " << e.what() << "\n";
      return cli::kExitError;
    }
  }
  return cli::kExitUsage;
}
