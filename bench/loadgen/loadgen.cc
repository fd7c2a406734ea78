// loadgen: the one load generator bench/run points at agentd and at the
// original-stack baseline (bench/baselines/), so both see the same requests.
//
//   loadgen seed --data-dir DIR --plans P [--track-pending] [--prefix X]
//       plan records bench-plan-0..P-1 (user zero-UUID) written through the
//       Outbox API before agentd starts (agentd's API appends only to
//       existing plans).
//   loadgen post --port N --producers C (--seconds S | --total T) [--plans P]
//                [--plan ID] [--size B] [--core K] [--prefix X]
//       C blocking keep-alive connections, each POSTing
//       /api/v3/agent_message (content of B bytes) round-robin over
//       bench-plan-0..P-1 (or the one plan ID) and waiting for each answer.
//   --prefix X: plans named X0..X(P-1) instead (several instances of a
//       cluster, each owning its own plans).
//   loadgen open --port N --plans P
//       P plans opened through POST /api/v3/process_request (they wait for an
//       approval: start agentd with a long --approval-timeout-s); their ids
//       on stdout, one a line. A seeded plan is completed, and agentd takes
//       no messages for a finished plan.
//   loadgen post ... --plans-file F: round-robin over the plan ids in F.
//   loadgen get --port N --plan ID --requests R [--core K]
//       sequential GET /api/v3/plan?plan_id=ID on one keep-alive connection.
//
// Prints one JSON object on stdout: requests, errors, seconds, throughput
// (requests/s), latency_ms {mean,p50,p90,p99,p999,max} and a log-spaced
// latency histogram [[upper_ms, count], ...]; a summary line on stderr.
// --core pins the generator to one CPU (sched_setaffinity).
#include <sched.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/json.h"
#include "core/plan_record.h"
#include "outbox/outbox.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr const char* kUser = "00000000-0000-0000-0000-000000000000";

struct Args {
  std::map<std::string, std::string> kv;
  bool has(const std::string& k) const { return kv.count(k) != 0; }
  std::string str(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  long num(const std::string& k, long def) const { return has(k) ? std::atol(kv.at(k).c_str()) : def; }
};

std::string plan_id_of(const Args& a, long i) { return a.str("prefix", "bench-plan-") + std::to_string(i); }

int seed(const Args& a) {
  agentd::OutboxOptions o;
  o.dir = a.str("data-dir");
  o.track_pending = a.has("track-pending");
  auto ob = agentd::Outbox::open(o);
  if (!ob) {
    std::fprintf(stderr, "seed: %s\n", ob.status().to_string().c_str());
    return 1;
  }
  long plans = a.num("plans", 64);
  for (long p = 0; p < plans; ++p) {
    agentd::PlanRecord rec;
    rec.plan_id = plan_id_of(a, p);
    rec.user_id = kUser;
    rec.session_id = "bench";
    rec.team_id = "bench";
    rec.initial_goal = "benchmark plan";
    rec.status = agentd::PlanStatus::kCompleted;  // the runtime leaves it alone at start-up
    rec.created_at = rec.updated_at = agentd::now_rfc3339();
    agentd::AppendRequest r;
    r.plan = rec;
    auto res = (*ob)->append_sync(std::move(r));
    if (!res) {
      std::fprintf(stderr, "seed: %s\n", res.status().to_string().c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "seeded %ld plans in %s\n", plans, o.dir.c_str());
  return 0;
}

struct Samples {
  std::vector<double> ms;
  uint64_t errors = 0;
};

void print_result(const std::string& what, Samples all, double seconds, long producers) {
  auto& v = all.ms;
  std::sort(v.begin(), v.end());
  auto q = [&](double p) { return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]; };
  double sum = 0;
  for (double x : v) sum += x;
  // Histogram: 8 buckets per decade from 0.01 ms.
  std::vector<std::pair<double, uint64_t>> hist;
  size_t i = 0;
  for (double edge = 0.01; i < v.size(); edge *= std::pow(10.0, 1.0 / 8)) {
    uint64_t n = 0;
    while (i < v.size() && v[i] <= edge) ++i, ++n;
    if (n) hist.emplace_back(edge, n);
  }
  std::string out = "{\"mode\":";
  agentd::append_json_string(&out, what);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ",\"producers\":%ld,\"requests\":%zu,\"errors\":%llu,\"seconds\":%.3f,\"throughput\":%.1f,"
                "\"latency_ms\":{\"mean\":%.4f,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f},"
                "\"hist\":[",
                producers, v.size(), static_cast<unsigned long long>(all.errors), seconds,
                seconds > 0 ? v.size() / seconds : 0.0, v.empty() ? 0.0 : sum / v.size(), q(0.5), q(0.9), q(0.99),
                q(0.999), v.empty() ? 0.0 : v.back());
  out += buf;
  for (size_t k = 0; k < hist.size(); ++k) {
    std::snprintf(buf, sizeof buf, "%s[%.4f,%llu]", k ? "," : "", hist[k].first,
                  static_cast<unsigned long long>(hist[k].second));
    out += buf;
  }
  out += "]}";
  std::printf("%s\n", out.c_str());
  std::fprintf(stderr, "%s producers=%ld n=%zu errors=%llu %.0f req/s p50=%.3fms p99=%.3fms max=%.3fms\n", what.c_str(),
               producers, v.size(), static_cast<unsigned long long>(all.errors), seconds > 0 ? v.size() / seconds : 0.0,
               q(0.5), q(0.99), v.empty() ? 0.0 : v.back());
}

// One blocking keep-alive connection; reconnects after an error.
class Conn {
 public:
  explicit Conn(int port) : port_(port), sock_(ioc_) {}

  // Sends `req`, reads the answer (its body into `body` when given); true
  // when it is 2xx.
  bool roundtrip(http::request<http::string_body>& req, std::string* body = nullptr) {
    beast::error_code ec;
    if (!sock_.is_open()) {
      sock_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)), ec);
      if (ec) {
        sock_.close(ec);
        return false;
      }
      sock_.set_option(tcp::no_delay(true), ec);
    }
    http::write(sock_, req, ec);
    if (!ec) {
      http::response<http::string_body> res;
      http::read(sock_, buf_, res, ec);
      if (!ec) {
        bool ok = res.result_int() / 100 == 2;
        if (!ok && errors_shown_++ < 3) std::fprintf(stderr, "HTTP %u: %s\n", res.result_int(), res.body().c_str());
        if (!res.keep_alive()) sock_.close(ec);
        if (body) *body = std::move(res.body());
        return ok;
      }
    }
    sock_.close(ec);
    buf_.clear();
    return false;
  }

 private:
  int port_;
  asio::io_context ioc_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
  int errors_shown_ = 0;
};

void pin(const Args& a) {
  if (!a.has("core")) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<int>(a.num("core", 0)), &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) std::perror("sched_setaffinity");
}

// `open`: plans opened through the API, their ids on stdout, one a line.
int open(const Args& a) {
  Conn c(static_cast<int>(a.num("port", 0)));
  long plans = a.num("plans", 64);
  for (long i = 0; i < plans; ++i) {
    http::request<http::string_body> req{http::verb::post, "/api/v3/process_request", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = R"({"description":"a benchmark plan"})";
    req.prepare_payload();
    std::string body;
    auto d = c.roundtrip(req, &body) ? agentd::parse_strict(body)
                                     : agentd::Result<rapidjson::Document>(agentd::internal_error("POST failed"));
    if (!d || !d->IsObject() || !d->HasMember("plan_id") || !(*d)["plan_id"].IsString()) {
      std::fprintf(stderr, "open: POST /api/v3/process_request: %s\n", body.c_str());
      return 1;
    }
    std::printf("%s\n", (*d)["plan_id"].GetString());
  }
  return 0;
}

int post(const Args& a) {
  int port = static_cast<int>(a.num("port", 0));
  long producers = a.num("producers", 1), plans = a.num("plans", 64), size = a.num("size", 200);
  // --plans-file: the plans to post to (loadgen open's output).
  std::vector<std::string> ids;
  if (a.has("plans-file")) {
    std::ifstream in(a.str("plans-file"));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) ids.push_back(line);
    }
    if (ids.empty()) {
      std::fprintf(stderr, "post: no plan in %s\n", a.str("plans-file").c_str());
      return 2;
    }
    plans = static_cast<long>(ids.size());
  }
  double seconds = a.has("seconds") ? std::atof(a.str("seconds").c_str()) : 0;
  long total = a.num("total", 0);
  std::string one_plan = a.str("plan");
  std::string content(static_cast<size_t>(size), 'x');
  for (size_t i = 0; i < content.size(); i += 7) content[i] = ' ';
  std::atomic<long> issued{0};
  std::vector<Samples> per(static_cast<size_t>(producers));
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (long t = 0; t < producers; ++t) {
    threads.emplace_back([&, t] {
      Conn c(port);
      Samples& s = per[static_cast<size_t>(t)];
      for (long k = 0;; ++k) {
        if (total > 0) {
          if (issued.fetch_add(1) >= total) break;
        } else if (Clock::now() >= deadline) {
          break;
        }
        long i = (t + k * producers) % plans;
        std::string pid = !one_plan.empty() ? one_plan : ids.empty() ? plan_id_of(a, i) : ids[static_cast<size_t>(i)];
        std::string body = "{\"plan_id\":";
        agentd::append_json_string(&body, pid);
        body += ",\"agent\":\"Bench_Agent\",\"agent_type\":\"AI_Agent\",\"content\":";
        agentd::append_json_string(&body, content);
        body += '}';
        http::request<http::string_body> req{http::verb::post, "/api/v3/agent_message", 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::content_type, "application/json");
        req.keep_alive(true);
        req.body() = std::move(body);
        req.prepare_payload();
        auto t0 = Clock::now();
        bool ok = c.roundtrip(req);
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (ok)
          s.ms.push_back(ms);
        else
          ++s.errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  Samples all;
  for (auto& s : per) {
    all.ms.insert(all.ms.end(), s.ms.begin(), s.ms.end());
    all.errors += s.errors;
  }
  print_result("post", std::move(all), elapsed, producers);
  return 0;
}

int get(const Args& a) {
  int port = static_cast<int>(a.num("port", 0));
  long requests = a.num("requests", 100);
  Conn c(port);
  Samples s;
  std::string target = "/api/v3/plan?plan_id=" + a.str("plan");
  auto start = Clock::now();
  for (long i = 0; i < requests; ++i) {
    http::request<http::string_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    auto t0 = Clock::now();
    bool ok = c.roundtrip(req);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (ok)
      s.ms.push_back(ms);
    else
      ++s.errors;
  }
  print_result("get_plan", std::move(s), std::chrono::duration<double>(Clock::now() - start).count(), 1);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: loadgen seed|post|get --flag value ... (see loadgen.cc)\n");
    return 2;
  }
  std::string cmd = argv[1];
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) {
      std::fprintf(stderr, "unexpected argument %s\n", k.c_str());
      return 2;
    }
    k = k.substr(2);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
      a.kv[k] = argv[++i];
    else
      a.kv[k] = "1";
  }
  pin(a);
  if (cmd == "seed") return seed(a);
  if (cmd == "post") return post(a);
  if (cmd == "open") return open(a);
  if (cmd == "get") return get(a);
  std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
