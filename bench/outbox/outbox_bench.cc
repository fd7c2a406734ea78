// outbox_bench: the outbox against its two floors, on the same folder.
//
//   outbox_bench [--dir DIR] [--seconds S] [--pending N]
//
// Baselines: (a) write(2) + fdatasync(2) of one record, (b) bare LMDB
// committing batches of B records (B = 1, 64, 1024) with no outbox logic.
// Outbox: append latency p50/p99 with one producer; throughput with 1, 8 and
// 64 producers each waiting for its append, and with 1,024 appends in flight,
// at 256 B and 1 KiB; peak RssAnon while N messages are pending.
// Prints JSON on stdout and a readable summary on stderr.
#include <fcntl.h>
#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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
double g_seconds = 2.0;
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

double elapsed_ms(Clock::time_point a) { return std::chrono::duration<double, std::milli>(Clock::now() - a).count(); }

// A new empty folder for one measurement, after the previous one's dirty
// pages were written back (so that writeback does not blur the next figure).
std::string fresh_dir(const std::string& name) {
  std::filesystem::remove_all(g_dir);
  std::string d = g_dir + "/" + name;
  std::filesystem::create_directories(d);
  ::sync();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
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

// `producers` threads, each waiting for its append: messages/s.
double producers_rate(size_t producers, size_t size) {
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
  double rate = static_cast<double>(done) / (elapsed_ms(start) / 1000);
  stop = true;
  for (auto& t : ts) t.join();
  if (auto st = ob->stats(); st.is_ok() && st->commits > 0) {
    std::fprintf(stderr, "         (%zu producers: mean group commit %.1f requests)\n", producers,
                 static_cast<double>(st->committed_requests) / static_cast<double>(st->commits));
  }
  return rate;
}

// `in_flight` appends outstanding at all times: messages/s. Each completion
// issues the next append (as an async client reacting to completions would;
// issuing is a queue push, short enough for the writer thread).
// With track_pending, runs until `total` appends instead and samples RssAnon.
struct InFlightResult {
  double rate = 0;
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
    if (auto st = ob->stats(); st.is_ok() && st->commits > 0) {
      std::fprintf(stderr, "         (%zu in flight: mean group commit %.1f requests)\n", in_flight,
                   static_cast<double>(st->committed_requests) / static_cast<double>(st->commits));
    }
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
  }
  bool own_dir = g_dir.empty();
  if (own_dir)
    g_dir = (std::filesystem::temp_directory_path() / ("outbox-bench-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(g_dir);
  spdlog::set_level(spdlog::level::warn);

  for (size_t size : {size_t{256}, size_t{1024}}) {
    std::string sz = std::to_string(size);
    double fsync_p50 = raw_fdatasync_p50(size);
    json_field("raw_fdatasync_p50_ms_" + sz, fsync_p50);
    std::fprintf(stderr, "[%4zu B] raw write+fdatasync p50 %.3f ms\n", size, fsync_p50);
    double bare[3];
    size_t batches[3] = {1, 64, 1024};
    for (int b = 0; b < 3; ++b) {
      bare[b] = bare_lmdb_rate(batches[b], size);
      json_field("bare_lmdb_B" + std::to_string(batches[b]) + "_msg_s_" + sz, bare[b]);
      std::fprintf(stderr, "[%4zu B] bare LMDB B=%-4zu %10.0f msg/s\n", size, batches[b], bare[b]);
    }
    auto lat = one_producer_latencies(size);
    double p50 = pct(lat, 0.5), p99 = pct(lat, 0.99);
    json_field("append_p50_ms_" + sz, p50);
    json_field("append_p99_ms_" + sz, p99);
    json_field("append_p50_over_fdatasync_" + sz, p50 / fsync_p50);
    std::fprintf(stderr,
                 "[%4zu B] outbox append 1 producer: p50 %.3f ms (%.2fx fdatasync; target <= 2.5x), p99 %.3f ms\n",
                 size, p50, p50 / fsync_p50, p99);
    struct {
      const char* name;
      size_t producers;
      int baseline;
    } runs[] = {{"1_producer", 1, 0}, {"8_producers", 8, 1}, {"64_producers", 64, 1}};
    for (auto& r : runs) {
      double rate = producers_rate(r.producers, size);
      json_field(std::string("outbox_") + r.name + "_msg_s_" + sz, rate);
      json_field(std::string("outbox_") + r.name + "_over_bare_B" + std::to_string(batches[r.baseline]) + "_" + sz,
                 rate / bare[r.baseline]);
      std::fprintf(stderr, "[%4zu B] outbox %-12s %10.0f msg/s (%.2fx bare B=%zu)\n", size, r.name, rate,
                   rate / bare[r.baseline], batches[r.baseline]);
    }
    auto inflight = in_flight_rate(1024, size, false, 0);
    json_field("outbox_1024_in_flight_msg_s_" + sz, inflight.rate);
    json_field("outbox_1024_in_flight_over_bare_B1024_" + sz, inflight.rate / bare[2]);
    std::fprintf(stderr, "[%4zu B] outbox 1024 in flight %9.0f msg/s (%.2fx bare B=1024; target >= 0.8x)\n", size,
                 inflight.rate, inflight.rate / bare[2]);
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
