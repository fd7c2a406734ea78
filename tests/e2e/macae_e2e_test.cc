// The MACAE UIs' paths through the real agentd binary (issue 12): the
// message shapes the runtime produces (an MPlan under data.plan, the
// clarification string the v3 UI parses, endings it can show), the echo it
// posts back, GET /plan's chat view, and uploaded teams kept across a
// restart. The browser suite (tests/web/macae) drives the UIs themselves.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <fstream>
#include <regex>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;

namespace {

const Headers kJson{{"content-type", "application/json"}};

std::string write_teams(const std::string& dir) {
  std::filesystem::create_directories(dir + "/teams");
  std::ofstream(dir + "/teams/ask.json") << R"({"team_id":"ask","name":"Ask","agents":[
      {"name":"Asker","type":"script","description":"asks first","script":{"clarify":"Which region's 'market'?\nEU or US"}},
      {"name":"Writer","type":"script","description":"writes"}]})";
  return dir + "/teams";
}

std::string submit(int port, const std::string& team) {
  auto r = http_post(
      port, "/api/v4/process_request",
      JsonObject().str("description", "size the market").str("session_id", "sid_1").str("team_id", team).done(), kJson);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return json(r.body)["plan_id"].GetString();
}

// The next persisted frame of `type` (live-only frames skipped).
rapidjson::Document next_of(WsClient& ws, const std::string& type) {
  for (int i = 0; i < 50; ++i) {
    auto r = ws.read(10000);
    REQUIRE_MESSAGE(r.kind == WsClient::Read::kFrame, "no " << type << " frame: " << r.kind << " " << r.close_reason);
    auto d = json(r.text);
    if (std::string(d["type"].GetString()) == type) return d;
  }
  FAIL("no " << type << " frame");
  return {};
}

std::string str(const rapidjson::Value& v, const char* k) {
  auto it = v.FindMember(k);
  return it != v.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString()) : "<none>";
}

}  // namespace

TEST_CASE("runtime messages in MACAE's shapes: MPlan under data.plan, the v3 clarification string, the echo") {
  Agentd a;
  a.start({"--teams-dir", write_teams(a.dir())});
  std::string plan_id = submit(a.port(), "ask");
  WsClient ws;
  REQUIRE_MESSAGE(
      ws.connect(a.port(), "/api/v4/socket/" + plan_id + "?user_id=00000000-0000-0000-0000-000000000000&after_seq=0"),
      ws.error());
  auto req = next_of(ws, "plan_approval_request");
  const auto& plan = req["data"]["plan"];
  REQUIRE(plan.IsObject());
  for (const char* k : {"id", "plan_id", "user_id", "team_id", "overall_status", "user_request", "facts"}) {
    CHECK_MESSAGE(plan[k].IsString(), k);
  }
  CHECK(str(plan, "plan_id") == plan_id);
  CHECK(str(plan, "team_id") == "ask");
  CHECK(str(plan, "overall_status") == "in_progress");
  CHECK(plan["steps"].Size() == 2);
  CHECK(str(plan["steps"][0], "agent") == "Asker");
  CHECK(str(req["data"], "status") == "PENDING_APPROVAL");
  CHECK(str(req["data"]["context"]["participant_descriptions"], "Writer") == "writes");
  // GET /plan: the m_plan with overall_status (the v3 page calls .toString() on it).
  auto loaded = json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan_id).body);
  CHECK(str(loaded["m_plan"], "overall_status") == "in_progress");

  auto ok = http_post(
      a.port(), "/api/v4/plan_approval",
      JsonObject().str("m_plan_id", str(plan, "id")).str("plan_id", "").boolean("approved", true).done(), kJson);
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  auto ask = next_of(ws, "user_clarification_request");
  std::string rid = str(ask["data"], "request_id");
  CHECK(str(ask, "message_id") == rid);  // so an echo carrying only the request_id is recognised
  // What frontend-v3's parseUserClarificationRequest matches (PlanDataService.tsx).
  std::string repr = str(ask["data"], "repr");
  REQUIRE(repr.starts_with("UserClarificationRequest("));
  std::smatch q, id;
  REQUIRE(std::regex_search(repr, q, std::regex(R"re(question=(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'))re")));
  CHECK(q[2].str() == R"(Which region\'s \'market\'?\nEU or US)");
  REQUIRE(std::regex_search(repr, id, std::regex(R"re(request_id=(?:"([a-fA-F0-9-]+)"|'([a-fA-F0-9-]+)'))re")));
  CHECK(id[2].str() == rid);

  // The UI echoes the question back; agentd already holds it.
  std::string echo_raw =
      JsonObject().str("type", "user_clarification_request").str("question", "q").str("request_id", rid).done();
  auto echo = http_post(a.port(), "/api/v3/agent_message",
                        JsonObject()
                            .str("plan_id", plan_id)
                            .str("agent", "Group_Chat_Manager")
                            .str("content", "q")
                            .str("agent_type", "AI_Agent")
                            .boolean("is_final", false)
                            .str("raw_data", echo_raw)
                            .str("streaming_message", "")
                            .done(),
                        kJson);
  REQUIRE_MESSAGE(echo.status == 200, echo.body);
  CHECK(json(echo.body)["duplicate"].GetBool());
  // While the question is open, GET /plan leaves it to the WebSocket.
  auto open = json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan_id).body);
  for (const auto& m : open["messages"].GetArray()) CHECK(str(m, "content").find("Which region") == std::string::npos);

  REQUIRE(http_post(a.port(), "/api/v3/user_clarification",
                    JsonObject().str("request_id", rid).str("answer", "EU").str("plan_id", plan_id).done(), kJson)
              .status == 200);
  auto fin = next_of(ws, "final_result_message");
  CHECK(str(fin["data"], "status") == "completed");
  // The v3 final echo: the frame two levels down.
  std::string final_raw = R"({"type":"final_result_message","data":{"content":"c","status":"completed","raw_data":)" +
                          write_canonical(fin) + "}}";
  auto fecho = http_post(a.port(), "/api/v3/agent_message",
                         JsonObject()
                             .str("plan_id", plan_id)
                             .str("agent", "Group_Chat_Manager")
                             .str("content", "c")
                             .boolean("is_final", true)
                             .str("raw_data", final_raw)
                             .done(),
                         kJson);
  CHECK(json(fecho.body)["duplicate"].GetBool());

  auto done = json(http_get(a.port(), "/api/v4/plan?plan_id=" + plan_id).body);
  CHECK(str(done["m_plan"], "overall_status") == "completed");
  std::vector<std::string> chat;
  for (const auto& m : done["messages"].GetArray()) chat.push_back(str(m, "agent") + ": " + str(m, "content"));
  REQUIRE(chat.size() == 5);  // question, answer, Asker, Writer, final — each once
  CHECK(chat[0] == "Group_Chat_Manager: Which region's 'market'?\nEU or US");
  CHECK(chat[1] == "Human_Agent: EU");
  CHECK(chat[2].starts_with("Asker: "));
  CHECK(chat[3].starts_with("Writer: "));
  CHECK(chat[4].starts_with("Group_Chat_Manager: \U0001F389\U0001F389 "));
}

TEST_CASE("an approval timeout ends the plan with an error_message the UIs show") {
  Agentd a;
  a.start({"--teams-dir", write_teams(a.dir()), "--approval-timeout-s", "1"});
  std::string plan_id = submit(a.port(), "ask");
  WsClient ws;
  REQUIRE(ws.connect(a.port(), "/api/v3/socket/" + plan_id + "?after_seq=0"));
  auto end = next_of(ws, "error_message");
  CHECK(str(end["data"], "status") == "timeout");
  CHECK(str(end["data"], "timeout_type") == "approval");
  CHECK(str(end["data"], "content") == "Plan canceled: No approval within 1 s; the plan is canceled");
  auto d = json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan_id).body);
  CHECK(str(d["plan"], "status") == "canceled");
  REQUIRE(d["messages"].Size() == 1);
  CHECK(str(d["messages"][0], "content") == "\u26a0\ufe0f Plan canceled: No approval within 1 s; the plan is canceled");
}

TEST_CASE("uploaded teams: multipart upload, served like built-ins, kept across a restart, deleted for good") {
  Agentd a;
  a.start();
  std::string team = R"({"team_id":"custom-1","name":"Custom","description":"d","agents":[
      {"name":"Helper","type":"","description":"helps"}],
      "starting_tasks":[{"id":"t1","name":"Try","prompt":"try it"}]})";
  std::string body =
      "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"custom.json\"\r\n"
      "Content-Type: application/json\r\n\r\n" +
      team + "\r\n--b0undary--\r\n";
  Headers mp{{"content-type", "multipart/form-data; boundary=b0undary"}};
  auto up = http_post(a.port(), "/api/v4/upload_team_config", body, mp);
  REQUIRE_MESSAGE(up.status == 200, up.body);
  auto d = json(up.body);
  CHECK(str(d, "team_id") == "custom-1");
  const auto& t = d["team"];
  CHECK(str(t, "id") == "custom-1");
  CHECK(t["protected"].GetBool() == false);
  CHECK(str(t["agents"][0], "input_key").empty());  // present: the UIs read it unguarded
  CHECK(http_post(a.port(), "/api/v3/upload_team_config", body, mp).status == 409);
  auto bad = http_post(a.port(), "/api/v3/upload_team_config", R"({"team_id":"x","name":"X"})", kJson);
  CHECK(bad.status == 422);
  CHECK(bad.body.find("agents") != std::string::npos);
  CHECK(http_post(a.port(), "/api/v3/upload_team_config",
                  R"({"team_id":"../etc","name":"X","agents":[{"name":"A","type":""}]})", kJson)
            .status == 422);

  auto listed = [&] {
    std::vector<std::string> ids;
    auto teams = json(http_get(a.port(), "/api/v3/team_configs").body);
    for (const auto& x : teams.GetArray()) {
      ids.push_back(str(x, "team_id"));
      CHECK(str(x, "id") == str(x, "team_id"));
    }
    return ids;
  };
  auto has = [](const std::vector<std::string>& v, const std::string& id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  CHECK(has(listed(), "custom-1"));
  // A plan runs with it.
  std::string plan_id = submit(a.port(), "custom-1");
  CHECK(!plan_id.empty());

  a.proc().signal(SIGTERM);
  REQUIRE(a.proc().wait(15000) == 0);
  a.start();
  CHECK(has(listed(), "custom-1"));
  CHECK(http_request(a.port(), "DELETE", "/api/v4/team_configs/research").status == 409);  // built in
  CHECK(http_request(a.port(), "DELETE", "/api/v4/team_configs/custom-1").status == 200);
  CHECK(http_request(a.port(), "DELETE", "/api/v4/team_configs/custom-1").status == 404);
  a.proc().signal(SIGTERM);
  REQUIRE(a.proc().wait(15000) == 0);
  a.start();
  CHECK(!has(listed(), "custom-1"));
  CHECK(has(listed(), "research"));
}
