#include "net/router.h"

#include "core/json.h"
#include "net/body.h"
#include "net/state.h"
#include "net/static_files.h"

namespace agentd::net {

RouteMatch match_route(http::verb method, std::string_view path) {
  struct Fixed {
    std::string_view path;
    http::verb verb;
    RouteId id;
  };
  static constexpr Fixed kFixed[] = {
      {"/healthz", http::verb::get, RouteId::kHealth},
      {"/readyz", http::verb::get, RouteId::kReady},
      {"/metrics", http::verb::get, RouteId::kMetrics},
      {"/api/v3/process_request", http::verb::post, RouteId::kProcessRequest},
      {"/api/v3/plans", http::verb::get, RouteId::kPlans},
      {"/api/v3/plan", http::verb::get, RouteId::kPlan},
      {"/api/v3/plan_approval", http::verb::post, RouteId::kPlanApproval},
      {"/api/v3/user_clarification", http::verb::post, RouteId::kUserClarification},
      {"/api/v3/agent_message", http::verb::post, RouteId::kAgentMessage},
      {"/api/v3/init_team", http::verb::get, RouteId::kInitTeam},
      {"/api/v3/team_configs", http::verb::get, RouteId::kTeamConfigs},
      {"/api/v3/select_team", http::verb::post, RouteId::kSelectTeam},
  };
  struct Param {
    std::string_view prefix, suffix, name;
    http::verb verb;
    RouteId id;
  };
  static constexpr Param kParam[] = {
      {"/api/v3/plan/", "/messages", "/api/v3/plan/{plan_id}/messages", http::verb::get, RouteId::kPlanMessages},
      {"/api/v3/plans/", "/cancel", "/api/v3/plans/{plan_id}/cancel", http::verb::post, RouteId::kCancel},
      {"/api/v3/team_configs/", "", "/api/v3/team_configs/{team_id}", http::verb::get, RouteId::kTeamConfig},
      {"/api/v3/socket/", "", "/api/v3/socket/{plan_id}", http::verb::get, RouteId::kSocket},
  };
  auto verb_ok = [method](http::verb want) {
    return method == want || method == http::verb::options || (want == http::verb::get && method == http::verb::head);
  };
  RouteMatch m;
  for (const auto& f : kFixed) {
    if (path != f.path) continue;
    m.name = f.path;
    m.id = method == http::verb::options ? RouteId::kPreflight : verb_ok(f.verb) ? f.id : RouteId::kMethodNotAllowed;
    return m;
  }
  for (const auto& p : kParam) {
    auto v = path_param(path, p.prefix, p.suffix);
    if (!v) continue;
    m.name = p.name;
    m.param = std::string(*v);
    m.id = method == http::verb::options ? RouteId::kPreflight : verb_ok(p.verb) ? p.id : RouteId::kMethodNotAllowed;
    return m;
  }
  return m;
}

Response json_response(http::status status, std::string body) {
  Response res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

namespace {

std::string detail(std::string_view msg) {
  std::string out = "{\"detail\":";
  append_json_string(&out, msg);
  out += '}';
  return out;
}

}  // namespace

Response error_response(const Status& s, int retry_after_seconds) {
  switch (s.code()) {
    case Code::kInvalidArgument:
      return json_response(http::status::unprocessable_entity,
                           validation_detail({{{"body"}, s.message(), "value_error"}}));
    case Code::kTooLarge: return json_response(http::status::payload_too_large, detail(s.message()));
    case Code::kNotFound: return json_response(http::status::not_found, detail(s.message()));
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return json_response(http::status::conflict, detail(s.message()));
    case Code::kUnauthenticated: return json_response(http::status::unauthorized, detail(s.message()));
    case Code::kOutboxFull:
    case Code::kUnavailable: {
      auto res = json_response(http::status::service_unavailable, detail(s.message()));
      res.set(http::field::retry_after, std::to_string(retry_after_seconds));
      return res;
    }
    default: return json_response(http::status::internal_server_error, detail("internal error: " + s.to_string()));
  }
}

std::string plan_json(const PlanRecord& p) {
  std::string enc = encode_plan(p);
  std::string out = "{\"id\":";
  append_json_string(&out, p.plan_id);
  out += ",\"timestamp\":";
  append_json_string(&out, p.created_at);
  out += ',';
  out.append(enc, 1);  // enc starts with '{'
  return out;
}

Result<PlanRecord> Router::owned_plan(const std::string& user, std::string_view plan_id) {
  auto p = st_.reader.get_plan(plan_id);
  if (!p) return p.status();
  // 404 for someone else's plan too, so that ids do not leak.
  if (!p->has_value() || (*p)->user_id != user) return not_found("Plan not found");
  return std::move(**p);
}

void Router::dispatch(const RouteMatch& m, const Request& req, const Target& t, Respond respond) {
  switch (m.id) {
    case RouteId::kNotFound:
      if (auto page = serve_static(st_.cfg.web_dir, req.method(), t.path)) return respond(std::move(*page));
      return respond(json_response(http::status::not_found, detail("Not Found")));
    case RouteId::kMethodNotAllowed:
      return respond(json_response(http::status::method_not_allowed, detail("Method Not Allowed")));
    case RouteId::kPreflight: {
      Response res{http::status::no_content, 11};
      return respond(std::move(res));
    }
    case RouteId::kHealth: return health(std::move(respond));
    case RouteId::kReady: return ready(std::move(respond));
    case RouteId::kMetrics: return metrics(std::move(respond));
    case RouteId::kSocket:
      return respond(json_response(http::status::bad_request, detail("WebSocket upgrade required")));
    default: break;
  }
  auto id = st_.auth.identify(req, false);
  if (!id) {
    auto res = error_response(id.status(), st_.cfg.retry_after_seconds);
    if (st_.auth.mode() == AuthMode::kToken) res.set(http::field::www_authenticate, "Bearer");
    return respond(std::move(res));
  }
  const std::string& user = id->user_id;
  switch (m.id) {
    case RouteId::kProcessRequest: return process_request(user, req, std::move(respond));
    case RouteId::kPlans: return plans(user, t, std::move(respond));
    case RouteId::kPlan: return plan(user, t, std::move(respond));
    case RouteId::kPlanMessages: return plan_messages(user, m.param, t, std::move(respond));
    case RouteId::kCancel: return cancel(user, m.param, std::move(respond));
    case RouteId::kPlanApproval: return plan_approval(user, req, std::move(respond));
    case RouteId::kUserClarification: return user_clarification(user, req, std::move(respond));
    case RouteId::kAgentMessage: return agent_message(user, req, std::move(respond));
    case RouteId::kInitTeam: return init_team(user, std::move(respond));
    case RouteId::kTeamConfigs: return team_configs(std::move(respond));
    case RouteId::kTeamConfig: return team_config(m.param, std::move(respond));
    case RouteId::kSelectTeam: return select_team(user, req, std::move(respond));
    default: return respond(json_response(http::status::not_found, detail("Not Found")));
  }
}

}  // namespace agentd::net
