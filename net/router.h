// Router: maps a request to a handler (the REST API of the contract's
// decisions, plus /healthz, /readyz, /metrics). Handlers run on the
// connection's strand, never block on I/O (MongoDB reads go through
// ServerState::run_read) and answer through `respond`, exactly once, from any
// thread: the session posts the response back to its strand.
#pragma once

#include <boost/beast/http.hpp>

#include <functional>
#include <string>
#include <string_view>

#include "core/plan_record.h"
#include "core/status.h"
#include "net/history.h"
#include "net/query.h"

namespace agentd::net {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct ServerState;

enum class RouteId {
  kNotFound,
  kMethodNotAllowed,
  kPreflight,
  kHealth,
  kReady,
  kMetrics,
  kProcessRequest,
  kPlans,
  kPlan,
  kPlanMessages,
  kCancel,
  kPlanApproval,
  kUserClarification,
  kAgentMessage,
  kInitTeam,
  kTeamConfigs,
  kTeamConfig,
  kSelectTeam,
  kUploadTeam,
  kDeleteTeam,
  kSocket,
  kConfig,
  kBrowserLanguage,
  kEvents,    // GET /api/vN/plan/{plan_id}/events: SSE (net/sse_session.h)
  kOpenApi,   // GET /openapi.json: the API's OpenAPI document (docs/openapi.json)
  kDocsPage,  // GET /docs and its assets: the document rendered (net/docs.h)
  // Peer-only (several instances, net/cluster.h): not part of the API document.
  kInternalPlan,
  kInternalMessages,
  kInternalPlans,
  kInternalCursor,
};

// The route tables (match_route's source; tests/net/openapi_test.cc checks
// that docs/openapi.json describes exactly these routes).
//
// Routes outside the versioned API.
struct FixedRoute {
  std::string_view path;
  http::verb verb;
  RouteId id;
};
inline constexpr FixedRoute kFixedRoutes[] = {
    {"/healthz", http::verb::get, RouteId::kHealth},
    {"/readyz", http::verb::get, RouteId::kReady},
    {"/metrics", http::verb::get, RouteId::kMetrics},
    {"/config", http::verb::get, RouteId::kConfig},
    {"/api/user_browser_language", http::verb::post, RouteId::kBrowserLanguage},
    {"/openapi.json", http::verb::get, RouteId::kOpenApi},
    {"/docs", http::verb::get, RouteId::kDocsPage},
    {"/docs/swagger-ui-bundle.js", http::verb::get, RouteId::kDocsPage},
    {"/docs/swagger-ui.css", http::verb::get, RouteId::kDocsPage},
};
// Routes between instances of a cluster (net/cluster.h): the cluster secret
// is required; not in the API document.
inline constexpr FixedRoute kInternalRoutes[] = {
    {"/internal/v1/plan", http::verb::get, RouteId::kInternalPlan},
    {"/internal/v1/messages", http::verb::get, RouteId::kInternalMessages},
    {"/internal/v1/plans", http::verb::get, RouteId::kInternalPlans},
    {"/internal/v1/cursor", http::verb::post, RouteId::kInternalCursor},
};
// The versioned API: every route under each of kApiVersions (contract
// decision 1), matched after "/api/vN": `head` is the whole rest, or with
// `param` what comes before the {param} and `tail` what follows it.
inline constexpr std::string_view kApiVersions[] = {"/api/v3", "/api/v4"};
struct ApiRoute {
  std::string_view head, tail;
  bool param;
  std::string_view pattern;  // for metrics, logs and the document, after "/api/vN"
  http::verb verb;
  RouteId id;
};
inline constexpr ApiRoute kApiRoutes[] = {
    {"/process_request", "", false, "/process_request", http::verb::post, RouteId::kProcessRequest},
    {"/plans", "", false, "/plans", http::verb::get, RouteId::kPlans},
    {"/plan", "", false, "/plan", http::verb::get, RouteId::kPlan},
    {"/plan_approval", "", false, "/plan_approval", http::verb::post, RouteId::kPlanApproval},
    {"/user_clarification", "", false, "/user_clarification", http::verb::post, RouteId::kUserClarification},
    {"/agent_message", "", false, "/agent_message", http::verb::post, RouteId::kAgentMessage},
    {"/init_team", "", false, "/init_team", http::verb::get, RouteId::kInitTeam},
    {"/team_configs", "", false, "/team_configs", http::verb::get, RouteId::kTeamConfigs},
    {"/select_team", "", false, "/select_team", http::verb::post, RouteId::kSelectTeam},
    {"/upload_team_config", "", false, "/upload_team_config", http::verb::post, RouteId::kUploadTeam},
    {"/plan/", "/messages", true, "/plan/{plan_id}/messages", http::verb::get, RouteId::kPlanMessages},
    {"/plan/", "/events", true, "/plan/{plan_id}/events", http::verb::get, RouteId::kEvents},
    {"/plans/", "/cancel", true, "/plans/{plan_id}/cancel", http::verb::post, RouteId::kCancel},
    {"/team_configs/", "", true, "/team_configs/{team_id}", http::verb::get, RouteId::kTeamConfig},
    {"/team_configs/", "", true, "/team_configs/{team_id}", http::verb::delete_, RouteId::kDeleteTeam},
    {"/socket/", "", true, "/socket/{plan_id}", http::verb::get, RouteId::kSocket},
};

struct RouteMatch {
  RouteId id = RouteId::kNotFound;
  std::string name = "unmatched";  // the route pattern, for metrics and logs
  std::string param;               // {plan_id} / {team_id}
  int version = 0;                 // 3 or 4 for /api/v3/..., /api/v4/...
  std::string allow;               // the path's methods ("GET, HEAD, OPTIONS"), for a 405's Allow
};

RouteMatch match_route(http::verb method, std::string_view path);

// A JSON response (version and keep-alive are set by the session).
Response json_response(http::status status, std::string body);
// Status -> HTTP (see plan_service.h): 422 with a FastAPI detail list, 404,
// 409, 401, 413, 503 + Retry-After, else 500.
Response error_response(const Status& s, int retry_after_seconds);
// The plan record as REST returns it: encode_plan plus "id" and "timestamp".
std::string plan_json(const PlanRecord& p);
// Several instances, a foreign plan whose owner could not be asked: the
// `"cluster"` member of GET /plan and the paging endpoint,
// {"owner", "owner_reachable": false, "persisted_through": <highest seq MongoDB holds>}
// (",\"cluster\":{…}"), else "".
std::string cluster_note_json(const ReadNote& note, uint64_t persisted_through);

class Router {
 public:
  using Respond = std::function<void(Response)>;
  explicit Router(ServerState& st) : st_(st) {}

  void dispatch(const RouteMatch& m, const Request& req, const Target& t, Respond respond);

 private:
  void health(Respond respond);
  void ready(Respond respond);
  void metrics(Respond respond);
  // GET /config: where a MACAE UI served by agentd finds the API (this
  // request's own origin), contract decision 7.
  void config(const Request& req, Respond respond);
  void process_request(const std::string& user, const Request& req, Respond respond);
  void plans(const std::string& user, const Target& t, Respond respond);
  void plan(const std::string& user, const Target& t, Respond respond);
  void plan_messages(const std::string& user, const std::string& plan_id, const Target& t, Respond respond);
  void cancel(const std::string& user, const std::string& plan_id, Respond respond);
  void plan_approval(const std::string& user, const Request& req, Respond respond);
  void user_clarification(const std::string& user, const Request& req, Respond respond);
  void agent_message(const std::string& user, const Request& req, Respond respond);
  void init_team(const std::string& user, Respond respond);
  void team_configs(Respond respond);
  void team_config(const std::string& team_id, Respond respond);
  void select_team(const std::string& user, const Request& req, Respond respond);
  void respond_team(std::optional<std::string> team, const Respond& respond);  // init_team's answer
  void team_selected(const std::string& team_id, const Respond& respond);      // select_team's answer
  // POST upload_team_config: the team file as multipart field "file" (what
  // the UIs send) or as a JSON body.
  void upload_team(const std::string& user, const Request& req, Respond respond);
  void delete_team(const std::string& user, const std::string& team_id, Respond respond);
  // HEAD of the SSE route (GET is streamed by net/sse_session.h): the headers.
  void events_head(const std::string& user, const std::string& plan_id, Respond respond);

  // The user's plan; kNotFound for a missing plan and for another user's.
  // `note` (optional): how complete a foreign plan's answer is (net/history.h).
  Result<PlanRecord> owned_plan(const std::string& user, std::string_view plan_id, ReadNote* note = nullptr);

  // Several instances (net/cluster_routes.cc). The internal routes; and a
  // write to a plan (agent_message, plan_approval, user_clarification,
  // cancel) that this instance does not own is forwarded to the owner.
  void internal(const RouteMatch& m, const Request& req, const Target& t, Respond respond);
  void route_write(const RouteMatch& m, const Request& req, const std::string& user, Respond respond);
  void local_write(const RouteMatch& m, const Request& req, const std::string& user, Respond respond);
  // A cluster's users' selected teams live in MongoDB, so that a page whose
  // requests land on different instances keeps its team. with_user_team()
  // hands `then` the team the user selected on any instance (nullopt: none,
  // one this instance does not know, a single instance, or MongoDB failed:
  // the local choice applies); share_team() records a selection for the
  // other instances. With a cluster both call back on the read pool.
  void with_user_team(const std::string& user, std::function<void(std::optional<std::string>)> then);
  void share_team(const std::string& user, const std::string& team_id, std::function<void(Status)> then);

  ServerState& st_;
};

}  // namespace agentd::net
