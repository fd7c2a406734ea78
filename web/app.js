// agentd's web page: pick a team, submit a task, approve or reject the plan,
// watch the plan's messages arrive over the WebSocket with their seq numbers.
//
// Invariant: #messages holds exactly seq 1..state.lastSeq of the open plan,
// each once. History comes from GET /api/v3/plan/{id}/messages (the complete
// log, paged; GET /api/v3/plan gives the plan, its m_plan and MACAE's chat
// view, which leaves out what the chat does not show), then the WebSocket is
// opened with after_seq = the last seq shown; a frame at or below it is a
// duplicate (dropped, counted), a frame above lastSeq + 1 is a gap (not shown;
// the socket is reopened from lastSeq). Every reconnect uses after_seq =
// lastSeq, so a dropped socket or a reload never loses or repeats a message.
"use strict";

const API = "/api/v3";
const FINAL = new Set(["completed", "failed", "rejected", "canceled", "interrupted"]);

const state = {
  planId: null,
  lastSeq: 0,
  history: 0,  // messages of the open plan shown from the REST history (the rest came over the socket)
  duplicates: 0,
  gaps: 0,
  reconnects: 0,
  ws: null,
  retryMs: 250,
  retryTimer: null,
  status: "",
  mPlanId: null,
  teams: [],
};

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const token = localStorage.getItem("agentd_token");
  if (token) opts.headers["Authorization"] = "Bearer " + token;
  const res = await fetch(API + path, opts);
  const text = await res.text();
  if (!res.ok) throw new Error(res.status + " " + text);
  return text ? JSON.parse(text) : null;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- teams and submission ----

async function loadTeams() {
  try {
    state.teams = await api("GET", "/team_configs");
  } catch (e) {
    $("submit-error").textContent = "Teams unavailable: " + e.message;
    $("submit-error").hidden = false;
    return;
  }
  const sel = $("team");
  sel.textContent = "";
  for (const t of state.teams) {
    const o = el("option", "", t.name || t.team_id);
    o.value = t.team_id;
    sel.appendChild(o);
  }
  showTeam();
}

function showTeam() {
  const t = state.teams.find((x) => x.team_id === $("team").value);
  $("team-desc").textContent = t ? (t.description || "") + " (" + (t.agents || []).length + " agents)" : "";
  if (t && !$("task").value && t.starting_tasks && t.starting_tasks.length) {
    $("task").placeholder = t.starting_tasks[0].prompt || $("task").placeholder;
  }
}

async function submitTask() {
  const description = $("task").value.trim() || $("task").placeholder;
  const err = $("submit-error");
  err.hidden = true;
  $("submit").disabled = true;
  try {
    const sid = "sid_" + Date.now() + "_" + Math.floor(Math.random() * 10000);
    const r = await api("POST", "/process_request", { description, session_id: sid, team_id: $("team").value });
    $("task").value = "";
    await openPlan(r.plan_id);
    loadPlans();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    $("submit").disabled = false;
  }
}

// ---- past plans ----

async function loadPlans() {
  let plans;
  try {
    plans = await api("GET", "/plans");
  } catch (e) {
    return;
  }
  const ul = $("plans");
  ul.textContent = "";
  for (const p of plans) {
    const li = el("li");
    li.dataset.planId = p.plan_id;
    if (p.plan_id === state.planId) li.classList.add("current");
    li.appendChild(el("span", "goal", p.initial_goal || p.plan_id));
    li.appendChild(el("span", "status " + p.status, p.status));
    li.title = p.created_at;
    li.onclick = () => openPlan(p.plan_id);
    ul.appendChild(li);
  }
}

// ---- one plan ----

function setStatus(status) {
  state.status = status;
  const s = $("plan-status");
  s.textContent = status;
  s.className = "status " + status;
  $("approval-actions").hidden = status !== "awaiting_approval";
  for (const li of $("plans").children) {
    if (li.dataset.planId === state.planId) {
      const badge = li.querySelector(".status");
      badge.textContent = status;
      badge.className = "status " + status;
    }
  }
}

function showMPlan(mPlan) {
  if (!mPlan || !mPlan.steps) return;
  state.mPlanId = mPlan.id || state.mPlanId;
  const ol = $("steps");
  ol.textContent = "";
  for (const s of mPlan.steps) {
    const li = el("li");
    li.appendChild(el("span", "agent", s.agent + ": "));
    li.appendChild(document.createTextNode(s.action));
    ol.appendChild(li);
  }
  $("approval").hidden = false;
}

function updateStats() {
  $("stats").textContent =
    "· last seq " + state.lastSeq + " · duplicates " + state.duplicates + " · gaps " + state.gaps +
    " · reconnects " + state.reconnects;
}

function contentOf(env) {
  const d = env.data || {};
  if (typeof d.content === "string") return d.content;
  if (typeof d.answer === "string") return d.answer;
  if (typeof d.question === "string") return d.question;
  if (typeof d.feedback === "string" && d.feedback) return d.feedback;
  const mPlan = d.plan || d.m_plan;  // data.m_plan: logs written before data.plan
  if (mPlan && mPlan.steps) return mPlan.steps.length + " steps proposed";
  if (typeof d.status === "string") return d.status;
  return JSON.stringify(d);
}

// Shows one persisted envelope if it is the next seq; see the invariant.
function addMessage(env) {
  if (env.plan_id !== state.planId || typeof env.seq !== "number") return;
  if (env.seq <= state.lastSeq) {
    state.duplicates++;
    updateStats();
    return;
  }
  if (env.seq !== state.lastSeq + 1) {
    state.gaps++;
    updateStats();
    reconnect();
    return;
  }
  state.lastSeq = env.seq;
  const d = env.data || {};
  const li = el("li");
  li.dataset.seq = String(env.seq);
  li.dataset.type = env.type;
  li.appendChild(el("span", "seq", "#" + env.seq));
  const main = el("div");
  const meta = el("div", "meta");
  meta.appendChild(el("span", "type", env.type));
  if (d.agent_name) meta.appendChild(el("span", "who", d.agent_name));
  meta.appendChild(el("span", "", (env.timestamp || "").replace("T", " ").replace("Z", "")));
  main.appendChild(meta);
  main.appendChild(el("div", "body", contentOf(env)));
  li.appendChild(main);
  $("messages").appendChild(li);
  $("streaming").hidden = true;
  updateStats();

  switch (env.type) {
    case "plan_approval_request":
      showMPlan(d.plan || d.m_plan);
      if (d.m_plan_id) state.mPlanId = d.m_plan_id;
      if (state.lastSeq > 0 && !FINAL.has(state.status)) setStatus("awaiting_approval");
      break;
    case "plan_approval_response":
      setStatus(d.approved === false ? "canceled" : "running");
      refreshStatus();
      break;
    case "final_result_message":
      $("final-text").textContent = contentOf(env);
      $("final").hidden = false;
      setStatus("completed");
      break;
    case "error_message":  // how a plan ends on a failure, timeout, cancel or restart
    case "timeout_notification":  // the older endings, in logs written before
    case "system_message":
      refreshStatus();
      break;
  }
}

async function refreshStatus() {
  if (!state.planId) return;
  try {
    const r = await api("GET", "/plan?plan_id=" + encodeURIComponent(state.planId));
    setStatus(r.plan.status);
  } catch (e) {}
}

async function openPlan(planId) {
  closeSocket();
  Object.assign(state, {
    planId,
    lastSeq: 0,
    history: 0,
    duplicates: 0,
    gaps: 0,
    reconnects: 0,
    retryMs: 250,
    mPlanId: null,
  });
  history.replaceState(null, "", "#plan=" + encodeURIComponent(planId));
  $("empty").hidden = true;
  $("plan").hidden = false;
  $("messages").textContent = "";
  $("steps").textContent = "";
  $("approval").hidden = true;
  $("final").hidden = true;
  $("streaming").hidden = true;
  $("plan-id").textContent = planId;
  for (const li of $("plans").children) li.classList.toggle("current", li.dataset.planId === planId);
  let r;
  try {
    r = await api("GET", "/plan?plan_id=" + encodeURIComponent(planId));
  } catch (e) {
    $("plan-goal").textContent = "Plan not available";
    setStatus("unknown");
    return;
  }
  if (state.planId !== planId) return;  // another plan was opened meanwhile
  $("plan-goal").textContent = r.plan.initial_goal;
  $("plan-team").textContent = (r.team && r.team.name) || r.plan.team_id;
  setStatus(r.plan.status);
  if (r.m_plan) showMPlan(r.m_plan);
  // The complete log, page by page, from the start.
  for (let more = true; more; ) {
    let page;
    try {
      page = await api("GET", "/plan/" + encodeURIComponent(planId) + "/messages?after_seq=" + state.lastSeq);
    } catch (e) {
      break;  // the socket replays from lastSeq
    }
    if (state.planId !== planId) return;
    const before = state.lastSeq;
    for (const m of page.messages) addMessage(m);
    state.history += state.lastSeq - before;
    more = page.has_more && state.lastSeq > before;
  }
  // The record's status, unless the log has moved on since it was read.
  if (state.lastSeq <= (r.plan.last_seq || 0)) setStatus(r.plan.status);
  else refreshStatus();
  updateStats();
  connect();
}

// ---- the WebSocket ----

function setConn(s) {
  const c = $("conn");
  c.textContent = s;
  c.className = "conn " + s;
}

function connect() {
  clearTimeout(state.retryTimer);
  const planId = state.planId;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = proto + "//" + location.host + API + "/socket/" + encodeURIComponent(planId) + "?after_seq=" + state.lastSeq;
  const ws = new WebSocket(url);
  state.ws = ws;
  setConn("connecting");
  ws.onopen = () => {
    if (state.ws !== ws) return;
    state.retryMs = 250;
    setConn("live");
  };
  ws.onmessage = (ev) => {
    if (state.ws !== ws) return;
    let env;
    try {
      env = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    if (typeof env.seq === "number") return addMessage(env);
    // Live-only frames (streaming chunks, pongs): shown, never counted.
    if (env.type === "agent_message_streaming" && env.data && env.data.content) {
      const s = $("streaming");
      s.textContent = (env.data.agent_name ? env.data.agent_name + ": " : "") + env.data.content;
      s.hidden = false;
    }
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (FINAL.has(state.status)) return setConn("closed");
    setConn("connecting");
    state.retryTimer = setTimeout(() => {
      if (state.planId !== planId) return;
      state.reconnects++;
      updateStats();
      connect();
    }, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 5000);
  };
}

function closeSocket() {
  clearTimeout(state.retryTimer);
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  setConn("idle");
}

// Reopens the socket from the last seq shown (after a gap, or on request).
function reconnect() {
  const ws = state.ws;
  if (ws) {
    ws.onclose = null;
    ws.close();
  }
  state.ws = null;
  state.reconnects++;
  updateStats();
  connect();
}

async function approve(approved) {
  $("approve").disabled = $("reject").disabled = true;
  try {
    await api("POST", "/plan_approval", {
      m_plan_id: state.mPlanId || state.planId,
      plan_id: state.planId,
      approved,
      feedback: approved ? "Plan approved by user" : "Plan rejected by user",
    });
  } catch (e) {
    alert(e.message);
  } finally {
    $("approve").disabled = $("reject").disabled = false;
  }
}

// For tests and the curious: the page's state and a way to drop the socket.
window.agentdPage = {
  state,
  dropSocket() {
    if (state.ws) state.ws.close();
  },
  seqs() {
    return Array.from($("messages").children, (li) => Number(li.dataset.seq));
  },
};

window.addEventListener("DOMContentLoaded", () => {
  $("team").onchange = showTeam;
  $("submit").onclick = submitTask;
  $("approve").onclick = () => approve(true);
  $("reject").onclick = () => approve(false);
  $("refresh-plans").onclick = loadPlans;
  loadTeams();
  loadPlans();
  const m = location.hash.match(/^#plan=(.+)$/);
  if (m) openPlan(decodeURIComponent(m[1]));
});
