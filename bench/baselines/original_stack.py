"""The original stack, reduced to the two paths agentd is measured against.

A FastAPI + Motor service that stores messages the way the original Python
backend does (see /work/shared/api/macae-v3-contract.md, section 1.6 and 1.3):

* POST /api/v3/agent_message: one MongoDB insert per message, awaited on the
  request path (no outbox, no batching, no sequence numbers); an is_final
  message also updates the plan document.
* GET /api/v3/plan?plan_id=...: the plan document by id, then every message
  document of the plan sorted by timestamp.

Run by bench/run with uvicorn (one worker, as the original is deployed):
  BASELINE_MONGO_URI=mongodb://... BASELINE_SEED_PLANS=65 \
    python -m uvicorn original_stack:app --app-dir bench/baselines --port P
Plans bench-plan-0..N-1 are created at start-up (the original creates them in
process_request; the benchmark only needs them to exist).
"""
import datetime
import os
import uuid
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, HTTPException, Request
from motor.motor_asyncio import AsyncIOMotorClient
from pydantic import BaseModel

ZERO_USER = "00000000-0000-0000-0000-000000000000"
state = {}


@asynccontextmanager
async def lifespan(_app):
    client = AsyncIOMotorClient(os.environ["BASELINE_MONGO_URI"])
    db = client[os.environ.get("BASELINE_DB", "baseline")]
    await db.messages.create_index([("plan_id", 1), ("timestamp", 1)])
    await db.plans.create_index([("id", 1)], unique=True)
    now = datetime.datetime.utcnow()
    for i in range(int(os.environ.get("BASELINE_SEED_PLANS", "0"))):
        pid = f"bench-plan-{i}"
        await db.plans.update_one(
            {"id": pid},
            {"$setOnInsert": {"id": pid, "data_type": "plan", "plan_id": pid, "session_id": "bench",
                              "user_id": ZERO_USER, "initial_goal": "benchmark plan", "team_id": "bench",
                              "overall_status": "in_progress", "streaming_message": "", "m_plan": None,
                              "timestamp": now}},
            upsert=True)
    state["db"] = db
    yield
    client.close()


app = FastAPI(lifespan=lifespan)


class AgentMessage(BaseModel):
    plan_id: str
    agent: str = ""
    content: str
    agent_type: str = "AI_Agent"
    is_final: bool = False
    raw_data: Optional[str] = None
    streaming_message: Optional[str] = None


def user_of(request: Request) -> str:
    return request.headers.get("x-ms-client-principal-id") or ZERO_USER


def clean(doc):
    doc.pop("_id", None)
    return doc


@app.post("/api/v3/agent_message")
async def agent_message(msg: AgentMessage, request: Request):
    db = state["db"]
    doc = {
        "id": str(uuid.uuid4()),
        "data_type": "m_plan_message",
        "plan_id": msg.plan_id,
        "session_id": "bench",
        "user_id": user_of(request),
        "agent": msg.agent,
        "agent_type": msg.agent_type,
        "content": msg.content,
        "raw_data": msg.raw_data or "",
        "steps": [],
        "next_steps": [],
        "timestamp": datetime.datetime.utcnow(),
    }
    await db.messages.insert_one(doc)
    if msg.is_final:
        await db.plans.update_one({"id": msg.plan_id},
                                  {"$set": {"overall_status": "completed",
                                            "streaming_message": msg.streaming_message or ""}})
    return {"status": "message recorded"}


@app.get("/api/v3/plan")
async def get_plan(plan_id: str, request: Request):
    db = state["db"]
    plan = await db.plans.find_one({"id": plan_id, "data_type": "plan"})
    if plan is None:
        raise HTTPException(status_code=404, detail="Plan not found")
    cursor = db.messages.find({"plan_id": plan_id, "data_type": "m_plan_message"}).sort("timestamp", 1)
    messages = [clean(m) async for m in cursor]
    m_plan = plan.get("m_plan")
    streaming = plan.get("streaming_message") or ""
    plan = clean(plan)
    plan["m_plan"] = None
    plan["streaming_message"] = ""
    return {"plan": plan, "messages": messages, "m_plan": m_plan, "team": None, "streaming_message": streaming}


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
