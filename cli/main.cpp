#include <iostream>
#include <map>

#include "commands/commands.h"
#include "duckblock/error.h"

using namespace duckblock;

int main(int argc, char** argv) {
  CLI::App app{
      "duckblock: block-level replication of DuckDB databases to object storage.\n"
      "Stores are URLs: file:///dir, s3://bucket/prefix/ (see README.md)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "duckblock 0.1.0");
  std::map<CLI::App*, cli::Runner> runners;
  auto reg = [&](cli::Runner (*add)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    cli::Runner r = add(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  reg(cli::add_inspect);
  reg(cli::add_apply);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : cli::kExitUsage;
  }
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const Error& e) {
      std::cerr << "duckblock " << sub->get_name() << ": error (" << to_string(e.kind())
                << "): " << e.what() << "\n";
      switch (e.kind()) {
        case ErrorKind::kCorruption:
        case ErrorKind::kChainBroken: return cli::kExitCorrupt;
        case ErrorKind::kNotFound: return cli::kExitNotFound;
        case ErrorKind::kInvalidArgument: return cli::kExitUsage;
        default: return cli::kExitError;
      }
    } catch (const std::exception& e) {
      std::cerr << "duckblock " << sub->get_name() << ": error: " << e.what() << "\n";
      return cli::kExitError;
    }
  }
  return cli::kExitUsage;
}
