#include "core/runtime/planner.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/clock.h"
#include "core/json.h"

namespace agentd {

std::string MPlan::to_json() const {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("id");
  w.String(id);
  w.Key("plan_id");
  w.String(plan_id);
  w.Key("user_id");
  w.String(user_id);
  w.Key("team_id");
  w.String(team_id);
  w.Key("overall_status");
  w.String(overall_status);
  w.Key("user_request");
  w.String(user_request);
  w.Key("team");
  w.StartArray();
  for (const auto& t : team) w.String(t);
  w.EndArray();
  w.Key("facts");
  w.String(facts);
  w.Key("steps");
  w.StartArray();
  for (const auto& s : steps) {
    w.StartObject();
    w.Key("id");
    w.String(s.id);
    w.Key("agent");
    w.String(s.agent);
    w.Key("action");
    w.String(s.action);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<MPlan> MPlan::from_json(std::string_view json) {
  auto doc = parse_strict(json, kStoredJson);  // read from a plan record
  if (!doc) return invalid_argument("m_plan: " + doc.status().message());
  if (!doc->IsObject()) return invalid_argument("m_plan: not an object");
  MPlan p;
  auto str = [](const rapidjson::Value& o, const char* key, const std::string& path, std::string* out) -> Status {
    auto it = o.FindMember(key);
    if (it == o.MemberEnd() || !it->value.IsString()) return invalid_argument(path + key + ": missing or not a string");
    out->assign(it->value.GetString(), it->value.GetStringLength());
    return Status::ok();
  };
  for (auto [key, out] : {std::pair{"id", &p.id},
                          {"plan_id", &p.plan_id},
                          {"user_id", &p.user_id},
                          {"team_id", &p.team_id},
                          {"overall_status", &p.overall_status},
                          {"user_request", &p.user_request},
                          {"facts", &p.facts}}) {
    AGENTD_RETURN_IF_ERROR(str(*doc, key, "m_plan.", out));
  }
  if (p.id.empty()) return invalid_argument("m_plan.id: empty");
  auto team = doc->FindMember("team");
  if (team == doc->MemberEnd() || !team->value.IsArray())
    return invalid_argument("m_plan.team: missing or not an array");
  for (const auto& t : team->value.GetArray()) {
    if (!t.IsString()) return invalid_argument("m_plan.team: not a list of strings");
    p.team.emplace_back(t.GetString(), t.GetStringLength());
  }
  auto steps = doc->FindMember("steps");
  if (steps == doc->MemberEnd() || !steps->value.IsArray() || steps->value.Empty()) {
    return invalid_argument("m_plan.steps: missing, not an array, or empty");
  }
  for (rapidjson::SizeType i = 0; i < steps->value.Size(); ++i) {
    const auto& s = steps->value[i];
    std::string path = "m_plan.steps[" + std::to_string(i) + "].";
    if (!s.IsObject()) return invalid_argument(path.substr(0, path.size() - 1) + ": not an object");
    MPlanStep step;
    AGENTD_RETURN_IF_ERROR(str(s, "id", path, &step.id));
    AGENTD_RETURN_IF_ERROR(str(s, "agent", path, &step.agent));
    AGENTD_RETURN_IF_ERROR(str(s, "action", path, &step.action));
    p.steps.push_back(std::move(step));
  }
  return p;
}

namespace {

MPlan base_plan(const TeamConfig& team, const std::string& task) {
  MPlan p;
  p.id = new_uuid();
  p.user_request = task;
  for (const auto& a : team.agents) p.team.push_back(a.name);
  p.facts = "Team " + team.name + (team.description.empty() ? "" : ": " + team.description);
  return p;
}

}  // namespace

void RuleBasedPlanner::plan(const TeamConfig& team, const std::string& task, std::function<void(Result<MPlan>)> done) {
  MPlan p = base_plan(team, task);
  int i = 0;
  for (const auto& a : team.agents) {
    std::string role = a.description.empty() ? a.name : a.description;
    p.steps.push_back({std::to_string(++i), a.name, role + " — for: " + task});
  }
  done(std::move(p));
}

Result<MPlan> LlmPlanner::parse_reply(const TeamConfig& team, const std::string& task, const std::string& reply) {
  auto open = reply.find('{');
  auto close = reply.rfind('}');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return invalid_argument("planner reply holds no JSON object");
  }
  auto doc = parse_strict(std::string_view(reply).substr(open, close - open + 1));
  if (!doc) return invalid_argument("planner reply: " + doc.status().message());
  auto steps = doc->FindMember("steps");
  if (!doc->IsObject() || steps == doc->MemberEnd() || !steps->value.IsArray() || steps->value.Empty() ||
      steps->value.Size() > 32) {
    return invalid_argument("planner reply: steps: missing, not an array, or not 1..32 entries");
  }
  MPlan p = base_plan(team, task);
  for (rapidjson::SizeType i = 0; i < steps->value.Size(); ++i) {
    const auto& s = steps->value[i];
    std::string path = "planner reply: steps[" + std::to_string(i) + "]";
    if (!s.IsObject() || !s.HasMember("agent") || !s["agent"].IsString() || !s.HasMember("action") ||
        !s["action"].IsString()) {
      return invalid_argument(path + ": needs string fields agent and action");
    }
    std::string agent = s["agent"].GetString();
    bool known = false;
    for (const auto& a : team.agents) known = known || a.name == agent;
    if (!known) return invalid_argument(path + ".agent: '" + agent + "' is not in team " + team.team_id);
    p.steps.push_back({std::to_string(i + 1), agent, s["action"].GetString()});
  }
  return p;
}

void LlmPlanner::plan(const TeamConfig& team, const std::string& task, std::function<void(Result<MPlan>)> done) {
  std::string agents;
  for (const auto& a : team.agents) agents += "- " + a.name + ": " + a.description + "\n";
  ChatRequest req;
  req.timeout = timeout_;
  req.messages.push_back({"system",
                          "You plan work for a team of agents. Reply with one JSON object only, of the form "
                          "{\"steps\":[{\"agent\":\"<agent name>\",\"action\":\"<what the agent does>\"}]}. "
                          "Use only these agents:\n" +
                              agents});
  req.messages.push_back({"user", task});
  model_.complete(std::move(req), nullptr, [team, task, done = std::move(done)](Result<std::string> r) {
    if (!r) return done(r.status());
    done(parse_reply(team, task, *r));
  });
}

}  // namespace agentd
