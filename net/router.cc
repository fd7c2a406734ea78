#include "net/router.h"

#include "core/json.h"
#include "net/body.h"
#include "net/docs.h"
#include "net/state.h"
#include "net/static_files.h"

namespace agentd::net {

RouteMatch match_route(http::verb method, std::string_view path) {
  auto verb_ok = [method](http::verb want) {
    return method == want || (want == http::verb::get && method == http::verb::head);
  };
  // A 405 says which methods the path has (RFC 9110 15.5.6: Allow).
  auto allow = [](std::string* out, http::verb v) {
    if (!out->empty()) *out += ", ";
    *out += http::to_string(v);
    if (v == http::verb::get) *out += ", HEAD";
  };
  RouteMatch m;
  for (const auto& f : kFixedRoutes) {
    if (path != f.path) continue;
    m.name = std::string(f.path);
    m.id = method == http::verb::options ? RouteId::kPreflight : verb_ok(f.verb) ? f.id : RouteId::kMethodNotAllowed;
    allow(&m.allow, f.verb);
    m.allow += ", OPTIONS";
    return m;
  }
  for (const auto& f : kInternalRoutes) {
    if (path != f.path) continue;
    m.name = std::string(f.path);
    m.id = verb_ok(f.verb) ? f.id : RouteId::kMethodNotAllowed;
    allow(&m.allow, f.verb);
    return m;
  }
  std::string_view version;
  for (std::string_view v : kApiVersions) {
    if (path.starts_with(v)) version = v;
  }
  if (version.empty()) return m;
  std::string_view rest = path.substr(version.size());
  bool path_known = false;
  for (const auto& a : kApiRoutes) {
    std::optional<std::string_view> param;
    if (a.param) {
      param = path_param(rest, a.head, a.tail);
      if (!param) continue;
    } else if (rest != a.head) {
      continue;
    }
    path_known = true;
    allow(&m.allow, a.verb);
    m.name = std::string(version) + std::string(a.pattern);
    if (param) m.param = std::string(*param);
    m.version = version.back() - '0';
    if (method == http::verb::options) {
      m.id = RouteId::kPreflight;
      return m;
    }
    if (verb_ok(a.verb)) {
      m.id = a.id;
      return m;
    }
  }
  if (path_known) {
    m.id = RouteId::kMethodNotAllowed;
    m.allow += ", OPTIONS";
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

std::string cluster_note_json(const ReadNote& note, uint64_t persisted_through) {
  if (!note.owner_unreachable) return {};
  std::string out = ",\"cluster\":{\"owner\":";
  append_json_string(&out, note.owner);
  out += ",\"owner_reachable\":false,\"persisted_through\":" + std::to_string(persisted_through) + "}";
  return out;
}

Result<PlanRecord> Router::owned_plan(const std::string& user, std::string_view plan_id, ReadNote* note) {
  auto p = st_.reader.get_plan(plan_id, note);
  if (!p) return p.status();
  // 404 for someone else's plan too, so that ids do not leak.
  if (!p->has_value() || (*p)->user_id != user) return not_found("Plan not found");
  return std::move(**p);
}

void Router::events_head(const std::string& user, const std::string& plan_id, Respond respond) {
  int retry = st_.cfg.retry_after_seconds;
  st_.run_read([this, user, plan_id] { return owned_plan(user, plan_id); },
               [respond = std::move(respond), retry](Result<PlanRecord> p) {
                 if (!p) return respond(error_response(p.status(), retry));
                 Response res{http::status::ok, 11};
                 res.set(http::field::content_type, "text/event-stream; charset=utf-8");
                 res.set(http::field::cache_control, "no-cache");
                 respond(std::move(res));
               });
}

void Router::dispatch(const RouteMatch& m, const Request& req, const Target& t, Respond respond) {
  switch (m.id) {
    case RouteId::kNotFound:
      if (auto page = serve_static(st_.cfg.web_dir, req.method(), t.path, !st_.cfg.web_dir.empty())) {
        return respond(std::move(*page));
      }
      return respond(json_response(http::status::not_found, detail("Not Found")));
    case RouteId::kMethodNotAllowed: {
      auto res = json_response(http::status::method_not_allowed, detail("Method Not Allowed"));
      res.set(http::field::allow, m.allow);
      return respond(std::move(res));
    }
    case RouteId::kPreflight: {
      Response res{http::status::no_content, 11};
      return respond(std::move(res));
    }
    case RouteId::kHealth: return health(std::move(respond));
    case RouteId::kReady: return ready(std::move(respond));
    case RouteId::kMetrics: return metrics(std::move(respond));
    case RouteId::kConfig: return config(req, std::move(respond));
    case RouteId::kOpenApi:
    case RouteId::kDocsPage: return respond(docs_response(t.path));
    case RouteId::kSocket:
      return respond(json_response(http::status::bad_request, detail("WebSocket upgrade required")));
    case RouteId::kInternalPlan:
    case RouteId::kInternalMessages:
    case RouteId::kInternalPlans:
    case RouteId::kInternalCursor: return internal(m, req, t, std::move(respond));
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
    case RouteId::kCancel:
    case RouteId::kPlanApproval:
    case RouteId::kUserClarification:
    case RouteId::kAgentMessage:
      // Several instances: the owner appends (a forwarded request is
      // handled here: forwarding happens once).
      if (st_.deps.cluster && !id->forwarded) return route_write(m, req, user, std::move(respond));
      return local_write(m, req, user, std::move(respond));
    default: break;
  }
  switch (m.id) {
    case RouteId::kProcessRequest: return process_request(user, req, std::move(respond));
    case RouteId::kPlans: return plans(user, t, std::move(respond));
    case RouteId::kPlan: return plan(user, t, std::move(respond));
    case RouteId::kPlanMessages: return plan_messages(user, m.param, t, std::move(respond));
    case RouteId::kInitTeam: return init_team(user, std::move(respond));
    case RouteId::kTeamConfigs: return team_configs(std::move(respond));
    case RouteId::kTeamConfig: return team_config(m.param, std::move(respond));
    case RouteId::kSelectTeam: return select_team(user, req, std::move(respond));
    case RouteId::kUploadTeam: return upload_team(user, req, std::move(respond));
    case RouteId::kDeleteTeam: return delete_team(user, m.param, std::move(respond));
    case RouteId::kEvents: return events_head(user, m.param, std::move(respond));
    case RouteId::kBrowserLanguage: {
      // The MACAE UIs send {"language": "…"}; nothing is kept, but the body
      // is checked like any other (schemathesis: a non-object was accepted).
      if (!req.body().empty()) {
        Body b(req.body(), st_.cfg.max_body_bytes);
        b.string("language", false);
        if (!b.ok()) return respond(json_response(http::status::unprocessable_entity, b.detail()));
      }
      return respond(json_response(http::status::ok, R"({"status":"Language received successfully"})"));
    }
    default: return respond(json_response(http::status::not_found, detail("Not Found")));
  }
}

}  // namespace agentd::net
