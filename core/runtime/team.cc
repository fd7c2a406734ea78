#include "core/runtime/team.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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

// Longer than 80 lines: the team file format field by field, in the order
// of team.h, each error naming its field.
Result<TeamConfig> parse_team(std::string_view text, const std::string& source, bool uploaded) {
  auto doc = parse_strict(text);
  if (!doc) return invalid_argument(source + ": " + doc.status().message());
  rapidjson::Document& d = *doc;
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
      AGENTD_RETURN_IF_ERROR(str(sc->value, "record", path + "script.", &ac.script.record, false));
      if (uploaded && !ac.script.record.empty()) {
        return field_error(source, path + "script.record", "not allowed in an uploaded team (it writes a file)");
      }
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
  t.uploaded = uploaded;
  // What the UIs read unguarded (a missing one is a TypeError in the page).
  auto& alloc = d.GetAllocator();
  auto ensure_str = [&alloc](rapidjson::Value& o, const char* key, std::string_view value) {
    auto it = o.FindMember(key);
    if (it != o.MemberEnd() && it->value.IsString()) return;
    rapidjson::Value v(value.data(), static_cast<rapidjson::SizeType>(value.size()), alloc);
    if (it != o.MemberEnd()) {
      it->value = v;
    } else {
      o.AddMember(rapidjson::StringRef(key), v, alloc);
    }
  };
  ensure_str(d, "id", t.team_id);
  auto prot = d.FindMember("protected");
  if (prot == d.MemberEnd()) d.AddMember("protected", rapidjson::Value(!uploaded), alloc);
  if (prot != d.MemberEnd() && uploaded) prot->value.SetBool(false);
  for (auto& a : d["agents"].GetArray()) {
    ensure_str(a, "input_key", "");
    ensure_str(a, "icon", "");
    ensure_str(a, "deployment_name", "");
  }
  if (!d.HasMember("starting_tasks")) d.AddMember("starting_tasks", rapidjson::Value(rapidjson::kArrayType), alloc);
  t.json = write_canonical(d);
  return t;
}

std::vector<TeamConfig> load_uploaded_teams(const std::string& dir) {
  std::vector<TeamConfig> teams;
  std::error_code ec;
  if (dir.empty() || !std::filesystem::is_directory(dir, ec)) return teams;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    auto t = parse_team(ss.str(), f.string(), true);
    if (!t) {
      spdlog::error("uploaded team skipped: {}", t.status().message());
      continue;
    }
    teams.push_back(std::move(t).value());
  }
  return teams;
}

Status write_file_durably(const std::string& dir, const std::string& name, std::string_view content) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error(dir + ": cannot create: " + ec.message());
  const std::string path = dir + "/" + name, tmp = path + ".tmp";
  auto fail = [&](const char* what) {
    Status s = io_error(std::string(what) + " " + tmp + ": " + std::strerror(errno));
    ::unlink(tmp.c_str());
    return s;
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("open");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return fail("fsync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return io_error("open " + dir + ": " + std::strerror(errno));
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return io_error("fsync " + dir + ": " + std::strerror(errno));
  return Status::ok();
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
