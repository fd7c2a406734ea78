// Teams: MACAE-format team configurations loaded from a folder of JSON files.
//
// A team file is one JSON object:
//   {"team_id": s, "name": s, "description": s, "status"?: s, "logo"?: s,
//    "agents": [{"name": s, "type": s, "description"?: s, "system_message"?: s,
//                "input_key"?: s, "icon"?: s, "script"?: {...}}, ...],   (>= 1)
//    "starting_tasks"?: [{"id": s, "name": s, "prompt": s, "created"?: s,
//                         "creator"?: s, "logo"?: s, ...}]}   (ids unique)
// Agent `type`, one of: "llm" (needs --llm-base-url), "script"
// (deterministic), "ai_agent" or "" (MACAE's types; MACAE's own team files
// leave it empty), run by the LLM when one is configured and by the script
// agent otherwise. Any other type is an error. `script` tunes the script agent:
//   {"messages": n (1), "size": bytes (0 = a short sentence), "delay_ms": n (0),
//    "clarify": "question" (none), "fail": bool (false), "record": "path" (none)}
// `record` (tests: a side effect outside agentd that a restart may repeat)
// appends one line "<plan_id> <step> <attempt> <pid>" to the file each time
// the agent starts a step's work (after its clarification, before its first
// message); only team files of --teams-dir may name one, not uploaded teams.
// Unknown fields are kept (served back as-is) and ignored.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace agentd {

struct ScriptParams {
  int messages = 1;
  int size = 0;
  int delay_ms = 0;
  std::string clarify;
  bool fail = false;
  std::string record;  // empty: none
};

struct AgentConfig {
  std::string name, type, description, system_message;
  ScriptParams script;
};

struct TeamConfig {
  std::string team_id, name, description;
  std::vector<AgentConfig> agents;
  bool uploaded = false;  // through upload_team_config (deletable), not a team file
  std::string json;       // the canonical JSON object served by the team endpoints
};

// Parses one team file's text; errors name `source` and the field. The JSON
// kept for the team endpoints is the file's, completed with what the MACAE
// UIs read without checking: "id" (= team_id), "protected" (true unless
// uploaded), every agent's "input_key", "icon" and "deployment_name" strings,
// and "starting_tasks" (an empty list when absent).
Result<TeamConfig> parse_team(std::string_view text, const std::string& source, bool uploaded = false);

// Teams uploaded earlier (*.json in `dir`; a missing folder is none). A file
// that no longer parses is skipped with an error in the log, never a reason
// not to start.
std::vector<TeamConfig> load_uploaded_teams(const std::string& dir);

// Writes `dir`/`name` so that a crash leaves the old file or the new one:
// a temporary file, fsync, rename, fsync of the folder (created if missing).
Status write_file_durably(const std::string& dir, const std::string& name, std::string_view content);

// Loads every *.json file of `dir` (sorted by name). Errors name the file and
// field; duplicate team ids are an error.
Result<std::vector<TeamConfig>> load_teams(const std::string& dir);

}  // namespace agentd
