// Disk faults against the real agentd binary (issue 9): an outbox at its
// maximum size, a data folder that cannot be created, a second agentd on the
// same data folder.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;

namespace {

HttpReply post(int port, const std::string& plan_id, const std::string& content) {
  std::string b = R"({"plan_id":)";
  append_json_string(&b, plan_id);
  b += R"(,"agent":"Ext","content":)";
  append_json_string(&b, content);
  b += "}";
  return http_post(port, "/api/v3/agent_message", b);
}

}  // namespace

TEST_CASE("outbox at its maximum (the 256 KiB minimum): 503 + Retry-After, no crash, reads and health still fine") {
  Agentd a;
  a.start({"--outbox-max-bytes", std::to_string(256 << 10)});
  const auto [plan, base] = open_plan(a.port());
  // Fill it: big messages until one is refused, then smaller ones, down to
  // a one-byte message (a big batch may not fit where a small one still does).
  int ok = 0;
  HttpReply r;
  for (size_t size : {size_t{16} << 10, size_t{1} << 10, size_t{1}}) {
    for (int i = 0; i < 2000; ++i) {
      r = post(a.port(), plan, std::string(size, 'z'));
      if (r.status != 200) break;
      ++ok;
    }
    REQUIRE_MESSAGE(r.status == 503, size << ": " << r.status << " " << r.body);
    CHECK(!r.header("retry-after").empty());
  }
  CHECK(ok > 0);
  MESSAGE(ok << " messages fit in a 256 KiB outbox");
  // Full: keeps answering 503 + Retry-After (not a crash, not a hang).
  for (int i = 0; i < 20; ++i) {
    auto again = post(a.port(), plan, "x");
    CHECK(again.status == 503);
    CHECK(!again.header("retry-after").empty());
  }
  CHECK(a.proc().running());
  CHECK(http_get(a.port(), "/healthz").status == 200);
  // /readyz tells the truth: not ready while appends are refused.
  auto ready = http_get(a.port(), "/readyz");
  CHECK_MESSAGE(ready.status == 503, "/readyz while the outbox is full: " << ready.status << " " << ready.body);
  CHECK(ready.body.find("outbox full") != std::string::npos);
  CHECK(ready.header("retry-after") != "");
  // Reads still work: the complete log and GET /plan's chat view (every
  // message here is an agent's) hold every acknowledged message.
  auto log = http_get(a.port(), "/api/v3/plan/" + plan + "/messages?limit=10000&after_seq=" + std::to_string(base));
  REQUIRE(log.status == 200);
  auto l = parse_strict(log.body, JsonLimits{64 << 20, 64});
  REQUIRE(l.is_ok());
  CHECK((*l)["messages"].GetArray().Size() == static_cast<size_t>(ok));
  auto list = http_get(a.port(), "/api/v3/plan?plan_id=" + plan);
  REQUIRE(list.status == 200);
  auto d = parse_strict(list.body, JsonLimits{64 << 20, 64});
  REQUIRE(d.is_ok());
  CHECK((*d)["messages"].GetArray().Size() == static_cast<size_t>(ok));
}

TEST_CASE("outbox limit below the minimum is refused at start") {
  std::string dir = make_temp_dir("agentd-disk");
  int code = run_agentd_to_exit({"--listen", "127.0.0.1:" + std::to_string(free_port()), "--data-dir", dir + "/data",
                                 "--outbox-max-bytes", "4096"},
                                dir + "/log");
  CHECK_MESSAGE(code != 0, read_file(dir + "/log"));
  CHECK(code != -1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a data folder beneath a regular file cannot be created: clear error, exit code 3") {
  std::string dir = make_temp_dir("agentd-disk");
  { std::ofstream(dir + "/file") << "not a folder"; }
  int code = run_agentd_to_exit(
      {"--listen", "127.0.0.1:" + std::to_string(free_port()), "--data-dir", dir + "/file/data"}, dir + "/log");
  std::string log = read_file(dir + "/log");
  CHECK_MESSAGE(code == 3, "exit " << code << "; log:\n" << log);
  CHECK_MESSAGE(log.find("--data-dir") != std::string::npos, log);
  CHECK_MESSAGE(log.find(dir + "/file/data") != std::string::npos, log);
  // The data folder is a regular file itself.
  int code2 = run_agentd_to_exit({"--listen", "127.0.0.1:" + std::to_string(free_port()), "--data-dir", dir + "/file"},
                                 dir + "/log2");
  CHECK_MESSAGE(code2 == 3, "exit " << code2 << "; log:\n" << read_file(dir + "/log2"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a second agentd on the same data folder is refused with exit code 3; the first keeps serving") {
  Agentd a;
  a.start();
  const std::string plan = open_plan(a.port()).id;
  REQUIRE(post(a.port(), plan, "before").status == 200);
  int code = run_agentd_to_exit({"--listen", "127.0.0.1:" + std::to_string(free_port()), "--data-dir", a.data_dir()},
                                a.dir() + "/second.log");
  std::string log = read_file(a.dir() + "/second.log");
  CHECK_MESSAGE(code == 3, "exit " << code << "; log:\n" << log);
  CHECK(log.find(a.data_dir()) != std::string::npos);
  CHECK(a.proc().running());
  REQUIRE(post(a.port(), plan, "after").status == 200);
  CHECK(http_get(a.port(), "/healthz").status == 200);
}
