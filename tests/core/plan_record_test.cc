#include <doctest/doctest.h>

#include "core/plan_record.h"

using namespace agentd;

namespace {

PlanRecord sample_plan() {
  PlanRecord p;
  p.plan_id = "p-1";
  p.user_id = "u";
  p.session_id = "s";
  p.team_id = "t";
  p.initial_goal = "Close the books for \"March\"";
  p.status = PlanStatus::kAwaitingApproval;
  p.m_plan = R"({"id":"m-1","steps":[{"id":"1","agent":"Invoice","action":"Check"}]})";
  p.created_at = "2026-11-26T02:31:00.123Z";
  p.updated_at = "2026-11-26T02:31:01.000Z";
  p.version = 3;
  p.last_seq = 9;
  return p;
}

}  // namespace

TEST_CASE("plan record round trip is byte-identical") {
  PlanRecord p = sample_plan();
  std::string bytes = encode_plan(p);
  CHECK(bytes.find(R"("status":"awaiting_approval","overall_status":"in_progress")") != std::string::npos);
  auto d = decode_plan(bytes);
  REQUIRE_MESSAGE(d.is_ok(), d.status().to_string());
  CHECK(encode_plan(*d) == bytes);
  CHECK(d->status == PlanStatus::kAwaitingApproval);
  CHECK(d->version == 3);

  p.m_plan = "null";
  auto n = decode_plan(encode_plan(p));
  REQUIRE(n.is_ok());
  CHECK(n->m_plan == "null");
}

// Stored records are read with kStoredJson, not a request body's 1 MiB:
// records written before the outbox bounded them (up to kMaxPlanRecordBytes
// now) stay readable.
TEST_CASE("a plan record over a request body's limit decodes") {
  PlanRecord p = sample_plan();
  p.initial_goal = std::string(3u << 20, 'g');
  p.m_plan = R"({"id":"m-1","user_request":")" + std::string(1u << 20, 'r') + R"(","steps":[]})";
  std::string bytes = encode_plan(p);
  auto d = decode_plan(bytes);
  REQUIRE_MESSAGE(d.is_ok(), d.status().to_string());
  CHECK(d->initial_goal.size() == (3u << 20));
  CHECK(encode_plan(*d) == bytes);
}

TEST_CASE("every status has a name and a MACAE overall_status") {
  for (int i = 0; i <= static_cast<int>(PlanStatus::kInterrupted); ++i) {
    auto s = static_cast<PlanStatus>(i);
    auto name = plan_status_name(s);
    REQUIRE(name != "unknown");
    CHECK(parse_plan_status(name) == s);
    auto o = overall_status(s);
    CHECK((o == "created" || o == "in_progress" || o == "approved" || o == "completed" || o == "failed" ||
           o == "canceled"));
  }
  CHECK(is_final(PlanStatus::kRejected));
  CHECK_FALSE(is_final(PlanStatus::kRunning));
}

TEST_CASE("plan decoder names bad fields") {
  auto r = decode_plan(R"({"plan_id":"p"})");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().rfind("user_id:", 0) == 0);
  PlanRecord p;
  p.plan_id = "p";
  std::string bad = encode_plan(p);
  bad.replace(bad.find("\"created\""), 9, "\"bogus\"");
  auto b = decode_plan(bad);
  REQUIRE_FALSE(b.is_ok());
  CHECK(b.status().message().rfind("status: unknown plan status", 0) == 0);
}
