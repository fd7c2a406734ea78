#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/json.h"
#include "core/runtime/plan_run.h"

namespace agentd::runtime_internal {

// A message of `type` for the plan, with the plan record moved to `status`
// when one is given (both commit in one transaction).
AppendRequest make_request(const PlanRecord& rec, std::string_view type, const std::string& data,
                           std::optional<PlanStatus> status, std::string_view message_id, std::string_view metadata) {
  MessageDraft d;
  d.type = std::string(type);
  d.message_id = std::string(message_id);
  d.plan_id = rec.plan_id;
  d.user_id = rec.user_id;
  d.session_id = rec.session_id;
  d.data = data;
  if (!metadata.empty()) d.metadata = std::string(metadata);
  AppendRequest req;
  req.message = prepare(std::move(d));
  if (status) {
    req.plan = rec;
    req.plan->status = *status;
    req.plan->updated_at = now_rfc3339();
  }
  return req;
}

std::string status_data(std::string_view content, std::string_view status) {
  return JsonObject().str("content", content).str("status", status).done();
}

// The data of the error_message that ends a plan on a timeout: the MACAE
// UIs show error_message content (they ignore timeout_notification), and the
// timeout_notification fields stay beside it for other clients.
std::string timeout_data(std::string_view kind, std::string_view request_id, std::chrono::milliseconds timeout) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
  std::string what = std::string("No ") + (kind == "approval" ? "approval" : "answer") + " within " +
                     std::to_string(secs) + " s; the plan is canceled";
  return JsonObject()
      .str("content", "Plan canceled: " + what)
      .str("status", "timeout")
      .str("timeout_type", kind)
      .str("request_id", request_id)
      .str("message", what)
      .num("timeout_duration", secs)
      .done();
}

// The string the MACAE v3 UI parses a clarification request from (it reads
// no structured field): UserClarificationRequest(question='…', request_id='…'),
// the question escaped as a Python repr would (\\, \', \n).
std::string clarification_repr(std::string_view question, std::string_view request_id) {
  std::string q;
  for (char c : question) {
    if (c == '\\' || c == '\'') q += '\\';
    if (c == '\n') {
      q += "\\n";
      continue;
    }
    q += c;
  }
  return "UserClarificationRequest(question='" + q + "', request_id='" + std::string(request_id) + "')";
}

// --- resumable steps (see the top of runtime.h) ---

// "<plan_id>:s<step>:<what>": a message a step emits (what = its index, or
// "answer" for the clarification answer).
std::string step_message_id(std::string_view plan_id, size_t step, std::string_view what) {
  return std::string(plan_id) + ":s" + std::to_string(step) + ":" + std::string(what);
}

// The metadata of what a step emits; `done` marks the step's last message.
std::string step_metadata(size_t step, int attempt, bool done) {
  JsonObject o;
  o.num("step", static_cast<int64_t>(step)).num("attempt", attempt);
  if (done) o.boolean("step_done", true);
  return o.done();
}

// The request_id (and message_id) of step `step`'s clarification request: a
// UUID (the v3 UI's regex reads only hex digits and '-') derived from plan
// and step, so a step that runs again asks with the same id and the log
// holds the request once. Two FNV-1a hashes, version 8 (custom), RFC 4122
// variant.
std::string clarification_request_id(std::string_view plan_id, size_t step) {
  const std::string key = std::string(plan_id) + '\0' + "clarify" + '\0' + std::to_string(step);
  auto fnv = [&key](uint64_t h) {
    for (char c : key) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
    return h;
  };
  uint64_t hi = fnv(14695981039346656037ull), lo = fnv(0x9e3779b97f4a7c15ull);
  hi = (hi & ~uint64_t{0xf000}) | 0x8000;
  lo = (lo & ~(uint64_t{3} << 62)) | (uint64_t{2} << 62);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

// What is left of `timeout` for a request made at `asked_ms` (wall clock):
// a wait resumed after a restart ends when the first one would have.
std::chrono::milliseconds remaining(int64_t asked_ms, std::chrono::milliseconds timeout) {
  int64_t left = asked_ms + timeout.count() - now_unix_ms();
  return std::chrono::milliseconds(std::max<int64_t>(0, left));
}

std::string resume_data(const std::string& content, size_t step, int attempt) {
  return JsonObject()
      .str("content", content)
      .str("status", "resumed")
      .num("step", static_cast<int64_t>(step))
      .num("attempt", attempt)
      .done();
}

// The script agent's `record`: one line per step execution, written with
// one write() to a file opened O_APPEND (lines stay whole).
Status record_execution(const std::string& path, std::string_view plan_id, size_t step, int attempt) {
  const std::string line = std::string(plan_id) + " " + std::to_string(step) + " " + std::to_string(attempt) + " " +
                           std::to_string(::getpid()) + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("script.record: open " + path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, line.data(), line.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    return io_error("script.record: write " + path + ": " + (n < 0 ? std::strerror(err) : "short write"));
  }
  return Status::ok();
}

}  // namespace agentd::runtime_internal
