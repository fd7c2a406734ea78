#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "core/metrics.h"

using namespace agentd;

TEST_CASE("prometheus text exposition") {
  MetricsRegistry m;
  m.counter("agentd_x_total", "X things", R"(reason="a")").inc(3);
  m.counter("agentd_x_total", "X things", R"(reason="b")").inc();
  m.gauge("agentd_g", "G").set(2.5);
  m.gauge_fn("agentd_f", "F", [] { return 7.0; });
  auto& h = m.histogram("agentd_h_seconds", "H", {0.1, 1});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  std::string t = m.render();
  CHECK(t.find("# TYPE agentd_x_total counter\n") != std::string::npos);
  CHECK(t.find("agentd_x_total{reason=\"a\"} 3\n") != std::string::npos);
  CHECK(t.find("agentd_x_total{reason=\"b\"} 1\n") != std::string::npos);
  CHECK(t.find("agentd_g 2.5\n") != std::string::npos);
  CHECK(t.find("agentd_f 7\n") != std::string::npos);
  CHECK(t.find("agentd_h_seconds_bucket{le=\"0.1\"} 1\n") != std::string::npos);
  CHECK(t.find("agentd_h_seconds_bucket{le=\"1\"} 2\n") != std::string::npos);
  CHECK(t.find("agentd_h_seconds_bucket{le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(t.find("agentd_h_seconds_count 3\n") != std::string::npos);
}

TEST_CASE("the same name and labels return the same series") {
  MetricsRegistry m;
  Counter& a = m.counter("c_total", "c");
  Counter& b = m.counter("c_total", "c");
  CHECK(&a == &b);
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int j = 0; j < 10000; ++j) a.inc();
    });
  for (auto& t : ts) t.join();
  CHECK(b.value() == 40000);
}
