// Static serving of the web page: which paths name a file, content types,
// folder and embedded sources, and the binary serving "/" beside the API.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>

#include "net/static_files.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::net;
using namespace agentd::test;
namespace http = boost::beast::http;

TEST_CASE("static paths: '/' is index.html; traversal, encodings, absolute paths and NUL never name a file") {
  CHECK(static_relative_path("/") == std::optional<std::string>("index.html"));
  CHECK(static_relative_path("/app.js") == std::optional<std::string>("app.js"));
  CHECK(static_relative_path("/img/logo-1_a.svg") == std::optional<std::string>("img/logo-1_a.svg"));
  const char* bad[] = {"",         "app.js", "/..", "/../etc/passwd", "/a/../b",   "//etc/passwd", "/a//b",
                       "/.hidden", "/a/.",   "/a/", "/%2e%2e/x",      "/a\\..\\b", "/a b",         "/a?b",
                       "/\xc3\xa9"};
  for (const char* p : bad) CHECK_MESSAGE(!static_relative_path(p), p);
  CHECK(!static_relative_path(std::string_view("/a\0b", 4)));
}

TEST_CASE("content types by extension") {
  CHECK(static_content_type("index.html") == "text/html; charset=utf-8");
  CHECK(static_content_type("app.js") == "text/javascript; charset=utf-8");
  CHECK(static_content_type("style.css") == "text/css; charset=utf-8");
  CHECK(static_content_type("x.svg") == "image/svg+xml");
  CHECK(static_content_type("blob") == "application/octet-stream");
}

TEST_CASE("serve_static: folder files, HEAD without body, 404s, and requests left to the API") {
  std::string dir = make_temp_dir("agentd-web");
  std::ofstream(dir + "/index.html") << "<h1>hi</h1>";
  std::filesystem::create_directories(dir + "/sub");
  std::ofstream(dir + "/sub/app.js") << "let x = 1;";
  std::ofstream(dir + "/secret.txt") << "secret";
  REQUIRE(::symlink((dir + "/secret.txt").c_str(), (dir + "/link.txt").c_str()) == 0);

  auto r = serve_static(dir, http::verb::get, "/");
  REQUIRE(r);
  CHECK(r->result() == http::status::ok);
  CHECK(r->body() == "<h1>hi</h1>");
  CHECK((*r)[http::field::content_type] == "text/html; charset=utf-8");

  r = serve_static(dir, http::verb::get, "/sub/app.js");
  REQUIRE(r);
  CHECK(r->body() == "let x = 1;");

  // HEAD gets the same response; the HTTP session sends its headers only.
  r = serve_static(dir, http::verb::head, "/sub/app.js");
  REQUIRE(r);
  CHECK(r->result() == http::status::ok);
  CHECK(r->body() == "let x = 1;");

  for (const char* p : {"/missing.js", "/sub", "/link.txt", "/../secret.txt", "/sub/../secret.txt"}) {
    r = serve_static(dir, http::verb::get, p);
    REQUIRE_MESSAGE(r, p);
    CHECK_MESSAGE(r->result() == http::status::not_found, p);
  }
  CHECK(!serve_static(dir, http::verb::post, "/"));
  CHECK(!serve_static(dir, http::verb::get, "/api/v3/nothing"));
  CHECK(!serve_static(dir, http::verb::get, "/api"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("the embedded copy holds web/ as it is in the source tree") {
  const char* src = std::getenv("AGENTD_SOURCE_DIR");
  REQUIRE(src);
  for (const char* name : {"index.html", "app.js", "style.css"}) {
    std::ifstream f(std::string(src) + "/web/" + name, std::ios::binary);
    std::string want((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto r = serve_static("", http::verb::get, std::string("/") + name);
    REQUIRE(r);
    CHECK(r->result() == http::status::ok);
    CHECK_MESSAGE(r->body() == want, name);
  }
}

TEST_CASE("agentd serves the page at / beside the API, embedded or from --web-dir") {
  Agentd a;
  a.start();
  HttpReply r = http_get(a.port(), "/");
  CHECK(r.status == 200);
  CHECK(r.body.find("<script src=\"/app.js\">") != std::string::npos);
  // HEAD: GET's headers, Content-Length included, and no body.
  HttpReply head = http_request(a.port(), "HEAD", "/");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.header("content-length") == std::to_string(r.body.size()));
  HttpReply head_api = http_request(a.port(), "HEAD", "/healthz");
  CHECK(head_api.body.empty());
  CHECK(head_api.header("content-length") == std::to_string(http_get(a.port(), "/healthz").body.size()));
  CHECK(http_get(a.port(), "/app.js").status == 200);
  CHECK(http_get(a.port(), "/%2e%2e/%2e%2e/etc/passwd").status == 404);
  CHECK(http_get(a.port(), "/nope.html").status == 404);
  // The API keeps its own answers.
  CHECK(http_get(a.port(), "/api/v3/nope").status == 404);
  CHECK(http_get(a.port(), "/healthz").status == 200);

  Agentd b;
  std::filesystem::create_directories(b.dir() + "/web");
  std::ofstream(b.dir() + "/web/index.html") << "custom page";
  b.start({"--web-dir", b.dir() + "/web"});
  r = http_get(b.port(), "/");
  CHECK(r.status == 200);
  CHECK(r.body == "custom page");
  CHECK(http_get(b.port(), "/app.js").status == 404);
}
