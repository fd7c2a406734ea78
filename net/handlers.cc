// The REST handlers (Router's members): contract decisions 1, 2, 6.
//
// Lifetimes: the Router is a member of its HttpSession, and every `respond`
// holds that session (shared_from_this). ServerState::run_read keeps `read`
// and `done` in one closure, so a read lambda's `this` lives as long as the
// read; a `done` that outlives the request captures what it needs by value.
#include <rapidjson/document.h>

#include <cstdint>
#include <limits>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/json.h"
#include "net/body.h"
#include "net/cluster.h"
#include "net/macae.h"
#include "net/multipart.h"
#include "net/router.h"
#include "net/state.h"
#include "store/message_store.h"

namespace agentd::net {

namespace {

std::string jstr(std::string_view s) {
  std::string out;
  append_json_string(&out, s);
  return out;
}

Response unprocessable(const Body& b) { return json_response(http::status::unprocessable_entity, b.detail()); }

// Ok when the document a posted message becomes, with the longest seq, fits
// in MongoDB's 16 MiB. Keys and integers MongoDB refuses were refused by the
// strict body parse, so only the size is left, and only a long envelope can
// fail it: the document is built for those alone (kEnvelopeSurelyFits).
Status fits_mongodb(const PreparedMessage& m) {
  constexpr uint64_t kLongestSeq = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (m.tail.size() + kMaxEnvelopeHeadBytes <= kEnvelopeSurelyFits) return Status::ok();
  return check_message_document(m.plan_id, kLongestSeq, finalize(kLongestSeq, m.tail));
}

// POST /agent_message's data: {agent_name, agent_type, content[, is_final]
// [, raw_data][, streaming_message]}.
std::string agent_message_data(const std::string& agent_name, const std::string& agent_type, const std::string& content,
                               std::optional<bool> is_final, const std::string* raw_data,
                               const std::optional<std::string>& streaming) {
  std::string data =
      "{\"agent_name\":" + jstr(agent_name) + ",\"agent_type\":" + jstr(agent_type) + ",\"content\":" + jstr(content);
  if (is_final) data += std::string(",\"is_final\":") + (*is_final ? "true" : "false");
  if (raw_data) data += ",\"raw_data\":" + jstr(*raw_data);
  if (streaming) data += ",\"streaming_message\":" + jstr(*streaming);
  data += '}';
  return data;
}

// POST /agent_message's answer.
Response message_recorded(const std::string& plan_id, const std::string& message_id, uint64_t seq, bool duplicate) {
  return json_response(http::status::ok, "{\"status\":\"message recorded\",\"plan_id\":" + jstr(plan_id) +
                                             ",\"message_id\":" + jstr(message_id) + ",\"seq\":" + std::to_string(seq) +
                                             ",\"duplicate\":" + (duplicate ? "true" : "false") + "}");
}

// What POST /agent_message reads before it appends: the plan (owned by the
// caller) and the held message an echo names, if any.
struct EchoLookup {
  PlanRecord plan;
  std::optional<std::pair<uint64_t, std::string>> echo;  // (seq, message_id)
};

Response no_runtime() {
  auto res = json_response(http::status::service_unavailable, R"({"detail":"runtime not configured"})");
  res.set(http::field::retry_after, "5");
  return res;
}

}  // namespace

void Router::health(Respond respond) { respond(json_response(http::status::ok, R"({"status":"ok"})")); }

void Router::ready(Respond respond) {
  Status outbox = st_.deps.outbox_ready ? st_.deps.outbox_ready() : Status::ok();
  std::string mongo = "not configured";
  if (st_.deps.mongo_ready) {
    Status m = st_.deps.mongo_ready();
    mongo = m.is_ok() ? "ok" : "unreachable: " + m.message();
  }
  bool ok = outbox.is_ok() && !st_.stopping.load();
  std::string body = "{\"status\":" + jstr(ok ? "ready" : "not ready") +
                     ",\"outbox\":" + jstr(outbox.is_ok() ? "ok" : outbox.to_string()) + ",\"mongodb\":" + jstr(mongo) +
                     ",\"runtime\":" + jstr(st_.deps.plans ? "ok" : "not configured") +
                     ",\"stopping\":" + (st_.stopping.load() ? "true" : "false");
  if (st_.deps.cluster) {  // several instances (docs/scale-out.md): who this is, whom it sees
    body += ",\"cluster\":{\"instance_id\":" + jstr(st_.deps.cluster->config().instance_id) + ",\"live_peers\":[";
    bool first = true;
    for (const Peer& p : st_.deps.cluster->live_peers()) {
      body += (first ? "" : ",") + JsonObject().str("id", p.id).str("url", p.url).done();
      first = false;
    }
    body += "]}";
  }
  if (st_.deps.dead_letters) {  // an operator's to-do: `agentd-outbox dead-letters list`
    auto dead = st_.deps.dead_letters();
    body += ",\"dead_letters\":" + (dead ? std::to_string(*dead) : jstr(dead.status().to_string()));
  }
  body += '}';
  auto res = json_response(ok ? http::status::ok : http::status::service_unavailable, std::move(body));
  if (!ok) res.set(http::field::retry_after, std::to_string(st_.cfg.retry_after_seconds));
  respond(std::move(res));
}

void Router::metrics(Respond respond) {
  Response res{http::status::ok, 11};
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.body() = st_.deps.metrics->render();
  respond(std::move(res));
}

void Router::config(const Request& req, Respond respond) {
  // The browser asked this origin, so the API is here: scheme from a TLS
  // proxy's X-Forwarded-Proto when it says https, host from Host.
  std::string_view proto = req["X-Forwarded-Proto"] == "https" ? "https" : "http";
  std::string api = std::string(proto) + "://" + std::string(req[http::field::host]) + "/api";
  respond(json_response(http::status::ok, JsonObject().str("API_URL", api).str("ENABLE_AUTH", "false").done()));
}

void Router::process_request(const std::string& user, const Request& req, Respond respond) {
  Body b(req.body(), st_.cfg.max_body_bytes);
  SubmitRequest s;
  s.user_id = user;
  auto description = b.string("description", true);
  auto session_id = b.string("session_id", false);
  auto team_id = b.string("team_id", false);
  s.auto_approve = b.boolean("auto_approve", false);
  if (!b.ok()) return respond(unprocessable(b));
  if (!st_.deps.plans) return respond(no_runtime());
  s.description = std::move(*description);
  if (session_id) s.session_id = std::move(*session_id);
  if (team_id) s.team_id = std::move(*team_id);
  int retry = st_.cfg.retry_after_seconds;
  auto submit = [this, respond = std::move(respond), retry](SubmitRequest s) {
    st_.deps.plans->submit(std::move(s), [respond, retry](Result<SubmitResult> r) {
      if (!r) return respond(error_response(r.status(), retry));
      respond(json_response(http::status::ok, "{\"status\":\"Request started successfully\",\"session_id\":" +
                                                  jstr(r->session_id) + ",\"plan_id\":" + jstr(r->plan_id) + "}"));
    });
  };
  if (!s.team_id.empty()) return submit(std::move(s));
  // No team named: the one the user selected, on whichever instance.
  with_user_team(user, [s = std::move(s), submit = std::move(submit)](std::optional<std::string> team) mutable {
    if (team) s.team_id = std::move(*team);
    submit(std::move(s));
  });
}

void Router::plans(const std::string& user, const Target& t, Respond respond) {
  std::optional<std::string> status = t.get("status");
  int retry = st_.cfg.retry_after_seconds;
  st_.run_read([this, user] { return st_.reader.list_plans(user, 10000); },
               [respond = std::move(respond), status, retry](Result<std::vector<PlanRecord>> r) {
                 if (!r) return respond(error_response(r.status(), retry));
                 std::string out = "[";
                 bool first = true;
                 for (const auto& p : *r) {
                   if (status && *status != plan_status_name(p.status) && *status != overall_status(p.status)) {
                     continue;
                   }
                   if (!first) out += ',';
                   first = false;
                   out += plan_json(p);
                 }
                 out += ']';
                 respond(json_response(http::status::ok, std::move(out)));
               });
}

void Router::plan(const std::string& user, const Target& t, Respond respond) {
  auto plan_id = t.get("plan_id");
  if (!plan_id || plan_id->empty()) {
    return respond(json_response(http::status::unprocessable_entity,
                                 validation_detail({{{"query", "plan_id"}, "field required", "value_error.missing"}})));
  }
  struct Out {
    PlanRecord plan;
    std::vector<StoredMessage> messages;
    ReadNote note;  // several instances: a foreign plan whose owner is down
  };
  size_t cap = st_.cfg.plan_messages_cap;
  st_.run_read(
      [this, user, id = *plan_id, cap]() -> Result<Out> {
        Out o;
        auto p = owned_plan(user, id, &o.note);
        if (!p) return p.status();
        o.plan = std::move(*p);
        auto m = st_.reader.read_messages(id, 0, cap + 1, &o.note);
        if (!m) return m.status();
        o.messages = std::move(*m);
        // Several instances: the plan's cursors live with its owner.
        if (st_.deps.cluster && o.messages.size() <= cap) {
          if (auto owner = st_.deps.cluster->foreign_owner(id)) {
            st_.deps.cluster->remote_cursor(*owner, "set", user, id, o.messages.empty() ? 0 : o.messages.back().seq);
          }
        }
        return o;
      },
      [this, respond = std::move(respond), cap, user](Result<Out> r) {
        if (!r) return respond(error_response(r.status(), st_.cfg.retry_after_seconds));
        Out& o = *r;
        bool truncated = o.messages.size() > cap;
        if (truncated) o.messages.resize(cap);
        // A WebSocket this user opens next without after_seq continues from
        // here (net/resume_cursors.h).
        st_.cursors.set(user, o.plan.plan_id, o.messages.empty() ? 0 : o.messages.back().seq);
        // What follows the chat view first, so that the view (megabytes for
        // a long plan) is written once, into an answer with room for all.
        std::string tail = ",\"m_plan\":";
        tail += current_m_plan(o.plan);
        tail += ",\"team\":";
        std::optional<std::string> team, streaming;
        if (st_.deps.plans) {
          if (!o.plan.team_id.empty()) team = st_.deps.plans->team_config(o.plan.team_id);
          streaming = st_.deps.plans->streaming_message(o.plan.plan_id);
        }
        tail += team ? *team : "null";
        tail += ",\"streaming_message\":";
        tail += streaming ? jstr(*streaming) : "null";
        tail += ",\"truncated\":";
        tail += truncated ? "true" : "false";
        if (truncated) tail += ",\"next_after_seq\":" + std::to_string(o.messages.back().seq);
        if (!truncated) tail += cluster_note_json(o.note, o.messages.empty() ? 0 : o.messages.back().seq);
        tail += '}';
        std::string out = "{\"plan\":";
        out += plan_json(o.plan);
        out += ",\"messages\":";
        append_chat_view(&out, o.messages, o.plan, tail.size());
        out += tail;
        respond(json_response(http::status::ok, std::move(out)));
      });
}

void Router::plan_messages(const std::string& user, const std::string& plan_id, const Target& t, Respond respond) {
  auto after = t.get_u64("after_seq", 0);
  auto limit = t.get_u64("limit", 1000);
  if (!after || !limit) {
    const Status& s = !after ? after.status() : limit.status();
    std::string field = !after ? "after_seq" : "limit";
    return respond(json_response(http::status::unprocessable_entity,
                                 validation_detail({{{"query", field}, s.message(), "type_error.integer"}})));
  }
  size_t lim = static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(*limit, 1), st_.cfg.page_max));
  uint64_t after_seq = *after;
  auto note = std::make_shared<ReadNote>();  // several instances: the owner may be down
  st_.run_read(
      [this, user, plan_id, after_seq, lim, note]() -> Result<std::vector<StoredMessage>> {
        auto p = owned_plan(user, plan_id, note.get());
        if (!p) return p.status();
        return st_.reader.read_messages(plan_id, after_seq, lim + 1, note.get());
      },
      [this, respond = std::move(respond), plan_id, after_seq, lim, note](Result<std::vector<StoredMessage>> r) {
        if (!r) return respond(error_response(r.status(), st_.cfg.retry_after_seconds));
        bool more = r->size() > lim;
        if (more) r->resize(lim);
        std::string out = "{\"plan_id\":" + jstr(plan_id) + ",\"messages\":[";
        for (size_t i = 0; i < r->size(); ++i) {
          if (i) out += ',';
          out += *(*r)[i].bytes;
        }
        uint64_t next = r->empty() ? after_seq : r->back().seq;
        out += "],\"next_after_seq\":" + std::to_string(next) + ",\"has_more\":" + (more ? "true" : "false");
        if (!more) out += cluster_note_json(*note, next);
        out += '}';
        respond(json_response(http::status::ok, std::move(out)));
      });
}

void Router::cancel(const std::string& user, const std::string& plan_id, Respond respond) {
  if (!st_.deps.plans) return respond(no_runtime());
  int retry = st_.cfg.retry_after_seconds;
  st_.deps.plans->cancel(user, plan_id, [respond = std::move(respond), retry, plan_id](Status s) {
    if (!s.is_ok()) return respond(error_response(s, retry));
    respond(json_response(http::status::ok, "{\"status\":\"canceled\",\"plan_id\":" + jstr(plan_id) + "}"));
  });
}

void Router::plan_approval(const std::string& user, const Request& req, Respond respond) {
  Body b(req.body(), st_.cfg.max_body_bytes);
  ApprovalRequest a;
  a.user_id = user;
  auto m_plan_id = b.string("m_plan_id", true);
  auto approved = b.boolean("approved", true);
  auto feedback = b.string("feedback", false);
  auto plan_id = b.string("plan_id", false);
  if (!b.ok()) return respond(unprocessable(b));
  if (!st_.deps.plans) return respond(no_runtime());
  a.m_plan_id = std::move(*m_plan_id);
  a.approved = *approved;
  if (feedback) a.feedback = std::move(*feedback);
  if (plan_id) a.plan_id = std::move(*plan_id);  // "" (the v4 UI's "unknown") = absent
  int retry = st_.cfg.retry_after_seconds;
  st_.deps.plans->approve(std::move(a), [respond = std::move(respond), retry](Result<std::string> r) {
    if (!r) return respond(error_response(r.status(), retry));
    respond(json_response(http::status::ok, "{\"status\":" + jstr(*r) + "}"));
  });
}

void Router::user_clarification(const std::string& user, const Request& req, Respond respond) {
  Body b(req.body(), st_.cfg.max_body_bytes);
  ClarificationRequest c;
  c.user_id = user;
  auto request_id = b.string("request_id", true);
  auto answer = b.string("answer", false);
  auto plan_id = b.string("plan_id", false);
  b.string("m_plan_id", false);  // accepted, unused (UP sends it)
  if (!b.ok()) return respond(unprocessable(b));
  if (!st_.deps.plans) return respond(no_runtime());
  c.request_id = std::move(*request_id);
  if (answer) c.answer = std::move(*answer);
  if (plan_id) c.plan_id = std::move(*plan_id);
  int retry = st_.cfg.retry_after_seconds;
  st_.deps.plans->clarify(std::move(c), [respond = std::move(respond), retry](Status s) {
    if (!s.is_ok()) return respond(error_response(s, retry));
    respond(json_response(http::status::ok, R"({"status":"clarification recorded"})"));
  });
}

// Body: plan_id, content (required); agent | agent_name, agent_type,
// is_final, raw_data (string or object), streaming_message, message_id,
// metadata (object). Appended as an `agent_message` envelope with
// data = {agent_name, agent_type, content[, is_final][, raw_data][, streaming_message]}.
// Idempotent on message_id; without one, the message_id of a frame echoed in
// raw_data is used. An echo (contract decision 6: the MACAE UIs post back
// every frame they show) is recognised by any message_id or request_id in
// raw_data, at any depth, that names a message the plan holds: answered 200
// with that message's seq and duplicate=true, neither stored nor broadcast,
// even after the plan ended. Anything else to a finished plan (or to a plan
// whose record this outbox does not hold) is 409 (AppendRequest::open_plan_only).
void Router::agent_message(const std::string& user, const Request& req, Respond respond) {
  Body b(req.body(), st_.cfg.max_body_bytes);
  auto plan_id = b.string("plan_id", true);
  auto content = b.string("content", true);
  auto agent = b.string("agent", false);
  auto agent_name = b.string("agent_name", false);
  auto agent_type = b.string("agent_type", false);
  auto is_final = b.boolean("is_final", false);
  auto streaming = b.string("streaming_message", false);
  auto message_id = b.string("message_id", false);
  auto metadata = b.object("metadata", false);
  const rapidjson::Value* raw = b.raw("raw_data");
  if (raw && !raw->IsString() && !raw->IsObject()) {
    // Recorded through the accessor so the detail names the field.
    b.string("raw_data", false);
  }
  if (!b.ok()) return respond(unprocessable(b));

  std::string raw_text;
  if (raw) raw_text = raw->IsString() ? std::string(raw->GetString(), raw->GetStringLength()) : write_canonical(*raw);
  // One parse of raw_data: the ids an echo carries, and the echoed frame's
  // own message_id (the id of a repost that names none).
  EchoedFrame echoed = raw_text.empty() ? EchoedFrame{} : read_echoed_frame(raw_text, *plan_id);
  if (!message_id) message_id = std::move(echoed.message_id);

  MessageDraft d;
  d.type = std::string(msgtype::kAgentMessage);
  d.plan_id = *plan_id;
  if (message_id) d.message_id = *message_id;
  d.data = agent_message_data(agent_name ? *agent_name
                              : agent    ? *agent
                                         : "",
                              agent_type ? *agent_type : "AI_Agent", *content, is_final, raw ? &raw_text : nullptr,
                              streaming);
  d.metadata = metadata ? *metadata : R"({"source":"rest"})";
  auto draft = std::make_shared<MessageDraft>(std::move(d));
  int retry = st_.cfg.retry_after_seconds;
  st_.run_read(
      [this, user, pid = *plan_id, ids = std::move(echoed.ids)]() -> Result<EchoLookup> {
        auto p = owned_plan(user, pid);
        if (!p) return p.status();
        EchoLookup f;
        f.plan = std::move(*p);
        for (const auto& id : ids) {
          auto seq = st_.deps.log->find_message(pid, id);
          if (!seq) return seq.status();
          if (*seq) {
            f.echo.emplace(**seq, id);
            break;
          }
        }
        return f;
      },
      [log = st_.deps.log, respond = std::move(respond), retry, draft](Result<EchoLookup> f) {
        if (!f) return respond(error_response(f.status(), retry));
        if (f->echo) return respond(message_recorded(draft->plan_id, f->echo->second, f->echo->first, true));
        draft->user_id = f->plan.user_id;
        draft->session_id = f->plan.session_id;
        AppendRequest ar;
        ar.message = prepare(std::move(*draft));
        // What MongoDB would refuse is refused here (a dead letter
        // otherwise), on the whole envelope: the plan's ids included.
        if (Status fits = fits_mongodb(*ar.message); !fits.is_ok()) {
          return respond(json_response(http::status::unprocessable_entity,
                                       validation_detail({{{"body"}, fits.message(), "value_error.mongodb"}})));
        }
        ar.open_plan_only = true;               // a finished plan (or one this outbox lacks) -> 409
        std::string pid = ar.message->plan_id;  // *draft was moved into ar
        std::string mid = ar.message->message_id;
        log->append(std::move(ar), [respond, retry, pid = std::move(pid), mid](Result<AppendResult> r) {
          if (!r) return respond(error_response(r.status(), retry));
          respond(message_recorded(pid, mid, r->seq, r->duplicate));
        });
      });
}

void Router::init_team(const std::string& user, Respond respond) {
  if (!st_.deps.plans) return respond(no_runtime());
  with_user_team(user, [this, user, respond = std::move(respond)](std::optional<std::string> shared) {
    respond_team(shared ? st_.deps.plans->team_config(*shared) : st_.deps.plans->current_team(user), respond);
  });
}

void Router::respond_team(std::optional<std::string> team, const Respond& respond) {
  if (!team) return respond(json_response(http::status::not_found, R"({"detail":"No team configured"})"));
  std::string team_id;
  if (auto d = parse_strict(*team); d && d->IsObject()) {
    for (const char* k : {"team_id", "id"}) {
      auto it = d->FindMember(k);
      if (it != d->MemberEnd() && it->value.IsString()) {
        team_id = it->value.GetString();
        break;
      }
    }
  }
  respond(json_response(http::status::ok, "{\"status\":\"Request started successfully\",\"team_id\":" + jstr(team_id) +
                                              ",\"team\":" + *team + "}"));
}

void Router::team_configs(Respond respond) {
  if (!st_.deps.plans) return respond(no_runtime());
  std::string out = "[";
  auto teams = st_.deps.plans->team_configs();
  for (size_t i = 0; i < teams.size(); ++i) {
    if (i) out += ',';
    out += teams[i];
  }
  out += ']';
  respond(json_response(http::status::ok, std::move(out)));
}

void Router::team_config(const std::string& team_id, Respond respond) {
  if (!st_.deps.plans) return respond(no_runtime());
  auto team = st_.deps.plans->team_config(team_id);
  if (!team) return respond(json_response(http::status::not_found, R"({"detail":"Team configuration not found"})"));
  respond(json_response(http::status::ok, std::move(*team)));
}

void Router::select_team(const std::string& user, const Request& req, Respond respond) {
  Body b(req.body(), st_.cfg.max_body_bytes);
  auto team_id = b.string("team_id", true);
  if (!b.ok()) return respond(unprocessable(b));
  if (!st_.deps.plans) return respond(no_runtime());
  Status s = st_.deps.plans->select_team(user, *team_id);
  if (!s.is_ok()) return respond(error_response(s, st_.cfg.retry_after_seconds));
  share_team(user, *team_id, [this, team_id = *team_id, respond = std::move(respond)](Status shared) {
    if (!shared.is_ok()) return respond(error_response(shared, st_.cfg.retry_after_seconds));
    team_selected(team_id, respond);
  });
}

void Router::team_selected(const std::string& team_id, const Respond& respond) {
  std::string name, description;
  size_t agents = 0;
  if (auto team = st_.deps.plans->team_config(team_id)) {
    if (auto d = parse_strict(*team); d && d->IsObject()) {
      if (auto it = d->FindMember("name"); it != d->MemberEnd() && it->value.IsString()) name = it->value.GetString();
      if (auto it = d->FindMember("description"); it != d->MemberEnd() && it->value.IsString()) {
        description = it->value.GetString();
      }
      if (auto it = d->FindMember("agents"); it != d->MemberEnd() && it->value.IsArray()) agents = it->value.Size();
    }
  }
  respond(json_response(http::status::ok,
                        "{\"status\":\"success\",\"message\":\"Team selected successfully\","
                        "\"team_id\":" +
                            jstr(team_id) + ",\"team_name\":" + jstr(name) + ",\"agents_count\":" +
                            std::to_string(agents) + ",\"team_description\":" + jstr(description) + "}"));
}

void Router::upload_team(const std::string& user, const Request& req, Respond respond) {
  if (!st_.deps.plans) return respond(no_runtime());
  if (req.body().size() > st_.cfg.max_body_bytes) {
    return respond(error_response(
        Status(Code::kTooLarge, "body: larger than " + std::to_string(st_.cfg.max_body_bytes) + " bytes"),
        st_.cfg.retry_after_seconds));
  }
  std::string_view type = req[http::field::content_type];
  std::string text;
  if (type.starts_with("application/json")) {
    text = req.body();
  } else {
    auto boundary = multipart_boundary(type);
    auto file = boundary ? multipart_field(req.body(), *boundary, "file") : Result<std::string>(boundary.status());
    if (!file) return respond(error_response(file.status(), st_.cfg.retry_after_seconds));
    text = std::move(*file);
  }
  int retry = st_.cfg.retry_after_seconds;
  st_.run_read([this, user, text = std::move(text)] { return st_.deps.plans->upload_team(user, text); },
               [respond = std::move(respond), retry](Result<std::string> team) {
                 if (!team) return respond(error_response(team.status(), retry));
                 std::string team_id, name;
                 if (auto d = parse_strict(*team); d && d->IsObject()) {
                   if (auto it = d->FindMember("team_id"); it != d->MemberEnd() && it->value.IsString()) {
                     team_id = it->value.GetString();
                   }
                   if (auto it = d->FindMember("name"); it != d->MemberEnd() && it->value.IsString()) {
                     name = it->value.GetString();
                   }
                 }
                 respond(json_response(http::status::ok,
                                       JsonObject()
                                           .str("status", "success")
                                           .str("team_id", team_id)
                                           .str("name", name)
                                           .str("message", "Team configuration uploaded and saved successfully")
                                           .raw("team", *team)
                                           .done()));
               });
}

void Router::delete_team(const std::string& user, const std::string& team_id, Respond respond) {
  if (!st_.deps.plans) return respond(no_runtime());
  int retry = st_.cfg.retry_after_seconds;
  st_.run_read([this, user, team_id] { return st_.deps.plans->delete_team(user, team_id); },
               [respond = std::move(respond), retry, team_id](Status s) {
                 if (!s.is_ok()) return respond(error_response(s, retry));
                 respond(json_response(http::status::ok, JsonObject()
                                                             .str("status", "success")
                                                             .str("message", "Team configuration deleted successfully")
                                                             .str("team_id", team_id)
                                                             .done()));
               });
}

}  // namespace agentd::net
