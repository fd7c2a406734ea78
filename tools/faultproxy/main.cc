// agentd-faultproxy: a loopback TCP fault proxy (tools/faultproxy/faultproxy.h).
//
//   agentd-faultproxy --listen 127.0.0.1:P --target 127.0.0.1:Q
//
// Control channel: one command per line on stdin, each answered with one
// line on stdout ("ok ..." or "error ..."):
//   latency <ms>      delay every forwarded chunk
//   blackhole <ms>    forward nothing, connect nothing, for <ms>
//   reset             reset every open connection
//   refuse on|off     close new connections at accept
//   clear             remove every fault
//   stats             "ok accepted=.. open=.. refused=.. resets=.. bytes_up=.. bytes_down=.."
//   quit              exit 0
// At end of stdin it keeps running until SIGINT/SIGTERM.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "tools/faultproxy/faultproxy.h"

using namespace agentd::faultproxy;

namespace {

std::string run_command(FaultProxy& p, const std::string& line, bool* quit) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  long ms = 0;
  if (cmd == "latency" && (in >> ms) && ms >= 0) {
    p.set_latency(std::chrono::milliseconds(ms));
    return "ok latency " + std::to_string(ms);
  }
  if (cmd == "blackhole" && (in >> ms) && ms >= 0) {
    p.blackhole(std::chrono::milliseconds(ms));
    return "ok blackhole " + std::to_string(ms);
  }
  if (cmd == "reset") {
    p.reset();
    return "ok reset";
  }
  std::string arg;
  if (cmd == "refuse" && (in >> arg) && (arg == "on" || arg == "off")) {
    p.refuse(arg == "on");
    return "ok refuse " + arg;
  }
  if (cmd == "clear") {
    p.clear();
    return "ok clear";
  }
  if (cmd == "stats") {
    Stats s = p.stats();
    return "ok accepted=" + std::to_string(s.accepted) + " open=" + std::to_string(s.open) +
           " refused=" + std::to_string(s.refused) + " resets=" + std::to_string(s.resets) +
           " bytes_up=" + std::to_string(s.bytes_up) + " bytes_down=" + std::to_string(s.bytes_down);
  }
  if (cmd == "quit") {
    *quit = true;
    return "ok quit";
  }
  return "error unknown command: " + line;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agentd-faultproxy: a loopback TCP proxy that injects latency, resets and black holes"};
  std::string listen = "127.0.0.1:0", target;
  app.add_option("--listen", listen, "HOST:PORT to accept on (port 0: any free port)");
  app.add_option("--target", target, "HOST:PORT to forward to")->required();
  CLI11_PARSE(app, argc, argv);
  auto l = parse_host_port(listen);
  auto t = parse_host_port(target);
  if (!l || !t) {
    std::fprintf(stderr, "%s\n", (!l ? l.status() : t.status()).to_string().c_str());
    return 2;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  auto proxy = FaultProxy::start(l->first, l->second, t->first, t->second);
  if (!proxy) {
    std::fprintf(stderr, "%s\n", proxy.status().to_string().c_str());
    return 4;
  }
  std::printf("listening on %s:%u -> %s\n", l->first.c_str(), static_cast<unsigned>((*proxy)->port()), target.c_str());
  std::fflush(stdout);
  std::string line;
  bool quit = false;
  while (!quit && std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::printf("%s\n", run_command(**proxy, line, &quit).c_str());
    std::fflush(stdout);
  }
  if (!quit) {
    int sig = 0;
    sigwait(&sigs, &sig);
  }
  (*proxy)->stop();
  return 0;
}
