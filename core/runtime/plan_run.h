// Runtime's inside, shared by its files (not part of the runtime's API):
// the state of one plan (PlanRun), the awaitable over callback APIs, and
// the builders of the messages a plan emits. Included by core/runtime/*.cc
// only.
//
//   runtime.cc     construction, shutdown, submit, the API calls (approve,
//                  clarify, cancel posted to the plan's strand), streaming
//   plan_flow.cc   one plan's coroutine: plan, approval, steps, finish;
//                  emit (append with outbox-full backoff) and the waits
//   agents.cc      one step: script agents, LLM agents, clarifications
//   recovery.cc    recover(): unfinished plans rebuilt from their log
//   indexes.cc     the indexes under mu_: runs, m_plan ids, requests,
//                  teams, slots
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/message_log.h"
#include "core/plan_record.h"
#include "core/runtime/runtime.h"
#include "core/status.h"

namespace agentd {

struct Runtime::PlanRun : std::enable_shared_from_this<PlanRun> {
  PlanRun(boost::asio::any_io_executor ex, PlanRecord rec, std::shared_ptr<const TeamConfig> t, bool auto_ok)
      : strand(boost::asio::make_strand(ex)),
        wake(strand),
        plan_id(rec.plan_id),
        user_id(rec.user_id),
        team(std::move(t)),
        auto_approve(auto_ok),
        record(std::move(rec)) {}

  boost::asio::strand<boost::asio::any_io_executor> strand;
  boost::asio::steady_timer wake;  // every wait of the plan; cancel() wakes it
  const std::string plan_id, user_id;
  const std::shared_ptr<const TeamConfig> team;  // kept even if the team is deleted meanwhile
  const bool auto_approve;

  // strand:
  PlanRecord record;  // the latest committed version
  std::string m_plan_id;
  bool awaiting_approval = false;
  std::optional<bool> approved;
  std::string feedback;
  std::function<void(Result<std::string>)> approval_done;
  std::string clarify_request_id;
  std::optional<std::string> answer;
  std::function<void(Status)> clarify_done;
  bool cancel_requested = false;
  std::vector<std::function<void(Status)>> cancel_done;
  std::vector<std::string> transcript;
  // Rebuilt from the log by recover() (empty for a plan submitted now):
  struct Recovered {
    std::optional<MPlan> m_plan;                 // planned before the restart
    int64_t approval_asked_ms = -1;              // its approval request's timestamp; -1: not asked
    bool approved = false;                       // its approval is in the log
    size_t first_step = 0;                       // the first step whose completion is not in the log
    int attempt = 1;                             // that step's attempt
    std::map<std::string, int64_t> asked;        // clarification request_id -> timestamp, unanswered
    std::map<std::string, std::string> answers;  // clarification request_id -> the logged answer
  } recovered;
  size_t step_no = 0;  // the step running (1-based) and its attempt: its messages' ids and metadata
  int attempt = 1;
  bool holds_slot = false;
  bool ended = false;  // abandon() ran: the coroutine answers nothing more

  // guarded by Runtime::mu_:
  bool slot_granted = false;
  std::string streaming;
};

namespace runtime_internal {

namespace asio = boost::asio;

// Turns a callback API `start(cb)` into an awaitable whose result is posted
// back to the awaiting coroutine's executor (its strand).
//
// GCC 12 miscompiles class-type temporaries that live across a suspension
// point (they are relocated bitwise into the frame: SSO strings and
// shared_ptr counts break). So in this file no co_await full-expression
// creates a class-type temporary: arguments are named locals passed by
// reference, and no coroutine is a lambda.
template <typename T, typename Start>
auto async_callback(Start&& start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [](auto handler, std::decay_t<Start> start) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto fired = std::make_shared<std::atomic<bool>>(false);
        auto deliver = [h, fired](T v) {
          if (fired->exchange(true)) return;  // once, even after a throw
          auto ex = asio::get_associated_executor(*h);
          asio::post(ex, [h, v = std::move(v)]() mutable { std::move (*h)(std::move(v)); });
        };
        // An exception thrown by `start` (a ModelClient, the planner, a
        // MessageLog) would escape the io_context's run(): it becomes the
        // awaited result instead.
        try {
          start(deliver);
        } catch (const std::exception& x) {
          deliver(T(internal_error(std::string("runtime error: ") + x.what())));
        }
      },
      asio::use_awaitable, std::forward<Start>(start));
}

inline constexpr size_t kTranscriptMax = 50;
inline constexpr auto kForever = std::chrono::milliseconds(std::chrono::hours(24 * 365));

// A message of `type` for the plan, with the plan record moved to `status`
// when one is given (both commit in one transaction).
AppendRequest make_request(const PlanRecord& rec, std::string_view type, const std::string& data,
                           std::optional<PlanStatus> status, std::string_view message_id = {},
                           std::string_view metadata = {});
std::string status_data(std::string_view content, std::string_view status);
// The data of the error_message that ends a plan on a timeout.
std::string timeout_data(std::string_view kind, std::string_view request_id, std::chrono::milliseconds timeout);
// The string the MACAE v3 UI parses a clarification request from.
std::string clarification_repr(std::string_view question, std::string_view request_id);
// "<plan_id>:s<step>:<what>": a message a step emits.
std::string step_message_id(std::string_view plan_id, size_t step, std::string_view what);
// The metadata of what a step emits; `done` marks the step's last message.
std::string step_metadata(size_t step, int attempt, bool done);
// The request_id (and message_id) of step `step`'s clarification request.
std::string clarification_request_id(std::string_view plan_id, size_t step);
// What is left of `timeout` for a request made at `asked_ms` (wall clock).
std::chrono::milliseconds remaining(int64_t asked_ms, std::chrono::milliseconds timeout);
std::string resume_data(const std::string& content, size_t step, int attempt);
// The script agent's `record`: one line per step execution.
Status record_execution(const std::string& path, std::string_view plan_id, size_t step, int attempt);

}  // namespace runtime_internal
}  // namespace agentd
