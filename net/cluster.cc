#include "net/cluster.h"

#include <spdlog/spdlog.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <charconv>

#include "core/clock.h"
#include "core/json.h"
#include "net/auth.h"

namespace agentd::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxOwnerCache = 100000;
constexpr size_t kMaxPeerReply = 256u << 20;  // a page of messages can be large; bounded all the same

std::string query_escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

Status peer_unavailable(const Peer& p, std::string_view what) {
  return unavailable("owner instance " + p.id + " (" + p.url + ") unreachable: " + std::string(what));
}

}  // namespace

Result<std::pair<std::string, std::string>> parse_peer_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme))
    return invalid_argument("advertise URL must start with http:// (got '" + std::string(url) + "')");
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || rest.find('/') != std::string_view::npos) {
    return invalid_argument("advertise URL must be http://host:port (got '" + std::string(url) + "')");
  }
  std::string_view port = rest.substr(colon + 1);
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (ec != std::errc() || ptr != port.data() + port.size() || v == 0 || v > 65535) {
    return invalid_argument("advertise URL has a bad port (got '" + std::string(url) + "')");
  }
  return std::make_pair(std::string(rest.substr(0, colon)), std::string(port));
}

Cluster::Cluster(ClusterConfig cfg, MessageLog* log, MessageStore* store, HistoryReader* history,
                 MetricsRegistry& metrics)
    : cfg_(std::move(cfg)),
      log_(log),
      store_(store),
      history_(history),
      metrics_(metrics),
      heartbeat_failures_(metrics.counter("agentd_cluster_heartbeat_failures_total",
                                          "Heartbeats or instance registry reads that failed")),
      started_ms_(now_unix_ms()) {
  metrics_.gauge_fn("agentd_cluster_live_peers", "Other instances with a fresh heartbeat",
                    [this] { return static_cast<double>(live_peers().size()); });
}

Cluster::~Cluster() { stop(); }

void Cluster::start() {
  beat();
  thread_ = std::thread([this] { run(); });
}

void Cluster::stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (WriteStatus w = store_->remove_instance(cfg_.instance_id); !w.is_ok()) {
    spdlog::warn("cluster: removing instance {} from the registry: {}", cfg_.instance_id, w.failure().message);
  }
}

void Cluster::run() {
  for (;;) {
    {
      MutexLock l(&mu_);
      auto next = std::chrono::steady_clock::now() + cfg_.heartbeat;
      while (!stop_ && cv_.wait_until(next)) {
      }
      if (stop_) return;
    }
    beat();  // MongoDB: with mu_ released
  }
}

void Cluster::beat() {
  InstanceDoc self{cfg_.instance_id, cfg_.advertise_url, started_ms_, now_unix_ms()};
  WriteStatus w = store_->heartbeat(self);
  if (!w.is_ok()) {
    heartbeat_failures_.inc();
    spdlog::warn("cluster: heartbeat of {}: {}", cfg_.instance_id, w.failure().message);
    return;
  }
  refresh();
}

void Cluster::refresh() {
  auto all = store_->list_instances();
  if (!all) {
    heartbeat_failures_.inc();
    spdlog::warn("cluster: reading the instance registry: {}", all.status().message());
    return;
  }
  MutexLock l(&mu_);
  for (auto& d : *all) instances_[d.id] = std::move(d);
}

Result<PeerReply> Cluster::call_owner(const Peer& owner, http::verb verb, std::string_view target,
                                      std::string_view body, std::string_view content_type, std::string_view user) {
  auto r = call(owner, verb, target, body, content_type, user);
  if (r) return r;
  // A restarted owner registers a new address: look again before giving up.
  refresh();
  auto now = known(owner.id);
  if (!now || now->url == owner.url) return r;
  return call(*now, verb, target, body, content_type, user);
}

std::vector<Peer> Cluster::live_peers() const {
  int64_t now = now_unix_ms();
  std::vector<Peer> out;
  MutexLock l(&mu_);
  for (const auto& [id, d] : instances_) {
    if (id == cfg_.instance_id || now - d.heartbeat_ms > cfg_.stale_after.count()) continue;
    auto hp = parse_peer_url(d.url);
    if (!hp) continue;
    out.push_back(Peer{id, d.url, hp->first, hp->second});
  }
  return out;
}

std::optional<Peer> Cluster::known(std::string_view id) const {
  MutexLock l(&mu_);
  auto it = instances_.find(std::string(id));
  if (it == instances_.end()) return std::nullopt;
  auto hp = parse_peer_url(it->second.url);
  if (!hp) return std::nullopt;
  return Peer{it->second.id, it->second.url, hp->first, hp->second};
}

void Cluster::remember(std::string_view plan_id, const std::string& owner) {
  MutexLock l(&mu_);
  if (owners_.size() >= kMaxOwnerCache) owners_.clear();  // ownership never changes: refilling is only a cost
  owners_[std::string(plan_id)] = owner;
}

PlanOwner Cluster::owner_of(std::string_view plan_id) {
  std::string owner;
  {
    MutexLock l(&mu_);
    if (auto it = owners_.find(std::string(plan_id)); it != owners_.end()) owner = it->second;
  }
  if (owner.empty()) {
    auto o = store_->plan_owner(plan_id);
    if (o && o->has_value()) {
      // MongoDB knows the plan: its owner, or (no `_owner`: written by a
      // single instance) whoever reads it from MongoDB.
      owner = (*o)->empty() ? cfg_.instance_id : **o;
    } else {
      // Not flushed yet (or MongoDB is down): the live peer that holds it.
      for (const Peer& p : live_peers()) {
        auto r = call(p, http::verb::get, "/internal/v1/plan?plan_id=" + query_escape(plan_id));
        if (r && r->status == 200) {
          owner = p.id;
          break;
        }
      }
    }
    if (owner.empty()) return PlanOwner{};
    remember(plan_id, owner);
  }
  if (owner == cfg_.instance_id) return PlanOwner{PlanOwner::Kind::kSelf, {}};
  if (auto p = known(owner)) return PlanOwner{PlanOwner::Kind::kPeer, std::move(*p)};
  // An owner the registry never listed (its entry removed at a clean stop):
  // unreachable by definition.
  return PlanOwner{PlanOwner::Kind::kPeer, Peer{owner, "", "", ""}};
}

Result<PeerReply> Cluster::call(const Peer& peer, http::verb verb, std::string_view target, std::string_view body,
                                std::string_view content_type, std::string_view user) {
  if (peer.host.empty()) return peer_unavailable(peer, "not in the instance registry");
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  tcp::resolver resolver(ioc);
  http::request<http::string_body> req{verb, std::string(target), 11};
  req.set(http::field::host, peer.host + ":" + peer.port);
  req.set(kClusterSecretHeader, cfg_.secret);
  if (!user.empty()) req.set(kForwardedUserHeader, std::string(user));
  if (!content_type.empty()) req.set(http::field::content_type, std::string(content_type));
  if (!body.empty() || verb == http::verb::post) {
    req.body() = std::string(body);
    req.prepare_payload();
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxPeerReply);
  beast::error_code failed;
  std::string stage = "resolve";
  stream.expires_after(cfg_.peer_timeout);
  resolver.async_resolve(peer.host, peer.port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) return void(failed = ec);
    stage = "connect";
    stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return void(failed = ec);
      stage = "write";
      http::async_write(stream, req, [&](beast::error_code ec, size_t) {
        if (ec) return void(failed = ec);
        stage = "read";
        http::async_read(stream, buf, parser, [&](beast::error_code ec, size_t) {
          if (ec) failed = ec;
        });
      });
    });
  });
  // The resolver has no timeout of its own; the stream's covers the rest.
  if (ioc.run_for(cfg_.peer_timeout + std::chrono::seconds(1)) == 0 && !ioc.stopped()) ioc.stop();
  if (!ioc.stopped()) ioc.stop();
  if (failed) return peer_unavailable(peer, stage + ": " + failed.message());
  if (!parser.is_done()) return peer_unavailable(peer, stage + ": timed out");
  auto& res = parser.get();
  PeerReply out;
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  out.retry_after = std::string(res[http::field::retry_after]);
  out.body = std::move(res.body());
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return out;
}

Result<std::optional<PlanRecord>> Cluster::get_plan(std::string_view plan_id, ReadNote* note) {
  PlanOwner o = owner_of(plan_id);
  if (o.kind == PlanOwner::Kind::kPeer) {
    auto r = call_owner(o.peer, http::verb::get, "/internal/v1/plan?plan_id=" + query_escape(plan_id));
    if (r && r->status == 200) {
      auto p = decode_plan(r->body);
      if (!p) return corruption("plan record from " + o.peer.id + ": " + p.status().message());
      return std::optional<PlanRecord>(std::move(*p));
    }
    if (!r || r->status >= 500) {
      if (note) {
        note->owner_unreachable = true;
        note->owner = o.peer.id;
      }
      spdlog::debug("cluster: plan {}: owner {}: {}", plan_id, o.peer.id,
                    r ? std::to_string(r->status) : r.status().message());
    }
  }
  if (!history_) return std::optional<PlanRecord>();
  return history_->get_plan(plan_id);
}

Result<std::vector<StoredMessage>> Cluster::read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit,
                                                          ReadNote* note) {
  PlanOwner o = owner_of(plan_id);
  if (o.kind == PlanOwner::Kind::kPeer) {
    auto r = call_owner(o.peer, http::verb::get,
                        "/internal/v1/messages?plan_id=" + query_escape(plan_id) +
                            "&after_seq=" + std::to_string(after_seq) + "&limit=" + std::to_string(limit));
    if (r && r->status == 200) return decode_messages(r->body);
    if (r && r->status != 404 && r->status < 500) {
      return Status(Code::kInternal, "owner " + o.peer.id + " answered " + std::to_string(r->status) + ": " + r->body);
    }
    if (note && (!r || r->status >= 500)) {
      note->owner_unreachable = true;
      note->owner = o.peer.id;
    }
  }
  // The owner is down (or this instance owned and pruned it): MongoDB holds
  // everything that was flushed, in order from seq 1.
  if (!history_) return std::vector<StoredMessage>();
  return history_->read_messages(plan_id, after_seq, limit);
}

std::optional<Peer> Cluster::foreign_owner(std::string_view plan_id) {
  auto local = log_->get_plan(plan_id);
  if (!local || local->has_value()) return std::nullopt;
  PlanOwner o = owner_of(plan_id);
  if (o.kind != PlanOwner::Kind::kPeer) return std::nullopt;
  return o.peer;
}

std::optional<Cluster::CursorReply> Cluster::remote_cursor(const Peer& owner, std::string_view op,
                                                           std::string_view user, std::string_view plan_id,
                                                           uint64_t seq, uint64_t generation) {
  auto r = call_owner(owner, http::verb::post,
                      "/internal/v1/cursor?op=" + std::string(op) + "&user_id=" + query_escape(user) +
                          "&plan_id=" + query_escape(plan_id) + "&seq=" + std::to_string(seq) +
                          "&generation=" + std::to_string(generation));
  if (!r || r->status != 200) return std::nullopt;
  auto d = parse_strict(r->body);
  if (!d || !d->IsObject() || !(*d)["start_seq"].IsUint64() || !(*d)["generation"].IsUint64()) return std::nullopt;
  return CursorReply{(*d)["start_seq"].GetUint64(), (*d)["generation"].GetUint64()};
}

Result<std::vector<PlanRecord>> Cluster::peer_plans(std::string_view user_id, size_t limit) {
  std::vector<PlanRecord> out;
  for (const Peer& p : live_peers()) {
    auto r = call(p, http::verb::get,
                  "/internal/v1/plans?user_id=" + query_escape(user_id) + "&limit=" + std::to_string(limit));
    if (!r || r->status != 200) continue;  // MongoDB has what it flushed
    auto d = parse_strict(r->body, JsonLimits{kMaxPeerReply, 64});
    if (!d || !d->IsArray()) continue;
    for (const auto& v : d->GetArray()) {
      auto plan = decode_plan(write_canonical(v));
      if (plan) out.push_back(std::move(*plan));
    }
  }
  return out;
}

std::string Cluster::encode_messages(const std::vector<StoredMessage>& messages) {
  std::string out;
  for (const auto& m : messages) {
    out += std::to_string(m.seq);
    out += ' ';
    out += std::to_string(m.bytes->size());
    out += '\n';
    out += *m.bytes;
    out += '\n';
  }
  return out;
}

Result<std::vector<StoredMessage>> Cluster::decode_messages(std::string_view body) {
  std::vector<StoredMessage> out;
  while (!body.empty()) {
    size_t nl = body.find('\n');
    size_t sp = body.find(' ');
    if (nl == std::string_view::npos || sp == std::string_view::npos || sp > nl) {
      return corruption("peer messages: bad header");
    }
    uint64_t seq = 0;
    size_t len = 0;
    auto a = std::from_chars(body.data(), body.data() + sp, seq);
    auto b = std::from_chars(body.data() + sp + 1, body.data() + nl, len);
    if (a.ec != std::errc() || b.ec != std::errc() || a.ptr != body.data() + sp || b.ptr != body.data() + nl) {
      return corruption("peer messages: bad header");
    }
    body.remove_prefix(nl + 1);
    if (body.size() < len + 1 || body[len] != '\n') return corruption("peer messages: truncated");
    out.push_back(StoredMessage{seq, std::make_shared<const std::string>(body.substr(0, len))});
    body.remove_prefix(len + 1);
  }
  return out;
}

Counter& Cluster::forwarded(std::string_view result) {
  return metrics_.counter("agentd_cluster_forwards_total",
                          "Requests forwarded to the owner instance of a plan, by result",
                          "result=\"" + std::string(result) + "\"");
}

Status Cluster::set_user_team(std::string_view user, std::string_view team_id) {
  WriteStatus w = store_->set_user_team(user, team_id);
  return w.is_ok() ? Status::ok() : w.to_status();
}

Result<std::optional<std::string>> Cluster::user_team(std::string_view user) { return store_->user_team(user); }

}  // namespace agentd::net
