// net_bench: load generator for agentd's HTTP/WebSocket API (Beast client).
//
//   net_bench --agentd PATH get-plan   [--messages 10000] [--requests 200]
//   net_bench --agentd PATH ws         [--plans 200] [--subs 1000] [--rate 2000] [--seconds 10] [--posters 64]
//   net_bench --agentd PATH cluster --mongo URI [ws options]
//   (all: [--client-core 0] [--server-core 1])
//
// It starts agentd pinned with `taskset -c <server-core>` (default 1) and pins itself to
// <client-core> (default 0), then measures:
//   get-plan: GET /api/v3/plan latency (keep-alive, sequential) for a plan of N messages
//             (seeded through the Outbox API into a temp data dir).
//   ws:       subscribers spread over plans opened through the API (a finished
//             plan takes no messages; these wait for an approval); POST /api/v3/agent_message at `rate`
//             (round-robin over plans, --posters keep-alive connections, default 64); per frame:
//             ack->frame (0 when the frame beat the HTTP ack) and post->frame. The sockets
//             ask after_seq=0, so each is first sent what its plan held (the opened plan's
//             plan_approval_request, seq 1): counted apart, not as frames of the load.
//   cluster:  two instances A and B of one cluster on MongoDB `URI` (issue 16),
//             the plans created on A; the ws load twice, posts always to A:
//             "local" with the subscribers on A (one instance's path), then
//             "cross" with them on B (frames relayed from A's socket).
// Prints p50/p90/p99/max and agentd's peak RSS (VmHWM).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/json.h"
#include "outbox/outbox.h"

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct Args {
  std::string agentd, mode;
  int messages = 10000, requests = 200, plans = 200, subs = 1000, rate = 2000, seconds = 10;
  int client_core = 0, server_core = 1, posters = 64;
  std::string mongo;  // cluster mode: the MongoDB URI (with the database)
};

void pin_self(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) std::perror("sched_setaffinity");
}

int free_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

std::string plan_id_of(int i) { return "bench-plan-" + std::to_string(i); }

void seed(const std::string& dir, int plans, int messages_each) {
  agentd::OutboxOptions o;
  o.dir = dir;
  o.sync = false;
  auto ob = agentd::Outbox::open(o);
  if (!ob) throw std::runtime_error(ob.status().to_string());
  std::atomic<int> pending{0};
  for (int p = 0; p < plans; ++p) {
    agentd::PlanRecord rec;
    rec.plan_id = plan_id_of(p);
    rec.user_id = "00000000-0000-0000-0000-000000000000";
    rec.session_id = "s";
    rec.initial_goal = "bench";
    rec.status = agentd::PlanStatus::kCompleted;
    rec.created_at = rec.updated_at = agentd::now_rfc3339();
    agentd::AppendRequest r;
    r.plan = rec;
    if (!(*ob)->append_sync(std::move(r))) throw std::runtime_error("seed plan");
    for (int m = 0; m < messages_each; ++m) {
      agentd::MessageDraft d;
      d.type = "agent_message";
      d.plan_id = rec.plan_id;
      d.user_id = rec.user_id;
      d.session_id = "s";
      d.data = R"({"agent_name":"Bench","agent_type":"AI_Agent","content":"a typical agent message of about one )"
               R"(hundred and fifty bytes of content, give or take a few words here and there"})";
      agentd::AppendRequest r2;
      r2.message = agentd::prepare(std::move(d));
      pending.fetch_add(1);
      (*ob)->append(std::move(r2), [&pending](agentd::Result<agentd::AppendResult>) { pending.fetch_sub(1); });
      while (pending.load() > 2000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  while (pending.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

struct Server {
  pid_t pid = -1;
  int port = 0;
  // `cluster_id`: start as this instance of a cluster on a.mongo, whose
  // secret is in `secret_file`.
  void start(const Args& a, const std::string& data_dir, const std::string& log, const std::string& cluster_id = {},
             const std::string& secret_file = {}) {
    port = free_port();
    std::vector<std::string> argv{"taskset",
                                  "-c",
                                  std::to_string(a.server_core),
                                  a.agentd,
                                  "--listen",
                                  "127.0.0.1:" + std::to_string(port),
                                  "--data-dir",
                                  data_dir,
                                  "--log-level",
                                  "warn",
                                  "--threads",
                                  "1",
                                  "--approval-timeout-s",
                                  "86400"};
    if (!cluster_id.empty()) {
      for (const std::string& s : {std::string("--mongo-uri"), a.mongo, std::string("--cluster-secret-file"),
                                   secret_file, std::string("--instance-id"), cluster_id,
                                   std::string("--advertise-url"), "http://127.0.0.1:" + std::to_string(port)}) {
        argv.push_back(s);
      }
    }
    std::vector<char*> cargv;
    for (auto& s : argv) cargv.push_back(s.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid, "taskset", &fa, nullptr, cargv.data(), environ) != 0) throw std::runtime_error("spawn");
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 500; ++i) {
      asio::io_context ioc;
      tcp::socket s(ioc);
      beast::error_code ec;
      s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
      if (!ec) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("agentd did not start; see " + log);
  }
  std::string peak_rss() const {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("VmHWM:", 0) == 0) return line.substr(6);
    }
    return "?";
  }
  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
  }
};

void report(const char* what, std::vector<double> v) {
  if (v.empty()) {
    std::printf("%-28s no samples\n", what);
    return;
  }
  std::sort(v.begin(), v.end());
  auto q = [&](double p) { return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]; };
  std::printf("%-28s n=%zu p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms\n", what, v.size(), q(0.5), q(0.9), q(0.99),
              v.back());
}

int get_plan(const Args& a, const std::string& dir) {
  std::printf("seeding 1 plan x %d messages...\n", a.messages);
  seed(dir + "/data", 1, a.messages);
  Server srv;
  srv.start(a, dir + "/data", dir + "/agentd.log");
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(srv.port)));
  std::vector<double> lat;
  size_t bytes = 0, count = 0;
  for (int i = 0; i < a.requests + 5; ++i) {
    http::request<http::empty_body> req{http::verb::get, "/api/v3/plan?plan_id=" + plan_id_of(0), 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    auto t0 = Clock::now();
    http::write(s, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> p;
    p.body_limit(1ull << 30);
    http::read(s, buf, p);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (p.get().result_int() != 200) throw std::runtime_error("GET /plan: " + std::to_string(p.get().result_int()));
    if (i >= 5) lat.push_back(ms);  // warm-up
    bytes = p.get().body().size();
    count = static_cast<size_t>(std::count(p.get().body().begin(), p.get().body().end(), '\n'));
  }
  (void)count;
  std::printf("GET /api/v3/plan, %d messages, %zu bytes per response\n", a.messages, bytes);
  report("GET /plan latency", lat);
  std::printf("agentd peak RSS:%s\n", srv.peak_rss().c_str());
  srv.stop();
  return 0;
}

// ---- ws mode ----------------------------------------------------------------

struct Shared {
  int plans = 0;
  std::vector<std::string> ids;  // the open plans, by index
  // ack time (ns) per plan and seq; 0 = not acked yet.
  std::vector<std::vector<std::atomic<int64_t>>> ack;
  std::vector<double> ack_to_frame, post_to_frame;  // single-threaded client: no lock
  uint64_t frames = 0;                              // frames of this run's posts
  // Frames of messages the plans held before the first post: with
  // after_seq=0 a subscriber is sent the whole log, e.g. an opened plan's
  // plan_approval_request (seq 1). Not of the load; reported apart.
  uint64_t earlier_frames = 0;
  bool measuring = false;
};

class Sub : public std::enable_shared_from_this<Sub> {
 public:
  Sub(asio::io_context& ioc, Shared& sh, int plan) : ws_(ioc), sh_(sh), plan_(plan) {}
  void start(int port) {
    ws_.next_layer().async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
        [self = shared_from_this()](beast::error_code ec) {
          if (ec) return self->fail("connect", ec);
          self->ws_.async_handshake("127.0.0.1", "/api/v3/socket/" + self->sh_.ids[self->plan_] + "?after_seq=0",
                                    [self](beast::error_code ec2) {
                                      if (ec2) return self->fail("handshake", ec2);
                                      ++connected;
                                      self->read();
                                    });
        });
  }
  static inline int connected = 0, closed = 0;

 private:
  void fail(const char* what, beast::error_code ec) {
    std::fprintf(stderr, "sub %s: %s\n", what, ec.message().c_str());
  }
  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        ++closed;  // e.g. cut off as a slow consumer (close code 1013)
        return;
      }
      self->on_frame();
      self->read();
    });
  }
  void on_frame() {
    int64_t t = now_ns();
    std::string_view f(static_cast<const char*>(buf_.data().data()), buf_.size());
    // {"seq":N,...,"content":"<post ns>"...}
    uint64_t seq = std::strtoull(f.data() + 7, nullptr, 10);
    auto c = f.find("\"content\":\"t");
    if (c == std::string_view::npos) {
      ++sh_.earlier_frames;
      buf_.consume(buf_.size());
      return;
    }
    if (sh_.measuring) {
      int64_t sent = std::strtoll(f.data() + c + 12, nullptr, 10);
      sh_.post_to_frame.push_back((t - sent) / 1e6);
      int64_t ack = seq < sh_.ack[plan_].size() ? sh_.ack[plan_][seq].load() : 0;
      sh_.ack_to_frame.push_back(ack == 0 || ack > t ? 0.0 : (t - ack) / 1e6);
    }
    ++sh_.frames;
    buf_.consume(buf_.size());
  }
  websocket::stream<tcp::socket> ws_;
  beast::flat_buffer buf_;
  Shared& sh_;
  int plan_;
};

class Poster : public std::enable_shared_from_this<Poster> {
 public:
  Poster(asio::io_context& ioc, Shared& sh, int port) : s_(ioc), sh_(sh), port_(port) {}
  void connect() {
    s_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)));
    s_.socket().set_option(tcp::no_delay(true));
  }
  bool busy() const { return busy_; }
  void post(int plan) {
    busy_ = true;
    plan_ = plan;
    req_ = {http::verb::post, "/api/v3/agent_message", 11};
    req_.set(http::field::host, "127.0.0.1");
    req_.set(http::field::content_type, "application/json");
    req_.keep_alive(true);
    req_.body() = R"({"plan_id":")" + sh_.ids[plan] + R"(","agent":"Bench","content":"t)" + std::to_string(now_ns()) +
                  R"( and some more text to make a realistic message"})";
    req_.prepare_payload();
    http::async_write(s_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->fail("write", ec);
      self->res_ = {};
      http::async_read(self->s_, self->buf_, self->res_, [self](beast::error_code ec2, size_t) {
        if (ec2) return self->fail("read", ec2);
        self->busy_ = false;
        if (self->res_.result_int() != 200) {
          if (errors++ == 0) {
            std::fprintf(stderr, "poster: %d %s\n", self->res_.result_int(), self->res_.body().c_str());
          }
          return;
        }
        auto& b = self->res_.body();
        auto at = b.find("\"seq\":");
        uint64_t seq = at == std::string::npos ? 0 : std::strtoull(b.c_str() + at + 6, nullptr, 10);
        if (seq < self->sh_.ack[self->plan_].size()) self->sh_.ack[self->plan_][seq].store(now_ns());
        ++acked;
      });
    });
  }
  static inline uint64_t acked = 0, errors = 0, dropped = 0;

 private:
  void fail(const char* what, beast::error_code ec) {
    std::fprintf(stderr, "poster %s: %s\n", what, ec.message().c_str());
    ++errors;
  }
  beast::tcp_stream s_;
  Shared& sh_;
  int port_;
  int plan_ = 0;
  bool busy_ = false;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  beast::flat_buffer buf_;
};

// The ws load: subscribers on `sub_port`, paced posts to `post_port`; prints
// the figures, each line's label starting with `label`.
void ws_load(const Args& a, const std::vector<std::string>& ids, int sub_port, int post_port,
             const std::string& label) {
  Sub::connected = Sub::closed = 0;
  Poster::acked = Poster::errors = Poster::dropped = 0;
  Shared sh;
  sh.ids = ids;
  sh.plans = a.plans;
  size_t per_plan = static_cast<size_t>(a.rate) * (a.seconds + 5) / a.plans + 16;
  sh.ack = std::vector<std::vector<std::atomic<int64_t>>>(a.plans);
  for (auto& v : sh.ack) v = std::vector<std::atomic<int64_t>>(per_plan);
  asio::io_context ioc(1);
  for (int i = 0; i < a.subs; ++i) std::make_shared<Sub>(ioc, sh, i % a.plans)->start(sub_port);
  while (Sub::connected < a.subs) ioc.run_for(std::chrono::milliseconds(10));
  std::printf("%d subscribers connected over %d plans\n", a.subs, a.plans);
  std::vector<std::shared_ptr<Poster>> posters;
  for (int i = 0; i < a.posters; ++i) {
    posters.push_back(std::make_shared<Poster>(ioc, sh, post_port));
    posters.back()->connect();
  }
  // Paced posts: every tick, post what the schedule says is due.
  asio::steady_timer tick(ioc);
  auto start = Clock::now();
  uint64_t sent = 0;
  int next_plan = 0;
  const auto total = static_cast<uint64_t>(a.rate) * static_cast<uint64_t>(a.seconds);
  const auto warmup = total / 10;
  std::function<void()> on_tick = [&] {
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    uint64_t due = std::min<uint64_t>(total, static_cast<uint64_t>(elapsed * a.rate));
    while (sent < due) {
      auto it = std::find_if(posters.begin(), posters.end(), [](auto& p) { return !p->busy(); });
      if (it == posters.end()) {
        ++Poster::dropped;  // all connections busy: the schedule slips (reported)
        break;
      }
      if (sent == warmup) sh.measuring = true;
      (*it)->post(next_plan);
      next_plan = (next_plan + 1) % a.plans;
      ++sent;
    }
    if (sent < total) {
      tick.expires_after(std::chrono::microseconds(500));
      tick.async_wait([&](beast::error_code) { on_tick(); });
    }
  };
  on_tick();
  auto deadline = Clock::now() + std::chrono::seconds(a.seconds + 10);
  uint64_t expected = total * static_cast<uint64_t>(a.subs) / static_cast<uint64_t>(a.plans);
  while (Clock::now() < deadline && (sent < total || Poster::acked + Poster::errors < total || sh.frames < expected)) {
    ioc.run_for(std::chrono::milliseconds(50));
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "posted %llu (acked %llu, errors %llu, schedule slips %llu) in %.1fs; frames received %llu of %llu "
      "(and %llu of messages the plans held before: replayed for after_seq=0)\n",
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(Poster::acked),
      static_cast<unsigned long long>(Poster::errors), static_cast<unsigned long long>(Poster::dropped), secs,
      static_cast<unsigned long long>(sh.frames), static_cast<unsigned long long>(expected),
      static_cast<unsigned long long>(sh.earlier_frames));
  std::printf("subscribers closed by the server: %d\n", Sub::closed);
  report((label + "ack->frame").c_str(), sh.ack_to_frame);
  report((label + "post->frame (incl. commit)").c_str(), sh.post_to_frame);
}

// GET `target` on 127.0.0.1:port; the body ("" on any failure).
std::string http_get(int port, const std::string& target) {
  try {
    asio::io_context ioc;
    beast::tcp_stream s(ioc);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    http::write(s, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res.body();
  } catch (const std::exception&) {
    return {};
  }
}

// `n` plans opened through the API on 127.0.0.1:port (a finished plan takes
// no messages; these wait for an approval, --approval-timeout-s 86400).
std::vector<std::string> open_plans(int port, int n) {
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    http::request<http::string_body> req{http::verb::post, "/api/v3/process_request", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = R"({"description":"a benchmark plan"})";
    req.prepare_payload();
    http::write(s, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    auto at = res.body().find("\"plan_id\":\"");
    if (res.result_int() != 200 || at == std::string::npos) {
      throw std::runtime_error("POST /api/v3/process_request: " + res.body());
    }
    at += 11;
    ids.push_back(res.body().substr(at, res.body().find('"', at) - at));
  }
  return ids;
}

int ws_bench(const Args& a, const std::string& dir) {
  Server srv;
  srv.start(a, dir + "/data", dir + "/agentd.log");
  ws_load(a, open_plans(srv.port, a.plans), srv.port, srv.port, "");
  std::printf("agentd peak RSS:%s\n", srv.peak_rss().c_str());
  srv.stop();
  return 0;
}

int cluster_bench(const Args& a, const std::string& dir) {
  if (a.mongo.empty()) throw std::runtime_error("cluster: --mongo URI is required");
  std::ofstream(dir + "/secret") << "a-cluster-secret-for-net-bench-0123456789\n";
  Server srv_a, srv_b;
  srv_a.start(a, dir + "/a", dir + "/agentd-a.log", "A", dir + "/secret");
  srv_b.start(a, dir + "/b", dir + "/agentd-b.log", "B", dir + "/secret");
  for (Server* s : {&srv_a, &srv_b}) {
    auto until = Clock::now() + std::chrono::seconds(15);
    while (http_get(s->port, "/metrics").find("\nagentd_cluster_live_peers 1\n") == std::string::npos) {
      if (Clock::now() > until) throw std::runtime_error("the two instances do not see each other");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // A owns them all; each phase has its own plans (a socket opened with
  // after_seq=0 on the first phase's would replay its messages first).
  std::vector<std::string> local = open_plans(srv_a.port, a.plans), cross = open_plans(srv_a.port, a.plans);
  std::printf("local: subscribers on A, posts to A\n");
  ws_load(a, local, srv_a.port, srv_a.port, "local ");
  std::printf("cross: subscribers on B, posts to A\n");
  ws_load(a, cross, srv_b.port, srv_a.port, "cross ");
  std::printf("agentd peak RSS: A%s, B%s\n", srv_a.peak_rss().c_str(), srv_b.peak_rss().c_str());
  srv_b.stop();
  srv_a.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(k + " needs a value");
      return argv[++i];
    };
    if (k == "--agentd")
      a.agentd = next();
    else if (k == "--messages")
      a.messages = std::stoi(next());
    else if (k == "--requests")
      a.requests = std::stoi(next());
    else if (k == "--plans")
      a.plans = std::stoi(next());
    else if (k == "--subs")
      a.subs = std::stoi(next());
    else if (k == "--rate")
      a.rate = std::stoi(next());
    else if (k == "--seconds")
      a.seconds = std::stoi(next());
    else if (k == "--posters")
      a.posters = std::stoi(next());
    else if (k == "--client-core")
      a.client_core = std::stoi(next());
    else if (k == "--server-core")
      a.server_core = std::stoi(next());
    else if (k == "--mongo")
      a.mongo = next();
    else
      a.mode = k;
  }
  if (a.agentd.empty() || (a.mode != "get-plan" && a.mode != "ws" && a.mode != "cluster")) {
    std::fprintf(stderr, "usage: net_bench --agentd PATH get-plan|ws|cluster [options] (see the source header)\n");
    return 2;
  }
  pin_self(a.client_core);
  std::string dir = std::filesystem::temp_directory_path() / ("agentd-net-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  int rc = a.mode == "get-plan" ? get_plan(a, dir) : a.mode == "cluster" ? cluster_bench(a, dir) : ws_bench(a, dir);
  std::filesystem::remove_all(dir);
  return rc;
}
