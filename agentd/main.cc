// agentd: flags and environment -> config, the App (agentd/app.h), signals.
// Nothing else lives here: each layer is built in its own folder and wired
// in app.cc. Exit codes: see ExitCode in agentd/app.h.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <exception>
#include <memory>

#include "agentd/app.h"
#include "agentd/config.h"

namespace {

int run(int argc, char** argv) {
  agentd::Config cfg;
  CLI::App cli{"agentd — agent-execution backend; every message is durable the moment it exists"};
  agentd::add_flags(cli, cfg);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = cli.exit(e);
    return rc == 0 ? agentd::kExitOk : agentd::kExitUsage;
  }

  auto logger = spdlog::stderr_color_mt("agentd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);

  // Block SIGINT/SIGTERM in every thread (they inherit the mask, so block
  // before the App starts any); this thread waits for them with sigwait().
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::unique_ptr<agentd::App> app;
  if (agentd::ExitCode c = agentd::App::create(std::move(cfg), &app); c != agentd::kExitOk) return c;
  if (agentd::ExitCode c = app->start(); c != agentd::kExitOk) return c;
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping (in-flight requests finish, WebSockets close with 1001)", sig);
  app->stop();
  app.reset();
  spdlog::info("agentd stopped");
  return agentd::kExitOk;
}

}  // namespace

// An exception that escapes (a bug, or memory exhausted) is logged and ends
// agentd with 1; the outbox holds everything acknowledged, so a
// supervisor's restart loses nothing.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    spdlog::critical("agentd: internal error: {}", e.what());
  } catch (...) {
    spdlog::critical("agentd: internal error (unknown exception)");
  }
  return agentd::kExitInternal;
}
