#include "core/runtime/team.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "core/json.h"

namespace agentd {
namespace {

// The agent types a team may name; anything else (a typo) is refused
// rather than run as some default agent.
constexpr std::string_view kAgentTypes[] = {
    "script",    // agentd's deterministic script agent
    "llm",       // the model (needs --llm-base-url)
    "ai_agent",  // MACAE: the model when configured, else the script agent
    "",          // MACAE's shipped teams leave `type` empty: same as ai_agent
};

Status field_error(const std::string& source, const std::string& field, const std::string& what) {
  return invalid_argument(source + ": " + field + ": " + what);
}

}  // namespace

Result<TeamConfig> parse_team(std::string_view text, const std::string& source) {
  auto doc = parse_strict(text);
  if (!doc) return invalid_argument(source + ": " + doc.status().message());
  const rapidjson::Value& d = *doc;
  if (!d.IsObject()) return field_error(source, "$root", "not a JSON object");
  TeamConfig t;
  auto str = [&](const rapidjson::Value& o, const char* f, const std::string& path, std::string* out,
                 bool required) -> Status {
    auto it = o.FindMember(f);
    if (it == o.MemberEnd()) return required ? field_error(source, path + f, "missing") : Status::ok();
    if (!it->value.IsString()) return field_error(source, path + f, "not a string");
    out->assign(it->value.GetString(), it->value.GetStringLength());
    if (required && out->empty()) return field_error(source, path + f, "empty");
    return Status::ok();
  };
  AGENTD_RETURN_IF_ERROR(str(d, "team_id", "", &t.team_id, true));
  AGENTD_RETURN_IF_ERROR(str(d, "name", "", &t.name, true));
  AGENTD_RETURN_IF_ERROR(str(d, "description", "", &t.description, false));
  auto agents = d.FindMember("agents");
  if (agents == d.MemberEnd() || !agents->value.IsArray() || agents->value.Empty()) {
    return field_error(source, "agents", "missing, not an array, or empty");
  }
  std::set<std::string> names;
  for (rapidjson::SizeType i = 0; i < agents->value.Size(); ++i) {
    const rapidjson::Value& a = agents->value[i];
    std::string path = "agents[" + std::to_string(i) + "].";
    if (!a.IsObject()) return field_error(source, path.substr(0, path.size() - 1), "not an object");
    AgentConfig ac;
    AGENTD_RETURN_IF_ERROR(str(a, "name", path, &ac.name, true));
    auto type = a.FindMember("type");
    if (type == a.MemberEnd()) return field_error(source, path + "type", "missing");
    if (!type->value.IsString()) return field_error(source, path + "type", "not a string");
    ac.type.assign(type->value.GetString(), type->value.GetStringLength());
    if (std::find(std::begin(kAgentTypes), std::end(kAgentTypes), ac.type) == std::end(kAgentTypes)) {
      return field_error(source, path + "type",
                         "unknown agent type '" + ac.type + "' (known: \"script\", \"llm\", \"ai_agent\", \"\")");
    }
    AGENTD_RETURN_IF_ERROR(str(a, "description", path, &ac.description, false));
    AGENTD_RETURN_IF_ERROR(str(a, "system_message", path, &ac.system_message, false));
    if (!names.insert(ac.name).second)
      return field_error(source, path + "name", "duplicate agent name '" + ac.name + "'");
    auto sc = a.FindMember("script");
    if (sc != a.MemberEnd()) {
      if (!sc->value.IsObject()) return field_error(source, path + "script", "not an object");
      auto num = [&](const char* f, int* out, int lo, int hi) -> Status {
        auto it = sc->value.FindMember(f);
        if (it == sc->value.MemberEnd()) return Status::ok();
        if (!it->value.IsInt() || it->value.GetInt() < lo || it->value.GetInt() > hi) {
          return field_error(source, path + "script." + f,
                             "not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        }
        *out = it->value.GetInt();
        return Status::ok();
      };
      AGENTD_RETURN_IF_ERROR(num("messages", &ac.script.messages, 1, 100000));
      AGENTD_RETURN_IF_ERROR(num("size", &ac.script.size, 0, 512 * 1024));
      AGENTD_RETURN_IF_ERROR(num("delay_ms", &ac.script.delay_ms, 0, 600000));
      AGENTD_RETURN_IF_ERROR(str(sc->value, "clarify", path + "script.", &ac.script.clarify, false));
      auto fail = sc->value.FindMember("fail");
      if (fail != sc->value.MemberEnd()) {
        if (!fail->value.IsBool()) return field_error(source, path + "script.fail", "not a boolean");
        ac.script.fail = fail->value.GetBool();
      }
    }
    t.agents.push_back(std::move(ac));
  }
  auto tasks = d.FindMember("starting_tasks");
  if (tasks != d.MemberEnd()) {
    if (!tasks->value.IsArray()) return field_error(source, "starting_tasks", "not an array");
    std::set<std::string> ids;
    for (rapidjson::SizeType i = 0; i < tasks->value.Size(); ++i) {
      const rapidjson::Value& st = tasks->value[i];
      std::string path = "starting_tasks[" + std::to_string(i) + "].";
      if (!st.IsObject()) return field_error(source, path.substr(0, path.size() - 1), "not an object");
      std::string id, name, prompt, ignored;
      AGENTD_RETURN_IF_ERROR(str(st, "id", path, &id, true));
      AGENTD_RETURN_IF_ERROR(str(st, "name", path, &name, true));
      AGENTD_RETURN_IF_ERROR(str(st, "prompt", path, &prompt, true));
      for (const char* f : {"created", "creator", "logo"}) AGENTD_RETURN_IF_ERROR(str(st, f, path, &ignored, false));
      if (!ids.insert(id).second) return field_error(source, path + "id", "duplicate starting task id '" + id + "'");
    }
  }
  t.json = write_canonical(d);
  return t;
}

Result<std::vector<TeamConfig>> load_teams(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return not_found("--teams-dir " + dir + ": not a folder");
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  }
  if (ec) return io_error("--teams-dir " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::vector<TeamConfig> teams;
  std::set<std::string> ids;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in.good() && !in.eof()) return io_error(f.string() + ": cannot read");
    auto t = parse_team(ss.str(), f.string());
    if (!t) return t.status();
    if (!ids.insert(t->team_id).second)
      return field_error(f.string(), "team_id", "duplicate team id '" + t->team_id + "'");
    teams.push_back(std::move(t).value());
  }
  if (teams.empty()) return not_found("--teams-dir " + dir + ": no *.json team files");
  return teams;
}

}  // namespace agentd
