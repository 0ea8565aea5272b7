// The arbor command: flags and wiring only.
#include <CLI/CLI.hpp>
#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"arbor: branchable, serverless PostgreSQL"};
  app.require_subcommand(1);
  auto* up = app.add_subcommand("up", "start the Arbor daemon");
  up->callback([] {
    std::fprintf(stderr,
                 "arbor up: the daemon is not built yet; this build has the storage engine "
                 "only\n");
    std::exit(1);
  });
  auto* version = app.add_subcommand("version", "print the version");
  version->callback([] { std::printf("arbor 0.1.0\n"); });
  CLI11_PARSE(app, argc, argv);
  return 0;
}
