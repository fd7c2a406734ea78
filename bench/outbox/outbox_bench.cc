// outbox_bench: the outbox against its two floors, on the same folder.
//
//   outbox_bench [--dir DIR] [--seconds S] [--rounds R] [--pending N]
//
// Baselines: (a) write(2) + fdatasync(2) of one record, (b) bare LMDB
// committing batches of B records (B = 1, 64, 1024) with no outbox logic.
// Outbox: append latency p50/p99 with one producer; throughput with 1, 8 and
// 64 producers each waiting for its append — as threads blocking on
// append_sync, and as asynchronous producers on one Asio thread the way
// agentd's sessions append — and with 1,024 appends in flight,
// at 256 B and 1 KiB; peak RssAnon while N messages are pending.
// Prints JSON on stdout and a readable summary on stderr.
#include <fcntl.h>
#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/envelope.h"
#include "outbox/outbox.h"

using namespace agentd;
using Clock = std::chrono::steady_clock;

namespace {

std::string g_dir;
double g_seconds = 1.0;
int g_rounds = 3;
std::ostringstream g_json;
bool g_first_field = true;

void json_field(const std::string& key, double value) {
  g_json << (g_first_field ? "" : ",\n") << "  \"" << key << "\": " << value;
  g_first_field = false;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

std::string list(const std::vector<double>& v) {
  std::string out;
  char buf[32];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, "%s%.3g", out.empty() ? "" : " ", x);
    out += buf;
  }
  return out;
}

double elapsed_ms(Clock::time_point a) { return std::chrono::duration<double, std::milli>(Clock::now() - a).count(); }

// A new empty folder for one measurement. Every phase syncs what it writes,
// so there is no dirty data of ours to wait for; no global sync(2) either,
// which on a shared machine would flush everyone's writes into our figures.
std::string fresh_dir(const std::string& name) {
  std::filesystem::remove_all(g_dir);
  std::string d = g_dir + "/" + name;
  std::filesystem::create_directories(d);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return d;
}

uint64_t rss_anon_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::strtoull(line.c_str() + 8, nullptr, 10);
  }
  return 0;
}

// (a) write + fdatasync of one record: p50 in ms.
double raw_fdatasync_p50(size_t size) {
  std::string path = fresh_dir("raw") + "/log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) std::abort();
  std::string rec(size, 'r');
  std::vector<double> lat;
  auto start = Clock::now();
  while (elapsed_ms(start) < g_seconds * 1000 / 2 || lat.size() < 20) {
    auto t = Clock::now();
    if (::write(fd, rec.data(), rec.size()) != static_cast<ssize_t>(rec.size())) std::abort();
    if (::fdatasync(fd) != 0) std::abort();
    lat.push_back(elapsed_ms(t));
  }
  ::close(fd);
  return pct(lat, 0.5);
}

// (b) bare LMDB: records/s committing batches of `batch` records.
double bare_lmdb_rate(size_t batch, size_t size) {
  std::string d = fresh_dir("lmdb");
  MDB_env* env;
  MDB_txn* txn;
  MDB_dbi dbi;
  if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 8ull << 30) || mdb_env_open(env, d.c_str(), 0, 0644)) {
    std::abort();
  }
  std::string val(size, 'v');
  uint64_t n = 0;
  auto start = Clock::now();
  while (elapsed_ms(start) < g_seconds * 1000) {
    if (mdb_txn_begin(env, nullptr, 0, &txn) || mdb_dbi_open(txn, nullptr, 0, &dbi)) std::abort();
    for (size_t i = 0; i < batch; ++i, ++n) {
      uint64_t be = __builtin_bswap64(n);
      MDB_val k{8, &be}, v{val.size(), val.data()};
      if (mdb_put(txn, dbi, &k, &v, 0)) std::abort();  // plain put, as the outbox does
    }
    if (mdb_txn_commit(txn)) std::abort();
  }
  double rate = static_cast<double>(n) / (elapsed_ms(start) / 1000);
  mdb_env_close(env);
  return rate;
}

std::unique_ptr<Outbox> open_outbox(const std::string& name, bool track_pending) {
  OutboxOptions o;
  o.dir = fresh_dir(name);
  o.track_pending = track_pending;
  auto r = Outbox::open(o);
  if (!r.is_ok()) {
    std::fprintf(stderr, "open: %s\n", r.status().to_string().c_str());
    std::exit(1);
  }
  return std::move(*r);
}

// The producer's part of a message of about `size` bytes, encoded once.
// Bare LMDB with the outbox's layout, no outbox logic: a loop that commits
// batches of B records, each put as the outbox stores a message — a message
// key (plan, seq) in one named database and a (plan, message_id) -> seq entry
// in another — with `plans` plans round-robin. No queue, no writer thread,
// no callbacks: what is left of the outbox's cost is group commit itself.
double bare_layout_rate(size_t batch, size_t size, size_t plans) {
  std::string d = fresh_dir("layout");
  MDB_env* env;
  MDB_txn* txn;
  MDB_dbi msgs, ids;
  if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 8ull << 30) || mdb_env_set_maxdbs(env, 4) ||
      mdb_env_open(env, d.c_str(), 0, 0644)) {
    std::abort();
  }
  std::string val(size, 'v');
  std::vector<uint64_t> seq(plans, 0);
  uint64_t n = 0;
  std::string key, idkey;
  auto start = Clock::now();
  while (elapsed_ms(start) < g_seconds * 1000) {
    if (mdb_txn_begin(env, nullptr, 0, &txn) || mdb_dbi_open(txn, "messages", MDB_CREATE, &msgs) ||
        mdb_dbi_open(txn, "msgids", MDB_CREATE, &ids)) {
      std::abort();
    }
    for (size_t i = 0; i < batch; ++i, ++n) {
      size_t p = n % plans;
      uint64_t s = ++seq[p];
      uint64_t be = __builtin_bswap64(s);
      std::string plan = "plan-" + std::to_string(p);
      key.assign(plan).push_back('\0');
      key.append(reinterpret_cast<const char*>(&be), 8);
      idkey.assign(plan).push_back('\0');
      idkey.append(plan).append("-").append(std::to_string(n));
      MDB_val k{key.size(), key.data()}, v{val.size(), val.data()};
      MDB_val ik{idkey.size(), idkey.data()}, iv{8, &be};
      if (mdb_put(txn, ids, &ik, &iv, MDB_NOOVERWRITE) || mdb_put(txn, msgs, &k, &v, MDB_NOOVERWRITE)) std::abort();
    }
    if (mdb_txn_commit(txn)) std::abort();
  }
  double rate = static_cast<double>(n) / (elapsed_ms(start) / 1000);
  mdb_env_close(env);
  return rate;
}

PreparedMessage message(size_t size, const std::string& plan, uint64_t i) {
  MessageDraft d;
  d.type = "agent_message";
  d.plan_id = plan;
  d.message_id = plan;
  d.message_id.append("-").append(std::to_string(i));
  d.timestamp = "2026-11-26T02:31:00.123Z";
  d.user_id = "00000000-0000-0000-0000-000000000000";
  d.session_id = std::string("session-1");
  PreparedMessage p = prepare(d);
  size_t base = p.tail.size() + 16;
  d.data = "{\"content\":\"";
  d.data.append(size > base ? size - base : 1, 'x').append("\"}");
  return prepare(std::move(d));
}

AppendRequest request(const PreparedMessage& m, uint64_t i) {
  AppendRequest r;
  r.message = m;
  r.message->message_id = std::to_string(i);  // distinct ids, same bytes otherwise
  return r;
}

// One producer waiting for each append: latencies in ms.
std::vector<double> one_producer_latencies(size_t size) {
  auto ob = open_outbox("lat", false);
  PreparedMessage m = message(size, "plan-lat", 0);
  std::vector<double> lat;
  auto start = Clock::now();
  for (uint64_t i = 0; elapsed_ms(start) < g_seconds * 1000 || lat.size() < 20; ++i) {
    auto t = Clock::now();
    auto r = ob->append_sync(request(m, i));
    if (!r.is_ok()) std::abort();
    lat.push_back(elapsed_ms(t));
  }
  return lat;
}

struct Rate {
  double msg_s = 0;
  double mean_batch = 0;  // requests per group commit
};

double mean_batch(Outbox& ob) {
  auto st = ob.stats();
  if (!st.is_ok() || st->commits == 0) return 0;
  return static_cast<double>(st->committed_requests) / static_cast<double>(st->commits);
}

// `producers` threads, each waiting for its append.
Rate producers_rate(size_t producers, size_t size) {
  auto ob = open_outbox("prod", false);
  std::atomic<uint64_t> n{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (size_t p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      PreparedMessage m = message(size, "plan-" + std::to_string(p % 16), p);
      for (uint64_t i = p << 32; !stop; ++i) {
        if (!ob->append_sync(request(m, i)).is_ok()) std::abort();
        ++n;
      }
    });
  }
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(g_seconds));
  uint64_t done = n;
  Rate r{static_cast<double>(done) / (elapsed_ms(start) / 1000), 0};
  stop = true;
  for (auto& t : ts) t.join();
  r.mean_batch = mean_batch(*ob);
  return r;
}

// `producers` asynchronous producers on one Asio io_context thread, each
// waiting for its append: the completion is posted back to the io thread,
// which issues that producer's next append. This is how agentd's producers
// (HTTP/WebSocket sessions, runtime coroutines) use the outbox.
Rate async_producers_rate(size_t producers, size_t size) {
  auto ob = open_outbox("async", false);
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::atomic<uint64_t> n{0};
  std::atomic<size_t> outstanding{producers};  // producers whose append is in flight
  std::atomic<bool> stop{false};
  std::vector<PreparedMessage> msgs;
  for (size_t p = 0; p < producers; ++p) msgs.push_back(message(size, "plan-" + std::to_string(p % 16), p));
  std::vector<uint64_t> next(producers);
  std::function<void(size_t)> issue = [&](size_t p) {
    ob->append(request(msgs[p], (uint64_t{p} << 32) + next[p]++), [&, p](Result<AppendResult> r) {
      if (!r.is_ok()) std::abort();
      boost::asio::post(io, [&, p] {
        ++n;
        if (stop) {
          --outstanding;
        } else {
          issue(p);
        }
      });
    });
  };
  for (size_t p = 0; p < producers; ++p) boost::asio::post(io, [&, p] { issue(p); });
  std::thread io_thread([&] { io.run(); });
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(g_seconds));
  uint64_t done = n;
  Rate r{static_cast<double>(done) / (elapsed_ms(start) / 1000), 0};
  stop = true;
  r.mean_batch = mean_batch(*ob);
  // Every producer's last append completes (and is posted) before the
  // io_context and the outbox go away.
  while (outstanding > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  work.reset();
  io_thread.join();
  return r;
}

// `in_flight` appends outstanding at all times: messages/s. Each completion
// issues the next append (as an async client reacting to completions would;
// issuing is a queue push, short enough for the writer thread).
// With track_pending, runs until `total` appends instead and samples RssAnon.
struct InFlightResult {
  double rate = 0;
  double mean_batch = 0;
  uint64_t peak_rss_anon_kib = 0;
  uint64_t appended = 0;
};
InFlightResult in_flight_rate(size_t in_flight, size_t size, bool track_pending, uint64_t total) {
  auto ob = open_outbox(track_pending ? "pending" : "inflight", track_pending);
  PreparedMessage m = message(size, "plan-x", 0);
  std::atomic<uint64_t> issued{0}, done{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
  std::function<void()> issue = [&] {
    uint64_t i = issued++;
    ob->append(request(m, i), [&](Result<AppendResult> r) {
      if (!r.is_ok()) std::abort();
      uint64_t d = ++done;
      if (!stop && (total == 0 || issued < total)) {
        issue();
      } else if (d == issued) {
        std::lock_guard l(mu);
        cv.notify_all();
      }
    });
  };
  InFlightResult res;
  auto start = Clock::now();
  for (size_t i = 0; i < in_flight; ++i) issue();
  if (total == 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(g_seconds));
    res.appended = done;
    res.rate = static_cast<double>(res.appended) / (elapsed_ms(start) / 1000);
    stop = true;
    res.mean_batch = mean_batch(*ob);
  } else {
    while (done < total) {
      res.peak_rss_anon_kib = std::max(res.peak_rss_anon_kib, rss_anon_kib());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    res.appended = done;
    res.rate = static_cast<double>(res.appended) / (elapsed_ms(start) / 1000);
    // The flusher's view: read every pending entry once in batches.
    uint64_t after = 0, seen = 0;
    for (;;) {
      auto batch = ob->read_pending(1000, 4u << 20, after);
      if (!batch.is_ok() || batch->empty()) break;
      seen += batch->size();
      after = batch->back().id;
      res.peak_rss_anon_kib = std::max(res.peak_rss_anon_kib, rss_anon_kib());
    }
    if (seen != total)
      std::fprintf(stderr, "pending entries: %llu, expected %llu\n", (unsigned long long)seen,
                   (unsigned long long)total);
  }
  std::unique_lock l(mu);
  cv.wait(l, [&] { return done == issued; });
  res.peak_rss_anon_kib = std::max(res.peak_rss_anon_kib, rss_anon_kib());
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t pending_count = 1000000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir") g_dir = argv[i + 1];
    if (a == "--seconds") g_seconds = std::atof(argv[i + 1]);
    if (a == "--pending") pending_count = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--rounds") g_rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  bool own_dir = g_dir.empty();
  if (own_dir)
    g_dir = (std::filesystem::temp_directory_path() / ("outbox-bench-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(g_dir);
  spdlog::set_level(spdlog::level::warn);

  // Each round measures every figure once, baselines next to the outbox, so
  // that a ratio compares figures taken moments apart; the report is the
  // median over rounds (this machine's disk is shared and noisy).
  for (size_t size : {size_t{256}, size_t{1024}}) {
    std::string sz = std::to_string(size);
    const size_t batches[3] = {1, 64, 1024};
    const size_t producers[3] = {1, 8, 64};
    const int baseline_of[3] = {0, 1, 1};  // producers -> bare batch index
    std::vector<double> fsync_p50, p50, p99, p50_ratio, bare[3], layout[3], rate[3], rate_ratio[3], batch[3], arate[3],
        arate_ratio[3], abatch[3], inflight, inflight_ratio, inflight_batch;
    for (int round = 0; round < g_rounds; ++round) {
      fsync_p50.push_back(raw_fdatasync_p50(size));
      for (int b = 0; b < 3; ++b) bare[b].push_back(bare_lmdb_rate(batches[b], size));
      for (int b = 0; b < 3; ++b) layout[b].push_back(bare_layout_rate(batches[b], size, b == 2 ? 1 : 16));
      auto lat = one_producer_latencies(size);
      p50.push_back(pct(lat, 0.5));
      p99.push_back(pct(lat, 0.99));
      p50_ratio.push_back(p50.back() / fsync_p50.back());
      for (int i = 0; i < 3; ++i) {
        Rate r = producers_rate(producers[i], size);
        rate[i].push_back(r.msg_s);
        batch[i].push_back(r.mean_batch);
        rate_ratio[i].push_back(r.msg_s / bare[baseline_of[i]].back());
        Rate a = async_producers_rate(producers[i], size);
        arate[i].push_back(a.msg_s);
        abatch[i].push_back(a.mean_batch);
        arate_ratio[i].push_back(a.msg_s / bare[baseline_of[i]].back());
      }
      auto f = in_flight_rate(1024, size, false, 0);
      inflight.push_back(f.rate);
      inflight_batch.push_back(f.mean_batch);
      inflight_ratio.push_back(f.rate / bare[2].back());
    }
    double fs = pct(fsync_p50, 0.5);
    json_field("raw_fdatasync_p50_ms_" + sz, fs);
    std::fprintf(stderr, "[%4zu B] raw write+fdatasync p50 %.3f ms (rounds: %s)\n", size, fs, list(fsync_p50).c_str());
    for (int b = 0; b < 3; ++b) {
      json_field("bare_lmdb_B" + std::to_string(batches[b]) + "_msg_s_" + sz, pct(bare[b], 0.5));
      std::fprintf(stderr, "[%4zu B] bare LMDB B=%-4zu %9.0f msg/s (rounds: %s)\n", size, batches[b], pct(bare[b], 0.5),
                   list(bare[b]).c_str());
      json_field("bare_layout_B" + std::to_string(batches[b]) + "_msg_s_" + sz, pct(layout[b], 0.5));
      std::fprintf(stderr, "[%4zu B] bare LMDB, outbox layout, B=%-4zu %9.0f msg/s (rounds: %s)\n", size, batches[b],
                   pct(layout[b], 0.5), list(layout[b]).c_str());
    }
    json_field("append_p50_ms_" + sz, pct(p50, 0.5));
    json_field("append_p99_ms_" + sz, pct(p99, 0.5));
    json_field("append_p50_over_fdatasync_" + sz, pct(p50_ratio, 0.5));
    std::fprintf(stderr,
                 "[%4zu B] outbox append, 1 producer: p50 %.3f ms, p99 %.3f ms; p50 / fdatasync p50 = %.2fx "
                 "(target <= 2.5x; rounds: %s)\n",
                 size, pct(p50, 0.5), pct(p99, 0.5), pct(p50_ratio, 0.5), list(p50_ratio).c_str());
    for (int i = 0; i < 3; ++i) {
      std::string key = "outbox_" + std::to_string(producers[i]) + "_producers";
      std::string base = "bare_B" + std::to_string(batches[baseline_of[i]]);
      json_field(key + "_msg_s_" + sz, pct(rate[i], 0.5));
      json_field(key + "_over_" + base + "_" + sz, pct(rate_ratio[i], 0.5));
      json_field(key + "_mean_batch_" + sz, pct(batch[i], 0.5));
      std::fprintf(stderr, "[%4zu B] outbox %2zu producers %9.0f msg/s = %.2fx %s (batch %.1f; rounds: %s)\n", size,
                   producers[i], pct(rate[i], 0.5), pct(rate_ratio[i], 0.5), base.c_str(), pct(batch[i], 0.5),
                   list(rate_ratio[i]).c_str());
      key = "outbox_" + std::to_string(producers[i]) + "_async_producers";
      json_field(key + "_msg_s_" + sz, pct(arate[i], 0.5));
      json_field(key + "_over_" + base + "_" + sz, pct(arate_ratio[i], 0.5));
      json_field(key + "_mean_batch_" + sz, pct(abatch[i], 0.5));
      std::fprintf(stderr, "[%4zu B] outbox %2zu async producers %9.0f msg/s = %.2fx %s (batch %.1f; rounds: %s)\n",
                   size, producers[i], pct(arate[i], 0.5), pct(arate_ratio[i], 0.5), base.c_str(), pct(abatch[i], 0.5),
                   list(arate_ratio[i]).c_str());
    }
    json_field("outbox_1024_in_flight_msg_s_" + sz, pct(inflight, 0.5));
    json_field("outbox_1024_in_flight_over_bare_B1024_" + sz, pct(inflight_ratio, 0.5));
    std::fprintf(stderr,
                 "[%4zu B] outbox 1024 in flight %9.0f msg/s = %.2fx bare_B1024 (target >= 0.8x; batch %.1f; rounds: "
                 "%s)\n",
                 size, pct(inflight, 0.5), pct(inflight_ratio, 0.5), pct(inflight_batch, 0.5),
                 list(inflight_ratio).c_str());
  }
  if (pending_count > 0) {
    uint64_t before = rss_anon_kib();
    auto r = in_flight_rate(1024, 256, true, pending_count);
    json_field("pending_messages", static_cast<double>(r.appended));
    json_field("pending_fill_msg_s", r.rate);
    json_field("peak_rss_anon_mib", static_cast<double>(r.peak_rss_anon_kib) / 1024);
    json_field("rss_anon_before_mib", static_cast<double>(before) / 1024);
    std::fprintf(stderr,
                 "[ 256 B] %llu pending (track_pending, 1024 in flight, %.0f msg/s, then read back): peak RssAnon %.1f "
                 "MiB (before: %.1f MiB; target <= 64 MiB)\n",
                 static_cast<unsigned long long>(r.appended), r.rate, static_cast<double>(r.peak_rss_anon_kib) / 1024,
                 static_cast<double>(before) / 1024);
  }
  std::printf("{\n%s\n}\n", g_json.str().c_str());
  if (own_dir) std::filesystem::remove_all(g_dir);
  return 0;
}
