// A child process for tests: spawn, signal, wait. Output goes to a log file.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace agentd::test {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  ChildProcess& operator=(ChildProcess&& o) noexcept {
    if (this != &o) {
      kill();
      pid_ = o.pid_;
      o.pid_ = -1;
    }
    return *this;
  }
  ~ChildProcess();  // SIGKILL + reap if still running

  // argv[0] is the program path; `env` entries ("K=V") are added to the
  // current environment. stdout and stderr are appended to `log_path`.
  static ChildProcess spawn(const std::vector<std::string>& argv, const std::string& log_path,
                            const std::vector<std::string>& env = {});

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Waits up to timeout_ms for exit; returns the exit status as from
  // waitpid, or -1 on timeout.
  int wait(int timeout_ms);
  // SIGKILL and reap.
  void kill();

 private:
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

// A new empty temporary folder (mkdtemp under $TMPDIR or /tmp).
std::string make_temp_dir(const std::string& prefix);

std::string read_file(const std::string& path);

}  // namespace agentd::test
