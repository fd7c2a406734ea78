// RuntimeHost: the agent runtime as main wires it — flags, teams (a folder,
// or the example teams built into the binary), the optional LLM client, and
// the io_context thread the plans run on.
#pragma once

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "core/message_log.h"
#include "core/metrics.h"
#include "core/runtime/runtime.h"
#include "net/llm_client.h"

namespace agentd {

struct RuntimeFlags {
  std::string teams_dir;  // empty: built-in example teams
  std::string default_team;
  bool auto_approve = false;
  int max_concurrent_plans = 16;
  unsigned approval_timeout_s = 300;
  unsigned clarification_timeout_s = 300;
  std::string llm_base_url;
  std::string llm_model;
  std::string llm_api_key_env = "OPENAI_API_KEY";
  unsigned llm_timeout_s = 120;
  std::string on_restart = "resume";  // resume | interrupt: plans a crash left unfinished
  std::string uploaded_teams_dir;     // set by main: <data-dir>/teams (not a flag)
};

void add_runtime_flags(CLI::App& app, RuntimeFlags& flags);

class RuntimeHost {
 public:
  // Loads the teams (errors name file and field) and builds the runtime; does
  // not run plans until start().
  static Result<std::unique_ptr<RuntimeHost>> create(const RuntimeFlags& flags, MessageLog& log,
                                                     MetricsRegistry& metrics);
  ~RuntimeHost();

  Runtime& runtime() { return *runtime_; }
  // Resumes plans a previous process left unfinished (or marks them
  // interrupted: --on-restart interrupt), then starts the runtime's thread.
  Status start();
  // Lets running plans stop at their next checkpoint (the next start resumes
  // them), then joins the thread.
  void stop(std::chrono::milliseconds deadline);

 private:
  RuntimeHost() : work_(boost::asio::make_work_guard(ioc_)) {}
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<net::LlmClient> llm_;
  std::unique_ptr<Runtime> runtime_;
  std::thread thread_;
};

// The example teams compiled into the binary (agentd/teams/*.json).
Result<std::vector<TeamConfig>> builtin_teams();

}  // namespace agentd
