// Router's part in several instances on one MongoDB (net/cluster.h): the
// peer-only internal routes, and writes forwarded to a plan's owner.
// Lifetimes as in handlers.cc: every closure that captures the Router's
// `this` also holds `respond` (and so the session that owns the Router), or
// runs inside ServerState::run_read next to such a `done`.
#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include "core/json.h"
#include "net/cluster.h"
#include "net/router.h"
#include "net/state.h"

namespace agentd::net {

namespace {

Response from_peer_reply(PeerReply r) {
  Response res{static_cast<http::status>(r.status), 11};
  res.set(http::field::content_type, r.content_type.empty() ? "application/json" : r.content_type);
  if (!r.retry_after.empty()) res.set(http::field::retry_after, r.retry_after);
  res.body() = std::move(r.body);
  return res;
}

std::string body_plan_id(const Request& req) {
  auto d = parse_strict(req.body());
  if (!d || !d->IsObject()) return {};
  auto it = d->FindMember("plan_id");
  if (it == d->MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

void Router::local_write(const RouteMatch& m, const Request& req, const std::string& user, Respond respond) {
  switch (m.id) {
    case RouteId::kCancel: return cancel(user, m.param, std::move(respond));
    case RouteId::kPlanApproval: return plan_approval(user, req, std::move(respond));
    case RouteId::kUserClarification: return user_clarification(user, req, std::move(respond));
    case RouteId::kAgentMessage: return agent_message(user, req, std::move(respond));
    default: return respond(json_response(http::status::not_found, R"({"detail":"Not Found"})"));
  }
}

void Router::route_write(const RouteMatch& m, const Request& req, const std::string& user, Respond respond) {
  Cluster* cluster = st_.deps.cluster;
  std::string plan_id = m.id == RouteId::kCancel ? m.param : body_plan_id(req);
  auto r = std::make_shared<const Request>(req);
  int retry = st_.cfg.retry_after_seconds;
  // The caller's request as it came, with their identity: the owner checks
  // and answers it exactly as if it had been sent there.
  auto forward = [cluster, r, user, retry](const Peer& peer) -> Response {
    auto reply = cluster->call_owner(peer, r->method(), r->target(), r->body(), (*r)[http::field::content_type], user);
    if (!reply) {
      cluster->forwarded("unreachable").inc();
      return error_response(reply.status(), retry);
    }
    cluster->forwarded("ok").inc();
    return from_peer_reply(std::move(*reply));
  };
  boost::asio::post(st_.read_pool, [this, m, r, user, plan_id, cluster, forward, respond = std::move(respond)] {
    if (!plan_id.empty()) {
      auto local = st_.deps.log->get_plan(plan_id);
      if (local && !local->has_value()) {
        PlanOwner o = cluster->owner_of(plan_id);
        if (o.kind == PlanOwner::Kind::kPeer) return respond(forward(o.peer));
      }
      return local_write(m, *r, user, respond);
    }
    // No plan named (an approval by m_plan_id, a clarification by
    // request_id): this instance's runtime first, then each live peer's.
    local_write(m, *r, user, [this, cluster, forward, respond](Response res) {
      if (res.result() != http::status::not_found) return respond(std::move(res));
      boost::asio::post(st_.read_pool, [cluster, forward, respond, res = std::move(res)]() mutable {
        for (const Peer& p : cluster->live_peers()) {
          Response other = forward(p);
          if (other.result() != http::status::not_found && other.result() != http::status::service_unavailable) {
            return respond(std::move(other));
          }
        }
        respond(std::move(res));
      });
    });
  });
}

void Router::with_user_team(const std::string& user, std::function<void(std::optional<std::string>)> then) {
  Cluster* cluster = st_.deps.cluster;
  if (!cluster) return then(std::nullopt);
  boost::asio::post(st_.read_pool, [this, cluster, user, then = std::move(then)] {
    auto t = cluster->user_team(user);
    if (!t) {
      spdlog::warn("cluster: the team of user {}: {} (the local choice applies)", user, t.status().to_string());
      return then(std::nullopt);
    }
    if (*t && !st_.deps.plans->team_config(**t)) return then(std::nullopt);  // not a team of this instance
    then(std::move(*t));
  });
}

void Router::share_team(const std::string& user, const std::string& team_id, std::function<void(Status)> then) {
  Cluster* cluster = st_.deps.cluster;
  if (!cluster) return then(Status::ok());
  boost::asio::post(st_.read_pool,
                    [cluster, user, team_id, then = std::move(then)] { then(cluster->set_user_team(user, team_id)); });
}

void Router::internal(const RouteMatch& m, const Request& req, const Target& t, Respond respond) {
  if (!st_.deps.cluster || !st_.auth.from_peer(req)) {
    return respond(json_response(http::status::unauthorized, R"({"detail":"cluster secret required"})"));
  }
  int retry = st_.cfg.retry_after_seconds;
  if (m.id == RouteId::kInternalPlans) {
    std::string user = t.get("user_id").value_or("");
    auto asked = t.get_u64("limit", 10000);
    size_t limit = static_cast<size_t>(std::min<uint64_t>(asked ? *asked : 10000, 10000));
    return st_.run_read([this, user, limit] { return st_.deps.log->list_plans(user, limit); },
                        [respond = std::move(respond), retry](Result<std::vector<PlanRecord>> r) {
                          if (!r) return respond(error_response(r.status(), retry));
                          std::string out = "[";
                          for (size_t i = 0; i < r->size(); ++i) {
                            if (i) out += ',';
                            out += encode_plan((*r)[i]);
                          }
                          out += ']';
                          respond(json_response(http::status::ok, std::move(out)));
                        });
  }
  if (m.id == RouteId::kInternalCursor) {
    std::string op = t.get("op").value_or(""), user = t.get("user_id").value_or("");
    std::string plan = t.get("plan_id").value_or("");
    auto seq = t.get_u64("seq", 0);
    auto gen = t.get_u64("generation", 0);
    if (user.empty() || plan.empty() || !seq || !gen || (op != "set" && op != "open" && op != "advance")) {
      return respond(json_response(http::status::unprocessable_entity,
                                   R"({"detail":"op=set|open|advance, user_id, plan_id, seq, generation"})"));
    }
    ResumeCursors::Ticket out;
    if (op == "set") st_.cursors.set(user, plan, *seq);
    if (op == "open") out = st_.cursors.open(user, plan, *seq);
    if (op == "advance") st_.cursors.advance(user, plan, *seq, ResumeCursors::Ticket{0, *gen});
    return respond(json_response(http::status::ok, "{\"start_seq\":" + std::to_string(out.start_seq) +
                                                       ",\"generation\":" + std::to_string(out.generation) + "}"));
  }
  std::string plan_id = t.get("plan_id").value_or("");
  auto after = t.get_u64("after_seq", 0);
  auto limit = t.get_u64("limit", 1000);
  if (plan_id.empty() || !after || !limit) {
    return respond(json_response(http::status::unprocessable_entity, R"({"detail":"plan_id, after_seq, limit"})"));
  }
  size_t lim = static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(*limit, 1), st_.cfg.page_max));
  bool messages = m.id == RouteId::kInternalMessages;
  st_.run_read(
      [this, plan_id, after = *after, lim, messages]() -> Result<std::string> {
        // Only plans held here: a peer asks the owner, never a third instance.
        auto p = st_.deps.log->get_plan(plan_id);
        if (!p) return p.status();
        if (!p->has_value()) return not_found("plan not held by this instance");
        if (!messages) return encode_plan(**p);
        auto r = st_.reader.read_local(plan_id, after, lim);
        if (!r) return r.status();
        return Cluster::encode_messages(*r);
      },
      [respond = std::move(respond), retry, messages](Result<std::string> r) {
        if (!r) return respond(error_response(r.status(), retry));
        auto res = json_response(http::status::ok, std::move(*r));
        if (messages) res.set(http::field::content_type, "application/x-agentd-messages");
        respond(std::move(res));
      });
}

}  // namespace agentd::net
